"""The ``diff-edm3d`` console script (also ``python -m diff_edm3d``).

Subcommands: ``prepare`` (parse QM9 and print its check numbers), ``train`` (presets from
`diff_edm3d.train.PRESETS`; every flag overrides the preset), ``sample`` (molecules as .xyz/.sdf,
``grid.png``, ``metrics.json``), ``evaluate`` (a file of molecules, a checkpoint's samples or test
NLL, or the conditional protocol) and ``demo`` (trains the ``small`` preset on CPU for a fixed
number of steps, samples and explains every figure).

Conventions: every option's help states its default; a bad value is one line on stderr and exit
status 2 (no traceback); outputs that exist are refused before any work unless ``--overwrite``;
Ctrl-C during training writes a checkpoint, prints one line and exits with status 130.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .report import summary_table

__all__ = ["DEMO_EXPECTED", "build_parser", "main", "summary_table"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

#: Training steps of ``demo`` and ``demo --quick``, and the sampling grid of each.
DEMO_STEPS = 300
DEMO_GRID_STEPS = 1000
QUICK_STEPS = 60
QUICK_GRID_STEPS = 100

#: What a figure of ``demo`` is expected to be at its budget, keyed by (train steps, grid steps):
#: the minimum and maximum over seeds 0-4 (preset ``small``, 1 thread, 25 samples, raw weights),
#: measured with ``benchmarks/demo_expected.py`` and rounded outwards to two decimals. Figures at
#: other budgets are printed without an expected range. After 60 steps the network is still in
#: its early transient and many samples explode (RDKit still calls up to all of them valid); after
#: 300 no sample explodes, about a fifth of the atoms have a correct valence and no molecule is
#: yet stable or plausible.
DEMO_EXPECTED: dict[tuple[int, int], dict[str, tuple[float, float]]] = {
    (DEMO_STEPS, DEMO_GRID_STEPS): {
        "atom_stability": (0.18, 0.25),
        "molecule_stability": (0.0, 0.0),
        "plausible": (0.0, 0.0),
        "n_exploded": (0, 0),
        "validity": (0.08, 0.36),
        "uniqueness": (0.77, 1.0),
    },
    (QUICK_STEPS, QUICK_GRID_STEPS): {
        "atom_stability": (0.0, 0.04),
        "molecule_stability": (0.0, 0.0),
        "plausible": (0.0, 0.0),
        "n_exploded": (1, 25),
        "validity": (0.12, 1.0),
        "uniqueness": (0.08, 0.67),
    },
}


class CLIError(ValueError):
    """A bad command-line value: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``diff-edm3d sample: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return v


def _step(text: str) -> int | str:
    if text == "best":
        return text
    try:
        return _nonneg_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be a checkpoint step (an integer >= 0) or 'best', got {text!r}"
        ) from None


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=1, sort_keys=True, default=str))


def _write_json(path: Path, obj: Any, overwrite: bool) -> Path:
    from .data.io import atomic_write

    text = json.dumps(obj, indent=1, sort_keys=True, default=float)
    return atomic_write(path, lambda f: f.write(text.encode()), overwrite=overwrite,
                        caller="diff-edm3d")  # fmt: skip


