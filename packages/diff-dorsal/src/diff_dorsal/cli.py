"""The ``diff-dorsal`` console script: data, train-encoder, train, sample, edit, path, evaluate,
demo.

Defaults come from :class:`~diff_dorsal.scenes.SceneConfig`,
:class:`~diff_dorsal.cameras.CameraConfig`, :class:`~diff_dorsal.stage1.Stage1Config`,
:class:`~diff_dorsal.stage2.Stage2Config` and :class:`~diff_dorsal.features.FeatureNetConfig`;
``--help`` shows each. Bad arguments are one line (``diff-dorsal <cmd>: error: argument --x:
...``) with exit status 2; an output that exists is refused before any work unless
``--overwrite`` (a training folder holding checkpoints is resumed instead: ``resuming from step
N``); Ctrl-C during training writes a checkpoint and exits 130 with one line. Test scenes are the
``"test"`` split of the configuration recorded in the data file (or ``--test-data``); the input
views of a scene are views 0–4 and the targets views 5–9 (the stage-2 configuration's counts).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from diff_dorsal.cameras import CameraConfig
from diff_dorsal.features import FeatureNetConfig
from diff_dorsal.scenes import SceneConfig
from diff_dorsal.stage1 import Stage1Config
from diff_dorsal.stage2 import Stage2Config

__all__ = ["build_parser", "main"]

PROG = "diff-dorsal"
_SC, _CC, _S1, _S2, _FN = (
    SceneConfig(),
    CameraConfig(),
    Stage1Config(),
    Stage2Config(),
    FeatureNetConfig(),
)


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v

    parse.__name__ = f"int>={lo}"
    return parse


def _probability(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1), got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not v > 0 or not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {v}")
    return v


def _transfer(text: str) -> tuple[int, list[int]]:
    try:
        b, ids = text.split(":")
        out = int(b), [int(i) for i in ids.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be SCENE:OBJ[,OBJ...] (e.g. 7:1,2), got {text!r}"
        ) from None
    if out[0] < 0 or not out[1] or min(out[1]) < 0:
        raise argparse.ArgumentTypeError(f"scene and object ids must be >= 0, got {text!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(
        prog=PROG,
        description="DORSal (arXiv 2306.08068): multi-view diffusion conditioned on object slots "
        "and cameras, with object edits, on procedural multi-object scenes.",
        formatter_class=fmt,
    )
    sub = p.add_subparsers(dest="command", required=True)

    def overwrite(q: argparse.ArgumentParser) -> None:
        q.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    def test_data(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--test-data",
            default=None,
            help="test scenes .npz (default: the 'test' split of the run's data configuration)",
        )

    def sampling(q: argparse.ArgumentParser, steps: int) -> None:
        q.add_argument("--steps", type=_int_at_least(1), default=steps, help="DDIM steps")
        q.add_argument(
            "--guidance",
            type=float,
            default=1.0,
            help="classifier-free guidance scale (1 = conditional, 0 = unconditional)",
        )
        q.add_argument("--seed", type=int, default=0, help="noise seed")

    d = sub.add_parser("data", help="render a split of procedural scenes", formatter_class=fmt)
    d.add_argument("--scenes", type=_int_at_least(1), default=10000, help="number of scenes")
    d.add_argument(
        "--resolution",
        type=_int_at_least(8),
        default=_CC.resolution,
        help="view side in pixels (a multiple of 8)",
    )
    d.add_argument("--views", type=int, default=_CC.n_views, help="views per scene")
    d.add_argument(
        "--shadows", action="store_true", default=_SC.shadows, help="render hard shadows"
    )
    d.add_argument(
        "--min-objects", type=_int_at_least(1), default=_SC.min_objects, help="objects per scene"
    )
    d.add_argument(
        "--max-objects", type=_int_at_least(1), default=_SC.max_objects, help="objects per scene"
    )
    d.add_argument("--split", choices=("train", "val", "test"), default="train", help="which split")
    d.add_argument("--seed", type=int, default=0, help="data seed (item i is a function of it)")
    d.add_argument("--out", required=True, help="output .npz (and <stem>_preview.png beside it)")
    overwrite(d)

    e = sub.add_parser(
        "train-encoder", help="stage 1: train OSRT-lite (or resume)", formatter_class=fmt
    )
    e.add_argument("--data", required=True, help=".npz written by 'data'")
    e.add_argument("--preset", choices=("lite", "msn"), default=_S1.preset, help="encoder preset")
    e.add_argument("--steps", type=_int_at_least(1), default=_S1.steps, help="optimiser steps")
    e.add_argument("--batch", type=_int_at_least(1), default=_S1.batch_size, help="scenes/step")
    e.add_argument(
        "--rays",
        type=_int_at_least(1),
        default=_S1.rays_per_scene,
        help="target rays per scene and step",
    )
    e.add_argument("--lr", type=_positive_float, default=_S1.lr, help="peak learning rate")
    e.add_argument("--seed", type=int, default=_S1.seed, help="data stream and weights seed")
    e.add_argument(
        "--checkpoint-every",
        type=_int_at_least(0),
        default=_S1.checkpoint_every,
        help="steps per checkpoint (0: at the end and on Ctrl-C only)",
    )
    e.add_argument("--workdir", required=True, help="run folder (resumed if it has checkpoints)")
    overwrite(e)

    t = sub.add_parser(
        "train", help="stage 2: train the DORSal decoder (or resume)", formatter_class=fmt
    )
    t.add_argument(
        "--encoder",
        required=True,
        help="stage-1 run folder (OSRT-lite slots) or 'oracle' (the scenes' object slots)",
    )
    t.add_argument("--data", required=True, help=".npz written by 'data'")
    t.add_argument(
        "--preset",
        choices=("lite", "msn"),
        default=_S2.decoder.preset,
        help="decoder preset (the encoder must have the same preset)",
    )
    t.add_argument("--steps", type=_int_at_least(1), default=_S2.steps, help="optimiser steps")
    t.add_argument("--batch", type=_int_at_least(1), default=_S2.batch_size, help="scenes/step")
    t.add_argument(
        "--p-uncond", type=_probability, default=_S2.p_uncond, help="mask every slot (guidance)"
    )
    t.add_argument(
        "--p-slot", type=_probability, default=_S2.p_slot, help="mask each slot independently"
    )
    t.add_argument("--lr", type=_positive_float, default=_S2.lr, help="peak learning rate")
    t.add_argument("--seed", type=int, default=_S2.seed, help="data stream and weights seed")
    t.add_argument(
        "--checkpoint-every",
        type=_int_at_least(0),
        default=_S2.checkpoint_every,
        help="steps per checkpoint (0: at the end and on Ctrl-C only)",
    )
    t.add_argument(
        "--sample-steps",
        type=_int_at_least(1),
        default=32,
        help="DDIM steps of the samples/step_N.png picture",
    )
    t.add_argument("--workdir", required=True, help="run folder (resumed if it has checkpoints)")
    overwrite(t)

    s = sub.add_parser("sample", help="novel views of test scenes", formatter_class=fmt)
    s.add_argument("--workdir", required=True, help="stage-2 run folder")
    s.add_argument("--scenes", type=_int_at_least(1), default=8, help="test scenes")
    sampling(s, 64)
    test_data(s)
    s.add_argument("--out", required=True, help="output .npz (and a .png grid beside it)")
    overwrite(s)

    ed = sub.add_parser(
        "edit", help="remove or transfer objects with the noise fixed", formatter_class=fmt
    )
    ed.add_argument("--workdir", required=True, help="stage-2 run folder")
    ed.add_argument("--scene", type=_int_at_least(0), default=3, help="test scene index")
    what = ed.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--remove-object", type=_int_at_least(0), help="0-based object index to remove"
    )
    what.add_argument(
        "--transfer-from",
        type=_transfer,
        help="SCENE:OBJ[,OBJ...]: add these objects of another test scene",
    )
    sampling(ed, 64)
    test_data(ed)
    ed.add_argument("--out", required=True, help="output panel .png")
    overwrite(ed)

    pa = sub.add_parser("path", help="a camera orbit generated in chunks", formatter_class=fmt)
    pa.add_argument("--workdir", required=True, help="stage-2 run folder")
    pa.add_argument("--scene", type=_int_at_least(0), default=3, help="test scene index")
    pa.add_argument("--frames", type=_int_at_least(2), default=36, help="views along the orbit")
    pa.add_argument("--elevation", type=float, default=0.5, help="orbit elevation in radians")
    sampling(pa, 64)
    test_data(pa)
    pa.add_argument("--out", required=True, help="output .gif")
    overwrite(pa)

    ev = sub.add_parser(
        "evaluate",
        help="PSNR, SSIM, scene-feature distances, sharpness, edit locality and FG-ARI of DORSal, "
        "OSRT-lite and the baselines",
        formatter_class=fmt,
    )
    ev.add_argument("--workdir", required=True, help="stage-2 run folder")
    ev.add_argument("--scenes", type=_int_at_least(2), default=256, help="test scenes")
    ev.add_argument(
        "--edit-scenes",
        type=_int_at_least(0),
        default=16,
        help="scenes of the edit-locality and segmentation-from-edits figures",
    )
    ev.add_argument(
        "--feature-steps",
        type=_int_at_least(1),
        default=_FN.steps,
        help="training steps of the SceneFeatureNet (trained once, saved in the workdir)",
    )
    sampling(ev, 32)
    test_data(ev)
    ev.add_argument("--out", required=True, help="output .json (and a .md table beside it)")
    overwrite(ev)

    de = sub.add_parser(
        "demo", help="data → stage 1 → stage 2 → evaluate on a tiny budget", formatter_class=fmt
    )
    de.add_argument(
        "--quick",
        action="store_true",
        help="the CI-sized demo: tiny networks, 16 scenes, 10 + 10 steps, DDIM-8 (≈ 40 s)",
    )
    de.add_argument("--out", default="diff-dorsal-demo", help="output folder")
    overwrite(de)
    return p


# --------------------------------------------------------------------------------------------------
# helpers


def _fail(parser: argparse.ArgumentParser, arg: str, message: str) -> None:
    parser.error(f"argument {arg}: {message}")


def _refuse(parser: argparse.ArgumentParser, paths: Sequence[Path], overwrite: bool) -> None:
    for path in paths:
        if path.exists() and not overwrite:
            _fail(parser, "--out", f"{str(path)!r} exists (pass --overwrite to replace it)")


def _workdir(parser: argparse.ArgumentParser, path: str, overwrite: bool) -> Path:
    """A training folder: resumed when it holds checkpoints, refused when it holds anything else
    (unless --overwrite, which empties it)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        _fail(parser, "--workdir", f"must be a folder, got the file {path!r}")
    if out.exists() and any(out.iterdir()):
        if overwrite:
            shutil.rmtree(out)
        elif not (out / "checkpoints").is_dir():
            _fail(
                parser,
                "--workdir",
                f"{path!r} exists and holds no checkpoints (pass --overwrite to replace it)",
            )
    return out


