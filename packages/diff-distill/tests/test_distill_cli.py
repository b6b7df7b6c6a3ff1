"""The command line: every option documents its default, bad arguments are one line with exit code
2 naming the argument (spec §8's examples), existing outputs are refused before any work, and a
killed training resumes bitwise ("resuming from step N")."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from diff_distill.cli import build_parser, main


def _run(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return exc.value.code, err


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    raise AssertionError("no subcommands")


@pytest.mark.smoke
def test_every_option_documents_its_default():
    subs = _subparsers(build_parser())
    assert {"train", "distill", "toy", "sample", "evaluate", "demo"} <= set(subs)
    for name, sub in subs.items():
        for action in sub._actions:
            if action.dest == "help":
                continue
            text = action.help or ""
            assert "default" in text or "required" in text, (name, action.dest)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (
            ["train", "--teacher", "t", "--out", "o", "--k", "0"],
            "k must be a positive integer, got 0",
        ),
        (
            ["sample", "--student", "s", "--out", "o.png", "--eta", "2"],
            "must be a number in [0, 1]",
        ),
        (
            ["toy", "--out", "o", "--variant", "param_space", "--teacher", "exact"],
            "--teacher: must be one of network, mixture",
        ),
    ],
)
def test_bad_arguments_are_one_line(capsys, tmp_path, argv, needle):
    os.chdir(tmp_path)
    code, err = _run(capsys, argv)
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_teacher_without_a_run_is_named(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, err = _run(
        capsys, ["train", "--teacher", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]
    )
    assert code == 2 and len(err) == 1
    assert "--teacher" in err[0] and "checkpoints" in err[0], err


def test_existing_output_is_refused(capsys, tmp_path):
    out = tmp_path / "x.png"
    out.write_bytes(b"")
    code, err = _run(capsys, ["sample", "--student", "s", "--out", str(out)])
    assert code == 2 and "exists; pass --overwrite" in err[0]
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "results.json").write_text("{}")
    code, err = _run(capsys, ["toy", "--out", str(tmp_path / "toy")])
    assert code == 2 and "results.json" in err[0]


def _digits_teacher(tmp_path):
    """A 30-step digits teacher run (tiny-16) of diff-pixel, built once per test session."""
    from diff_pixel.sid.cli import train_run

    run = tmp_path / "teacher"
    train_run(data="digits", steps=30, out=str(run), progress=False, checkpoint_every=30)
    return run


@pytest.mark.slow
def test_train_kill_resume_sample_evaluate(tmp_path):
    """The CLI on a real (tiny) diff-pixel teacher: train is killed with SIGINT (Ctrl-C) after its
    first checkpoint, resumes with the same command and ends bitwise equal to an uninterrupted
    run; the wrong data shape is named; sample writes a PNG grid."""
    teacher = _digits_teacher(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base = [
        sys.executable,
        "-m",
        "diff_distill.cli",
        "train",
        "--teacher",
        str(teacher),
        "--k",
        "2",
        "--steps",
        "24",
        "--batch",
        "8",
        "--checkpoint-every",
        "4",
    ]
    full = subprocess.run(
        base + ["--out", str(tmp_path / "full")], env=env, capture_output=True, text=True
    )
    assert full.returncode == 0, full.stderr[-2000:]
    cfg = json.loads(full.stdout[: full.stdout.rindex("}") + 1])
    assert cfg["k"] == 2 and cfg["num_steps"] == 24 and cfg["variant"] == "alternating"
    split_out = tmp_path / "split"
    # Ctrl-C arrives deterministically: the child process sends SIGINT to itself from a trainer
    # hook after step 6 (one step past the checkpoint at 4), so the run can neither finish first
    # nor be interrupted before a checkpoint exists, whatever the machine's speed.
    interrupt_at_step_6 = (
        "import os, runpy, signal, sys\n"
        "from diff_pixel.train import Hook, Trainer\n"
        "class Interrupt(Hook):\n"
        "    def on_step(self, trainer, step, metrics):\n"
        "        if step == 6:\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "run = Trainer.run\n"
        "def run_with_interrupt(self, *args, **kwargs):\n"
        "    self.hooks = (*self.hooks, Interrupt())\n"
        "    return run(self, *args, **kwargs)\n"
        "Trainer.run = run_with_interrupt\n"
        "sys.argv = ['diff-distill', *sys.argv[1:]]\n"
        "runpy.run_module('diff_distill.cli', run_name='__main__')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", interrupt_at_step_6, *base[3:], "--out", str(split_out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err[-1000:]
    assert "interrupted at step" in err.strip().splitlines()[-1]
    again = subprocess.run(
        base + ["--out", str(split_out)], env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from step" in again.stderr
    from diff_pixel.train import Trainer

    a, b = Trainer.restore(tmp_path / "full")[0], Trainer.restore(split_out)[0]
    from flax import nnx

    for (pa, va), (pb, vb) in zip(
        nnx.to_flat_state(nnx.state(a)), nnx.to_flat_state(nnx.state(b)), strict=True
    ):
        assert pa == pb and np.array_equal(
            np.asarray(va.get_value()), np.asarray(vb.get_value())
        ), pa
    # wrong data shape: named with both shapes
    npz = tmp_path / "bad.npz"
    np.savez(npz, x=np.zeros((8, 8, 8, 1), np.float32))
    bad = subprocess.run(
        base + ["--out", str(tmp_path / "bad"), "--data", str(npz)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--data" in bad.stderr and "(16, 16, 1)" in bad.stderr
    assert sorted(p.name for p in (tmp_path / "full" / "samples").glob("*.png"))  # grids
    png = tmp_path / "s.png"
    assert (
        main(["sample", "--student", str(tmp_path / "full"), "--out", str(png), "--num", "20"]) == 0
    )
    assert png.stat().st_size > 100
    assert main(["evaluate", "--run", str(tmp_path / "full"), "--per-class", "2"]) == 0
    scores = json.loads((tmp_path / "full" / "evaluate.json").read_text())
    assert scores["sampler"] == "moment_matching" and scores["steps"] == 2
    assert 0 <= scores["class_accuracy"] <= 1 and np.isfinite(scores["digits_feature_distance"])
    # a guided teacher term (guidance_scale 2) runs on the class-conditional teacher
    guided = subprocess.run(
        base[:-2] + ["--steps", "2", "--guidance-scale", "2", "--out", str(tmp_path / "g")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert guided.returncode == 0, guided.stderr[-2000:]
    assert json.loads(guided.stdout[: guided.stdout.rindex("}") + 1])["guidance_scale"] == 2.0
    # the parameter-space variant preconditioned by the teacher's Adam ν, read from its run: the
    # method state of the student's checkpoint holds that ν bitwise
    adam = subprocess.run(
        base[:-2]
        + ["--steps", "2", "--variant", "param_space", "--precond", "adam"]
        + ["--out", str(tmp_path / "adam")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert adam.returncode == 0, adam.stderr[-2000:]
    assert json.loads(adam.stdout[: adam.stdout.rindex("}") + 1])["precond"] == "adam"
    from diff_pixel.train import RunCheckpoints, adam_second_moment, flat_arrays

    nu = adam_second_moment(teacher)
    ckpts = RunCheckpoints(tmp_path / "adam", read_only=True)
    try:
        _, train, _ = ckpts.restore_train_arrays()
    finally:
        ckpts.close()
    stored = flat_arrays(train["extra"]["nu"])
    assert sorted(stored) == sorted(nu) and len(nu) > 10
    assert all(np.asarray(stored[k]).tobytes() == nu[k].tobytes() for k in nu)
