"""The ``diff-consistency`` command line.

Subcommands: ``distill`` (CD from a teacher run), ``train`` (CT, initialised from a run),
``tract``, ``toy`` (the ring8 / mix64 benchmark), ``sample`` (a student run), ``sample-teacher``
(a teacher with aDDIM or DDIM), ``estimate-variance``, ``evaluate`` (digits: class accuracy and
DFD) and ``demo``. Bad arguments are one line ``diff-consistency: error: <argument>: <message>``
with exit code 2; existing outputs are refused unless ``--overwrite``; Ctrl-C during training
writes a checkpoint and exits 130 with one line; rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

from diff_consistency.config import ConsistencyConfig, check_tract_schedule

PROG = "diff-consistency"


class CLIError(Exception):
    """A user error: ``diff-consistency: error: <argument>: <message>``, exit code 2."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")


# -- argument types ------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not v > 0 or math.isnan(v):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def _schedule(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers, got {text!r}"
        ) from None
    try:
        return check_tract_schedule(values, "tract")
    except (TypeError, ValueError) as err:  # "tract: schedule must ..." -> "schedule must ..."
        raise argparse.ArgumentTypeError(str(err).split(": ", 1)[-1]) from None


# -- the parser ------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``<prog>: error: <message> (see <prog> -h)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _training_options(p: argparse.ArgumentParser, *, with_s: bool = True) -> None:
    d = ConsistencyConfig.preset("digits")
    if with_s:
        p.add_argument("--S", type=_positive_int, default=8, help="student steps S (default: 8)")
    p.add_argument(
        "--preset",
        default="digits",
        help="ConsistencyConfig preset the options override (default: digits)",
    )
    p.add_argument("--config", default=None, help="a ConsistencyConfig JSON file (default: none)")
    p.add_argument(
        "--data",
        default="digits",
        help="digits, PATH.npz (arrays x (N,H,W,C) in [-1,1] and optional labels) or "
        "folder:PATH (default: digits)",
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help=f"training steps (default: preset, {d.num_steps})",
    )
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=None,
        help=f"batch size (default: preset, {d.batch_size})",
    )
    p.add_argument(
        "--lr", type=_positive_float, default=None, help=f"learning rate (default: preset, {d.lr})"
    )
    p.add_argument(
        "--anneal",
        type=_positive_int,
        nargs=3,
        metavar=("N_START", "N_END", "STEPS"),
        default=None,
        help=f"teacher steps N_START -> N_END over STEPS (default: preset, {d.n_start} {d.n_end} "
        "over the first half)",
    )
    p.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
    p.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=500,
        help="steps per checkpoint (default: 500)",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="refuse an --out that holds checkpoints (default: resume)",
    )
    p.add_argument("--out", required=True, help="run directory (required)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Multistep consistency models (arXiv 2403.06807): distillation, training, "
        "the multistep sampler and aDDIM.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )

    p = sub.add_parser("distill", help="consistency distillation (CD) of a teacher run")
    p.add_argument("--teacher", required=True, help="teacher run directory (required)")
    p.add_argument(
        "--teacher-sampler",
        choices=("addim", "ddim"),
        default=None,
        help="teacher step inside the loss (default: preset, addim)",
    )
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="classifier-free guidance of the teacher, 1 = none (default: preset, 1.0)",
    )
    _training_options(p)

    p = sub.add_parser("train", help="consistency training (CT) initialised from a run")
    p.add_argument("--init", required=True, help="run directory the student starts from (required)")
    p.add_argument("--teacher", default=None, help=argparse.SUPPRESS)
    _training_options(p)

    p = sub.add_parser("tract", help="TRACT: progressive phases of consistency distillation")
    p.add_argument("--teacher", required=True, help="teacher run directory (required)")
    p.add_argument(
        "--schedule",
        type=_schedule,
        default=(1024, 32, 1),
        help="steps per phase (default: 1024,32,1)",
    )
    _training_options(p, with_s=False)
    p.set_defaults(preset="tract")

    p = sub.add_parser("toy", help="the ring8 / mix64 benchmark with exact teachers")
    p.add_argument(
        "--mixture", choices=("ring8", "mix64"), default="ring8", help="(default: ring8)"
    )
    p.add_argument("--mode", choices=("cd", "ct"), default="cd", help="(default: cd)")
    p.add_argument(
        "--S",
        type=_positive_int,
        nargs="+",
        default=[1, 2, 4, 8],
        help="student steps (default: 1 2 4 8)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="training steps per student (default: 6000 ring8 / 4000 mix64)",
    )
    p.add_argument("--out", required=True, help="output folder (required)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace results.json (default: refuse)"
    )

    p = sub.add_parser("sample", help="sample a student run with the multistep sampler")
    p.add_argument("--student", required=True, help="student run directory (required)")
    p.add_argument("--S", type=_positive_int, default=None, help="steps (default: the run's S)")
    p.add_argument("--num", type=_positive_int, default=60, help="samples (default: 60)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--raw", action="store_true", help="raw instead of EMA weights (default: EMA)")
    p.add_argument(
        "--npz", default=None, help="also write the samples to this .npz (default: none)"
    )
    p.add_argument("--out", required=True, help="PNG grid to write (required)")
    p.add_argument("--overwrite", action="store_true", help="replace --out (default: refuse)")

    p = sub.add_parser("sample-teacher", help="sample a teacher run with aDDIM or DDIM")
    p.add_argument("--teacher", required=True, help="teacher run directory (required)")
    p.add_argument("--sampler", choices=("addim", "ddim"), default="addim", help="(default: addim)")
    p.add_argument("--steps", type=_positive_int, default=8, help="sampler steps (default: 8)")
    p.add_argument(
        "--variance",
        default="analytic",
        help="aDDIM variance: analytic (0.1/(2+SNR)) or a table .npz from estimate-variance "
        "(default: analytic)",
    )
    p.add_argument(
        "--max-snr",
        type=_positive_float,
        default=math.inf,
        help="aDDIM cut-off SNR (default: inf = off)",
    )
    p.add_argument("--num", type=_positive_int, default=60, help="samples (default: 60)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--out", required=True, help="PNG grid to write (required)")
    p.add_argument("--overwrite", action="store_true", help="replace --out (default: refuse)")

    p = sub.add_parser("estimate-variance", help="measure a teacher's x-error per t (aDDIM table)")
    p.add_argument("--teacher", required=True, help="teacher run directory (required)")
    p.add_argument("--data", default="digits", help="digits or PATH.npz (default: digits)")
    p.add_argument("--num-t", type=_positive_int, default=64, help="times (default: 64)")
    p.add_argument(
        "--num-batches", type=_positive_int, default=4, help="batches per time (default: 4)"
    )
    p.add_argument(
        "--eta", type=_positive_float, default=0.75, help="fraction kept (default: 0.75)"
    )
    p.add_argument("--out", required=True, help="table .npz to write (required)")
    p.add_argument("--overwrite", action="store_true", help="replace --out (default: refuse)")

    p = sub.add_parser(
        "evaluate", help="digits: class accuracy and DFD of a student or teacher run"
    )
    p.add_argument("--run", required=True, help="run directory (required)")
    p.add_argument(
        "--S",
        type=_positive_int,
        default=None,
        help="steps (default: the run's S; 32 for a teacher)",
    )
    p.add_argument(
        "--per-class", type=_positive_int, default=36, help="samples per class (default: 36)"
    )

    p = sub.add_parser("demo", help="distil a digits teacher into S = 1, 2, 4, 8 students (CPU)")
    p.add_argument("--out", default="demo", help="output folder (default: demo)")
    p.add_argument(
        "--quick", action="store_true", help="the few-minute pipeline check (default: full)"
    )
    p.add_argument(
        "--teacher", default=None, help="reuse this teacher run (default: train one in OUT/teacher)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier demo (default: refuse)"
    )
    return parser