def _load_data(parser: argparse.ArgumentParser, path: str, arg: str = "--data") -> dict:
    from diff_dorsal.scenes import load_scenes

    try:
        return load_scenes(path)
    except ValueError as err:
        _fail(parser, arg, str(err))


def _load_run(parser: argparse.ArgumentParser, workdir: str):
    from diff_dorsal.demo import load_run

    try:
        return load_run(workdir)
    except ValueError as err:
        _fail(parser, "--workdir", str(err))


def _train_arrays(parser: argparse.ArgumentParser, run: Any) -> dict | None:
    if run.data_path is None or not run.data_path.is_file():
        return None
    return _load_data(parser, str(run.data_path))


def _test_arrays(
    parser: argparse.ArgumentParser, run: Any, args: argparse.Namespace, n: int
) -> dict:
    from diff_dorsal.demo import held_out_scenes

    if args.test_data is not None:
        arrays = _load_data(parser, args.test_data, "--test-data")
        have = int(np.shape(arrays["images"])[0])
        if have < n:
            _fail(parser, "--test-data", f"must hold at least {n} scenes, got {have}")
        return {k: (np.asarray(v)[:n] if np.ndim(v) > 0 else v) for k, v in arrays.items()}
    train = _train_arrays(parser, run)
    if train is None:
        _fail(
            parser,
            "--test-data",
            f"is needed: the run {str(run.workdir)!r} records no data file that exists",
        )
    try:
        return held_out_scenes(train, n)
    except ValueError as err:
        _fail(parser, "--test-data", str(err))


