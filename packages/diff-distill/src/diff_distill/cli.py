"""The ``diff-distill`` command line.

Subcommands: ``train`` (moment-matching distillation of a diff-pixel teacher run; ``distill`` is
an alias), ``toy`` (the ring8 / mix64 benchmark with exact teachers), ``sample`` (a student run
with the k-step student sampler), ``evaluate`` (digits: class accuracy and DFD) and ``demo``.
Every training command prints its resolved configuration as JSON first. Bad arguments are one
line ``diff-distill: error: <argument>: <message>`` with exit code 2; existing outputs are refused
unless ``--overwrite``; Ctrl-C during training writes a checkpoint and exits 130 with one line;
rerunning the same command resumes ("resuming from step N").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

from diff_distill.config import (
    FIELD_STATUS,
    NORMALIZATIONS,
    PRECONDITIONERS,
    VARIANTS,
    WEIGHTINGS,
    MomentMatchingConfig,
)

PROG = "diff-distill"


class CLIError(Exception):
    """A user error: ``diff-distill: error: <argument>: <message>``, exit code 2."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def _k(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"k must be a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"k must be a positive integer, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not v > 0 or math.isinf(v):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def _unit(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return v


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``<prog>: error: <message> (see <prog> -h)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _status(field: str) -> str:
    s = FIELD_STATUS.get(field, "")
    return f"; {s}" if "not confirmed" in s else ""


