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
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CHECKPOINT_EVERY", "QUICK_STEPS", "demo", "evaluate_run", "main", "train_run"]

#: ``diff-pixel demo --quick`` trains this many steps instead of the run preset's.
QUICK_STEPS = 200
#: Default of ``--checkpoint-every`` (train and demo).
CHECKPOINT_EVERY = 500
#: Expected wall time of the demo on 2 CPU cores, in seconds (training, four sampling passes and
#: the classifier; measured 301 s for the full demo on a quiet machine, see the README).
DEMO_EXPECTED_S = {"full": 330, "quick": 120}
#: Files the demo writes into its output folder (refused if present, unless --overwrite).
DEMO_OUTPUTS = ("samples.png", "loss.png", "metrics.json")


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
    checkpoint_every: int = CHECKPOINT_EVERY,
    overwrite: bool = False,
) -> Any:
    """Build the model, data, recipe and trainer of a CLI run and train; returns the Trainer.

    ``None`` arguments take the run preset's / recipe's values (``RUN_PRESETS["digits"]`` for
    digits, ``RUN_PRESETS["photos"]`` otherwise). ``out`` holding checkpoints resumes (unless
    ``resume=False``, which refuses it); a non-empty ``out`` without checkpoints is refused
    unless ``overwrite``. Raises :class:`CLIError` for bad arguments.
    """
    from diff_pixel.data import Loader
    from diff_pixel.images import LossCurveHook, SampleGridHook
    from diff_pixel.models import build_model
    from diff_pixel.sid.loss import recipe_loss
    from diff_pixel.train import DamagedCheckpointError, TrainConfig, Trainer

    run = _run_preset(data)
    out_dir = Path(out or f"runs/{run.data}")
    _check_run_dir(out_dir, resume=resume, overwrite=overwrite)
    config = _model_config(preset or run.model, precision)
    rec = _recipe(recipe, run, config.height)
    source = _source(data, config)
    if config.num_classes and source.num_classes > config.num_classes:
        raise CLIError(
            "--data",
            f"has {source.num_classes} classes, the preset only {config.num_classes} (num_classes)",
        )
    mesh = _mesh(devices)
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
            checkpoint_every=checkpoint_every,
            **overrides,
        )
    except (TypeError, ValueError) as err:
        names = ("checkpoint_every", "steps", "batch_size", "lr", "seed")
        arg = next((a for a in names if a in str(err)), "steps")
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
    except DamagedCheckpointError as err:
        hint = (
            f"; to resume from step {err.available[-1]}, move {err.path} out of the run directory"
            if err.available
            else "; use another --out"
        )
        raise CLIError("--out", f"{err}{hint}") from err
    except ValueError as err:
        arg = "--out" if "checkpoint" in str(err) else "--batch-size"
        raise CLIError(arg, str(err)) from err
    trainer.run()
    return trainer


def _check_run_dir(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an ``--out`` that cannot be trained into, before any work."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CLIError("--out", f"{str(out_dir)!r} exists and is not a folder")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not resume:
        raise CLIError("--out", f"{str(out_dir)!r} is not empty and --no-resume was given")
    if not (out_dir / "checkpoints").is_dir() and not overwrite:
        raise CLIError(
            "--out",
            f"{str(out_dir)!r} is not empty and holds no checkpoints to resume; pass "
            "--overwrite to train into it anyway, or choose another --out",
        )


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
        checkpoint_every=args.checkpoint_every,
        overwrite=args.overwrite,
    )
    records = read_metrics(trainer.metrics_log.path)
    summary = {"out_dir": str(trainer.out_dir), "step": trainer.step_count}
    summary["last"] = records[-1] if records else None
    print(json.dumps(summary))
    return 0


