"""The ``diff-pixel`` console script: train, sample, evaluate, bench, demo, info.

Defaults come from the dataclasses (one source of truth): the model presets
(:data:`diff_pixel.models.PRESETS`), the recipes (``SiD2Recipe``, ``SiDRecipe``) and the CPU run
presets :data:`RUN_PRESETS` below, whose training part is a :class:`~diff_pixel.train.TrainConfig`.
Validation errors are printed as ``diff-pixel: error: <argument>: <message>`` with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diff_pixel.train.config import TrainConfig

__all__ = ["RUN_PRESETS", "RunPreset", "main"]


@dataclass(frozen=True)
class RunPreset:
    """A CPU run: which model, data and recipe, at which training scale, sampled how.

    The recipe (``SiD2Recipe.for_resolution(d)``) supplies the schedule, loss weighting, label
    dropout and sampler; a run preset overrides only the training scale (our defaults; the
    papers' values are not confirmed for these tiny models).
    """

    model: str
    data: str
    train: TrainConfig
    quick_steps: int
    sampler_steps: int
    eval_guidance: float
    grid_guidance: float
    grid_interval: tuple[float, float] = (-math.inf, math.inf)
    grid_per_class: int = 10
    recipe: str = "sid2"
    notes: str = field(default="", compare=False)


RUN_PRESETS: dict[str, RunPreset] = {
    # spec §6.1 "digits": tiny-16, batch 128, lr 2e-3, 100 warm-up steps, EMA 0.999 (with warm-up),
    # 1500 steps, ancestral 32 steps, guidance w = 1 for evaluation, grids at w = 2 on [-3, 5).
    "digits": RunPreset(
        model="tiny-16",
        data="digits",
        train=TrainConfig(
            steps=1500,
            batch_size=128,
            lr=2e-3,
            warmup_steps=100,
            ema_decay=0.999,
            log_every=50,
            sample_every=500,
            checkpoint_every=500,
            out_dir="runs/digits",
        ),
        quick_steps=200,
        sampler_steps=32,
        eval_guidance=1.0,
        grid_guidance=2.0,
        grid_interval=(-3.0, 5.0),
    ),
    # photo crops, unconditional 32×32 RGB (our default scale for a CPU smoke run)
    "photos": RunPreset(
        model="tiny-rgb-32",
        data="photos",
        train=TrainConfig(
            steps=2000,
            batch_size=64,
            lr=1e-3,
            warmup_steps=100,
            ema_decay=0.999,
            log_every=50,
            sample_every=500,
            checkpoint_every=500,
            out_dir="runs/photos",
        ),
        quick_steps=100,
        sampler_steps=64,
        eval_guidance=1.0,
        grid_guidance=1.0,
    ),
}


class CLIError(Exception):
    """A user error: printed as ``diff-pixel: error: <argument>: <message>``, exit code 2."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


# -- helpers shared by the commands -----------------------------------------------------------
def _run_preset(data: str) -> RunPreset:
    kind = data.split(":", 1)[0]
    return RUN_PRESETS["digits" if kind == "digits" else "photos"]


def _recipe(kind: str, resolution: int) -> Any:
    from diff_pixel.recipes import SiD2Recipe, SiDRecipe

    if kind not in ("sid2", "sid"):
        raise CLIError("--recipe", f"must be 'sid2' or 'sid', got {kind!r}")
    return (SiD2Recipe if kind == "sid2" else SiDRecipe).for_resolution(resolution)


def _recipe_from_dict(d: dict[str, Any]) -> Any:
    from diff_pixel.recipes import recipe_from_dict

    return recipe_from_dict(d)


def _model_config(preset: str, precision: str, image_size: int | None = None) -> Any:
    from diff_pixel.models import PRESETS, preset_config

    if preset not in PRESETS:
        raise CLIError("--preset", f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    overrides: dict[str, Any] = {"compute_dtype": precision}
    if image_size is not None:
        overrides["image_size"] = image_size
    try:
        return preset_config(preset, **overrides)
    except ValueError as err:
        raise CLIError("--image-size" if image_size is not None else "--preset", str(err)) from err


def _source(data: str, config: Any, seed: int) -> Any:
    from diff_pixel.data import digits, image_folder, photos

    size = config.height
    if data == "digits":
        if config.in_channels != 1:
            raise CLIError("--data", f"digits are grey: the model needs in_channels=1, got {config.in_channels}")
        try:
            return digits(size)
        except ValueError as err:
            raise CLIError("--preset", f"digits need an image size that is a multiple of 8: {err}") from err
    if data == "photos":
        return photos(crop=size, channels=config.in_channels)
    if data.startswith("folder:"):
        root = data.split(":", 1)[1]
        try:
            return image_folder(root, (config.height, config.width), channels=config.in_channels)
        except ValueError as err:
            raise CLIError("--data", str(err)) from err
    raise CLIError("--data", f"must be digits, photos or folder:PATH, got {data!r}")


def _labels_arg(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            out += list(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    if not out:
        raise ValueError("empty label list")
    return out


def _guided_sampler(model_config: Any, recipe: Any, *, num: int, labels: Sequence[int] | None,
                    guidance: float, interval: tuple[float, float], steps: int, sampler: str):
    """``sample_fn(model, key) -> (images, labels)`` for grids (labels cycle, one row per class)."""
    import jax.numpy as jnp
    import numpy as np

    from diff_pixel.models import Cond
    from diff_pixel.sampling import sample

    shape = (num, model_config.height, model_config.width, model_config.in_channels)
    if model_config.num_classes and labels is not None:
        lab = np.sort(np.asarray([labels[i % len(labels)] for i in range(num)], dtype=np.int32))
        cond = Cond(label=jnp.asarray(lab))
    else:
        lab, cond = None, None

    def sample_fn(model: Any, key: Any) -> Any:
        images = sample(
            model,
            shape=shape,
            key=key,
            schedule=recipe.schedule(),
            steps=steps,
            sampler=sampler,
            cond=cond,
            guidance=guidance if cond is not None else 1.0,
            interval=interval,
        )
        return (images, lab) if lab is not None else images

    return sample_fn


def _write_json(path: Path, obj: Any) -> None:
    from diff_pixel.train.logging import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _check_devices(n: int | None) -> Any:
    import jax

    from diff_pixel.train import data_mesh

    if n is None:
        return None
    if n < 1 or n > jax.device_count():
        raise CLIError(
            "--devices",
            f"must be in [1, {jax.device_count()}] (devices visible to jax), got {n}; on CPU set "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N before starting",
        )
    return data_mesh(n)


# -- commands ---------------------------------------------------------------------------------
def train_run(
    *,
    data: str,
    preset: str,
    recipe_kind: str,
    steps: int,
    batch_size: int,
    lr: float,
    precision: str,
    devices: int | None,
    seed: int,
    out: str,
    resume: bool = True,
    progress: bool = True,
) -> Any:
    """Build everything a CLI training run needs and run it; returns the finished Trainer."""
    from diff_pixel.data import Loader
    from diff_pixel.losses import recipe_loss
    from diff_pixel.models import build_model
    from diff_pixel.train import Trainer

    run = _run_preset(data)
    config = _model_config(preset, precision)
    recipe = _recipe(recipe_kind, config.height)
    source = _source(data, config, seed)
    if config.num_classes and source.num_classes > config.num_classes:
        raise CLIError(
            "--data",
            f"has {source.num_classes} classes but preset {preset!r} has num_classes={config.num_classes}",
        )
    mesh = _check_devices(devices)
    out_path = Path(out)
    if not resume and out_path.exists() and any(out_path.iterdir()):
        raise CLIError("--out", f"{out!r} is not empty and --no-resume was given")
    try:
        train_cfg = run.train.replace(
            steps=steps, batch_size=batch_size, lr=lr, seed=seed, out_dir=str(out_path),
            progress=progress,
        )
    except (TypeError, ValueError) as err:
        raise CLIError("--steps/--batch-size/--lr/--seed", str(err)) from err
    sample_fn = _guided_sampler(
        config, recipe, num=10 * run.grid_per_class if config.num_classes else 64,
        labels=list(range(min(config.num_classes, 10))) if config.num_classes else None,
        guidance=run.grid_guidance, interval=run.grid_interval, steps=run.sampler_steps,
        sampler="ddpm",
    )
    model = build_model(config, seed=seed)
    loader = Loader(source, batch_size, seed=seed)
    try:
        trainer = Trainer(
            model, recipe_loss(recipe), train_cfg, loader, mesh=mesh, sample_fn=sample_fn,
            recipe=recipe, resume=resume,
        )
    except ValueError as err:
        raise CLIError("--out" if "checkpoint" in str(err) else "--batch-size", str(err)) from err
    trainer.run()
    return trainer


def _cmd_train(args: argparse.Namespace) -> int:
    run = _run_preset(args.data)
    trainer = train_run(
        data=args.data,
        preset=args.preset or run.model,
        recipe_kind=args.recipe,
        steps=args.steps if args.steps is not None else run.train.steps,
        batch_size=args.batch_size if args.batch_size is not None else run.train.batch_size,
        lr=args.lr if args.lr is not None else run.train.lr,
        precision=args.precision,
        devices=args.devices,
        seed=args.seed,
        out=args.out or run.train.out_dir,
        resume=not args.no_resume,
    )
    from diff_pixel.train import read_metrics

    records = read_metrics(trainer.metrics_log.path)
    print(json.dumps({"out_dir": str(trainer.out_dir), "step": trainer.step_count,
                      "last": records[-1] if records else None}))
    return 0


def _load_run(run_dir: str, step: int | None, raw: bool) -> tuple[Any, Any, dict[str, Any]]:
    from diff_pixel.train import Trainer

    if not Path(run_dir, "checkpoints").is_dir():
        raise CLIError("--run", f"{run_dir!r} is not a run directory (no checkpoints/ inside)")
    try:
        model, ema, saved = Trainer.restore(run_dir, step)
    except ValueError as err:
        raise CLIError("--step" if step is not None else "--run", str(err)) from err
    return (model if raw else ema), _recipe_from_dict(saved["recipe"]), saved


def _cmd_sample(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from diff_pixel.images import save_grid

    model, recipe, saved = _load_run(args.run, args.step, args.raw)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise CLIError("--out", f"{str(out)!r} exists; pass --overwrite to replace it")
    try:
        labels = _labels_arg(args.labels)
    except ValueError as err:
        raise CLIError("--labels", f"must look like 0-9 or 1,3,5, got {args.labels!r}") from err
    cfg = model.config
    if cfg.num_classes and (min(labels) < 0 or max(labels) >= cfg.num_classes):
        raise CLIError("--labels", f"must lie in [0, {cfg.num_classes - 1}], got {args.labels!r}")
    if args.num < 1:
        raise CLIError("--num", f"must be >= 1, got {args.num}")
    if args.steps < 1:
        raise CLIError("--steps", f"must be >= 1, got {args.steps}")
    interval = tuple(args.interval) if args.interval else (-math.inf, math.inf)
    sample_fn = _guided_sampler(
        cfg, recipe, num=args.num, labels=labels, guidance=args.guidance, interval=interval,
        steps=args.steps, sampler=args.sampler,
    )
    result = sample_fn(model, jax.random.key(args.seed))
    images, lab = result if isinstance(result, tuple) else (result, None)
    images = np.asarray(images)
    save_grid(out, images, labels=lab, scale=args.scale)
    if args.npz:
        from diff_pixel.sampling import sample_to_npz

        sample_to_npz(args.npz, images, labels=lab, seed=args.seed)
    print(json.dumps({"out": str(out), "num": int(images.shape[0]), "step": saved.get("step")}))
    return 0


def _digits_classifier(run_dir: Path, image_size: int) -> Any:
    from diff_pixel.metrics import DigitsClassifier, train_digits_classifier

    path = run_dir / f"digits_classifier_{image_size}.npz"
    if path.is_file():
        return DigitsClassifier.load(path)
    clf = train_digits_classifier(image_size=image_size)
    clf.save(path)
    return clf


def evaluate_run(run_dir: str, *, guidance: float | None, interval: Sequence[float] | None,
                 steps: int | None = None, step: int | None = None) -> dict[str, Any]:
    """Evaluate a run directory; writes and returns ``evaluate.json``'s content."""
    import math as _m

    model, recipe, saved = _load_run(run_dir, step, raw=False)
    train = saved.get("train", {})
    data = saved.get("data", {}).get("loader", "")
    run = RUN_PRESETS["digits"] if "digits" in data else RUN_PRESETS["photos"]
    path = Path(run_dir)
    if "digits" in data:
        from diff_pixel.metrics import evaluate_digits_model

        clf = _digits_classifier(path, model.config.height)
        w = run.eval_guidance if guidance is None else guidance
        iv = tuple(interval) if interval else (-_m.inf, _m.inf)
        metrics, _, _ = evaluate_digits_model(
            model, recipe.schedule(), clf, guidance=w, interval=iv,
            steps=steps or run.sampler_steps, seed=int(train.get("seed", 0)),
        )
        result = {"data": "digits", "guidance": w, "interval": [str(v) if not _m.isfinite(v) else v for v in iv],
                  "sampler_steps": steps or run.sampler_steps, **metrics}
    else:
        result = {"data": data, **_heldout_loss(model, recipe, saved)}
    _write_json(path / "evaluate.json", result)
    return result


def _heldout_loss(model: Any, recipe: Any, saved: dict[str, Any], batches: int = 8) -> dict[str, Any]:
    """Loss and per-λ-bin loss of the EMA model on crops the run never drew (another seed)."""
    import jax
    import numpy as np

    from diff_pixel.data import Loader
    from diff_pixel.losses import recipe_loss

    train = saved.get("train", {})
    cfg = model.config
    source = _source("photos", cfg, 0)
    loader = Loader(source, int(train.get("batch_size", 64)), seed=int(train.get("seed", 0)) + 10_007)
    loss_fn = recipe_loss(recipe)
    from flax import nnx

    graphdef, state = nnx.split(model)

    @jax.jit
    def evaluate(state: Any, batch: Any, key: Any) -> Any:
        return loss_fn(nnx.merge(graphdef, state), batch, key, None)

    losses, sums = [], {}
    for i in range(batches):
        batch = {k: (v.astype(np.int32) if v.dtype == np.int64 else v) for k, v in next(loader).items()}
        loss, metrics = evaluate(state, batch, jax.random.key(10_007 + i))
        losses.append(float(loss))
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + np.asarray(v, np.float64)
    out: dict[str, Any] = {"heldout_loss": float(np.mean(losses)), "batches": batches}
    for k, v in sums.items():
        out[k] = (v / batches).tolist() if np.ndim(v) else float(v / batches)
    return out


def _cmd_evaluate(args: argparse.Namespace) -> int:
    result = evaluate_run(args.run, guidance=args.guidance, interval=args.interval, steps=args.steps)
    print(json.dumps(result))
    return 0


def _benchmark_script(name: str) -> Path:
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "benchmarks" / name, Path.cwd() / "benchmarks" / name,
                  Path.cwd() / "packages" / "diff-pixel" / "benchmarks" / name]
    for c in candidates:
        if c.is_file():
            return c
    raise CLIError(
        "bench",
        f"benchmarks/{name} ships with the diff-pixel source (sdist or repository), not the wheel; "
        "run from a checkout of the repository",
    )


def _cmd_bench(args: argparse.Namespace) -> int:
    script = _benchmark_script("cpu_train_step.py" if args.target == "cpu" else "gpu_train_mfu.py")
    cmd = [sys.executable, str(script)]
    if args.preset:
        cmd += ["--presets", args.preset]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    return subprocess.call(cmd)


def _cmd_demo(args: argparse.Namespace) -> int:
    import shutil

    from diff_pixel.images import save_grid
    from diff_pixel.metrics import dfd_baselines, evaluate_digits_model

    run = RUN_PRESETS["digits"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = run.quick_steps if args.quick else run.train.steps
    trainer = train_run(
        data="digits", preset=run.model, recipe_kind=run.recipe, steps=steps,
        batch_size=run.train.batch_size, lr=run.train.lr, precision="float32", devices=None,
        seed=args.seed, out=str(out / "run"), progress=not args.no_progress,
    )
    model = trainer.ema_model()
    recipe = _recipe(run.recipe, model.config.height)
    grid_fn = _guided_sampler(
        model.config, recipe, num=100, labels=list(range(10)), guidance=run.grid_guidance,
        interval=run.grid_interval, steps=run.sampler_steps, sampler="ddpm",
    )
    import jax

    images, labels = grid_fn(model, jax.random.key(args.seed))
    save_grid(out / "samples.png", images, labels=labels, scale=4)
    shutil.copyfile(out / "run" / "loss.png", out / "loss.png")
    clf = _digits_classifier(out / "run", model.config.height)
    metrics, _, _ = evaluate_digits_model(
        model, recipe.schedule(), clf, guidance=run.eval_guidance, steps=run.sampler_steps,
        seed=args.seed, baselines=dfd_baselines(clf),
    )
    metrics.update(steps=steps, guidance=run.eval_guidance, sampler_steps=run.sampler_steps,
                   wall_s=None)
    from diff_pixel.train import read_metrics

    records = read_metrics(trainer.metrics_log.path)
    metrics["final_loss"] = records[-1]["loss"] if records else None
    del metrics["wall_s"]
    _write_json(out / "metrics.json", metrics)
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
    print(json.dumps({
        "preset": args.preset,
        "config": config.to_dict(),
        "gmac": {k: v / 1e9 for k, v in macs.items()},
        "parameters": params,
    }, indent=2))
    return 0


# -- argument parsing -------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    digits_run = RUN_PRESETS["digits"]
    p = argparse.ArgumentParser(
        prog="diff-pixel",
        description="Pixel-space diffusion (SiD, SiD2) in JAX/Flax NNX.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (resumes if --out holds checkpoints)")
    t.add_argument("--data", default="digits", help="digits | photos | folder:PATH (default digits)")
    t.add_argument("--preset", default=None,
                   help=f"model preset (default: {digits_run.model} for digits, "
                        f"{RUN_PRESETS['photos'].model} otherwise)")
    t.add_argument("--recipe", default=digits_run.recipe, choices=("sid2", "sid"))
    t.add_argument("--steps", type=int, default=None,
                   help=f"default from the run preset ({digits_run.train.steps} for digits)")
    t.add_argument("--batch-size", type=int, default=None,
                   help=f"global batch (default {digits_run.train.batch_size} for digits)")
    t.add_argument("--lr", type=float, default=None,
                   help=f"peak learning rate (default {digits_run.train.lr} for digits)")
    t.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                   help="compute dtype (parameters stay float32)")
    t.add_argument("--devices", type=int, default=None, help="data-parallel devices")
    t.add_argument("--seed", type=int, default=digits_run.train.seed)
    t.add_argument("--out", default=None, help="run directory (default runs/<data>)")
    t.add_argument("--no-resume", action="store_true", help="refuse a non-empty --out")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("sample", help="sample a grid from a run's EMA model")
    s.add_argument("--run", required=True)
    s.add_argument("--step", type=int, default=None)
    s.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    s.add_argument("--num", type=int, default=100)
    s.add_argument("--labels", default="0-9")
    s.add_argument("--guidance", type=float, default=digits_run.grid_guidance)
    s.add_argument("--interval", type=float, nargs=2, default=list(digits_run.grid_interval),
                   metavar=("LO", "HI"))
    s.add_argument("--steps", type=int, default=digits_run.sampler_steps)
    s.add_argument("--sampler", default="ddpm", choices=("ddpm", "ddim"))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--scale", type=int, default=4, help="PNG pixel scale (nearest)")
    s.add_argument("--out", default="grid.png")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--npz", default=None, help="also save the samples with labels and seed")
    s.set_defaults(func=_cmd_sample)

    e = sub.add_parser("evaluate", help="digits: class accuracy and DFD; other data: held-out loss")
    e.add_argument("--run", required=True)
    e.add_argument("--guidance", type=float, default=None,
                   help=f"default {digits_run.eval_guidance} (the run preset's)")
    e.add_argument("--interval", type=float, nargs=2, default=None, metavar=("LO", "HI"))
    e.add_argument("--steps", type=int, default=None,
                   help=f"sampler steps (default {digits_run.sampler_steps})")
    e.set_defaults(func=_cmd_evaluate)

    b = sub.add_parser("bench", help="run a benchmark script (source checkout)")
    b.add_argument("target", choices=("cpu", "gpu"))
    b.add_argument("--preset", default=None)
    b.add_argument("--batch-size", type=int, default=None)
    b.set_defaults(func=_cmd_bench)

    d = sub.add_parser("demo", help="train tiny-16 on digits, write a grid, a loss curve, metrics")
    d.add_argument("--out", default="demo")
    d.add_argument("--quick", action="store_true",
                   help=f"{digits_run.quick_steps} steps instead of {digits_run.train.steps}")
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
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        parser.exit(2, f"diff-pixel: error: {err}\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    raise SystemExit(main())
