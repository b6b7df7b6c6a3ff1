"""The ``diff-edm3d`` console script (also ``python -m diff_edm3d``).

Subcommands: ``prepare`` (parse QM9 and print its check numbers), ``train`` (presets from
`diff_edm3d.train.PRESETS`; every flag overrides the preset), ``sample`` (molecules as .xyz/.sdf,
``grid.png``, ``metrics.json``), ``evaluate`` (a file of molecules, a checkpoint's samples or test
NLL, or the conditional protocol) and ``demo`` (trains the ``small`` preset on CPU for a few
minutes, samples and reports stability). Errors in flag values exit with status 2 and the
library's message.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["build_parser", "main"]

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
    "steps": "steps",
    "epochs": "epochs",
    "dynamics": "dynamics",
    "out": "out",
    "cache_dir": "cache_dir",
    "max_minutes": "max_minutes",
    "dtype": "dtype",
}


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=1, sort_keys=True, default=str))


def _write_json(path: Path, obj: Any, overwrite: bool) -> Path:
    from .data.io import atomic_write

    text = json.dumps(obj, indent=1, sort_keys=True, default=float)
    return atomic_write(path, lambda f: f.write(text.encode()), overwrite=overwrite,
                        caller="diff-edm3d")  # fmt: skip


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


def cmd_train(args: argparse.Namespace) -> int:
    from .train import Trainer

    cfg = _train_config(args)
    trainer = Trainer(cfg)
    result = trainer.fit()
    if trainer.dist.is_main:
        _print_json({k: v for k, v in result.items() if not isinstance(v, list)})
        print(f"checkpoints and curves in {Path(cfg.out).resolve()}")
    return 0


# ----------------------------------------------------------------------------------------------
# sample


def _grid(T: int, steps: int) -> np.ndarray:
    if not 1 <= steps <= T:
        raise ValueError(f"diff-edm3d: --grid-steps must lie in [1, {T}], got {steps}")
    return np.linspace(T, 0, steps + 1).round().astype(int)


def _parse_property(text: str) -> tuple[str, float]:
    from .data.properties import check_property

    if "=" not in text:
        raise ValueError(
            f"diff-edm3d: --property must be NAME=VALUE (e.g. alpha=80.0), got {text!r}"
        )
    name, value = text.split("=", 1)
    check_property(name)
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"diff-edm3d: --property value must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"diff-edm3d: --property value must be finite, got {value!r}")
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


def _summary_table(metrics: dict[str, Any]) -> str:
    st = metrics["stability"]
    lines = ["metric                 value"]

    def get(d: dict[str, Any], *keys: str) -> Any:
        for k in keys:
            if k in d:
                return d[k]
        return None

    rows = [
        ("molecules", get(st, "n_molecules")),
        ("atom stability", get(st, "atom_stability")),
        ("molecule stability", get(st, "molecule_stability")),
    ]
    rd = metrics.get("rdkit")
    if rd:
        rows += [(k, rd.get(k)) for k in ("validity", "uniqueness", "novelty") if k in rd]
    for name, v in rows:
        lines.append(f"{name:<22s} {v:.4f}" if isinstance(v, float) else f"{name:<22s} {v}")
    return "\n".join(lines)


def cmd_sample(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint

    edm = load_checkpoint(args.checkpoint, weights=args.weights, device=args.device)
    out = Path(args.out)
    if not args.overwrite and (out / "samples.xyz").exists():
        raise FileExistsError(
            f"diff-edm3d sample: --out must not already hold samples (pass --overwrite), got {out}"
        )
    grid = _grid(edm.T, args.grid_steps)
    n = args.n
    seed = args.seed
    if n < 1:
        raise ValueError(f"diff-edm3d sample: --n must be >= 1, got {n}")
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
            raise ValueError(
                f"diff-edm3d sample: --property must name the model's property "
                f"{edm.property_names}, got {name!r}"
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
    print(_summary_table(res["metrics"]))
    print(f"wrote {', '.join(res['written'])} to {out.resolve()}")
    return 0


# ----------------------------------------------------------------------------------------------
# evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .elements import QM9_NO_H, QM9_WITH_H

    out = Path(args.out)
    result: dict[str, Any]
    if args.molecules:
        elements = QM9_NO_H if args.remove_h else QM9_WITH_H
        train_smiles = None
        if args.novelty:
            from .data.qm9 import qm9_train_smiles

            train_smiles = qm9_train_smiles(remove_h=args.remove_h, cache_dir=args.cache_dir)
        result = molecule_file_metrics(Path(args.molecules), elements, train_smiles)
        print(_summary_table(result))
    elif args.checkpoint:
        from .checkpoint import load_checkpoint

        edm = load_checkpoint(args.checkpoint, device=args.device)
        if args.property or args.classifier:
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
            print(_summary_table(result))
    else:
        raise ValueError(
            "diff-edm3d evaluate: --molecules or --checkpoint must be given, got neither"
        )
    _write_json(out / "eval.json", result, overwrite=args.overwrite)
    print(f"wrote {out / 'eval.json'}")
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
    values = []
    from tqdm.auto import tqdm

    for start in tqdm(range(0, len(data), args.batch_size or 256), desc="NLL batches"):
        part = data.subset(np.arange(start, min(len(data), start + (args.batch_size or 256))))
        ctx = None
        if names:
            from .conditional import build_context

            ctx = build_context(part, names, edm.property_normaliser)
        batch = collate(part, include_charges=edm.config.include_charges, context=ctx)
        with torch.no_grad():
            values.append(edm.nll(batch, gen).nll.double())
    v = torch.cat(values)
    res = {
        "split": args.split,
        "n": len(v),
        "nll": float(v.mean()),
        "nll_sem": float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0,
    }
    _print_json(res)
    return res


def _evaluate_conditional(edm: Any, args: argparse.Namespace) -> dict[str, Any]:
    from .conditional import evaluate_conditional, load_classifier

    if not (args.property and args.classifier):
        raise ValueError("diff-edm3d evaluate: --property and --classifier must be given together")
    clf, prop, norm = load_classifier(args.classifier)
    if prop != args.property:
        raise ValueError(
            f"diff-edm3d evaluate: --property must match the classifier's {prop!r}, got "
            f"{args.property!r}"
        )
    res = evaluate_conditional(edm, clf, prop, norm, n=args.n_samples,
                               batch_size=args.batch_size or 100,
                               seed=args.seed, grid=_grid(edm.T, args.grid_steps))  # fmt: skip
    _print_json(res)
    return res


# ----------------------------------------------------------------------------------------------
# demo


def cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_checkpoint
    from .train import Trainer, preset

    out = Path(args.out)
    if args.quick:
        args.minutes = min(args.minutes, 1.0)
    if not args.overwrite and (out / "samples.xyz").exists():
        raise FileExistsError(
            f"diff-edm3d demo: --out must not already hold a demo (pass --overwrite), got {out}"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"[1/4] preparing QM9 (cached after the first run) and training 'small' for "
          f"{args.minutes} min on CPU")  # fmt: skip
    cfg = preset(
        "small",
        out=str(out / "run"),
        steps=args.max_steps or 10**9,
        max_minutes=args.minutes,
        eval_every=0,
        checkpoint_every=args.max_steps or 10**9,
        seed=args.seed,
        cache_dir=args.cache_dir,
        threads=args.threads,
        train_subset=args.train_subset,
    )
    trainer = Trainer(cfg)
    result = trainer.fit()
    print(f"trained {result['step']} steps; last loss {result.get('loss', float('nan')):.4f}")
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
    print(f"[2/4] sampling {args.n} molecules with all {trainer.model.T} steps ({note})")
    edm = load_checkpoint(cfg.out, weights=weights)
    t0 = time.perf_counter()
    samples = edm.generate(args.n, seed=args.seed, progress=True)
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

        # the demo folder was checked above: its own curves.png is refreshed
        plot_training_curves(Path(cfg.out) / "metrics.jsonl", out / "curves.png", overwrite=True)
        res["written"].append("curves.png")
    except ImportError:
        pass
    print("[4/4] results")
    print(_summary_table(res["metrics"]))
    print(f"pictures: {(out / 'grid.png').resolve()}  {(out / 'curves.png').resolve()}")
    print(f"molecules: {(out / 'samples.xyz').resolve()}  (.sdf beside it)")
    return 0


# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from .train import PRESETS

    p = argparse.ArgumentParser(
        prog="diff-edm3d",
        description="E(3)-equivariant diffusion for molecules (EDM, arXiv:2203.17003).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    q = sub.add_parser("prepare", help="parse QM9 from qm9pack into the cache; print check numbers")
    q.add_argument("--cache-dir", default=None)
    q.add_argument("--remove-h", action="store_true")
    q.add_argument("--train-smiles", action="store_true", help="also build the novelty reference")
    q.set_defaults(func=cmd_prepare)

    t = sub.add_parser("train", help="train an EDM (resumes from --out automatically)")
    t.add_argument("--preset", default="small",
                   help=f"one of {sorted(PRESETS)} or qm9_cond_<prop> (default small)")  # fmt: skip
    t.add_argument("--dataset", nargs="+", default=None,
                   help="qm9 | qm9_second_half | qm9_first_half | FILE.xyz/.sdf ...")  # fmt: skip
    t.add_argument("--condition", default=None, help="property to condition on (alpha, gap, ...)")
    t.add_argument("--dynamics", choices=("egnn", "e3nn"), default=None)
    t.add_argument("--remove-h", action="store_true")
    t.add_argument("--out", default=None)
    g = t.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, default=None)
    g.add_argument("--epochs", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--nf", type=int, default=None)
    t.add_argument("--layers", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--device", default=None)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--eval-every", type=int, default=None)
    t.add_argument("--eval-samples", type=int, default=None)
    t.add_argument("--max-minutes", type=float, default=None)
    t.add_argument("--dtype", choices=("float32", "float64"), default=None)
    t.add_argument("--cache-dir", default=None)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="sample molecules from a checkpoint")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--n-atoms", type=int, default=None)
    s.add_argument("--property", default=None, help="NAME=VALUE for conditional models")
    s.add_argument("--grid-steps", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--chain", action="store_true")
    s.add_argument("--weights", choices=("ema", "model"), default="ema")
    s.add_argument("--device", default="cpu")
    s.add_argument("--out", default="edm3d_samples")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--cache-dir", default=None)
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("evaluate", help="metrics of molecules, NLL, or the conditional protocol")
    e.add_argument("--molecules", default=None, help="FILE.xyz or FILE.sdf")
    e.add_argument("--remove-h", action="store_true", help="molecules use QM9 without H")
    e.add_argument("--novelty", action="store_true", help="compute novelty against QM9 train")
    e.add_argument("--checkpoint", default=None)
    e.add_argument("--nll", action="store_true")
    e.add_argument("--split", default="test", choices=("train", "valid", "test"))
    e.add_argument("--max-molecules", type=int, default=None)
    e.add_argument("--n-samples", type=int, default=10000)
    e.add_argument("--grid-steps", type=int, default=1000)
    e.add_argument("--batch-size", type=int, default=None)
    e.add_argument("--property", default=None)
    e.add_argument("--classifier", default=None)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="cpu")
    e.add_argument("--out", default="edm3d_eval")
    e.add_argument("--overwrite", action="store_true")
    e.add_argument("--cache-dir", default=None)
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="train a small model on CPU for a few minutes and sample")
    d.add_argument("--minutes", type=float, default=3.0)
    d.add_argument("--quick", action="store_true", help="a 1-minute run (CI)")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--n", type=int, default=25)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=None)
    d.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    d.add_argument("--train-subset", type=int, default=None, help=argparse.SUPPRESS)
    d.add_argument("--cache-dir", default=None)
    d.add_argument("--overwrite", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def torch_flush_denormal() -> None:
    import torch

    torch.set_flush_denormal(True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # an application-level choice: denormal floats (SiLU of large negative pre-activations)
    # make x86 CPUs several times slower and carry no information here
    torch_flush_denormal()
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError) as exc:
        print(f"diff-edm3d {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
