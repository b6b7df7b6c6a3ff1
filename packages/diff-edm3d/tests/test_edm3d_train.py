"""Trainer: adaptive clipping, EMA, checkpoints (safetensors / weights_only), bitwise resume, bad
checkpoints, Ctrl-C, divergence, and the short CPU learning curve (spec 10, 13.1 #17, 13.2 #24)."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from diff_edm3d import load_checkpoint, preset
from diff_edm3d.checkpoint import CheckpointError
from diff_edm3d.train import AdaptiveClipper, Trainer, TrainingInterrupted, ema_update


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_adaptive_clipper_matches_the_official_rule():
    clip = AdaptiveClipper("adaptive")
    assert clip.threshold() == 1.5 * 3000.0  # queue [3000]: mean 3000, std 0
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=torch.float64)  # norm 5
    norm, clipped = clip.clip([p])
    assert norm == 5.0 and not clipped and clip.state() == [5.0, 3000.0]
    q = np.array([5.0, 3000.0])
    thr = 1.5 * q.mean() + 2 * q.std()  # population std
    assert clip.threshold() == pytest.approx(thr, rel=1e-15)
    p.grad = torch.tensor([1e4, 0, 0, 0], dtype=torch.float64)
    norm, clipped = clip.clip([p])
    assert clipped and norm == 1e4
    assert clip.state()[0] == pytest.approx(thr, rel=1e-15)  # records the threshold
    assert float(p.grad.norm()) == pytest.approx(thr, rel=1e-6)
    for _ in range(60):
        p.grad = torch.ones(4, dtype=torch.float64)
        clip.clip([p])
    assert len(clip.state()) == 50
    with pytest.raises(ValueError, match="clip"):
        AdaptiveClipper("fixed:-1")


def test_ema_update_rule():
    a = torch.nn.Linear(2, 2).double()
    b = torch.nn.Linear(2, 2).double()
    wa, wb = a.weight.detach().clone(), b.weight.detach().clone()
    ema_update(a, b, 0.9)
    assert torch.allclose(a.weight, 0.9 * wa + 0.1 * wb, rtol=1e-15, atol=0)


def _config(out: Path, steps: int, **kw):
    kw = {"checkpoint_every": 3, **kw}
    return preset("tiny", out=str(out), steps=steps, eval_every=0, progress=False, threads=None,
                  **kw)  # fmt: skip


def _log_losses(out: Path) -> list[tuple[int, float, float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["grad_norm"]) for r in rows]


def test_resume_is_bitwise(qm9_head, tmp_path, one_thread):
    data = qm9_head.subset(np.arange(200))
    straight = Trainer(_config(tmp_path / "a", 6), train_set=data)
    straight.fit()
    # 3 steps (checkpoint at 3), then a "kill" during step 4, then the same command again
    first = Trainer(_config(tmp_path / "b", 6), train_set=data)
    res = first.fit(stop_after=4)
    assert res["stopped"] and res["step"] == 4
    assert [p.name for p in sorted((tmp_path / "b").glob("ckpt_*"))] == ["ckpt_00000003"]
    resumed = Trainer(_config(tmp_path / "b", 6), train_set=data)
    assert resumed.step == 3 and resumed.loader.position == 3
    resumed.fit()
    for name in ("model", "ema"):
        sa = getattr(straight, name).state_dict()
        sb = getattr(resumed, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    oa, ob = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for i in oa:
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"):
            assert torch.equal(oa[i][key], ob[i][key])
    assert straight.clipper.state() == resumed.clipper.state()
    assert _log_losses(tmp_path / "a") == _log_losses(tmp_path / "b")
    assert [r[0] for r in _log_losses(tmp_path / "b")] == [1, 2, 3, 4, 5, 6]
    # the final checkpoint loads with weights_only / safetensors and equals the EMA
    edm = load_checkpoint(tmp_path / "b")
    for k, v in edm.state_dict().items():
        assert torch.equal(v, straight.ema.state_dict()[k])
    state = json.loads((tmp_path / "b" / "ckpt_00000006" / "trainer_state.json").read_text())
    assert state["clip_queue"] == straight.clipper.state()


def test_changed_config_and_corrupted_checkpoint(qm9_head, tmp_path, one_thread):
    data = qm9_head.subset(np.arange(64))
    Trainer(_config(tmp_path / "run", 6), train_set=data).fit()  # checkpoints at 3 and 6
    with pytest.raises(ValueError, match=r"differing fields \['lr'\]"):
        Trainer(_config(tmp_path / "run", 6, lr=1e-3), train_set=data)
    ckpt = tmp_path / "run" / "ckpt_00000006"
    originals = {f.name: f.read_bytes() for f in ckpt.iterdir()}
    bad = tmp_path / "bad"

    def corrupt(name: str, content: bytes) -> None:
        if bad.exists():
            shutil.rmtree(bad)
        shutil.copytree(ckpt, bad)
        (bad / name).write_bytes(content)

    ema = originals["ema.safetensors"]
    garbled = bytearray(ema)
    garbled[len(ema) // 2] ^= 0x55  # one byte of tensor data: safetensors itself cannot tell
    for name, content, reason in [
        ("ema.safetensors", ema[: len(ema) // 2], "ema.safetensors has .* bytes"),
        ("ema.safetensors", bytes(garbled), "ema.safetensors does not match its recorded SHA-256"),
        ("trainer_state.json", b"{not json", "trainer_state.json is not valid JSON"),
    ]:
        corrupt(name, content)
        with pytest.raises(CheckpointError, match=f"checkpoint {bad} is unreadable \\({reason}"):
            load_checkpoint(bad)
    # raw weights are verified separately: the garbled EMA does not stop the model from loading
    corrupt("ema.safetensors", bytes(garbled))
    assert load_checkpoint(bad, weights="model") is not None
    # the newest checkpoint of a run is unreadable: the error offers the older one by step
    shutil.copytree(tmp_path / "run", tmp_path / "run2")
    (tmp_path / "run2" / "ckpt_00000006" / "model.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "run2", weights="model")
    assert isinstance(info.value, ValueError)
    assert info.value.available == [("ckpt_00000003", 3)]
    assert str(info.value).endswith("available: ckpt_00000003 (step=3)")
    assert "(--step 3)" in info.value.message("", "--step ")
    old = load_checkpoint(tmp_path / "run2", weights="model", step=3)
    assert old.trainer_state["step"] == 3
    with pytest.raises(FileNotFoundError, match=r"available: ckpt_00000006 \(step=6\)"):
        load_checkpoint(tmp_path / "run2", step=4)
    # resuming from it says which file, what to do, and changes nothing
    with pytest.raises(CheckpointError, match="move or delete"):
        Trainer(_config(tmp_path / "run2", 9), train_set=data)
    # a checkpoint written before checksums existed still loads (and is still read strictly)
    state = json.loads((ckpt / "trainer_state.json").read_text())
    del state["files"]
    corrupt("trainer_state.json", json.dumps(state).encode())
    assert load_checkpoint(bad).trainer_state["step"] == 6
    assert {f.name: f.read_bytes() for f in ckpt.iterdir()} == originals  # nothing overwritten
    # tensors of another shape are refused with the differing keys
    state["model"]["dynamics"]["config"]["nf"] = 16
    corrupt("trainer_state.json", json.dumps(state).encode())
    with pytest.raises(ValueError, match="shape mismatches"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nowhere")


def test_ctrl_c_checkpoints_at_a_step_boundary_and_resumes_bitwise(qm9_head, tmp_path, one_thread):
    """SIGINT during step 4 lets the step finish, writes ckpt_00000004 and raises
    TrainingInterrupted; the same command then resumes to the uninterrupted result."""
    data = qm9_head.subset(np.arange(200))
    straight = Trainer(_config(tmp_path / "a", 6, checkpoint_every=100), train_set=data)
    straight.fit()
    first = Trainer(_config(tmp_path / "b", 6, checkpoint_every=100), train_set=data)
    step_fn = first.train_step

    def step_with_ctrl_c(molecules, step):
        if step == 3:  # the fourth step: Ctrl-C arrives while it runs
            signal.raise_signal(signal.SIGINT)
        return step_fn(molecules, step)

    first.train_step = step_with_ctrl_c
    with pytest.raises(TrainingInterrupted) as info:
        first.fit()
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.step == 4 and info.value.checkpoint == tmp_path / "b" / "ckpt_00000004"
    assert (tmp_path / "b" / "curves.png").is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    resumed = Trainer(_config(tmp_path / "b", 6, checkpoint_every=100), train_set=data)
    assert resumed.step == 4
    resumed.fit()
    for name in ("model", "ema"):
        sa = getattr(straight, name).state_dict()
        sb = getattr(resumed, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    assert _log_losses(tmp_path / "a") == _log_losses(tmp_path / "b")
    # during an evaluation (minutes of sampling on the paper's model) Ctrl-C stops at once
    cfg = _config(tmp_path / "c", 6, checkpoint_every=100).with_(eval_every=2)
    third = Trainer(cfg, train_set=data)
    evaluated = []

    def evaluate_with_ctrl_c():
        evaluated.append(third.step)
        signal.raise_signal(signal.SIGINT)
        raise AssertionError("the evaluation must stop at Ctrl-C")

    third.evaluate = evaluate_with_ctrl_c
    with pytest.raises(TrainingInterrupted) as info:
        third.fit()
    assert evaluated == [2] and info.value.step == 2
    assert [p.name for p in (tmp_path / "c").glob("ckpt_*")] == ["ckpt_00000002"]


def test_checkpoint_files_follow_the_umask(qm9_head, tmp_path, one_thread):
    import os
    import stat

    old = os.umask(0o027)
    try:
        Trainer(_config(tmp_path / "run", 1), train_set=qm9_head.subset(np.arange(16))).fit()
    finally:
        os.umask(old)
    ckpt = tmp_path / "run" / "ckpt_00000001"
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o750  # not mkdtemp's 0700
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in ckpt.iterdir()}
    assert modes == dict.fromkeys(modes, 0o640) and len(modes) == 4  # not safetensors' 0600


def test_divergence_names_the_step_and_the_learning_rate(qm9_head, tmp_path, one_thread):
    data = qm9_head.subset(np.arange(64))
    trainer = Trainer(_config(tmp_path / "run", 5, lr=1e12), train_set=data)
    with pytest.raises(FloatingPointError) as info:
        trainer.fit()
    msg = str(info.value)
    assert "\n" not in msg
    assert f"training diverged at step {trainer.step + 1}" in msg
    assert "lower the learning rate (--lr, now 1e+12; preset 'tiny' uses 0.0005)" in msg
    assert trainer.step >= 1  # the first step's update is what blows up the next one


def test_device_must_exist(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=r"device must be available on this machine \(cpu\)"):
        Trainer(_config(tmp_path, 1, device="cuda"), train_set=None)
    with pytest.raises(ValueError, match="device must be a torch device"):
        Trainer(_config(tmp_path, 1, device="gpu"), train_set=None)
    assert not tmp_path.joinpath("config.json").exists()


@pytest.mark.slow
def test_small_preset_learning_curve(tmp_path, one_thread):
    """Preset `small` (EGNN 64/4, batch 64, lr 5e-4, adaptive clip, seed 0) on the training split:
    mean l2 loss over steps 401-600 < 0.100 and over steps 1-10 > 0.3."""
    from diff_edm3d import load_qm9

    train = load_qm9(split="train", progress=False)
    cfg = preset("small", out=str(tmp_path / "small"), steps=600, eval_every=0,
                 checkpoint_every=600, progress=False)  # fmt: skip
    trainer = Trainer(cfg, train_set=train)
    trainer.fit()
    losses = np.array([r[1] for r in _log_losses(tmp_path / "small")])
    assert len(losses) == 600
    print("learning curve", losses[:10].mean(), losses[:200].mean(), losses[200:400].mean(),
          losses[400:600].mean())  # fmt: skip
    assert losses[:10].mean() > 0.3
    assert losses[400:600].mean() < 0.100


def test_e3nn_dynamics_trains_and_reloads(qm9_head, tmp_path, one_thread):
    from diff_edm3d import E3nnDynamics, collate

    data = qm9_head.subset(np.arange(100))
    cfg = preset("tiny", dynamics="e3nn", e3nn_mul=8, e3nn_lmax=1, n_layers=2, out=str(tmp_path),
                 steps=3, eval_every=0, progress=False)  # fmt: skip
    trainer = Trainer(cfg, train_set=data)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    edm = load_checkpoint(tmp_path)
    assert isinstance(edm.dynamics, E3nnDynamics)
    batch = collate(data.subset(np.arange(4)))
    with torch.no_grad():
        a = edm.nll(batch, torch.Generator().manual_seed(0)).nll
        b = trainer.ema.nll(batch, torch.Generator().manual_seed(0)).nll
    assert torch.equal(a, b)