def _refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse outputs that exist, before any work, unless ``--overwrite``."""
    if overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if len(existing) == 1:
        raise FileExistsError(
            f"{existing[0]} already exists; pass --overwrite to replace it, or choose another --out"
        )
    if existing:
        folder = existing[0].parent
        names = ", ".join(p.name if p.parent == folder else str(p) for p in existing)
        raise FileExistsError(
            f"{folder} already holds {names}; pass --overwrite to replace them, or choose another "
            "--out"
        )


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _check_device(device: str | None) -> None:
    if device is not None:
        from .devices import resolve_device

        resolve_device(device, None, "--device")


# ----------------------------------------------------------------------------------------------
# prepare


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data.qm9 import prepare_qm9

    report = prepare_qm9(
        cache_dir=args.cache_dir,
        remove_h=args.remove_h,
        train_smiles=args.train_smiles,
        progress=True,
    )
    _print_json(report)
    return 0


# ----------------------------------------------------------------------------------------------
# train

_TRAIN_FLAGS = {
    # flag -> TrainConfig field
    "batch_size": "batch_size",
    "lr": "lr",
    "nf": "nf",
    "layers": "n_layers",
    "seed": "seed",
    "device": "device",
    "threads": "threads",
    "eval_every": "eval_every",
    "eval_samples": "eval_samples",
    "checkpoint_every": "checkpoint_every",
    "steps": "steps",
    "epochs": "epochs",
    "dynamics": "dynamics",
    "out": "out",
    "cache_dir": "cache_dir",
    "max_minutes": "max_minutes",
    "dtype": "dtype",
    "train_subset": "train_subset",
}


def _train_config(args: argparse.Namespace) -> Any:
    from .train import preset

    overrides: dict[str, Any] = {}
    for flag, name in _TRAIN_FLAGS.items():
        v = getattr(args, flag, None)
        if v is not None:
            overrides[name] = v
    if args.steps is not None:
        overrides["epochs"] = None
    elif args.epochs is not None:
        overrides["steps"] = None
    ds = args.dataset
    if ds:
        if len(ds) == 1 and ds[0] in ("qm9", "qm9_second_half", "qm9_first_half"):
            overrides["dataset"] = ds[0]
        else:
            overrides["dataset"] = "files"
            overrides["files"] = tuple(ds)
    if args.condition:
        overrides["condition"] = (args.condition,)
    if args.remove_h:
        overrides["remove_h"] = True
    name = args.preset
    if args.condition and name in ("qm9", "small", "tiny"):
        # conditional runs need include_charges=False and norm (1, 8, 1) as in the paper
        overrides.setdefault("norm_values", (1.0, 8.0, 1.0))
        overrides.setdefault("include_charges", False)
    cfg = preset(name, **{k: v for k, v in overrides.items() if k not in ("steps", "epochs")})
    if "steps" in overrides or "epochs" in overrides:
        cfg = cfg.with_(steps=overrides.get("steps", cfg.steps),
                        epochs=overrides.get("epochs", cfg.epochs))  # fmt: skip
    return cfg


def _run_files(out: Path) -> list[str]:
    """What a training run folder holds, for the closing message."""
    from .checkpoint import latest_checkpoint

    described = []
    ckpt = latest_checkpoint(out)
    if ckpt is not None:
        described.append(f"{ckpt} (checkpoint)")
    for name, what in (
        ("metrics.jsonl", "one line per step"),
        ("curves.png", "loss and gradient-norm curves"),
        ("eval.jsonl", "evaluations"),
        ("config.json", "the resolved config"),
    ):
        if (out / name).is_file():
            described.append(f"{out / name} ({what})")
    return described


def cmd_train(args: argparse.Namespace) -> int:
    from .train import Trainer

    _check_device(args.device)
    cfg = _train_config(args)
    trainer = Trainer(cfg)
    result = trainer.fit()
    if trainer.dist.is_main:
        _print_json({k: v for k, v in result.items() if not isinstance(v, list)})
        print("wrote " + ", ".join(_run_files(Path(cfg.out))))
    return 0


# ----------------------------------------------------------------------------------------------
# sample


def _grid(T: int, steps: int) -> np.ndarray:
    if not 1 <= steps <= T:
        raise CLIError(f"--grid-steps must lie in [1, {T}], got {steps}")
    return np.linspace(T, 0, steps + 1).round().astype(int)


def _parse_property(text: str) -> tuple[str, float]:
    from .data.properties import check_property

    if "=" not in text:
        raise CLIError(f"--property must be NAME=VALUE (e.g. alpha=80.0), got {text!r}")
    name, value = text.split("=", 1)
    check_property(name)
    try:
        v = float(value)
    except ValueError:
        raise CLIError(f"--property value must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise CLIError(f"--property value must be finite, got {value!r}")
    return name, v


def _train_smiles_if_cached(edm: Any, cache_dir: str | None) -> Any:
    """The novelty reference when it is already cached (computing it takes about a minute)."""
    try:
        from .data.qm9 import CACHE_FORMAT, default_cache_dir, qm9_train_smiles
    except ImportError:
        return None
    remove_h = "H" not in edm.elements.symbols
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    f = cache / f"qm9_{'noH_' if remove_h else ''}train_smiles_v{CACHE_FORMAT}.npz"
    if not f.is_file():
        return None
    try:
        return qm9_train_smiles(remove_h=remove_h, cache_dir=cache, progress=False)
    except Exception:
        return None


def molecule_file_metrics(path: Path, elements: Any, train_smiles: Any = None) -> dict[str, Any]:
    """Metrics of a molecule file exactly as ``evaluate --molecules`` computes them."""
    from .data.molecules import MoleculeSet
    from .metrics import molecule_metrics

    ms = MoleculeSet.from_files(path, elements=elements, centre=False)
    return molecule_metrics(ms, train_smiles=train_smiles)


def sample_outputs(out: Path, chain: bool = False) -> list[Path]:
    """The files `write_samples` writes into ``out``."""
    names = ["samples.xyz", "samples.sdf", "grid.png", "metrics.json"]
    return [out / n for n in names + (["chain.png"] if chain else [])]


def write_samples(
    samples: Any,
    out: Path,
    *,
    overwrite: bool,
    chain: Any = None,
    train_smiles: Any = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """samples.xyz, samples.sdf (RDKit), grid.png, chain.png and metrics.json in `out`."""
    from .data.io import write_sdf, write_xyz
    from .metrics import stability

    out.mkdir(parents=True, exist_ok=True)
    st = stability(samples)
    write_xyz(samples, out / "samples.xyz", st.molecule_stable, overwrite=overwrite)
    written = ["samples.xyz"]
    try:
        write_sdf(samples, out / "samples.sdf", overwrite=overwrite)
        written.append("samples.sdf")
    except ImportError:
        print('RDKit not installed: samples.sdf skipped (pip install "diff-edm3d[chem]")')
    try:
        from .render import render_chain, render_grid

        render_grid(samples, out / "grid.png", stable=st.molecule_stable[:25], overwrite=overwrite)
        written.append("grid.png")
        if chain:
            render_chain(chain, out / "chain.png", overwrite=overwrite)
            written.append("chain.png")
    except ImportError:
        print('matplotlib not installed: pictures skipped (pip install "diff-edm3d[viz]")')
    # metrics from the written file, the same path as `evaluate --molecules`
    metrics = molecule_file_metrics(out / "samples.xyz", samples.elements, train_smiles)
    metrics["sampling"] = {k: v for k, v in samples.meta.items() if not isinstance(v, list)}
    metrics["sampling"].update(extra or {})
    _write_json(out / "metrics.json", metrics, overwrite)
    written.append("metrics.json")
    return {"metrics": metrics, "written": written}


def _load(args: argparse.Namespace, weights: str = "ema") -> Any:
    from .checkpoint import available_checkpoints, load_checkpoint

    if args.step is not None:
        run = Path(args.checkpoint)
        name = "best" if args.step == "best" else f"ckpt_{args.step:08d}"
        if not (run / name / "trainer_state.json").is_file():
            found = available_checkpoints(run)
            steps = ", ".join(
                f"{p.name} (--step {'best' if p.name == 'best' else int(p.name[5:])})"
                for p in found
            )
            raise CLIError(
                f"--step must name a checkpoint of the run {run}, got {args.step} (no "
                f"{run / name}); available: {steps or 'none'}"
            )
    edm = load_checkpoint(args.checkpoint, weights=weights, device=args.device, step=args.step)
    state = getattr(edm, "trainer_state", {}) or {}
    beta = (state.get("config") or {}).get("ema_decay")
    step = state.get("step")
    if weights == "ema" and beta and step is not None and step < 2.0 / (1.0 - beta):
        print(
            f"note: the EMA (decay {beta}) has averaged only {step} steps and is still mostly the "
            f"initial network; --weights model uses the trained weights"
        )
    return edm


def cmd_sample(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _refuse_existing(sample_outputs(out, args.chain), args.overwrite)
    _check_device(args.device)
    _set_threads(args.threads)
    edm = _load(args, args.weights)
    grid = _grid(edm.T, args.grid_steps)
    n = args.n
    seed = args.seed
    if args.n_atoms is not None:
        sizes = edm._check_sizes(np.full(n, args.n_atoms, dtype=np.int64), "sample")
        ctx = None
        if edm.config.context_dim and not args.property:
            rng = np.random.Generator(np.random.PCG64([seed, 0]))
            ctx = edm.property_dist.sample(sizes, rng, normaliser=edm.property_normaliser)
    else:
        sizes, ctx = edm.draw_sizes_and_context(n, seed)
    if args.property:
        name, value = _parse_property(args.property)
        if edm.property_names != [name]:
            raise CLIError(
                f"--property must name the model's property {edm.property_names}, got {name!r}"
            )
        ctx = edm.property_normaliser.normalise(np.full((n, 1), value), [name])
    elif edm.config.context_dim == 0:
        ctx = None
    t0 = time.perf_counter()
    parts, chain = [], None
    from .data.molecules import MoleculeSet

    bs = args.batch_size or n
    for start in range(0, n, bs):
        stop = min(n, start + bs)
        res = edm.sample(
            sizes[start:stop],
            context=None if ctx is None else np.asarray(ctx)[start:stop],
            seed=seed + start,
            grid=grid,
            return_chain=bool(args.chain and start == 0),
            progress=True,
        )
        if isinstance(res, tuple):
            res, chain = res
        parts.append(res)
    samples = MoleculeSet.concatenate(parts) if len(parts) > 1 else parts[0]
    meta = dict(parts[0].meta)
    for k in ("drift_events", "inconsistent_atoms"):
        meta[k] = sum(p.meta[k] for p in parts)
    samples = samples._replace(meta=meta)
    seconds = time.perf_counter() - t0
    res = write_samples(
        samples,
        out,
        overwrite=args.overwrite,
        chain=chain,
        train_smiles=_train_smiles_if_cached(edm, args.cache_dir),
        extra={"seconds": seconds, "molecules_per_second": n / seconds},
    )
    print(summary_table(res["metrics"]))
    print(f"wrote {', '.join(res['written'])} to {out.resolve()}")
    return 0


# ----------------------------------------------------------------------------------------------
# evaluate


def evaluate_output(args: argparse.Namespace) -> Path:
    """The file ``evaluate`` writes: one default name per mode inside ``--out``."""
    out = Path(args.out)
    if args.molecules:
        return out / f"molecules_{Path(args.molecules).stem}.json"
    if args.property or args.classifier:
        return out / f"conditional_{args.property}.json"
    if args.nll:
        return out / f"nll_{args.split}.json"
    return out / "samples.json"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .elements import QM9_NO_H, QM9_WITH_H

    if not args.molecules and not args.checkpoint:
        raise CLIError("--molecules or --checkpoint must be given, got neither")
    if args.molecules and args.checkpoint:
        raise CLIError("--molecules and --checkpoint are exclusive, got both")
    if bool(args.property) != bool(args.classifier):
        raise CLIError("--property and --classifier must be given together")
    target = evaluate_output(args)
    _refuse_existing([target], args.overwrite)
    _check_device(args.device)
    _set_threads(args.threads)
    result: dict[str, Any]
    if args.molecules:
        if not Path(args.molecules).is_file():
            raise FileNotFoundError(f"--molecules must be an existing file, got {args.molecules}")
        elements = QM9_NO_H if args.remove_h else QM9_WITH_H
        train_smiles = None
        if args.novelty:
            from .data.qm9 import qm9_train_smiles

            train_smiles = qm9_train_smiles(remove_h=args.remove_h, cache_dir=args.cache_dir)
        result = molecule_file_metrics(Path(args.molecules), elements, train_smiles)
        print(summary_table(result))
    else:
        edm = _load(args, args.weights)
        if args.property:
            result = _evaluate_conditional(edm, args)
        elif args.nll:
            result = _evaluate_nll(edm, args)
        else:
            from .metrics import molecule_metrics

            grid = _grid(edm.T, args.grid_steps)
            samples = edm.generate(args.n_samples, seed=args.seed, batch_size=args.batch_size,
                                   grid=grid, progress=True)  # fmt: skip
            result = molecule_metrics(
                samples, train_smiles=_train_smiles_if_cached(edm, args.cache_dir)
            )
            result["sampling"] = {k: v for k, v in samples.meta.items()}
            print(summary_table(result))
    _write_json(target, result, overwrite=args.overwrite)
    print(f"wrote {target}")
    return 0


def _evaluate_nll(edm: Any, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from .batch import collate
    from .com import derive_torch_seed
    from .data.qm9 import load_qm9

    remove_h = "H" not in edm.elements.symbols
    data = load_qm9(remove_h=remove_h, split=args.split, cache_dir=args.cache_dir)
    if args.max_molecules:
        data = data.subset(np.arange(min(len(data), args.max_molecules)))
    names = edm.property_names or []
    gen = torch.Generator().manual_seed(derive_torch_seed(args.seed, 11))
    dtype = next(edm.parameters()).dtype
    device = next(edm.parameters()).device
    values = []
    from tqdm.auto import tqdm

    bs = args.batch_size or 256
    for start in tqdm(range(0, len(data), bs), desc="NLL batches"):
        part = data.subset(np.arange(start, min(len(data), start + bs)))
        ctx = None
        if names:
            from .conditional import build_context

            ctx = build_context(part, names, edm.property_normaliser)
        batch = collate(part, dtype=dtype, include_charges=edm.config.include_charges,
                        context=ctx, device=device)  # fmt: skip
        with torch.no_grad():
            values.append(edm.nll(batch, gen).nll.double().cpu())
    v = torch.cat(values)
    res = {
        "split": args.split,
        "n": len(v),
        "nll": float(v.mean()),
        "nll_sem": float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0,
    }
    print(
        f"test-set bound: NLL {res['nll']:.2f} +- {res['nll_sem']:.2f} nats per molecule on "
        f"{res['n']} {args.split} molecules (lower is better; the paper reports -110.7 after "
        "full training, an untrained model is far above 0)"
    )
    return res


def _evaluate_conditional(edm: Any, args: argparse.Namespace) -> dict[str, Any]:
    from .conditional import evaluate_conditional, load_classifier

    clf, prop, norm = load_classifier(args.classifier)
    if prop != args.property:
        raise CLIError(f"--property must match the classifier's {prop!r}, got {args.property!r}")
    res = evaluate_conditional(edm, clf, prop, norm, n=args.n_samples,
                               batch_size=args.batch_size or 100,
                               seed=args.seed, grid=_grid(edm.T, args.grid_steps))  # fmt: skip
    _print_json(res)
    return res


# ----------------------------------------------------------------------------------------------
# demo


def demo_outputs(out: Path) -> list[Path]:
    """The files ``demo`` writes into ``out`` (besides its training run in ``out/run``)."""
    return sample_outputs(out) + [out / "curves.png"]


def cmd_demo(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .train import Trainer, preset

    start = time.perf_counter()
    out = Path(args.out)
    steps = args.steps if args.steps is not None else (QUICK_STEPS if args.quick else DEMO_STEPS)
    grid_steps = args.grid_steps or (QUICK_GRID_STEPS if args.quick else DEMO_GRID_STEPS)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out must be a folder, got the existing file {out}")
    _grid(1000, grid_steps)  # the small preset's T; checked before any work
    _refuse_existing(demo_outputs(out), args.overwrite)
    run = out / "run"
    if args.overwrite and run.is_dir() and (run / "config.json").is_file():
        shutil.rmtree(run)  # --overwrite replaces the demo, its training included
    _set_threads(args.threads)
    # seconds on one thread of an idle 2-core machine: a training step, a denoising step of 25
    # molecules, and loading, writing and rendering
    estimate = steps * 0.2 + grid_steps * 0.025 * max(1, args.n / 25) + 15
    print(
        f"[1/4] preparing QM9 (cached after the first run) and training 'small' (EGNN 64/4) "
        f"for {steps} steps on CPU with {args.threads or 'all'} thread(s); the whole demo "
        f"takes about {estimate:.0f} s on an idle 2-core machine, longer on a busy one"
    )
    cfg = preset(
        "small",
        out=str(run),
        steps=steps,
        eval_every=0,
        checkpoint_every=max(steps, 1),
        seed=args.seed,
        cache_dir=args.cache_dir,
        threads=args.threads,
        train_subset=args.train_subset,
    )
    trainer = Trainer(cfg)
    result = trainer.fit()
    print(f"trained {result['step']} steps; last loss {result.get('loss', float('nan')):.4f} "
          "(the l2 training loss of one batch, lower is better: about 0.5 untrained, 0.1 "
          "after 300 steps, 0.08 after 1,000)")  # fmt: skip
    # an EMA with decay beta averages over ~1/(1 - beta) steps and starts at the initial weights;
    # after a short run it is still mostly the untrained network, so sample the raw weights then
    warm = result["step"] >= 2.0 / (1.0 - cfg.ema_decay)
    weights = "ema" if warm else "model"
    note = (
        "EMA weights"
        if warm
        else (
            f"raw weights: {result['step']} steps are too few for the EMA (decay {cfg.ema_decay}) "
            f"to forget its initialisation"
        )
    )
    print(f"[2/4] sampling {args.n} molecules with {grid_steps} denoising steps ({note})")
    edm = load_checkpoint(cfg.out, weights=weights)
    t0 = time.perf_counter()
    grid = np.linspace(edm.T, 0, grid_steps + 1).round().astype(int)
    samples = edm.generate(args.n, seed=args.seed, grid=grid, progress=True)
    seconds = time.perf_counter() - t0
    print("[3/4] writing molecules, pictures and metrics")
    res = write_samples(
        samples,
        out,
        overwrite=args.overwrite,
        train_smiles=_train_smiles_if_cached(edm, args.cache_dir),
        extra={"seconds": seconds, "train_steps": result["step"], "weights": weights},
    )
    try:
        from .render import plot_training_curves

        plot_training_curves(Path(cfg.out) / "metrics.jsonl", out / "curves.png",
                             overwrite=args.overwrite)  # fmt: skip
        res["written"].append("curves.png")
    except ImportError:
        pass
    budget = (int(result["step"]), grid_steps)
    expected = DEMO_EXPECTED.get(budget)
    label = f"({budget[0]} steps)"
    print(f"[4/4] results of {args.n} samples after {budget[0]} training steps and "
          f"{grid_steps} denoising steps")  # fmt: skip
    print(summary_table(res["metrics"], expected or {}, label))
    if not expected:
        known = ", ".join(f"{s} steps / {g}-step grid" for s, g in DEMO_EXPECTED)
        print(f"(expected ranges are measured for the default budgets only: {known})")
    else:
        print(
            "expected = the range over training seeds 0-4 at this budget; the paper's model "
            f"trained about 1.7 M steps on a GPU, {1.7e6 / max(budget[0], 1):,.0f} times longer"
        )
    print(f"pictures: {(out / 'grid.png').resolve()}  {(out / 'curves.png').resolve()}")
    print(f"molecules: {(out / 'samples.xyz').resolve()}  (.sdf beside it)")
    print(f"demo took {time.perf_counter() - start:.0f} s")
    return 0


# ----------------------------------------------------------------------------------------------


def _preset_default(field: str) -> str:
    from .train import PRESETS, TrainConfig

    base = TrainConfig()
    values = []
    for name in ("small", "qm9", "tiny"):
        v = PRESETS[name].get(field, getattr(base, field))
        values.append(f"{name} {v:g}" if isinstance(v, float) else f"{name} {v}")
    return f"default: the preset's ({', '.join(values)})"


def build_parser() -> argparse.ArgumentParser:
    from .train import PRESETS

    p = _Parser(
        prog="diff-edm3d",
        description="E(3)-equivariant diffusion for molecules (EDM, arXiv:2203.17003).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cache_help = "QM9 cache folder (default: $DIFF_EDM3D_CACHE, else ~/.cache/diff-edm3d)"

    q = sub.add_parser(
        "prepare",
        help="parse QM9 from qm9pack into the cache; print check numbers",
        description="Parse QM9 (qm9pack) once into the cache and print its check "
        "numbers (about 10 s).",
    )
    q.add_argument("--cache-dir", default=None, help=cache_help)
    q.add_argument(
        "--remove-h",
        action="store_true",
        help="build the QM9 variant without hydrogens (default: off, with H)",
    )
    q.add_argument(
        "--train-smiles",
        action="store_true",
        help="also build the novelty reference, the SMILES of the training split "
        "(about a minute; default: off)",
    )
    q.set_defaults(func=cmd_prepare)

    t = sub.add_parser(
        "train",
        help="train an EDM (resumes from --out automatically)",
        description="Train an EDM. Every flag overrides the preset; the resolved "
        "config goes to OUT/config.json, checkpoints to OUT/ckpt_*, one line per "
        "step to OUT/metrics.jsonl and the curves to OUT/curves.png. Running the "
        "same command again resumes from the newest checkpoint; Ctrl-C writes a "
        "checkpoint first.",
    )
    t.add_argument(
        "--preset",
        default="small",
        help=f"one of {sorted(PRESETS)} or qm9_cond_<prop> (default: small)",
    )
    t.add_argument(
        "--dataset",
        nargs="+",
        default=None,
        metavar="DATA",
        help="qm9 | qm9_second_half | qm9_first_half | FILE.xyz/.sdf ... "
        "(default: the preset's, qm9 = the official training split)",
    )
    t.add_argument(
        "--condition",
        default=None,
        help="property to condition on (alpha, gap, homo, lumo, mu, Cv; default: "
        "none, unconditional)",
    )
    t.add_argument(
        "--dynamics", choices=("egnn", "e3nn"), default=None, help="network (default: egnn)"
    )
    t.add_argument(
        "--remove-h", action="store_true", help="train on QM9 without hydrogens (default: off)"
    )
    t.add_argument(
        "--out", default=None, help="run folder: checkpoints, logs, curves (default: edm3d_run)"
    )
    g = t.add_mutually_exclusive_group()
    g.add_argument(
        "--steps",
        type=_nonneg_int,
        default=None,
        help=f"optimiser steps ({_preset_default('steps')}; qm9 counts --epochs)",
    )
    g.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help=f"passes over the data instead of --steps ({_preset_default('epochs')})",
    )
    t.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help=f"molecules per step ({_preset_default('batch_size')})",
    )
    t.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help=f"AdamW learning rate ({_preset_default('lr')})",
    )
    t.add_argument(
        "--nf", type=_positive_int, default=None, help=f"hidden features ({_preset_default('nf')})"
    )
    t.add_argument(
        "--layers",
        type=_positive_int,
        default=None,
        help=f"message-passing layers ({_preset_default('n_layers')})",
    )
    t.add_argument(
        "--seed",
        type=_nonneg_int,
        default=None,
        help="seed of the weights, the data order and the noise (default: 0)",
    )
    t.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cpu)")
    t.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads (default: torch's, all cores; 1 is faster on a busy machine)",
    )
    t.add_argument(
        "--eval-every",
        type=_nonneg_int,
        default=None,
        help="steps between evaluations (validation NLL, stability of EMA samples); "
        f"0 = never ({_preset_default('eval_every')})",
    )
    t.add_argument(
        "--eval-samples",
        type=_nonneg_int,
        default=None,
        help=f"molecules sampled per evaluation ({_preset_default('eval_samples')})",
    )
    t.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=None,
        help="steps between checkpoints (default: --eval-every, else 500); one is "
        "also written at the end and on Ctrl-C",
    )
    t.add_argument(
        "--max-minutes",
        type=_positive_float,
        default=None,
        help="also stop after this wall-clock time (default: no limit)",
    )
    t.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="model and batch precision (default: float32)",
    )
    t.add_argument(
        "--train-subset",
        type=_positive_int,
        default=None,
        help="train on the first N molecules of the data only (default: all)",
    )
    t.add_argument("--cache-dir", default=None, help=cache_help)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser(
        "sample",
        help="sample molecules from a checkpoint",
        description="Sample molecules from a checkpoint into OUT: samples.xyz, "
        "samples.sdf, grid.png, metrics.json (and chain.png with --chain).",
    )
    s.add_argument(
        "--checkpoint",
        required=True,
        help="a run folder (its newest checkpoint) or a ckpt_* folder (required)",
    )
    s.add_argument(
        "--step",
        type=_step,
        default=None,
        help="load the run's checkpoint of this step, or 'best' (default: the newest)",
    )
    s.add_argument(
        "--weights",
        choices=("ema", "model"),
        default="ema",
        help="EMA or raw weights (default: ema)",
    )
    s.add_argument(
        "--n", type=_positive_int, default=100, help="molecules to sample (default: 100)"
    )
    s.add_argument(
        "--n-atoms",
        type=_positive_int,
        default=None,
        help="atoms per molecule (default: drawn from the training histogram p(M))",
    )
    s.add_argument(
        "--property",
        default=None,
        help="NAME=VALUE for conditional models (default: drawn from p(c | M))",
    )
    s.add_argument(
        "--grid-steps",
        type=_positive_int,
        default=1000,
        help="denoising steps, at most 1000 (default: 1000, all of them)",
    )
    s.add_argument("--seed", type=_nonneg_int, default=0, help="sampling seed (default: 0)")
    s.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="molecules per sampling batch (default: all at once)",
    )
    s.add_argument(
        "--chain",
        action="store_true",
        help="also draw the denoising chain of molecule 0 as chain.png (default: off)",
    )
    s.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    s.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="CPU threads (default: 1, faster than several for these small tensors)",
    )
    s.add_argument("--out", default="edm3d_samples", help="output folder (default: edm3d_samples)")
    s.add_argument(
        "--overwrite",
        action="store_true",
        help="replace earlier samples in --out (default: off, refuse)",
    )
    s.add_argument("--cache-dir", default=None, help=cache_help)
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser(
        "evaluate",
        help="metrics of molecules, NLL, or the conditional protocol",
        description="Score molecules. One mode per call, each writing its own file in --out: "
        "--molecules FILE -> molecules_<FILE stem>.json; --checkpoint RUN (samples "
        "--n-samples) -> samples.json; --checkpoint RUN --nll -> nll_<split>.json; "
        "--checkpoint RUN --property P --classifier DIR -> conditional_<P>.json.",
    )
    e.add_argument(
        "--molecules",
        default=None,
        help="FILE.xyz or FILE.sdf to score (default: none; or give --checkpoint)",
    )
    e.add_argument(
        "--remove-h",
        action="store_true",
        help="the molecules use QM9 without H (default: off, with H)",
    )
    e.add_argument(
        "--novelty",
        action="store_true",
        help="with --molecules, compute novelty against QM9 train (builds the "
        "reference once, about a minute; default: off)",
    )
    e.add_argument(
        "--checkpoint",
        default=None,
        help="a run folder or ckpt_* folder to sample from or score (default: none)",
    )
    e.add_argument(
        "--step",
        type=_step,
        default=None,
        help="load the run's checkpoint of this step, or 'best' (default: the newest)",
    )
    e.add_argument(
        "--weights",
        choices=("ema", "model"),
        default="ema",
        help="with --checkpoint, EMA or raw weights (default: ema)",
    )
    e.add_argument(
        "--nll",
        action="store_true",
        help="the variational bound on -log p in nats on --split (default: off, sample and score)",
    )
    e.add_argument(
        "--split",
        default="test",
        choices=("train", "valid", "test"),
        help="QM9 split for --nll (default: test, 13,083 molecules)",
    )
    e.add_argument(
        "--max-molecules",
        type=_positive_int,
        default=None,
        help="score only the first N molecules of --split (default: all)",
    )
    e.add_argument(
        "--n-samples",
        type=_positive_int,
        default=10000,
        help="molecules to sample (default: 10000, the paper's protocol)",
    )
    e.add_argument(
        "--grid-steps",
        type=_positive_int,
        default=1000,
        help="denoising steps, at most 1000 (default: 1000)",
    )
    e.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="molecules per batch (default: 256 for --nll, 100 conditional, else all)",
    )
    e.add_argument(
        "--property", default=None, help="conditional protocol: the property (default: none)"
    )
    e.add_argument(
        "--classifier",
        default=None,
        help="conditional protocol: the property classifier's folder (default: none)",
    )
    e.add_argument("--seed", type=_nonneg_int, default=0, help="seed (default: 0)")
    e.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    e.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="CPU threads (default: 1, faster than several for these small tensors)",
    )
    e.add_argument(
        "--out",
        default="edm3d_eval",
        help="output folder; the file is named by mode, see above (default: edm3d_eval)",
    )
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier result of the same mode (default: off, refuse)",
    )
    e.add_argument("--cache-dir", default=None, help=cache_help)
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser(
        "demo",
        help=f"train a small model on CPU for {DEMO_STEPS} steps and sample (about 1.5 min)",
        description=f"Train preset 'small' on QM9 for a fixed number of steps on CPU, sample "
        f"molecules and explain every figure. Default: {DEMO_STEPS} steps and "
        f"{DEMO_GRID_STEPS} denoising steps, about 1.5 minutes on an idle 2-core machine; "
        f"--quick: {QUICK_STEPS} and {QUICK_GRID_STEPS}, about 20 s.",
    )
    d.add_argument(
        "--steps",
        type=_nonneg_int,
        default=None,
        help=f"training steps (default: {DEMO_STEPS}; {QUICK_STEPS} with --quick)",
    )
    d.add_argument(
        "--grid-steps",
        type=_positive_int,
        default=None,
        help=f"denoising steps, at most 1000 (default: {DEMO_GRID_STEPS}; "
        f"{QUICK_GRID_STEPS} with --quick)",
    )
    d.add_argument(
        "--quick",
        action="store_true",
        help=f"the CI demo: {QUICK_STEPS} training and {QUICK_GRID_STEPS} denoising "
        "steps (default: off)",
    )
    d.add_argument(
        "--out",
        default="demo_out",
        help="output folder; training goes to OUT/run (default: demo_out)",
    )
    d.add_argument(
        "--n",
        type=_positive_int,
        default=25,
        help="molecules to sample, the grid shows up to 25 (default: 25)",
    )
    d.add_argument(
        "--seed", type=_nonneg_int, default=0, help="seed of training and sampling (default: 0)"
    )
    d.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="CPU threads (default: 1, the fastest and steadiest on a shared 2-core machine)",
    )
    d.add_argument(
        "--train-subset",
        type=_positive_int,
        default=None,
        help="train on the first N training molecules only (default: all 100,000)",
    )
    d.add_argument("--cache-dir", default=None, help=cache_help)
    d.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier demo in --out, retraining from scratch (default: "
        "off, refuse; an interrupted demo resumes)",
    )
    d.set_defaults(func=cmd_demo)
    return p


def torch_flush_denormal() -> None:
    import torch

    torch.set_flush_denormal(True)


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text.replace("(pass overwrite=True to replace it)", "(pass --overwrite to replace it)")


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .train import TrainingInterrupted

    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"diff-edm3d {args.command}"
    # an application-level choice: denormal floats (SiLU of large negative pre-activations)
    # make x86 CPUs several times slower and carry no information here
    torch_flush_denormal()
    resume = "rerun the same command to resume"
    if args.command == "demo":
        resume = "rerun the same command without --overwrite to resume"
    try:
        return int(args.func(args) or 0)
    except TrainingInterrupted as exc:
        saved = f"checkpoint {exc.checkpoint}" if exc.checkpoint else "no checkpoint written"
        print(f"{prog}: interrupted at step {exc.step}; {saved}; {resume}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing new was saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CheckpointError as exc:
        if exc.func == "Trainer":  # resuming: the newest checkpoint is what counts
            msg = exc.message("Trainer: ", "step ")
        else:
            msg = exc.message("", "--step ")
        print(f"{prog}: error: {_one_line(msg)}", file=sys.stderr)
        return EXIT_ERROR
    except (ValueError, TypeError, OSError, ImportError, FloatingPointError) as exc:
        print(f"{prog}: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