def build_parser() -> argparse.ArgumentParser:
    d = MomentMatchingConfig.preset("digits")
    parser = Parser(
        prog=PROG,
        description="Moment matching distillation of diffusion models (arXiv 2406.04103): the "
        "alternating and parameter-space variants and the k-step stochastic student sampler.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )

    for name in ("train", "distill"):
        p = sub.add_parser(
            name,
            help="distil a diff-pixel teacher run into a k-step student"
            + (" (alias of train)" if name == "distill" else ""),
        )
        p.add_argument("--teacher", required=True, help="teacher run directory (required)")
        p.add_argument("--out", required=True, help="student run directory (required)")
        p.add_argument(
            "--variant",
            choices=VARIANTS,
            default=None,
            help=f"alternating (MM Alg. 2) or param_space (MM Alg. 3) (default: {d.variant})",
        )
        p.add_argument("--k", type=_k, default=8, help="student sampling steps (default: 8)")
        p.add_argument(
            "--preset", default="digits", help="MomentMatchingConfig preset (default: digits)"
        )
        p.add_argument(
            "--config", default=None, help="a MomentMatchingConfig JSON file (default: none)"
        )
        p.add_argument(
            "--data",
            default="digits",
            help="digits, PATH.npz (array x (N,H,W,C) in [-1,1], optional labels) or folder:PATH "
            "(default: digits)",
        )
        p.add_argument(
            "--steps",
            type=_positive_int,
            default=None,
            help=f"iterations (default: preset, {d.num_steps})",
        )
        p.add_argument(
            "--batch",
            type=_positive_int,
            default=None,
            help=f"batch size (default: preset, {d.batch_size})",
        )
        p.add_argument(
            "--lr-student",
            type=_positive_float,
            default=None,
            help=f"student learning rate (default: preset, {d.lr_student}{_status('lr_student')})",
        )
        p.add_argument(
            "--lr-aux",
            type=_positive_float,
            default=None,
            help=f"auxiliary learning rate (default: preset, {d.lr_aux}{_status('lr_aux')})",
        )
        p.add_argument(
            "--guidance-scale",
            type=float,
            default=None,
            help=f"teacher guidance, 1 = none (default: preset, {d.guidance_scale}"
            f"{_status('guidance_scale')})",
        )
        p.add_argument(
            "--weighting",
            choices=WEIGHTINGS,
            default=None,
            help=f"moment weight w(lambda) (default: preset, {d.weighting}{_status('weighting')})",
        )
        p.add_argument(
            "--normalize",
            choices=NORMALIZATIONS,
            default=None,
            help=f"student direction normalisation (default: preset, {d.normalize}"
            f"{_status('normalize')})",
        )
        p.add_argument(
            "--precond",
            choices=PRECONDITIONERS,
            default=None,
            help=f"parameter-space preconditioner (default: preset, {d.precond}"
            f"{_status('precond')})",
        )
        p.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
        p.add_argument(
            "--checkpoint-every",
            type=_positive_int,
            default=500,
            help="iterations per checkpoint (default: 500)",
        )
        p.add_argument(
            "--no-resume",
            action="store_true",
            help="refuse an --out that holds checkpoints (default: resume)",
        )

    p = sub.add_parser("toy", help="the ring8 / mix64 benchmark with exact teachers")
    p.add_argument(
        "--mixture", choices=("ring8", "mix64"), default="ring8", help="(default: ring8)"
    )
    p.add_argument(
        "--variant", choices=VARIANTS, default="alternating", help="(default: alternating)"
    )
    p.add_argument("--k", type=_k, default=8, help="student steps (default: 8)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument(
        "--teacher",
        choices=("exact", "network", "mixture"),
        default=None,
        help="alternating: exact | network; param_space: network | mixture (default: the first)",
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="iterations per student (default: 6000 ring8 / 3000 mix64)",
    )
    p.add_argument("--out", required=True, help="output folder (required)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace results.json (default: refuse)"
    )

    p = sub.add_parser("sample", help="sample a student run with the k-step student sampler")
    p.add_argument("--student", required=True, help="student run directory (required)")
    p.add_argument("--out", required=True, help="PNG grid to write (required)")
    p.add_argument("--k", type=_k, default=None, help="steps (default: the run's k)")
    p.add_argument("--num", type=_positive_int, default=64, help="samples (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--eta", type=_unit, default=1.0, help="DDIM-eta of the sampler (default: 1.0)")
    p.add_argument(
        "--label",
        type=int,
        default=None,
        help="one class for every sample (default: all classes in turn)",
    )
    p.add_argument("--raw", action="store_true", help="raw instead of EMA weights (default: EMA)")
    p.add_argument(
        "--npz", default=None, help="also write the samples to this .npz (default: none)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out (default: refuse)")

    p = sub.add_parser(
        "evaluate", help="digits: class accuracy and DFD of a student or teacher run"
    )
    p.add_argument("--run", required=True, help="run directory (required)")
    p.add_argument(
        "--k", type=_k, default=None, help="steps (default: the run's k; 256 for a teacher)"
    )
    p.add_argument(
        "--per-class", type=_positive_int, default=36, help="samples per class (default: 36)"
    )

    p = sub.add_parser("demo", help="distil a digits teacher into a k-step student on CPU")
    p.add_argument("--out", default="demo", help="output folder (default: demo)")
    p.add_argument(
        "--quick", action="store_true", help="the few-minute pipeline check (default: full)"
    )
    p.add_argument(
        "--teacher", default=None, help="reuse this teacher run (default: train one in OUT/teacher)"
    )
    p.add_argument("--k", type=_k, nargs="+", default=[8], help="student steps (default: 8)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier demo (default: refuse)"
    )
    return parser


def _refuse_existing(path: Path, overwrite: bool, arg: str = "--out") -> None:
    if path.exists() and not overwrite:
        raise CLIError(arg, f"{str(path)!r} exists; pass --overwrite to replace it")


def _load(path: str, arg: str) -> Any:
    from diff_distill.teacher import load_teacher

    try:
        return load_teacher(path)
    except ValueError as err:
        raise CLIError(arg, str(err).removeprefix("teacher: ")) from None


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
        except (TypeError, ValueError) as err:
            raise CLIError("--data", f"{spec}: {err}") from None
    raise CLIError("--data", f"must be digits, PATH.npz or folder:PATH, got {spec!r}")


def _config(args: argparse.Namespace) -> MomentMatchingConfig:
    try:
        if args.config:
            cfg = MomentMatchingConfig.from_json(Path(args.config).read_text())
        else:
            cfg = MomentMatchingConfig.preset(args.preset)
        changes: dict[str, Any] = {"k": args.k, "seed": args.seed}
        for arg, field in (
            ("variant", "variant"),
            ("steps", "num_steps"),
            ("batch", "batch_size"),
            ("lr_student", "lr_student"),
            ("lr_aux", "lr_aux"),
            ("guidance_scale", "guidance_scale"),
            ("weighting", "weighting"),
            ("normalize", "normalize"),
            ("precond", "precond"),
        ):
            v = getattr(args, arg)
            if v is not None:
                changes[field] = v
        if "num_steps" in changes and cfg.warmup_steps >= changes["num_steps"]:
            changes["warmup_steps"] = max(changes["num_steps"] // 4, 0)
        return cfg.replace(**changes)
    except OSError as err:
        raise CLIError("--config", str(err)) from None
    except (TypeError, ValueError) as err:
        text = str(err)
        for name, arg in (
            ("guidance_scale", "--guidance-scale"),
            ("lr_student", "--lr-student"),
            ("lr_aux", "--lr-aux"),
            ("batch_size", "--batch"),
            ("name", "--preset"),
        ):
            if name in text:
                raise CLIError(arg, text) from None
        raise CLIError("--config", text) from None


def cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from diff_distill.driver import make_trainer
    from diff_pixel.data import Loader
    from diff_pixel.images import LossCurveHook, SampleGridHook

    run = _load(args.teacher, "--teacher")
    cfg = _config(args)
    print(cfg.to_json(), flush=True)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not (out / "checkpoints").is_dir():
        raise CLIError("--out", f"{str(out)!r} is not empty and holds no run; choose another --out")
    source = _source(args.data)
    x0, _ = source.take(np.arange(1), None)
    cfg_model = getattr(run.model, "config", None)
    backbone = run.model
    while hasattr(backbone, "net"):
        backbone = backbone.net
    bcfg = getattr(backbone, "config", None)
    if bcfg is not None and hasattr(bcfg, "height"):
        expected = (bcfg.height, bcfg.width, bcfg.in_channels)
        if tuple(x0.shape[1:]) != expected:
            raise CLIError(
                "--data",
                f"examples of shape {tuple(x0.shape[1:])} differ from the teacher's input shape "
                f"{expected}",
            )
    del cfg_model
    grid_hook = SampleGridHook(
        _grid_fn(cfg.k, run.schedule, run.num_classes, x0.shape[1:]),
        every=args.checkpoint_every,
        scale=3,
    )
    try:
        trainer = make_trainer(
            cfg,
            teacher=run,
            data=Loader(source, cfg.batch_size, seed=cfg.seed),
            out_dir=out,
            hooks=[LossCurveHook(), grid_hook],
            resume=not args.no_resume,
            checkpoint_every=args.checkpoint_every,
            conditional=run.num_classes > 0,
        )
    except ValueError as err:
        text = str(err)
        if text.startswith("precond: "):
            raise CLIError("--precond", text.removeprefix("precond: ")) from None
        raise CLIError("--out" if "checkpoint" in text else "--teacher", text) from None
    trainer.run()
    print(f"student (k = {cfg.k}) in {out}; step {trainer.step_count}", file=sys.stderr)
    return 0


def _grid_fn(k: int, schedule: Any, num_classes: int, shape: tuple[int, ...]) -> Any:
    """``sample_fn(ema_pair, key)`` of diff-pixel's SampleGridHook: 40 k-step student samples
    from the run's fixed key (labels 0..9 in turn for a class-conditional teacher)."""

    def sample_fn(pair: Any, key: Any) -> Any:
        import jax.numpy as jnp
        import numpy as np

        from diff_pixel.models import Cond
        from diff_pixel.sampling import sample

        labels = np.sort(np.arange(40) % max(num_classes, 1)).astype(np.int32)
        cond = Cond(label=jnp.asarray(labels)) if num_classes else None
        x = sample(
            pair.student,
            shape=(40, *shape),
            key=key,
            schedule=schedule,
            steps=k,
            sampler="moment_matching",
            cond=cond,
        )
        return (x, labels) if num_classes else x

    return sample_fn


def _student_k(run: Any) -> int | None:
    recipe = run.config.get("recipe") or {}
    if recipe.get("method") != "diff-distill":
        return None
    return int(recipe["distill"]["k"])


def cmd_sample(args: argparse.Namespace) -> int:
    import io

    import jax
    import jax.numpy as jnp
    import numpy as np

    from diff_distill.samplers.moment_matching import moment_matching
    from diff_pixel.images import save_grid
    from diff_pixel.models import Cond
    from diff_pixel.sampling import sample
    from diff_protocol.io import atomic_write

    out = Path(args.out)
    _refuse_existing(out, args.overwrite)
    run = _load(args.student, "--student")
    k_run = _student_k(run)
    if k_run is None:
        raise CLIError("--student", f"{run.path} is not a diff-distill run")
    if args.raw:
        from diff_pixel.train import Trainer

        model = Trainer.restore(run.path)[0].student
    else:
        model = run.model
    k = args.k or k_run
    backbone = model
    while hasattr(backbone, "net"):
        backbone = backbone.net
    bcfg = backbone.config
    n_cls = run.num_classes
    if args.label is not None and not 0 <= args.label < max(n_cls, 1):
        raise CLIError("--label", f"must be in [0, {n_cls}), got {args.label}")
    if args.label is not None:
        labels = np.full(args.num, args.label, np.int32)
    else:
        labels = np.sort(np.arange(args.num) % max(n_cls, 1)).astype(np.int32)
    cond = Cond(label=jnp.asarray(labels)) if n_cls else None
    x = sample(
        model,
        shape=(args.num, bcfg.height, bcfg.width, bcfg.in_channels),
        key=jax.random.key(args.seed),
        schedule=run.schedule,
        steps=k,
        sampler=moment_matching(args.eta),
        cond=cond,
    )
    images = np.asarray(x)
    if n_cls:
        save_grid(str(out), images, labels=labels, scale=3)
    else:
        save_grid(str(out), images, scale=3)
    if args.npz:
        buf = io.BytesIO()
        np.savez(buf, x=images, labels=labels)
        atomic_write(Path(args.npz), buf.getvalue())
    print(f"wrote {out} ({args.num} samples, {k} steps, eta {args.eta})", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from diff_pixel.metrics import evaluate_digits_model, train_digits_classifier
    from diff_protocol.io import atomic_write, dumps_json

    run = _load(args.run, "--run")
    if run.num_classes != 10:
        raise CLIError("--run", f"{run.path} is not a class-conditional digits run")
    k_run = _student_k(run)
    k = args.k or (k_run or 256)
    sampler = "moment_matching" if k_run else "ddpm"
    metrics, _, _ = evaluate_digits_model(
        run.model,
        run.schedule,
        train_digits_classifier(seed=0),
        steps=k,
        sampler=sampler,
        per_class=args.per_class,
    )
    metrics = {"steps": k, "sampler": sampler, **metrics}
    atomic_write(run.path / "evaluate.json", dumps_json(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    print(
        f"DFD {metrics['digits_feature_distance']:.2f} (lower is better; floor "
        f"{metrics['dfd_floor']:.2f}, noise {metrics['dfd_noise']:.1f}); class accuracy "
        f"{metrics['class_accuracy']:.3f} (higher is better)",
        file=sys.stderr,
    )
    return 0


def cmd_toy(args: argparse.Namespace) -> int:
    from diff_distill.toy import TEACHERS, run_toy_command, toy_config

    out = Path(args.out)
    _refuse_existing(out / "results.json", args.overwrite)
    if args.teacher is not None and args.teacher not in TEACHERS[args.variant]:
        raise CLIError(
            "--teacher",
            f"must be one of {', '.join(TEACHERS[args.variant])} for {args.variant}, "
            f"got {args.teacher!r}",
        )
    cfg = toy_config(args.mixture, args.variant, args.k)
    if args.steps:
        cfg = cfg.replace(num_steps=args.steps)
    print(cfg.to_json(), flush=True)
    run_toy_command(
        args.mixture,
        args.variant,
        args.k,
        tuple(args.seeds),
        out,
        steps=args.steps,
        teacher=args.teacher,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from diff_distill.demo import run_demo

    try:
        run_demo(
            args.out,
            quick=args.quick,
            teacher=args.teacher,
            ks=tuple(args.k),
            overwrite=args.overwrite,
        )
    except FileExistsError as err:
        raise CLIError("--out", str(err)) from None
    except ValueError as err:
        raise CLIError("--teacher", str(err).removeprefix("teacher: ")) from None
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from diff_pixel.train import DamagedCheckpointError, TrainingInterrupted

    commands = {
        "train": cmd_train,
        "distill": cmd_train,
        "toy": cmd_toy,
        "sample": cmd_sample,
        "evaluate": cmd_evaluate,
        "demo": cmd_demo,
    }
    try:
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
