"""``diff-rolling``: generate data, train, sample (roll out), evaluate, demo.

Every option's help shows its default; bad input is one line on stderr with exit status 2 (a
missing optional extra: exit 1 naming it); outputs that exist are refused unless ``--overwrite``;
``train`` resumes from the last checkpoint in its folder ("resuming from step N") and Ctrl-C
writes a checkpoint and exits with one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

PROG = "diff-rolling"


def _positive(name: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
        return v

    parse.__name__ = name
    return parse


def _pair(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be two numbers 'U,V', got {text!r}") from None
    return a, b


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (pass --overwrite to replace it)")


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Rolling diffusion models (arXiv 2402.09470) on the diff-* platform.",
        formatter_class=fmt,
    )
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser(
        "generate-data",
        help="simulate Kolmogorov flow or sample linear-Gaussian sequences",
        formatter_class=fmt,
    )
    gs = g.add_subparsers(dest="kind", required=True)
    k = gs.add_parser(
        "kolmogorov", help="Kolmogorov flow with jax-cfd (extra [kolmogorov])", formatter_class=fmt
    )
    k.add_argument("--preset", choices=["cpu", "paper"], default="cpu", help="simulation preset")
    k.add_argument(
        "--trajectories",
        type=_positive("trajectories"),
        default=None,
        help="number of trajectories (default: the preset's)",
    )
    k.add_argument(
        "--frames",
        type=_positive("frames"),
        default=None,
        help="stored frames per trajectory (default: the preset's)",
    )
    k.add_argument(
        "--grid",
        type=_positive("grid"),
        default=None,
        help="simulation grid (default: the preset's)",
    )
    k.add_argument(
        "--viscosity", type=float, default=None, help="kinematic viscosity (default: the preset's)"
    )
    k.add_argument(
        "--solver", choices=["spectral", "finite_volume"], default="spectral", help="jax-cfd solver"
    )
    k.add_argument("--seed", type=int, default=0, help="seed of the initial conditions")
    k.add_argument(
        "--batch", type=_positive("batch"), default=32, help="trajectories simulated together"
    )
    for sp in (k,):
        sp.add_argument(
            "--out", required=True, help="output .npz (a .json and a _preview.png beside it)"
        )
        sp.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    gg = gs.add_parser(
        "gaussian", help="linear-Gaussian sequences (exact denoiser available)", formatter_class=fmt
    )
    gg.add_argument("--resolution", type=_positive("resolution"), default=32, help="frame size")
    gg.add_argument("--phi", type=float, default=0.9, help="AR(1) coefficient")
    gg.add_argument(
        "--velocity", type=_pair, default=(0.0, 0.0), help="advection 'U,V' in pixels per frame"
    )
    gg.add_argument(
        "--spectrum", choices=["white", "power"], default="white", help="stationary spectrum"
    )
    gg.add_argument("--n", type=_positive("n"), default=64, help="sequences")
    gg.add_argument("--length", type=_positive("length"), default=32, help="frames per sequence")
    gg.add_argument("--seed", type=int, default=0, help="seed")
    gg.add_argument("--out", required=True, help="output .npz")
    gg.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    t = sub.add_parser(
        "train", help="train (or resume) a rolling or standard model", formatter_class=fmt
    )
    t.add_argument("--data", required=True, help=".npz with frames (N, T, h, w, C)")
    t.add_argument("--mode", choices=["rolling", "standard"], default="rolling", help="objective")
    t.add_argument("--preset", default="tiny", help="network preset (micro, tiny, bench, small)")
    t.add_argument("--window", type=_positive("window"), default=4, help="W, frames in the window")
    t.add_argument("--context", type=int, default=2, help="K, clean context frames")
    t.add_argument("--beta", type=float, default=0.1, help="probability of the init map")
    t.add_argument("--steps", type=int, default=1000, help="optimiser steps")
    t.add_argument("--batch", type=_positive("batch"), default=16, help="clips per batch")
    t.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    t.add_argument("--warmup", type=int, default=200, help="warm-up steps")
    t.add_argument("--seed", type=int, default=0, help="seed")
    t.add_argument(
        "--checkpoint-every", type=int, default=250, help="steps per checkpoint (0: end only)"
    )
    t.add_argument(
        "--sample-every",
        type=int,
        default=250,
        help="steps between rollout strips in WORKDIR/samples/ (truth / model / |error| of a "
        "held-out trajectory; 0: at the end only; needs the viz extra)",
    )
    t.add_argument(
        "--workdir",
        "--out",
        dest="workdir",
        required=True,
        help="run folder (resumed if it holds checkpoints)",
    )

    s = sub.add_parser(
        "sample", help="roll a trained run out on test trajectories", formatter_class=fmt
    )
    s.add_argument("--workdir", required=True, help="run folder")
    s.add_argument(
        "--data", required=True, help=".npz the run was trained on (its test split is used)"
    )
    s.add_argument("--frames", type=_positive("frames"), default=16, help="frames to generate")
    s.add_argument(
        "--steps-per-shift",
        type=_positive("steps-per-shift"),
        default=4,
        help="S: network calls per generated frame",
    )
    s.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim", help="window step")
    s.add_argument(
        "--trajectories", type=_positive("trajectories"), default=16, help="test trajectories"
    )
    s.add_argument("--seed", type=int, default=0, help="noise seed")
    s.add_argument(
        "--out", required=True, help="output .npz (frames, truth, context, nfe); a .gif beside it"
    )
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    e = sub.add_parser(
        "evaluate", help="metrics of one or more rollouts, side by side", formatter_class=fmt
    )
    e.add_argument("rollouts", nargs="+", help=".npz files written by `sample`")
    e.add_argument(
        "--dt",
        type=float,
        default=None,
        help="time between frames (default: from the data, else 1)",
    )
    e.add_argument(
        "--out",
        required=True,
        help="output folder (metrics.json, metrics.md, curves.png, correlation.png, spectrum.png, "
        "spectrum.json, strip.png, rollout.gif)",
    )
    e.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    d = sub.add_parser(
        "demo",
        help="oracle rollouts on linear-Gaussian data + a small Kolmogorov comparison",
        formatter_class=fmt,
    )
    d.add_argument(
        "--quick", action="store_true", help="the CI-sized demo (a few minutes on 2 cores)"
    )
    d.add_argument("--out", default="diff-rolling-demo", help="output folder")
    d.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return p


# --------------------------------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _refuse_existing([out], args.overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.kind == "kolmogorov":
        from .data.kolmogorov import generate, preset, require_jax_cfd

        require_jax_cfd()
        over: dict[str, Any] = {"seed": args.seed, "solver": args.solver}
        for name in ("grid", "viscosity"):
            if getattr(args, name) is not None:
                over[name] = getattr(args, name)
        if args.frames is not None:
            over["n_frames"] = args.frames
        if args.trajectories is not None:
            over["n_trajectories"] = args.trajectories
        data = generate(preset(args.preset, **over), batch=args.batch)
        data.save(out)
        frames = data.frames / data.std
    else:
        import jax

        from .data.gaussian import GaussianVideo
        from .data.kolmogorov import KolmogorovData

        gv = GaussianVideo(
            resolution=args.resolution, phi=args.phi, spectrum=args.spectrum, velocity=args.velocity
        )
        x = np.asarray(gv.sample(jax.random.key(args.seed), args.n, args.length))
        test = max(1, args.n // 8)
        data = KolmogorovData(
            x, {"gaussian_video": gv.to_config(), "seed": args.seed}, 1.0, (args.n - test, 0, test)
        )
        data.save(out)
        frames = x
    try:
        from .viz import save_strip

        save_strip(out.with_name(out.stem + "_preview.png"), {"trajectory 0": frames[0, :8]})
    except ImportError:
        pass
    print(
        f"wrote {out} ({data.frames.shape[0]} trajectories × {data.frames.shape[1]} frames, "
        f"std {data.std:.3g})"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.sample_every < 0:
        raise ValueError(f"train: --sample-every must be >= 0, got {args.sample_every}")
    from diff_pixel.train import TrainingInterrupted

    from .data.kolmogorov import load_kolmogorov
    from .train import RollingTrainConfig, train

    data = load_kolmogorov(args.data)
    cfg = RollingTrainConfig(
        preset=args.preset,
        mode=args.mode,
        window=args.window,
        context=args.context,
        beta=args.beta,
        batch=args.batch,
        steps=args.steps,
        lr=args.lr,
        warmup=args.warmup,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    hooks = []
    try:
        from .hooks import RolloutStripHook

        held_out = data.test if data.split[2] else data.train
        frames = min(8, held_out.shape[1] - cfg.context)
        hooks.append(RolloutStripHook(cfg, held_out[0], every=args.sample_every, frames=frames))
    except ImportError as err:
        print(f"{PROG}: no rollout strips: {err}", file=sys.stderr)
    try:
        trainer = train(
            cfg,
            data.train,
            args.workdir,
            hooks=hooks,
            data_meta={"file": str(Path(args.data).name), "std": data.std},
        )
    except TrainingInterrupted as err:
        print(
            f"{PROG}: interrupted at step {err.step}; checkpoint in {err.checkpoint}",
            file=sys.stderr,
        )
        return 130
    try:
        from diff_pixel.train import read_metrics

        from .viz import save_curves

        rec = read_metrics(Path(args.workdir) / "metrics.jsonl")
        loss = np.array([r["loss"] for r in rec])
        save_curves(
            Path(args.workdir) / "loss.png",
            {"loss": loss},
            ylabel="½ v-MSE",
            title=f"{args.mode} training",
        )
    except (ImportError, KeyError, TypeError):
        pass
    print(f"trained {args.mode} to step {trainer.step_count} in {args.workdir}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from .data.kolmogorov import load_kolmogorov
    from .evaluate import forecast
    from .train import load_run

    out = Path(args.out)
    _refuse_existing([out], args.overwrite)
    net, cfg, _ = load_run(args.workdir)
    data = load_kolmogorov(args.data)
    test = data.test if data.split[2] else data.train
    fc = forecast(
        net,
        cfg,
        test[: args.trajectories],
        n_frames=args.frames,
        steps_per_shift=args.steps_per_shift,
        sampler=args.sampler,
        seed=args.seed,
        progress=True,
    )
    import io

    from diff_protocol.io import atomic_write

    buf = io.BytesIO()
    dt = float(data.config.get("save_every", 1.0)) if isinstance(data.config, dict) else 1.0
    np.savez(
        buf,
        frames=fc["frames"],
        truth=fc["truth"],
        context=fc["context"],
        nfe=fc["nfe"],
        mode=fc["mode"],
        steps_per_shift=args.steps_per_shift,
        dt=dt,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, buf.getvalue())
    try:
        from .viz import save_gif

        save_gif(out.with_suffix(".gif"), {"truth": fc["truth"][0], fc["mode"]: fc["frames"][0]})
    except ImportError:
        pass
    print(
        f"wrote {out}: {fc['frames'].shape[1]} frames × {fc['frames'].shape[0]} trajectories, "
        f"{fc['nfe']} network calls ({args.steps_per_shift} per frame in steady state)"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _refuse_existing([out / "metrics.json"], args.overwrite)
    for p in args.rollouts:
        if not Path(p).is_file():
            raise FileNotFoundError(f"evaluate: {p} does not exist")
    from .evaluate import evaluate_files

    evaluate_files(args.rollouts, out, args.dt)
    print((out / "metrics.md").read_text(), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "generate-data":
            return _generate(args)
        if args.command == "train":
            return _train(args)
        if args.command == "sample":
            return _sample(args)
        if args.command == "evaluate":
            return _evaluate(args)
        from .demo import run_demo

        return run_demo(quick=args.quick, out=Path(args.out), overwrite=args.overwrite)
    except ImportError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
