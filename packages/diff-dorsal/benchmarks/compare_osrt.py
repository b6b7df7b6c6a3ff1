"""DORSal against OSRT-lite and the baselines on held-out scenes, per seed (one JSON object).

For each DORSal run (OSRT-lite slots and/or oracle slots), each guidance scale (default 1 and 2)
and each seed (default 0 1 2), this calls the package's own evaluation,
:func:`diff_dorsal.demo.evaluate_run` (the logic of ``diff-dorsal evaluate``; nothing is
re-implemented here), on the same ``--scenes`` test scenes (default 256): PSNR, SSIM,
scene-feature distance, Fréchet scene-feature distance and sharpness ratio of DORSal samples,
OSRT-lite reconstructions and the baselines (dataset-mean image, nearest input view, empty-scene
render); edit locality of removing the largest visible object's slot, its random-slot control and
their ratio; FG-ARI from edits and of the OSRT-lite mixer. The feature figures use the in-package
``SceneFeatureNet`` (not LPIPS / FID). A seed sets the sampling noise and the control slot; the
networks are fixed. DORSal: Jabri et al., arXiv 2306.08068; OSRT: Sajjadi et al., arXiv
2206.06922.

The JSON holds every (run, guidance, seed) result under ``per_seed``, their mean and standard
deviation over seeds under ``summary`` and ratios against the OSRT-lite baseline of the same run
under ``ratios`` (DORSal/OSRT-lite sharpness, scene-feature and Fréchet distances, PSNR and SSIM
differences, DORSal/best-baseline PSNR, locality ratio).

Trained runs::

    python packages/diff-dorsal/benchmarks/compare_osrt.py --dorsal-workdir runs/s2 runs/s2o \\
        --encoder-workdir runs/s1 --data data.npz --scenes 256 --seeds 0 1 2

or tiny runs trained here first (``--train-steps``; ``--tiny`` for the demo's small networks)::

    python packages/diff-dorsal/benchmarks/compare_osrt.py --train-steps 40 --tiny --scenes 8 \\
        --seeds 0 --train-scenes 64 --feature-steps 50 --steps 8 --edit-scenes 2
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_METRICS = ("psnr", "ssim", "feature_distance", "frechet_feature_distance", "sharpness_ratio")
EDIT_METRICS = (
    "edit_locality",
    "edit_locality_random_slot",
    "locality_ratio",
    "fg_ari_from_edits",
)
BASELINES = ("mean image", "nearest input view", "empty-scene render")


# --------------------------------------------------------------------------------------------------
# tiny runs


def ema_decay_for(steps: int) -> float:
    """``min(0.999, 1 − 10/steps)`` (at least 0.5): an EMA horizon of at most a tenth of a short
    run, so the evaluated weights have left their zero-initialised head (our choice)."""
    return float(min(0.999, max(0.5, 1.0 - 10.0 / max(1, steps))))


def tiny_configs(tiny: bool, steps: int, batch: int | None = None) -> tuple[Any, Any]:
    """``(Stage1Config, Stage2Config)`` for ``steps`` optimiser steps each: the ``lite`` presets
    (or, with ``tiny``, the small networks of ``diff-dorsal demo --quick``), warm-up
    ``min(200, steps // 10)`` (our choice, so short runs reach their peak learning rate), the
    stage-2 EMA decay :func:`ema_decay_for`, a checkpoint at the end only."""
    from diff_dorsal.demo import quick_configs
    from diff_dorsal.stage1 import Stage1Config
    from diff_dorsal.stage2 import Stage2Config

    warm = min(200, max(1, steps // 10))
    s1, s2 = Stage1Config(), Stage2Config()
    if tiny:
        q = quick_configs(True)
        s1, s2 = q["stage1"], q["stage2"]
    kw1 = dict(steps=steps, warmup_steps=warm, checkpoint_every=0)
    kw2 = dict(steps=steps, warmup_steps=warm, checkpoint_every=0, ema_decay=ema_decay_for(steps))
    if batch is not None:
        kw1["batch_size"] = kw2["batch_size"] = batch
    return s1.replace(**kw1), s2.replace(**kw2)


def train_runs(
    workdir: str | Path,
    train: Mapping[str, Any],
    *,
    steps: int,
    slots: Sequence[str] = ("osrt", "oracle"),
    tiny: bool = False,
    batch: int | None = None,
    encoder_workdir: str | Path | None = None,
    progress: bool = False,
    hooks: Callable[[str], Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Train stage 1 (unless ``encoder_workdir`` is given) and one stage-2 run per slot source in
    ``workdir`` (``stage1/``, ``stage2_<slots>/``) and return ``{name: Run}``. ``hooks(phase)``
    gives extra trainer hooks per phase (``"stage1"``, ``"stage2_osrt"``, ``"stage2_oracle"``),
    e.g. a time cap. Oracle-slot runs get the OSRT-lite encoder too (their OSRT-lite row)."""
    from diff_dorsal.demo import load_run
    from diff_dorsal.stage1 import train_encoder
    from diff_dorsal.stage2 import train_dorsal

    workdir = Path(workdir)
    s1, s2 = tiny_configs(tiny, steps, batch)
    extra = hooks or (lambda phase: ())
    if encoder_workdir is None and "osrt" in slots:
        encoder_workdir = workdir / "stage1"
        train_encoder(train, s1, encoder_workdir, progress=progress, hooks=extra("stage1"))
    runs = {}
    for kind in slots:
        out = workdir / f"stage2_{kind}"
        cfg = s2.replace(slots=kind)
        enc = str(encoder_workdir) if kind == "osrt" else None
        train_dorsal(train, cfg, out, encoder=enc, progress=progress, hooks=extra(out.name))
        runs[f"dorsal_{kind}"] = load_run(out)
    if encoder_workdir is not None:  # the OSRT-lite row for oracle-slot runs too
        from diff_dorsal.stage1 import load_encoder

        encoder = None
        for run in runs.values():
            if run.encoder is None:
                encoder = encoder or load_encoder(encoder_workdir)[0]
                run.encoder = encoder
    return runs


# --------------------------------------------------------------------------------------------------
# the comparison


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _stats(values: Sequence[Any]) -> dict[str, Any]:
    v = [x for x in (_finite(x) for x in values) if x is not None]
    if not v:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)}


