"""The ``diff-pixel`` console script: train, sample, evaluate, bench, demo, info.

Defaults come from the dataclasses (one source of truth): the model presets
(:data:`diff_pixel.models.PRESETS`), the recipes (:class:`~diff_pixel.recipes.SiD2Recipe`,
:class:`~diff_pixel.recipes.SiDRecipe`) and the CPU run presets
(:data:`diff_pixel.recipes.RUN_PRESETS`); the training configuration is
``TrainConfig.from_recipe(recipe, steps=...)``. Validation errors are printed as
``diff-pixel: error: <argument>: <message>`` with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["QUICK_STEPS", "evaluate_run", "main", "train_run"]

#: ``diff-pixel demo --quick`` trains this many steps instead of the run preset's.
QUICK_STEPS = 200


class CLIError(Exception):
    """A user error: printed as ``diff-pixel: error: <argument>: <message>``, exit code 2."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


# -- pieces shared by the commands ------------------------------------------------------------
def _run_preset(data: str) -> Any:
    from diff_pixel.sid.recipes import RUN_PRESETS

    name = "digits" if data == "digits" else "photos"
    if name not in RUN_PRESETS:
        raise CLIError("--data", f"no run preset for {data!r} (known: {', '.join(RUN_PRESETS)})")
    return RUN_PRESETS[name]