def _check_guidance(parser: argparse.ArgumentParser, guidance: float) -> None:
    if not np.isfinite(guidance) or guidance < 0:
        _fail(parser, "--guidance", f"sample_views: guidance must be >= 0, got {guidance}")


def _check_views(parser: argparse.ArgumentParser, arrays: dict, need: int) -> None:
    views = int(np.shape(arrays["images"])[1])
    if views < need:
        _fail(
            parser,
            "--data",
            f"must have >= input_views + target_views ({need}) views per scene, got {views}",
        )


# --------------------------------------------------------------------------------------------------
# commands


def _cmd_data(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_dorsal.demo import make_data

    need = _S1.input_views + _S1.target_views
    if args.views < need:
        _fail(
            parser, "--views", f"must be >= input_views + target_views ({need}), got {args.views}"
        )
    if args.resolution % 8:
        _fail(parser, "--resolution", f"must be a multiple of 8, got {args.resolution}")
    if args.min_objects > args.max_objects:
        _fail(
            parser,
            "--max-objects",
            f"must be >= --min-objects ({args.min_objects}), got {args.max_objects}",
        )
    out = Path(args.out)
    if out.suffix != ".npz":
        _fail(parser, "--out", f"must end in .npz, got {args.out!r}")
    _refuse(parser, [out, out.with_name(out.stem + "_preview.png")], args.overwrite)
    arrays = make_data(
        out,
        scenes=args.scenes,
        resolution=args.resolution,
        views=args.views,
        shadows=args.shadows,
        seed=args.seed,
        split=args.split,
        min_objects=args.min_objects,
        max_objects=args.max_objects,
    )
    cover = float(np.mean(arrays["instance"] >= 1))
    print(
        f"wrote {out} ({args.scenes} scenes x {args.views} views at {args.resolution}², "
        f"objects cover {100 * cover:.1f}% of pixels) and "
        f"{out.with_name(out.stem + '_preview.png')}"
    )
    return 0


def _cmd_train_encoder(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_dorsal.demo import stage1_pictures
    from diff_dorsal.encoder import EncoderConfig
    from diff_dorsal.stage1 import train_encoder

    data = _load_data(parser, args.data)
    _check_views(parser, data, _S1.input_views + _S1.target_views)
    h, w = np.shape(data["images"])[2:4]
    if args.rays > _S1.target_views * h * w:
        _fail(parser, "--rays", f"must be <= target_views·h·w = {_S1.target_views * h * w}")
    out = _workdir(parser, args.workdir, args.overwrite)
    config = _S1.replace(
        encoder=EncoderConfig(args.preset),
        steps=args.steps,
        batch_size=args.batch,
        rays_per_scene=args.rays,
        lr=args.lr,
        seed=args.seed,
        model_seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    try:
        model, history = train_encoder(data, config, out, progress=True)
    except ValueError as err:
        _fail(parser, "--workdir", str(err))
    stage1_pictures(model, data, out, history)
    loss = np.asarray(history["loss"])
    if loss.size:
        print(
            f"stage 1: {out} at step {int(history['step'][-1])}, ray MSE {loss[:20].mean():.4f} "
            f"-> {loss[-20:].mean():.4f} (lower is better; about 0.03 -> 0.022 over 400 steps)"
        )
    return 0


def _cmd_train(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_dorsal.demo import RUN_FILE, load_run, stage2_pictures
    from diff_dorsal.denoiser import DecoderConfig
    from diff_dorsal.stage2 import train_dorsal
    from diff_protocol.io import atomic_write

    oracle = args.encoder == "oracle"
    if not oracle and not Path(args.encoder).is_dir():
        _fail(
            parser, "--encoder", f"must be a stage-1 run folder or 'oracle', got {args.encoder!r}"
        )
    data = _load_data(parser, args.data)
    _check_views(parser, data, _S2.input_views + _S2.target_views)
    res = int(np.shape(data["images"])[2])
    config = _S2.replace(
        decoder=DecoderConfig(args.preset, image_size=res),
        slots="oracle" if oracle else "osrt",
        encoder_preset=args.preset,
        p_uncond=args.p_uncond,
        p_slot=args.p_slot,
        steps=args.steps,
        batch_size=args.batch,
        lr=args.lr,
        seed=args.seed,
        model_seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    out = _workdir(parser, args.workdir, args.overwrite)
    try:
        _, history = train_dorsal(
            data, config, out, encoder=None if oracle else args.encoder, progress=True
        )
    except ValueError as err:
        arg = "--encoder" if str(err).startswith("train: encoder") else "--workdir"
        _fail(parser, arg, str(err))
    info = {
        "data": str(Path(args.data).resolve()),
        "encoder": "oracle" if oracle else str(Path(args.encoder).resolve()),
    }
    atomic_write(out / RUN_FILE, json.dumps(info, indent=2))
    run = load_run(out)
    stage2_pictures(run, data, history, sample_steps=args.sample_steps)
    loss = np.asarray(history["logged_loss"])
    if loss.size:
        print(
            f"stage 2: {out} at step {run.meta['step']}, loss {loss[:20].mean():.4f} -> "
            f"{loss[-20:].mean():.4f} (½ v-MSE, lower is better; about 0.31 -> 0.10 over 800 "
            "oracle-slot steps)"
        )
    return 0


def _cmd_sample(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_dorsal import viz
    from diff_dorsal.demo import sample_scenes, scene_slots
    from diff_dorsal.metrics import psnr
    from diff_dorsal.stage1 import render_views
    from diff_protocol.io import atomic_write

    _check_guidance(parser, args.guidance)
    out = Path(args.out)
    if out.suffix != ".npz":
        _fail(parser, "--out", f"must end in .npz, got {args.out!r}")
    png = out.with_suffix(".png")
    _refuse(parser, [out, png], args.overwrite)
    run = _load_run(parser, args.workdir)
    test = _test_arrays(parser, run, args, args.scenes)
    tgt = run.target_views
    slots, mask = scene_slots(run, test)
    x = sample_scenes(
        run,
        slots,
        mask,
        test["origins"][:, tgt],
        test["directions"][:, tgt],
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        progress=True,
    )
    truth = np.asarray(test["images"])[:, tgt]
    saved = {"samples": x, "truth": truth, "scene": np.arange(args.scenes)}
    rows = {"truth": truth}
    if run.encoder is not None:
        saved["osrt_lite"] = rows["OSRT-lite"] = render_views(
            run.encoder, test, run.input_views, tgt, batch_size=8, return_weights=True
        )[0]
    rows["DORSal"] = x
    buf = io.BytesIO()
    np.savez(buf, **saved)
    atomic_write(out, buf.getvalue())
    viz.view_grid(rows, png)
    print(
        f"wrote {out} and {png}: {args.scenes} scenes x {len(tgt)} views, PSNR "
        f"{psnr(x, truth):.2f} dB (higher is better; a sample is not a posterior mean, so DORSal "
        "is expected below OSRT-lite here)"
    )
    return 0


def _cmd_edit(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_dorsal.demo import edit_scene

    _check_guidance(parser, args.guidance)
    out = Path(args.out)
    _refuse(parser, [out], args.overwrite)
    run = _load_run(parser, args.workdir)
    n = args.scene + 1 if args.transfer_from is None else max(args.scene, args.transfer_from[0]) + 1
    test = _test_arrays(parser, run, args, n)
    try:
        res = edit_scene(
            run,
            test,
            args.scene,
            out,
            remove=args.remove_object,
            transfer_from=args.transfer_from,
            seed=args.seed,
            steps=args.steps,
            guidance=args.guidance,
        )
    except ValueError as err:
        arg = "--remove-object" if args.remove_object is not None else "--transfer-from"
        _fail(parser, arg, str(err))
    loc = res["locality"]
    print(
        f"wrote {out}: edited slots {res['slots']}; share of the change inside the true change "
        f"mask (dilated 1 px): {'n/a' if loc is None else f'{loc:.3f}'} (higher is better; 1 "
        "with an exact denoiser, near the mask's area share for an untrained one)"
    )
    return 0


def _cmd_path(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_dorsal.demo import orbit

    _check_guidance(parser, args.guidance)
    out = Path(args.out)
    if out.suffix.lower() != ".gif":
        _fail(parser, "--out", f"must end in .gif, got {args.out!r}")
    _refuse(parser, [out], args.overwrite)
    run = _load_run(parser, args.workdir)
    test = _test_arrays(parser, run, args, args.scene + 1)
    orbit(
        run,
        test,
        args.scene,
        out,
        frames=args.frames,
        elevation=args.elevation,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
    )
    print(f"wrote {out}: {args.frames} views of test scene {args.scene} (truth | DORSal)")
    return 0


def _cmd_evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from diff_dorsal.demo import evaluate_run, metrics_markdown, write_metrics
    from diff_dorsal.features import (
        FEATURE_FILE,
        load_feature_net,
        save_feature_net,
        train_feature_net,
    )

    _check_guidance(parser, args.guidance)
    out = Path(args.out)
    if out.suffix != ".json":
        _fail(parser, "--out", f"must end in .json, got {args.out!r}")
    _refuse(parser, [out, out.with_suffix(".md")], args.overwrite)
    run = _load_run(parser, args.workdir)
    train = _train_arrays(parser, run)
    if train is None:
        _fail(parser, "--workdir", "the run records no data file that exists (train data)")
    test = _test_arrays(parser, run, args, args.scenes)
    feature_path = run.workdir / FEATURE_FILE
    if feature_path.is_file():
        net = load_feature_net(feature_path)
    else:
        net, hist = train_feature_net(train, _FN, steps=args.feature_steps)
        save_feature_net(net, feature_path)
        print(
            f"scene-feature net: {args.feature_steps} steps, visible-object count accuracy "
            f"{hist['count_accuracy']:.3f} on training views; saved to {feature_path}"
        )
    figures, _ = evaluate_run(
        run,
        test,
        train,
        net,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        edit_scenes=args.edit_scenes,
    )
    write_metrics(out, figures)
    print(metrics_markdown(figures), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
    from diff_pixel.train import TrainingInterrupted

    commands = {
        "data": _cmd_data,
        "train-encoder": _cmd_train_encoder,
        "train": _cmd_train,
        "sample": _cmd_sample,
        "edit": _cmd_edit,
        "path": _cmd_path,
        "evaluate": _cmd_evaluate,
    }
    try:
        if args.command in commands:
            return commands[args.command](sub, args)
        from diff_dorsal.demo import run_demo

        out = Path(args.out)
        if out.exists() and not out.is_dir():
            _fail(sub, "--out", f"must be a folder, got the file {args.out!r}")
        if out.exists() and any(out.iterdir()):
            if not args.overwrite:
                _fail(sub, "--out", f"{args.out!r} exists and is not empty (pass --overwrite)")
            shutil.rmtree(out)
        return run_demo(out, quick=args.quick)
    except TrainingInterrupted as err:
        print(
            f"{PROG}: interrupted at step {err.step}; checkpoint: {err.checkpoint} "
            "(run the same command to resume)",
            file=sys.stderr,
        )
        return 130
    except ImportError as err:
        print(f"{PROG}: {err} (pip install 'diff-dorsal[viz]')", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