# -- sample / evaluate ------------------------------------------------------------------------
def _load_run(run_dir: str, step: int | None, raw: bool) -> tuple[Any, Any, dict[str, Any]]:
    from diff_pixel.sid.recipes import recipe_from_dict
    from diff_pixel.train import DamagedCheckpointError, Trainer

    if not Path(run_dir, "checkpoints").is_dir():
        raise CLIError("--run", f"{run_dir!r} is not a run directory (no checkpoints/ inside)")
    try:
        model, ema, saved = Trainer.restore(run_dir, step)
    except DamagedCheckpointError as err:
        hint = f"; pass --step {err.available[-1]} to load an older one" if err.available else ""
        raise CLIError("--step" if step is not None else "--run", f"{err}{hint}") from err
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
    _check_output("--out", out, args.overwrite)
    if args.npz:
        _check_output("--npz", Path(args.npz), args.overwrite)
    _check_interval(args.interval)
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


def _check_output(option: str, path: Path, overwrite: bool) -> None:
    """Refuse an existing output file before any work, unless ``overwrite``."""
    if path.is_dir():
        raise CLIError(option, f"{str(path)!r} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise CLIError(option, f"{str(path)!r} exists; pass --overwrite to replace it")


def _check_interval(interval: Sequence[float] | None) -> None:
    if interval is not None and not interval[0] < interval[1]:
        lo, hi = interval
        raise CLIError("--interval", f"must be LO HI with LO < HI, got {lo:g} {hi:g}")


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
    out: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Evaluate a run directory, write ``out`` (default ``run_dir/evaluate.json``) and return
    its content.

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
    _write_json(path / "evaluate.json" if out is None else Path(out), result)
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
    out = Path(args.out) if args.out else Path(args.run) / "evaluate.json"
    _check_output("--out", out, args.overwrite)
    _check_interval(args.interval)
    if not Path(args.run, "checkpoints").is_dir():
        raise CLIError("--run", f"{args.run!r} is not a run directory (no checkpoints/ inside)")
    result = evaluate_run(
        args.run,
        guidance=args.guidance,
        interval=args.interval,
        steps=args.steps,
        step=args.step,
        out=out,
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


def demo_glossary(quick: bool) -> dict[str, dict[str, str]]:
    """What each figure of ``metrics.json`` means, which direction is better and the range
    expected at the demo's budget (measured: README, "Measured results")."""
    from diff_core.figures import entry

    steps = QUICK_STEPS if quick else 1500
    return {
        "class_accuracy": entry(
            "share of 360 generated digits (36 per class, guidance w = 1) that the digits "
            "classifier assigns to the class they were sampled for",
            "higher",
            "0.05 to 0.4 at 200 steps (measured 0.12: the digits are not learned yet)"
            if quick
            else "0.95 to 1.0 at 1500 steps (measured 0.983)",
        ),
        "digits_feature_distance": entry(
            "DFD: Frechet distance between Gaussian fits of the classifier's 64-d features of "
            "the 360 generated digits and of the 360 test digits (not FID; compare with "
            "dfd_floor and dfd_noise)",
            "lower",
            "20 to 80 at 200 steps (measured 41.3)"
            if quick
            else "3 to 8 at 1500 steps (measured 4.31), about the floor",
        ),
        "dfd_floor": entry(
            "DFD of 360 real training digits against the test digits: what a perfect "
            "generator scores",
            "neither",
            "4 to 7 (measured 5.10)",
        ),
        "dfd_noise": entry(
            "DFD of 360 images of clipped Gaussian noise: what a generator that learned "
            "nothing scores",
            "neither",
            "200 to 400 (measured 290.8)",
        ),
        "classifier_test_accuracy": entry(
            "test accuracy of the digits classifier trained for this run (the yardstick of "
            "class_accuracy and DFD)",
            "higher",
            "0.98 to 1.0",
        ),
        "steps": entry("training steps of tiny-16 (batch 128)", "neither", str(steps)),
        "guidance": entry(
            "guidance weight w of the 360 evaluation samples (samples.png uses w = 2 on "
            "logsnr in [-3, 5))",
            "neither",
            "1.0",
        ),
        "sampler_steps": entry("ancestral (DDPM) sampler steps per sample", "neither", "32"),
        "final_loss": entry(
            "training loss (SiD2 sigmoid-weighted) averaged over the last 50 steps",
            "lower",
            "0.2 to 0.4 at 200 steps (measured 0.26)"
            if quick
            else "0.15 to 0.25 at 1500 steps (measured 0.180)",
        ),
    }


def demo(
    out: str = "demo",
    *,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    checkpoint_every: int = CHECKPOINT_EVERY,
    overwrite: bool = False,
) -> dict:
    """Train ``tiny-16`` on digits (run preset ``digits``), write ``samples.png`` (10×10 grid at
    the preset's grid guidance, one labelled row per class), ``loss.png`` and ``metrics.json``
    (the figures, their ``glossary`` and ``meta``: see :mod:`diff_core.figures`); returns the
    figures.

    Existing outputs in ``out`` are refused (:class:`CLIError`) before any work unless
    ``overwrite``, which also retrains ``out/run`` from step 0; without outputs, an interrupted
    ``out/run`` resumes.
    """
    import jax

    from diff_pixel.images import save_grid
    from diff_pixel.metrics import dfd_baselines, evaluate_digits_model

    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise CLIError("--out", f"{str(out_dir)!r} exists and is not a folder")
    present = [name for name in DEMO_OUTPUTS if (out_dir / name).exists()]
    if present and not overwrite:
        raise CLIError(
            "--out",
            f"{str(out_dir)!r} already holds {', '.join(present)} of an earlier demo; pass "
            "--overwrite to replace them (OUT/run is retrained), or choose another --out",
        )
    run_dir = out_dir / "run"
    if overwrite and (run_dir / "checkpoints").is_dir():
        shutil.rmtree(run_dir)
    run = _run_preset("digits")
    steps = QUICK_STEPS if quick else run.steps
    expected_s = DEMO_EXPECTED_S["quick" if quick else "full"]
    budget = f"{steps} training steps of tiny-16 at batch 128, then 460 samples of 32 steps"
    print(
        f"diff-pixel demo: {budget}; expected about {expected_s // 60} minutes on 2 CPU cores",
        file=sys.stderr,
        flush=True,
    )
    trainer = train_run(
        data="digits",
        steps=steps,
        seed=seed,
        out=str(run_dir),
        progress=progress,
        checkpoint_every=checkpoint_every,
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
    from diff_protocol.io import atomic_write

    atomic_write(out_dir / "loss.png", (run_dir / "loss.png").read_bytes())
    clf = _digits_classifier(run_dir, model.config.height)
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
    meta = {"expected_s": expected_s, "budget": budget, "quick": quick}
    glossary = demo_glossary(quick)
    _write_json(out_dir / "metrics.json", {**metrics, "meta": meta, "glossary": glossary})
    return metrics


def _cmd_demo(args: argparse.Namespace) -> int:
    from diff_core.figures import describe

    metrics = demo(
        args.out,
        quick=args.quick,
        seed=args.seed,
        progress=not args.no_progress,
        checkpoint_every=args.checkpoint_every,
        overwrite=args.overwrite,
    )
    print(describe(demo_glossary(args.quick), metrics))
    out = Path(args.out)
    print(f"wrote {out / 'samples.png'}, {out / 'loss.png'}, {out / 'metrics.json'}")
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
def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (or inf, -inf), got {text!r}") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"must be a number (or inf, -inf), got {text!r}")
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    from diff_core.cli import Parser
    from diff_pixel.sid.recipes import RUN_PRESETS, SiD2Recipe

    digits_run = RUN_PRESETS["digits"]
    dr = dict(digits_run.overrides)
    sid2 = SiD2Recipe.for_resolution(digits_run.image_size, **dr)
    p = Parser(
        prog="diff-pixel",
        description="Pixel-space diffusion (SiD, SiD2) in JAX/Flax NNX: train, sample, "
        "evaluate, bench, demo, info. Bad arguments: one line and exit status 2; Ctrl-C during "
        "training writes a checkpoint and exits 130.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train a model (resumes if --out holds checkpoints)",
        description="Train a model. If --out holds checkpoints the run resumes from the latest "
        "(it prints 'resuming from step N'); Ctrl-C writes a checkpoint and exits 130, and the "
        "same command resumes.",
    )
    t.add_argument(
        "--data",
        default="digits",
        help="digits | photos | folder:PATH (a folder of images, a class per subfolder) "
        "(default digits)",
    )
    t.add_argument(
        "--preset",
        default=None,
        help=f"model preset (default: the run preset's, {digits_run.model} for digits)",
    )
    t.add_argument(
        "--recipe",
        default="sid2",
        choices=("sid2", "sid"),
        help="SiD2 (interpolated schedule, sigmoid loss) or SiD (default sid2)",
    )
    t.add_argument(
        "--steps",
        type=_count(1),
        default=None,
        help=f"training steps (default: the run preset's, {digits_run.steps} for digits)",
    )
    t.add_argument(
        "--batch-size",
        type=_count(1),
        default=None,
        help=f"global batch (default: the run preset's, {dr.get('batch_size')} for digits)",
    )
    t.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"peak learning rate (default: the run preset's, {dr.get('lr')} for digits)",
    )
    t.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "bfloat16"),
        help="compute dtype of convolutions, dense layers and attention; parameters stay "
        "float32 (default float32)",
    )
    t.add_argument(
        "--devices",
        type=_count(1),
        default=None,
        help="data-parallel devices (default: one device, no mesh)",
    )
    t.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    t.add_argument(
        "--checkpoint-every",
        type=_count(0),
        default=CHECKPOINT_EVERY,
        help="steps between checkpoints; 0: only at the end and on Ctrl-C "
        f"(default {CHECKPOINT_EVERY})",
    )
    t.add_argument(
        "--out", default=None, help="run directory (default runs/<data>, e.g. runs/digits)"
    )
    t.add_argument(
        "--no-resume",
        action="store_true",
        help="refuse a non-empty --out instead of resuming from its checkpoints",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="train into a non-empty --out that holds no checkpoints (default: refuse); a run "
        "with checkpoints resumes",
    )
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser(
        "sample",
        help="sample a grid from a run's EMA model",
        description="Sample a PNG grid (one row per class, labelled) from a run's EMA weights.",
    )
    s.add_argument("--run", required=True, help="run directory written by `diff-pixel train`")
    s.add_argument(
        "--step", type=_count(0), default=None, help="checkpoint step (default: the latest)"
    )
    s.add_argument(
        "--raw", action="store_true", help="sample the raw weights instead of the EMA weights"
    )
    s.add_argument("--num", type=_count(1), default=100, help="number of samples (default 100)")
    s.add_argument(
        "--labels",
        default="0-9",
        help="class labels, cycled over the samples: a range 0-9 or a list 1,3,5 (default 0-9)",
    )
    s.add_argument(
        "--guidance",
        type=float,
        default=None,
        help=f"guidance weight w (default: the run's recipe's grid weight, {sid2.grid_guidance} "
        "for digits)",
    )
    s.add_argument(
        "--interval",
        type=_interval,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="logsnr interval [LO, HI) where guidance applies, LO < HI (default: the recipe's "
        f"grid interval, {sid2.grid_interval[0]:g} {sid2.grid_interval[1]:g} for digits)",
    )
    s.add_argument(
        "--steps",
        type=_count(1),
        default=None,
        help=f"sampler steps (default: the recipe's, {sid2.sampler_steps} for digits)",
    )
    s.add_argument(
        "--sampler",
        default=None,
        choices=("ddpm", "ddim"),
        help=f"sampler (default: the recipe's, {sid2.sampler})",
    )
    s.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    s.add_argument(
        "--scale", type=_count(1), default=4, help="PNG pixel scale, nearest (default 4)"
    )
    s.add_argument("--out", default="grid.png", help="output PNG (default grid.png)")
    s.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out / --npz (default: refuse)",
    )
    s.add_argument(
        "--npz",
        default=None,
        help="also save the samples with their labels and seed to this .npz (default: none)",
    )
    s.set_defaults(func=_cmd_sample)

    e = sub.add_parser(
        "evaluate",
        help="digits: class accuracy and DFD; other data: held-out loss",
        description="Evaluate a run: on digits, class accuracy and DFD of 360 EMA samples with "
        "the floor and noise baselines; on other data, the held-out loss per logsnr bin. "
        "Writes a JSON file (refused if it exists, unless --overwrite).",
    )
    e.add_argument("--run", required=True, help="run directory written by `diff-pixel train`")
    e.add_argument(
        "--step", type=_count(0), default=None, help="checkpoint step (default: the latest)"
    )
    e.add_argument(
        "--guidance",
        type=float,
        default=None,
        help=f"guidance weight w (default: the recipe's evaluation weight, {sid2.guidance} "
        "for digits)",
    )
    e.add_argument(
        "--interval",
        type=_interval,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="logsnr interval [LO, HI) where guidance applies, LO < HI (default: everywhere, "
        "-inf inf)",
    )
    e.add_argument(
        "--steps",
        type=_count(1),
        default=None,
        help=f"sampler steps (default: the recipe's, {sid2.sampler_steps} for digits)",
    )
    e.add_argument("--out", default=None, help="output JSON (default RUN/evaluate.json)")
    e.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out (default: refuse)"
    )
    e.set_defaults(func=_cmd_evaluate)

    b = sub.add_parser(
        "bench",
        help="run a benchmark script of benchmarks/ (from a source checkout)",
        description="Run benchmarks/cpu_train_step.py (cpu) or benchmarks/gpu_train_mfu.py "
        "(gpu) of a diff-pixel source checkout; options after `--` go to the script.",
    )
    b.add_argument(
        "target",
        choices=("cpu", "gpu"),
        help="cpu: train-step throughput per preset; gpu: train-step MFU and sampling rate",
    )
    b.add_argument(
        "--preset",
        default=None,
        help="cpu only: the model preset to measure (default: the script's, tiny-16 and small-16)",
    )
    b.add_argument(
        "--batch-size",
        type=_count(1),
        default=None,
        help="cpu only: batch size (default: the script's, 128)",
    )
    b.set_defaults(func=_cmd_bench)  # options after `--` go to the script (see main)

    d = sub.add_parser(
        "demo",
        help="train tiny-16 on digits; write a grid, a loss curve, metrics",
        description=f"Train tiny-16 on digits ({digits_run.steps} steps, about "
        f"{DEMO_EXPECTED_S['full'] // 60} minutes on 2 CPU cores; --quick: {QUICK_STEPS} steps, "
        f"about {DEMO_EXPECTED_S['quick'] // 60} minutes), then write samples.png, loss.png and "
        "metrics.json into --out (refused if they exist, unless --overwrite) and print each "
        "figure with what it means, which direction is better and the range expected.",
    )
    d.add_argument("--out", default="demo", help="output folder (default demo)")
    d.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_STEPS} steps instead of {digits_run.steps} (default: the full demo)",
    )
    d.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    d.add_argument(
        "--checkpoint-every",
        type=_count(0),
        default=CHECKPOINT_EVERY,
        help="steps between checkpoints of OUT/run; 0: only at the end and on Ctrl-C "
        f"(default {CHECKPOINT_EVERY})",
    )
    d.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier demo's outputs in --out and retrain OUT/run from step 0 "
        "(default: refuse; an interrupted OUT/run without outputs resumes)",
    )
    d.add_argument("--no-progress", action="store_true", help="no progress bar (default: show it)")
    d.set_defaults(func=_cmd_demo)

    i = sub.add_parser(
        "info",
        help="config, analytic GMAC per component, parameter count",
        description="Print a model preset's configuration, analytic GMAC per component and "
        "parameter count as JSON (nothing is compiled).",
    )
    i.add_argument("--preset", required=True, help="model preset, e.g. tiny-16 or sid2-256-p2")
    i.add_argument(
        "--image-size",
        type=_count(1),
        default=None,
        help="override the preset's image size (default: the preset's)",
    )
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
    except KeyboardInterrupt:  # before the training loop (or a second Ctrl-C)
        sys.stderr.write(f"diff-pixel: interrupted ({args.command})\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