def _ratio(a: Any, b: Any) -> float | None:
    a, b = _finite(a), _finite(b)
    return None if a is None or b is None or b == 0 else a / b


def _diff(a: Any, b: Any) -> float | None:
    a, b = _finite(a), _finite(b)
    return None if a is None or b is None else a - b


def summarise(per_seed: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(summary, ratios)`` of the per-seed results: mean/std over seeds of every figure per
    ``<run>@g<guidance>`` and the ratios against that run's OSRT-lite and baselines."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in per_seed:
        groups.setdefault(f"{r['run']}@g{r['guidance']:g}", []).append(r)
    summary, ratios = {}, {}
    for name, rows in groups.items():
        models = sorted({m for r in rows for m in r["models"]})
        s: dict[str, Any] = {"seeds": [r["seed"] for r in rows], "models": {}}
        for m in models:
            s["models"][m] = {
                k: _stats([r["models"][m].get(k) for r in rows if m in r["models"]])
                for k in IMAGE_METRICS
            }
        s["edits"] = {k: _stats([r["edits"].get(k) for r in rows]) for k in EDIT_METRICS}
        s["fg_ari_osrt_mixer"] = _stats([r.get("fg_ari_osrt_mixer") for r in rows])
        summary[name] = s

        def mean(model: str, key: str, s=s) -> float | None:
            return s["models"].get(model, {}).get(key, {}).get("mean")

        best = max((v for v in (mean(b, "psnr") for b in BASELINES) if v is not None), default=None)
        ratios[name] = {
            "sharpness_dorsal_over_osrt": _ratio(
                mean("DORSal", "sharpness_ratio"), mean("OSRT-lite", "sharpness_ratio")
            ),
            "feature_distance_dorsal_over_osrt": _ratio(
                mean("DORSal", "feature_distance"), mean("OSRT-lite", "feature_distance")
            ),
            "frechet_dorsal_over_osrt": _ratio(
                mean("DORSal", "frechet_feature_distance"),
                mean("OSRT-lite", "frechet_feature_distance"),
            ),
            "psnr_dorsal_minus_osrt_db": _diff(mean("DORSal", "psnr"), mean("OSRT-lite", "psnr")),
            "ssim_dorsal_minus_osrt": _diff(mean("DORSal", "ssim"), mean("OSRT-lite", "ssim")),
            "psnr_dorsal_minus_best_baseline_db": _diff(mean("DORSal", "psnr"), best),
            "locality_ratio": s["edits"]["locality_ratio"]["mean"],
            "locality_over_control": _ratio(
                s["edits"]["edit_locality"]["mean"],
                s["edits"]["edit_locality_random_slot"]["mean"],
            ),
        }
    return summary, ratios


def compare_runs(
    runs: Mapping[str, Any],
    train: Mapping[str, Any],
    test: Mapping[str, Any],
    feature_net: Any,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    guidances: Sequence[float] = (1.0, 2.0),
    steps: int = 32,
    edit_scenes: int = 16,
    chunk: int = 8,
    progress: bool = False,
    deadline: float | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Evaluate every ``(run, guidance, seed)`` with :func:`diff_dorsal.demo.evaluate_run` and
    summarise. ``deadline`` (``time.perf_counter()`` value): combinations not started by then
    are listed under ``skipped``. ``on_result`` sees each result as it is produced."""
    from diff_dorsal.demo import evaluate_run

    per_seed, skipped = [], []
    t0 = time.perf_counter()
    for name, run in runs.items():
        for g in guidances:
            for seed in seeds:
                if deadline is not None and time.perf_counter() > deadline:
                    skipped.append({"run": name, "guidance": float(g), "seed": int(seed)})
                    continue
                t = time.perf_counter()
                figures, _ = evaluate_run(
                    run,
                    test,
                    train,
                    feature_net,
                    steps=steps,
                    guidance=float(g),
                    seed=int(seed),
                    edit_scenes=edit_scenes,
                    chunk=chunk,
                    progress=progress,
                )
                row = {
                    "run": name,
                    "slots": run.config.slots,
                    "guidance": float(g),
                    "seed": int(seed),
                    "models": figures["models"],
                    "edits": figures["edits"],
                    "fg_ari_osrt_mixer": figures.get("fg_ari_osrt_mixer"),
                    "seconds": time.perf_counter() - t,
                }
                per_seed.append(row)
                if on_result is not None:
                    on_result(row)
    summary, ratios = summarise(per_seed)
    return {
        "benchmark": "compare_osrt",
        "runs": {
            k: {
                "slots": r.config.slots,
                "workdir": str(r.workdir),
                "stage2_step": int(r.meta.get("step", 0)),
                "osrt_lite": r.encoder is not None,
            }
            for k, r in runs.items()
        },
        "setup": {
            "test_scenes": int(np.shape(test["images"])[0]),
            "seeds": [int(s) for s in seeds],
            "guidances": [float(g) for g in guidances],
            "sampling_steps": steps,
            "edit_scenes": edit_scenes,
            "seconds": time.perf_counter() - t0,
        },
        "per_seed": per_seed,
        "summary": summary,
        "ratios": ratios,
        "skipped": skipped,
    }


def clean_json(x: Any) -> Any:
    """``x`` with numpy scalars/arrays as Python values and NaN/inf as ``None`` (strict JSON)."""
    if isinstance(x, Mapping):
        return {str(k): clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v) for v in x]
    if isinstance(x, np.ndarray):
        return clean_json(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, Path):
        return str(x)
    return x


# --------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dorsal-workdir", nargs="+", default=None, help="stage-2 run folders")
    p.add_argument(
        "--encoder-workdir",
        default=None,
        help="stage-1 run folder: the OSRT-lite row for oracle-slot runs (and the encoder of "
        "tiny osrt-slot runs trained here)",
    )
    p.add_argument("--data", default=None, help="train .npz (default: the run's recorded data)")
    p.add_argument("--test-data", default=None, help="test .npz (default: the test split)")
    p.add_argument("--scenes", type=int, default=256, help="test scenes (default 256)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampling seeds")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0], help="scales")
    p.add_argument("--steps", type=int, default=32, help="DDIM steps (default 32)")
    p.add_argument("--edit-scenes", type=int, default=16, help="scenes with edits (default 16)")
    p.add_argument("--chunk", type=int, default=8, help="scenes per sampling call (default 8)")
    p.add_argument("--feature-net", default=None, help="feature_net.npz (default: train one)")
    p.add_argument("--feature-steps", type=int, default=1000, help="its steps (default 1000)")
    p.add_argument("--train-steps", type=int, default=None, help="train tiny runs here first")
    p.add_argument("--train-scenes", type=int, default=512, help="their train scenes")
    p.add_argument("--slots", nargs="+", choices=("osrt", "oracle"), default=["osrt", "oracle"])
    p.add_argument("--tiny", action="store_true", help="the demo --quick networks")
    p.add_argument("--workdir", default=None, help="folder for the tiny runs (default: temp)")
    p.add_argument("--out", default=None, help="also write the JSON here (atomic)")
    p.add_argument("--progress", action="store_true", help="tqdm bars")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from diff_dorsal.demo import data_config_of, held_out_scenes, load_run, make_data
    from diff_dorsal.features import FeatureNetConfig, load_feature_net, train_feature_net
    from diff_dorsal.scenes import load_scenes
    from diff_dorsal.stage1 import load_encoder
    from diff_protocol.io import atomic_write

    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("scenes", "steps", "chunk", "feature_steps", "train_scenes"):
        if getattr(args, name) < 1:
            parser.error(f"argument --{name.replace('_', '-')}: must be >= 1")
    if args.edit_scenes < 0:
        parser.error("argument --edit-scenes: must be >= 0")
    if any(g < 0 for g in args.guidance):
        parser.error(f"argument --guidance: must be >= 0, got {args.guidance}")
    if (args.dorsal_workdir is None) == (args.train_steps is None):
        parser.error("give either --dorsal-workdir or --train-steps")
    t0 = time.perf_counter()
    tmp = None
    if args.train_steps is not None:
        if args.train_steps < 1:
            parser.error("argument --train-steps: must be >= 1")
        if args.workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="compare-osrt-")
        workdir = Path(args.workdir or tmp.name)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.data is not None:
            train = load_scenes(args.data)
        else:
            train = make_data(
                workdir / "data.npz", scenes=args.train_scenes, progress=args.progress
            )
        runs = train_runs(
            workdir,
            train,
            steps=args.train_steps,
            slots=args.slots,
            tiny=args.tiny,
            encoder_workdir=args.encoder_workdir,
            progress=args.progress,
        )
    else:
        runs = {}
        for i, wd in enumerate(args.dorsal_workdir):
            try:
                run = load_run(wd)
            except ValueError as err:
                parser.error(f"argument --dorsal-workdir: {err}")
            name = f"dorsal_{run.config.slots}"
            runs[name if name not in runs else f"{name}_{i}"] = run
        data = args.data
        if data is None:
            data = next((str(r.data_path) for r in runs.values() if r.data_path), None)
        if data is None or not Path(data).is_file():
            parser.error("argument --data: the runs record no data file that exists; give one")
        train = load_scenes(data)
    if args.encoder_workdir is not None:
        encoder = None
        for run in runs.values():
            if run.encoder is None:  # oracle-slot runs: OSRT-lite as the baseline row
                encoder = encoder or load_encoder(args.encoder_workdir)[0]
                run.encoder = encoder
    if args.test_data is not None:
        test = load_scenes(args.test_data)
        have = int(np.shape(test["images"])[0])
        if have < args.scenes:
            parser.error(f"argument --test-data: must hold >= {args.scenes} scenes, got {have}")
        test = {k: (v[: args.scenes] if np.ndim(v) else v) for k, v in test.items()}
    else:
        if data_config_of(train) is None:
            parser.error("argument --test-data: needed, the train data records no data_config")
        test = held_out_scenes(train, args.scenes, progress=args.progress)
    if args.feature_net is not None:
        net = load_feature_net(args.feature_net)
        feature = {"path": args.feature_net}
    else:
        net, hist = train_feature_net(
            train, FeatureNetConfig(), steps=args.feature_steps, progress=args.progress
        )
        feature = {"steps": args.feature_steps, "count_accuracy": hist["count_accuracy"]}
    result = compare_runs(
        runs,
        train,
        test,
        net,
        seeds=args.seeds,
        guidances=args.guidance,
        steps=args.steps,
        edit_scenes=args.edit_scenes,
        chunk=args.chunk,
        progress=args.progress,
    )
    result["setup"]["feature_net"] = feature
    result["setup"]["train_scenes"] = int(np.shape(train["images"])[0])
    result["setup"]["train_steps"] = args.train_steps
    result["setup"]["tiny"] = bool(args.tiny)
    result["setup"]["total_seconds"] = time.perf_counter() - t0
    result = clean_json(result)
    text = json.dumps(result, allow_nan=False)
    if args.out:
        atomic_write(Path(args.out), text)
    print(text)
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