# -- helpers ---------------------------------------------------------------------------------------
def _refuse_existing(path: Path, overwrite: bool, arg: str = "--out") -> None:
    if path.exists() and not overwrite:
        raise CLIError(arg, f"{str(path)!r} exists; pass --overwrite to replace it")


def _load(path: str, arg: str) -> Any:
    from diff_consistency.runs import load_run

    try:
        return load_run(path)
    except ValueError as err:
        raise CLIError(arg, str(err)) from None


def _source(spec: str) -> Any:
    import numpy as np

    from diff_pixel.data import digits, image_folder
    from diff_pixel.data.loader import ArraySource

    if spec == "digits":
        return digits(16)
    if spec.startswith("folder:"):
        return image_folder(spec[len("folder:") :], 16)
    if spec.endswith(".npz"):
        try:
            with np.load(spec, allow_pickle=False) as f:
                x = np.asarray(f["x"], np.float32)
                labels = (
                    np.asarray(f["labels"], np.int32)
                    if "labels" in f
                    else np.zeros(len(x), np.int32)
                )
        except (OSError, KeyError, ValueError) as err:
            raise CLIError("--data", f"{spec} is not an .npz with an array 'x' ({err})") from None
        try:
            return ArraySource(x, labels, name=spec)
        except (TypeError, ValueError) as err:  # e.g. images outside [-1, 1]
            raise CLIError("--data", f"{spec}: {err}") from None
    raise CLIError("--data", f"must be digits, PATH.npz or folder:PATH, got {spec!r}")