def _model_config(preset: str, precision: str = "float32", image_size: int | None = None) -> Any:
    from diff_pixel.models import PRESETS, preset_config

    if preset not in PRESETS:
        raise CLIError("--preset", f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    overrides: dict[str, Any] = {"compute_dtype": precision}
    if image_size is not None:
        overrides["image_size"] = image_size
    try:
        return preset_config(preset, **overrides)
    except (TypeError, ValueError) as err:
        raise CLIError("--image-size" if image_size is not None else "--preset", str(err)) from err


def _recipe(kind: str, run: Any, resolution: int) -> Any:
    from diff_pixel.sid.recipes import SiD2Recipe, SiDRecipe

    classes = {"sid2": SiD2Recipe, "sid": SiDRecipe}
    if kind not in classes:
        raise CLIError("--recipe", f"must be 'sid2' or 'sid', got {kind!r}")
    return classes[kind].for_resolution(resolution, **dict(run.overrides))


def _source(data: str, config: Any) -> Any:
    from diff_pixel.data import digits, image_folder, photos

    if data == "digits":
        if config.in_channels != 1:
            raise CLIError(
                "--data",
                f"digits are grey, the model needs in_channels=1, got {config.in_channels}",
            )
        if config.height != config.width or config.height % 8:
            raise CLIError(
                "--preset",
                f"digits need a square image size divisible by 8, got {config.image_size}",
            )
        return digits(config.height)
    if data == "photos":
        if config.height != config.width:
            raise CLIError("--preset", f"photo crops are square, got {config.image_size}")
        return photos(crop=config.height, channels=config.in_channels)
    if data.startswith("folder:"):
        root = data.split(":", 1)[1]
        try:
            return image_folder(root, (config.height, config.width), channels=config.in_channels)
        except ValueError as err:
            raise CLIError("--data", str(err)) from err
    raise CLIError("--data", f"must be digits, photos or folder:PATH, got {data!r}")


def _parse_labels(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part[1:]:
            lo, hi = part.split("-", 1)
            out += list(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    if not out:
        raise ValueError("no labels")
    return out


def grid_sampler(
    config: Any,
    recipe: Any,
    *,
    num: int,
    labels: Sequence[int] | None,
    guidance: float,
    interval: tuple[float, float],
    steps: int,
    sampler: str = "ddpm",
) -> Callable[[Any, Any], Any]:
    """``sample_fn(model, key)`` for grids: labels cycle and are sorted (one row per class);
    returns ``(images, labels)`` for class-conditional models, else ``images``."""
    import jax.numpy as jnp
    import numpy as np

    from diff_pixel.models import Cond
    from diff_pixel.sampling import sample

    shape = (num, config.height, config.width, config.in_channels)
    if config.num_classes and labels:
        lab = np.sort(np.asarray([labels[i % len(labels)] for i in range(num)], dtype=np.int32))
        cond = Cond(label=jnp.asarray(lab))
    else:
        lab, cond = None, None
    schedule = recipe.schedule()

    def sample_fn(model: Any, key: Any) -> Any:
        images = sample(
            model,
            shape=shape,
            key=key,
            schedule=schedule,
            steps=steps,
            sampler=sampler,
            gamma=recipe.gamma,
            cond=cond,
            guidance=guidance if cond is not None else 1.0,
            interval=interval,
            x_clip=1.0 if recipe.clip_x else None,
        )
        return (images, lab) if lab is not None else images

    return sample_fn


def _write_json(path: Path, obj: Any) -> None:
    from diff_protocol.io import atomic_write, dumps_json

    atomic_write(path, dumps_json(obj, indent=2) + "\n")


def _mesh(devices: int | None) -> Any:
    import jax

    from diff_pixel.train import data_mesh

    if devices is None:
        return None
    if not 1 <= devices <= jax.device_count():
        raise CLIError(
            "--devices",
            f"must be in [1, {jax.device_count()}] (devices visible to jax), got {devices}; on CPU "
            "set XLA_FLAGS=--xla_force_host_platform_device_count=N before starting",
        )
    return data_mesh(devices)


# -- train ------------------------------------------------------------------------------------
def train_run(
    *,
    data: str = "digits",
    preset: str | None = None,
    recipe: str = "sid2",
    steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    precision: str = "float32",
    devices: int | None = None,
    seed: int = 0,
    out: str | None = None,
    resume: bool = True,
    progress: bool = True,
) -> Any:
    """Build the model, data, recipe and trainer of a CLI run and train; returns the Trainer.

    ``None`` arguments take the run preset's / recipe's values (``RUN_PRESETS["digits"]`` for
    digits, ``RUN_PRESETS["photos"]`` otherwise).
    """
    from diff_pixel.data import Loader
    from diff_pixel.images import LossCurveHook, SampleGridHook
    from diff_pixel.models import build_model
    from diff_pixel.sid.loss import recipe_loss
    from diff_pixel.train import TrainConfig, Trainer

    run = _run_preset(data)
    config = _model_config(preset or run.model, precision)
    rec = _recipe(recipe, run, config.height)
    source = _source(data, config)
    if config.num_classes and source.num_classes > config.num_classes:
        raise CLIError(
            "--data",
            f"has {source.num_classes} classes, the preset only {config.num_classes} (num_classes)",
        )
    mesh = _mesh(devices)
    out_dir = Path(out or f"runs/{run.data}")
    if not resume and out_dir.exists() and any(out_dir.iterdir()):
        raise CLIError("--out", f"{str(out_dir)!r} is not empty and --no-resume was given")
    overrides: dict[str, Any] = {"seed": seed, "out_dir": str(out_dir), "progress": progress}
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    if lr is not None:
        overrides["lr"] = lr
    try:
        train_cfg = TrainConfig.from_recipe(
            rec,
            steps=run.steps if steps is None else steps,
            log_every=50,
            checkpoint_every=500,
            **overrides,
        )
    except (TypeError, ValueError) as err:
        arg = next((a for a in ("steps", "batch_size", "lr", "seed") if a in str(err)), "steps")
        raise CLIError("--" + arg.replace("_", "-"), str(err)) from err
    sample_fn = grid_sampler(
        config,
        rec,
        num=100 if config.num_classes else 64,
        labels=list(range(min(config.num_classes, 10))),
        guidance=rec.grid_guidance,
        interval=rec.grid_interval,
        steps=rec.sampler_steps,
        sampler=rec.sampler,
    )
    loader = Loader(source, train_cfg.batch_size, seed=seed)
    try:
        trainer = Trainer(
            build_model(config, seed=seed),
            recipe_loss(rec),
            train_cfg,
            loader,
            mesh=mesh,
            hooks=[SampleGridHook(sample_fn, every=500), LossCurveHook()],
            recipe=rec,
            resume=resume,
        )
    except ValueError as err:
        arg = "--out" if "checkpoint" in str(err) else "--batch-size"
        raise CLIError(arg, str(err)) from err
    trainer.run()
    return trainer


def _cmd_train(args: argparse.Namespace) -> int:
    from diff_pixel.train import read_metrics

    trainer = train_run(
        data=args.data,
        preset=args.preset,
        recipe=args.recipe,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        precision=args.precision,
        devices=args.devices,
        seed=args.seed,
        out=args.out,
        resume=not args.no_resume,
    )
    records = read_metrics(trainer.metrics_log.path)
    summary = {"out_dir": str(trainer.out_dir), "step": trainer.step_count}
    summary["last"] = records[-1] if records else None
    print(json.dumps(summary))
    return 0


# -- sample / evaluate ------------------------------------------------------------------------
def _load_run(run_dir: str, step: int | None, raw: bool) -> tuple[Any, Any, dict[str, Any]]:
    from diff_pixel.sid.recipes import recipe_from_dict
    from diff_pixel.train import Trainer

    if not Path(run_dir, "checkpoints").is_dir():
        raise CLIError("--run", f"{run_dir!r} is not a run directory (no checkpoints/ inside)")
    try:
        model, ema, saved = Trainer.restore(run_dir, step)
    except ValueError as err:
        raise CLIError("--step" if step is not None else "--run", str(err)) from err
    if not saved.get("recipe"):
        raise CLIError("--run", f"{run_dir!r} was not trained with a diff-pixel recipe")
    return (model if raw else ema), recipe_from_dict(saved["recipe"]), saved


def _cmd_sample(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from diff_pixel.images import save_grid

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise CLIError("--out", f"{str(out)!r} exists; pass --overwrite to replace it")
    if args.num < 1:
        raise CLIError("--num", f"must be >= 1, got {args.num}")
    if args.steps is not None and args.steps < 1:
        raise CLIError("--steps", f"must be >= 1, got {args.steps}")
    try:
        labels = _parse_labels(args.labels)
    except ValueError as err:
        raise CLIError("--labels", f"must look like 0-9 or 1,3,5, got {args.labels!r}") from err
    model, recipe, _ = _load_run(args.run, args.step, args.raw)
    cfg = model.config
    if cfg.num_classes and (min(labels) < 0 or max(labels) >= cfg.num_classes):
        raise CLIError("--labels", f"must lie in [0, {cfg.num_classes - 1}], got {args.labels!r}")
    fn = grid_sampler(
        cfg,
        recipe,
        num=args.num,
        labels=labels,
        guidance=recipe.grid_guidance if args.guidance is None else args.guidance,
        interval=recipe.grid_interval if args.interval is None else tuple(args.interval),
        steps=recipe.sampler_steps if args.steps is None else args.steps,
        sampler=args.sampler or recipe.sampler,
    )
    result = fn(model, jax.random.key(args.seed))
    images, lab = result if isinstance(result, tuple) else (result, None)
    images = np.asarray(images)
    save_grid(out, images, labels=lab, scale=args.scale)
    if args.npz:
        from diff_pixel.sampling import sample_to_npz

        sample_to_npz(args.npz, images, lab, seed=args.seed, overwrite=args.overwrite)
    print(json.dumps({"out": str(out), "num": int(images.shape[0]), "npz": args.npz}))
    return 0


def _digits_classifier(run_dir: Path, image_size: int) -> Any:
    """The digits classifier, trained once per run directory and cached there (``.npz``)."""
    from diff_pixel.metrics import DigitsClassifier, train_digits_classifier

    path = run_dir / f"digits_classifier_{image_size}.npz"
    if path.is_file():
        return DigitsClassifier.load(path)
    clf = train_digits_classifier(image_size=image_size)
    clf.save(path)
    return clf


def evaluate_run(
    run_dir: str,
    *,
    guidance: float | None = None,
    interval: Sequence[float] | None = None,
    steps: int | None = None,
    step: int | None = None,
) -> dict[str, Any]:
    """Evaluate a run directory, write ``evaluate.json`` there and return its content.

    Digits runs: class accuracy and DFD of 360 EMA samples (36 per class) with the recipe's
    evaluation guidance (``recipe.guidance``), the DFD floor and noise baseline, and the
    classifier's test accuracy. Other data: loss and per-λ-bin loss on held-out crops.
    """
    model, recipe, saved = _load_run(run_dir, step, raw=False)
    path = Path(run_dir)
    if str(saved.get("data", {}).get("source", "")).startswith("digits"):
        from diff_pixel.metrics import evaluate_digits_model

        clf = _digits_classifier(path, model.config.height)
        w = recipe.guidance if guidance is None else guidance
        iv = tuple(interval) if interval is not None else (-math.inf, math.inf)
        n_steps = recipe.sampler_steps if steps is None else steps
        metrics, _, _ = evaluate_digits_model(
            model,
            recipe.schedule(),
            clf,
            guidance=w,
            interval=iv,
            steps=n_steps,
            sampler=recipe.sampler,
            seed=int(saved.get("train", {}).get("seed", 0)),
        )
        result = {"data": "digits", "guidance": w, "interval": list(iv)}
        result.update(sampler_steps=n_steps, step=_ckpt_step(saved, path), **metrics)
    else:
        source = str(saved.get("data", {}).get("source", "photos"))
        data = source if source.startswith("folder:") else "photos"
        result = {"data": data, "step": _ckpt_step(saved, path)}
        result.update(_heldout_loss(model, recipe, saved, data))
    _write_json(path / "evaluate.json", result)
    return result


def _ckpt_step(saved: dict[str, Any], path: Path) -> int | None:
    from diff_pixel.train import RunCheckpoints

    return RunCheckpoints(path, read_only=True).latest_step()


def _heldout_loss(
    model: Any, recipe: Any, saved: dict[str, Any], data: str, batches: int = 8
) -> dict[str, Any]:
    """Loss and per-λ-bin loss of the EMA model on crops the run never drew.

    Photos: an infinite crop stream read with another seed (held-out crops). Folders: the run's
    folder read with another seed (other crops and order, the same images).
    """
    import jax
    import numpy as np
    from flax import nnx

    from diff_pixel.data import Loader
    from diff_pixel.sid.loss import recipe_loss

    train = saved.get("train", {})
    # another data seed: the crop stream (and for folders the order) differs from training
    loader = Loader(
        _source(data, model.config),
        int(train.get("batch_size", 64)),
        seed=int(train.get("seed", 0)) + 10_007,
    )
    loss_fn = recipe_loss(recipe)
    graphdef, state = nnx.split(model)

    @jax.jit
    def evaluate(state: Any, batch: Any, key: Any) -> Any:
        return loss_fn(nnx.merge(graphdef, state), batch, key, None)

    losses, sums = [], {}
    for i in range(batches):
        batch = {
            k: v.astype(np.int32) if v.dtype == np.int64 else v for k, v in next(loader).items()
        }
        loss, metrics = evaluate(state, batch, jax.random.key(10_007 + i))
        losses.append(float(loss))
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + np.asarray(v, np.float64)
    out: dict[str, Any] = {"heldout_loss": float(np.mean(losses)), "batches": batches}
    for k, v in sums.items():
        out[k] = (v / batches).tolist() if np.ndim(v) else float(v / batches)
    return out


def _cmd_evaluate(args: argparse.Namespace) -> int:
    result = evaluate_run(
        args.run, guidance=args.guidance, interval=args.interval, steps=args.steps
    )
    print(json.dumps(result))
    return 0


# -- bench / demo / info ----------------------------------------------------------------------
def _benchmark_script(name: str) -> Path:
    here = Path(__file__).resolve()
    candidates = [
        here.parents[3] / "benchmarks" / name,
        Path.cwd() / "benchmarks" / name,
        Path.cwd() / "packages" / "diff-pixel" / "benchmarks" / name,
    ]
    for c in candidates:
        if c.is_file():
            return c
    raise CLIError(
        "bench",
        f"benchmarks/{name} ships with the diff-pixel source (sdist or repository), not the "
        "wheel; run it from a checkout",
    )


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.target == "gpu" and (args.preset or args.batch_size):
        arg = "--preset" if args.preset else "--batch-size"
        raise CLIError(
            arg,
            "the GPU script measures the spec's presets and batches; pass its own options "
            "after `--` (e.g. -- --only train --head-dim 64)",
        )
    script = _benchmark_script("cpu_train_step.py" if args.target == "cpu" else "gpu_train_mfu.py")
    cmd = [sys.executable, str(script)]
    if args.preset:
        cmd += ["--presets", args.preset]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    return subprocess.call(cmd + list(args.script_args))


def demo(out: str = "demo", *, quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    """Train ``tiny-16`` on digits (run preset ``digits``), write ``samples.png`` (10×10 grid at
    the preset's grid guidance), ``loss.png`` and ``metrics.json``; returns the metrics."""
    import jax

    from diff_pixel.images import save_grid
    from diff_pixel.metrics import dfd_baselines, evaluate_digits_model

    out_dir = Path(out)
    run = _run_preset("digits")
    steps = QUICK_STEPS if quick else run.steps
    trainer = train_run(
        data="digits", steps=steps, seed=seed, out=str(out_dir / "run"), progress=progress
    )
    model = trainer.ema_model()
    recipe = _recipe("sid2", run, model.config.height)
    grid = grid_sampler(
        model.config,
        recipe,
        num=100,
        labels=list(range(10)),
        guidance=recipe.grid_guidance,
        interval=recipe.grid_interval,
        steps=recipe.sampler_steps,
        sampler=recipe.sampler,
    )
    images, labels = grid(model, jax.random.key(seed))
    save_grid(out_dir / "samples.png", images, labels=labels, scale=4)
    shutil.copyfile(out_dir / "run" / "loss.png", out_dir / "loss.png")
    clf = _digits_classifier(out_dir / "run", model.config.height)
    metrics, _, _ = evaluate_digits_model(
        model,
        recipe.schedule(),
        clf,
        guidance=recipe.guidance,
        steps=recipe.sampler_steps,
        sampler=recipe.sampler,
        seed=seed,
        baselines=dfd_baselines(clf),
    )
    from diff_pixel.train import read_metrics

    records = read_metrics(trainer.metrics_log.path)
    metrics.update(
        steps=steps,
        guidance=recipe.guidance,
        sampler_steps=recipe.sampler_steps,
        final_loss=records[-1]["loss"] if records else None,
    )
    _write_json(out_dir / "metrics.json", metrics)
    return metrics


def _cmd_demo(args: argparse.Namespace) -> int:
    metrics = demo(args.out, quick=args.quick, seed=args.seed, progress=not args.no_progress)
    print(json.dumps(metrics))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import jax
    import numpy as np
    from flax import nnx

    from diff_pixel.models import abstract_model, count_macs

    config = _model_config(args.preset, "float32", args.image_size)
    macs = count_macs(config)
    model = abstract_model(config)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    info = {
        "preset": args.preset,
        "config": config.to_dict(),
        "gmac": {k: v / 1e9 for k, v in macs.items()},
        "parameters": params,
    }
    print(json.dumps(info, indent=2))
    return 0


# -- argument parsing -------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    from diff_pixel.sid.recipes import RUN_PRESETS

    digits_run = RUN_PRESETS["digits"]
    digits_recipe = dict(digits_run.overrides)
    p = argparse.ArgumentParser(
        prog="diff-pixel", description="Pixel-space diffusion (SiD, SiD2) in JAX/Flax NNX."
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (resumes if --out holds checkpoints)")
    t.add_argument("--data", default="digits", help="digits | photos | folder:PATH")
    t.add_argument(
        "--preset", default=None, help=f"model preset (digits default: {digits_run.model})"
    )
    t.add_argument("--recipe", default="sid2", choices=("sid2", "sid"))
    t.add_argument("--steps", type=int, default=None, help=f"digits default: {digits_run.steps}")
    t.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"global batch (digits default: {digits_recipe.get('batch_size')})",
    )
    t.add_argument(
        "--lr", type=float, default=None, help=f"digits default: {digits_recipe.get('lr')}"
    )
    t.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    t.add_argument("--devices", type=int, default=None, help="data-parallel devices")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="run directory (default runs/<data>)")
    t.add_argument("--no-resume", action="store_true", help="refuse a non-empty --out")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("sample", help="sample a grid from a run's EMA model")
    s.add_argument("--run", required=True)
    s.add_argument("--step", type=int, default=None, help="checkpoint step (default latest)")
    s.add_argument("--raw", action="store_true", help="raw weights instead of the EMA")
    s.add_argument("--num", type=int, default=100)
    s.add_argument("--labels", default="0-9")
    s.add_argument("--guidance", type=float, default=None, help="default: the recipe's grid weight")
    s.add_argument("--interval", type=float, nargs=2, default=None, metavar=("LO", "HI"))
    s.add_argument("--steps", type=int, default=None, help="default: the recipe's sampler steps")
    s.add_argument("--sampler", default=None, choices=("ddpm", "ddim"))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--scale", type=int, default=4, help="PNG pixel scale (nearest)")
    s.add_argument("--out", default="grid.png")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--npz", default=None, help="also save the samples with labels and seed")
    s.set_defaults(func=_cmd_sample)

    e = sub.add_parser("evaluate", help="digits: class accuracy and DFD; other data: held-out loss")
    e.add_argument("--run", required=True)
    e.add_argument("--guidance", type=float, default=None, help="default: the recipe's")
    e.add_argument("--interval", type=float, nargs=2, default=None, metavar=("LO", "HI"))
    e.add_argument("--steps", type=int, default=None, help="default: the recipe's sampler steps")
    e.set_defaults(func=_cmd_evaluate)

    b = sub.add_parser("bench", help="run a benchmark script of §14 (from a source checkout)")
    b.add_argument("target", choices=("cpu", "gpu"))
    b.add_argument("--preset", default=None)
    b.add_argument("--batch-size", type=int, default=None)
    b.set_defaults(func=_cmd_bench)  # options after `--` go to the script (see main)

    d = sub.add_parser("demo", help="train tiny-16 on digits; write a grid, a loss curve, metrics")
    d.add_argument("--out", default="demo")
    d.add_argument(
        "--quick", action="store_true", help=f"{QUICK_STEPS} steps instead of {digits_run.steps}"
    )
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=_cmd_demo)

    i = sub.add_parser("info", help="config, analytic GMAC per component, parameter count")
    i.add_argument("--preset", required=True)
    i.add_argument("--image-size", type=int, default=None)
    i.set_defaults(func=_cmd_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diff-pixel`` console script; returns the exit code."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # `diff-pixel bench cpu -- --steps 5`: the rest belongs to the script
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    if extra and args.command != "bench":
        parser.error(f"options after `--` are only for `bench`, got {' '.join(extra)}")
    args.script_args = extra
    from diff_pixel.train import TrainingInterrupted

    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        sys.stderr.write(f"diff-pixel: error: {err}\n")
        return 2
    except TrainingInterrupted as err:
        sys.stderr.write(f"diff-pixel: {err}; run the same command to resume\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