def _config(args: argparse.Namespace, mode: str, s: int) -> ConsistencyConfig:
    try:
        if args.config:
            cfg = ConsistencyConfig.from_json(Path(args.config).read_text())
        else:
            cfg = ConsistencyConfig.preset(args.preset)
        changes: dict[str, Any] = {"mode": mode, "student_steps": s, "seed": args.seed}
        if args.steps is not None:
            changes["num_steps"] = args.steps
            changes["anneal_steps"] = max(1, args.steps // 2)
        if args.batch is not None:
            changes["batch_size"] = args.batch
        if args.lr is not None:
            changes["lr"] = args.lr
        if args.anneal is not None:
            changes["n_start"], changes["n_end"], changes["anneal_steps"] = args.anneal
        if getattr(args, "teacher_sampler", None):
            changes["teacher_step"] = args.teacher_sampler
        if getattr(args, "guidance_scale", None) is not None:
            changes["guidance_scale"] = args.guidance_scale
        return cfg.replace(**changes)
    except OSError as err:
        raise CLIError("--config", str(err)) from None
    except (TypeError, ValueError) as err:
        text = str(err)
        for name, arg in (
            ("n_start", "--anneal"),
            ("n_end", "--anneal"),
            ("guidance_scale", "--guidance-scale"),
            ("lr", "--lr"),
            ("batch_size", "--batch"),
            ("name", "--preset"),
        ):
            if name in text:
                raise CLIError(arg, text) from None
        raise CLIError("--config", text) from None


def _train(args: argparse.Namespace, mode: str) -> int:
    from diff_consistency.driver import train_consistency
    from diff_pixel.data import Loader
    from diff_pixel.images import LossCurveHook

    run = _load(
        args.teacher if mode == "cd" else args.init, "--teacher" if mode == "cd" else "--init"
    )
    if run.is_student:
        raise CLIError(
            "--teacher" if mode == "cd" else "--init",
            f"{run.path} is a student run, not a diffusion model",
        )
    cfg = _config(args, mode, args.S)
    print(cfg.to_json(), flush=True)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not (out / "checkpoints").is_dir():
        raise CLIError("--out", f"{str(out)!r} is not empty and holds no run; choose another --out")
    source = _source(args.data)
    try:
        trainer = train_consistency(
            cfg,
            data=Loader(source, cfg.batch_size, seed=cfg.seed),
            out_dir=str(out),
            init=run.ema,
            schedule=run.schedule,
            teacher=run.ema if mode == "cd" else None,
            hooks=[LossCurveHook()],
            resume=not args.no_resume,
            checkpoint_every=args.checkpoint_every,
            conditional=run.num_classes > 0,
        )
    except ValueError as err:
        raise CLIError("--out" if "checkpoint" in str(err) else "--teacher", str(err)) from None
    print(f"student (S = {cfg.student_steps}) in {out}; step {trainer.step_count}", file=sys.stderr)
    return 0


def _images(model: Any, schedule: Any, s: int, sampler: Any, num: int, seed: int, num_classes: int):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from diff_pixel.models import Cond
    from diff_pixel.sampling import sample

    backbone = model
    while hasattr(backbone, "net"):
        backbone = backbone.net
    cfg = backbone.config
    labels = np.sort(np.arange(num) % max(num_classes, 1)).astype(np.int32)
    cond = Cond(label=jnp.asarray(labels)) if num_classes else None
    x = sample(
        model,
        shape=(num, cfg.height, cfg.width, cfg.in_channels),
        key=jax.random.key(seed),
        schedule=schedule,
        steps=s,
        sampler=sampler,
        cond=cond,
    )
    return np.asarray(x), (labels if num_classes else None)


def _save_images(path: Path, images: Any, labels: Any, npz: str | None) -> None:
    import io

    import numpy as np

    from diff_pixel.images import save_grid
    from diff_protocol.io import atomic_write

    if labels is not None:
        save_grid(str(path), images, labels=labels, scale=3)
    else:
        save_grid(str(path), images, scale=3)
    if npz:
        buf = io.BytesIO()
        np.savez(buf, x=images, **({"labels": labels} if labels is not None else {}))
        atomic_write(Path(npz), buf.getvalue())


# -- commands --------------------------------------------------------------------------------
def cmd_sample(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _refuse_existing(out, args.overwrite)
    run = _load(args.student, "--student")
    if not run.is_student:
        raise CLIError("--student", f"{run.path} is a diffusion run; use sample-teacher")
    s = args.S or run.student_steps
    model = run.model if args.raw else run.ema
    images, labels = _images(
        model, run.schedule, s, "multistep_consistency", args.num, args.seed, run.num_classes
    )
    _save_images(out, images, labels, args.npz)
    print(f"wrote {out} ({args.num} samples, {s} steps)", file=sys.stderr)
    return 0


def cmd_sample_teacher(args: argparse.Namespace) -> int:
    from diff_consistency.addim import AnalyticVariance, EmpiricalVariance, addim

    out = Path(args.out)
    _refuse_existing(out, args.overwrite)
    run = _load(args.teacher, "--teacher")
    if args.sampler == "ddim":
        sampler = "ddim"
    else:
        if args.variance == "analytic":
            variance = AnalyticVariance()
        else:
            try:
                variance = EmpiricalVariance.load(args.variance)
            except ValueError as err:
                raise CLIError("--variance", str(err)) from None
        sampler = addim(variance, max_snr=args.max_snr)
    images, labels = _images(
        run.ema, run.schedule, args.steps, sampler, args.num, args.seed, run.num_classes
    )
    _save_images(out, images, labels, None)
    print(f"wrote {out} ({args.num} samples, {args.sampler} {args.steps} steps)", file=sys.stderr)
    return 0


def cmd_estimate_variance(args: argparse.Namespace) -> int:
    import jax.numpy as jnp
    import numpy as np

    from diff_consistency.addim import estimate_variance_table
    from diff_pixel.models import Cond
    from diff_pixel.models.denoiser import as_denoiser

    out = Path(args.out)
    _refuse_existing(out, args.overwrite)
    run = _load(args.teacher, "--teacher")
    source = _source(args.data)
    x, labels = source.take(np.arange(source.num_examples), None)

    def cond(rows):
        return Cond(label=jnp.asarray(labels[rows])) if run.num_classes else None

    table = estimate_variance_table(
        as_denoiser(run.ema),
        x,
        run.schedule,
        cond=cond,
        num_t=args.num_t,
        num_batches=args.num_batches,
        eta=args.eta,
    )
    table.save(str(out))
    print(
        f"wrote {out}: x_var from {table.values[0]:.3g} (t = {table.t[0]:.3f}) to "
        f"{table.values[-1]:.3g} (t = {table.t[-1]:.3f})",
        file=sys.stderr,
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from diff_pixel.metrics import evaluate_digits_model, train_digits_classifier
    from diff_protocol.io import atomic_write, dumps_json

    run = _load(args.run, "--run")
    if run.num_classes != 10:
        raise CLIError("--run", f"{run.path} is not a class-conditional digits run")
    s = args.S or (run.student_steps or 32)
    sampler = "multistep_consistency" if run.is_student else "ddpm"
    metrics, _, _ = evaluate_digits_model(
        run.ema,
        run.schedule,
        train_digits_classifier(seed=0),
        steps=s,
        sampler=sampler,
        per_class=args.per_class,
    )
    metrics = {"steps": s, "sampler": sampler, **metrics}
    atomic_write(run.path / "evaluate.json", dumps_json(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    print(
        f"DFD {metrics['digits_feature_distance']:.2f} (lower is better; floor "
        f"{metrics['dfd_floor']:.2f}, noise {metrics['dfd_noise']:.1f}); class accuracy "
        f"{metrics['class_accuracy']:.3f} (higher is better)",
        file=sys.stderr,
    )
    return 0


def cmd_tract(args: argparse.Namespace) -> int:
    from diff_consistency.driver import tract
    from diff_pixel.data import Loader

    run = _load(args.teacher, "--teacher")
    cfg = _config(args, "cd", args.schedule[1]).replace(tract_schedule=args.schedule)
    print(cfg.to_json(), flush=True)
    source = _source(args.data)
    tract(
        cfg,
        data=lambda: Loader(source, cfg.batch_size, seed=cfg.seed),
        out_dir=args.out,
        teacher=run.ema,
        schedule=run.schedule,
        conditional=run.num_classes > 0,
    )
    return 0


def cmd_toy(args: argparse.Namespace) -> int:
    from diff_consistency.toy import run_toy_command

    out = Path(args.out)
    _refuse_existing(out / "results.json", args.overwrite)
    run_toy_command(args.mixture, args.mode, tuple(args.S), tuple(args.seeds), out, args.steps)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from diff_consistency.demo import run_demo

    try:
        run_demo(args.out, quick=args.quick, teacher=args.teacher, overwrite=args.overwrite)
    except FileExistsError as err:
        raise CLIError("--out", str(err)) from None
    except ValueError as err:
        raise CLIError("--teacher", str(err)) from None
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from diff_pixel.train import DamagedCheckpointError, TrainingInterrupted

    commands = {
        "distill": lambda a: _train(a, "cd"),
        "train": lambda a: _train(a, "ct"),
        "tract": cmd_tract,
        "toy": cmd_toy,
        "sample": cmd_sample,
        "sample-teacher": cmd_sample_teacher,
        "estimate-variance": cmd_estimate_variance,
        "evaluate": cmd_evaluate,
        "demo": cmd_demo,
    }
    try:
        if args.command == "train" and args.teacher is not None:
            raise CLIError(
                "--teacher",
                "consistency training (CT) uses no teacher; use distill for CD, --init for the "
                "start",
            )
        return commands[args.command](args)
    except CLIError as err:
        parser.exit(2, f"{PROG}: error: {err}\n")
    except DamagedCheckpointError as err:
        parser.exit(2, f"{PROG}: error: {err}\n")
    except TrainingInterrupted as err:
        print(
            f"{PROG}: interrupted at step {err.step}; checkpoint in {err.checkpoint}",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
