"""Console script ``diff-core``: ``demo``, ``list`` and ``schedules``.

Defaults live once, in :class:`diff_core.demo.DemoConfig`; argparse reads them from there, and
every option's help states its default. Bad arguments are one line (``diff-core demo: error:
...``) and exit status 2; an output that exists is refused before any work unless
``--overwrite``. ``diff-core list`` reads installed metadata only and imports no framework.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .demo import (
    BACKENDS,
    EXPECTED_S,
    GRIDS,
    OUTPUTS,
    PROBLEMS,
    QUICK,
    SAMPLERS,
    DemoConfig,
    output_conflicts,
)

__all__ = ["Parser", "build_parser", "main"]


def _positive_int_list(option: str):
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a comma-separated list of positive integers, got {text!r}"
            ) from None
        if not values or any(v < 1 for v in values):
            raise argparse.ArgumentTypeError(
                f"must be a comma-separated list of positive integers, got {text!r}"
            )
        return values

    return parse


def _sampler_list(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [v for v in names if v not in SAMPLERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated subset of {','.join(SAMPLERS)}, got {text!r}"
        )
    return names


def _n_samples(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2, got {text!r}") from None
    if n < 2:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2, got {n}")
    return n


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``PROG: error: MESSAGE (see PROG -h)``,
    exit status 2 (argparse prints the whole usage first, several lines for a subcommand)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _positive():
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    d = DemoConfig()
    parser = Parser(
        prog="diff-core", description="diff-core: diffusion samplers against exact denoisers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="sample an exact mixture with each (sampler, steps); write samples.png and metrics",
        description="Sample an exact mixture with each (sampler, steps) pair and score the "
        f"samples; writes {', '.join(OUTPUTS)} into --out (refused if they exist, unless "
        f"--overwrite). About {EXPECTED_S['full']} s on 2 CPU cores ({EXPECTED_S['quick']} s "
        "with --quick).",
    )
    demo.add_argument(
        "--problem",
        choices=PROBLEMS,
        default=d.problem,
        help=f"the exact distribution to sample (default {d.problem})",
    )
    demo.add_argument(
        "--samplers",
        type=_sampler_list,
        default=d.samplers,
        help=f"comma-separated samplers (default {','.join(d.samplers)})",
    )
    demo.add_argument(
        "--steps",
        type=_positive_int_list("--steps"),
        default=None,
        help=f"comma-separated step counts (default {','.join(map(str, d.steps))}; "
        f"with --quick {','.join(map(str, QUICK['steps']))})",
    )
    demo.add_argument("--grid", choices=GRIDS, default=d.grid, help=f"time grid (default {d.grid})")
    demo.add_argument(
        "--schedule",
        choices=("cosine",),
        default=d.schedule,
        help=f"noise schedule of the problem (default {d.schedule})",
    )
    demo.add_argument(
        "--n",
        type=_n_samples,
        default=None,
        help=f"samples per run (default {d.n}; with --quick {QUICK['n']})",
    )
    demo.add_argument(
        "--backend",
        choices=BACKENDS,
        default=d.backend,
        help=f"array backend of the sampling loop (default {d.backend})",
    )
    demo.add_argument("--seed", type=int, default=d.seed, help=f"noise seed (default {d.seed})")
    demo.add_argument(
        "--out", default=d.out, help=f"output folder, created if missing (default {d.out})"
    )
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs of an earlier demo in --out (default: refuse)",
    )
    demo.set_defaults(parser=demo)
    demo.add_argument(
        "--quick",
        action="store_true",
        help=f"n {QUICK['n']}, steps {','.join(map(str, QUICK['steps']))}: about "
        f"{EXPECTED_S['quick']} s, what CI runs (default: the full demo)",
    )

    sub.add_parser(
        "list",
        help="registered schedules, samplers and models (imports no framework)",
        description="List the schedules, samplers and models registered under the diff.* "
        "entry points, with the distributions that provide them.",
    )

    sched = sub.add_parser(
        "schedules",
        help="plot logsnr(t) of every schedule and each weighting",
        description="Plot logsnr(t) of every schedule and the implied weight of each loss "
        "weighting into one PNG.",
    )
    sched.add_argument(
        "--resolution",
        type=_positive(),
        default=256,
        help="image resolution d of the shifted and interpolated schedules (default 256)",
    )
    sched.add_argument("--out", default="schedules.png", help="output PNG (default schedules.png)")
    sched.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out (default: refuse)"
    )
    sched.set_defaults(parser=sched)
    return parser


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse existing outputs before any work (one line, exit 2)."""
    out, parser = Path(args.out), args.parser
    if args.command == "demo":
        if out.exists() and not out.is_dir():
            parser.error(f"--out: {str(out)!r} exists and is not a folder")
        present = output_conflicts(out)
        if present and not args.overwrite:
            parser.error(
                f"--out: {str(out)!r} already holds {', '.join(present)} of an earlier demo; "
                "pass --overwrite to replace them, or choose another --out"
            )
    elif args.command == "schedules":
        if out.is_dir():
            parser.error(f"--out: {str(out)!r} is a folder; give a .png file name")
        if out.exists() and not args.overwrite:
            parser.error(f"--out: {str(out)!r} exists; pass --overwrite to replace it")


def _list() -> int:
    from diff_protocol import registry

    for group in registry.GROUPS:
        print(f"{group}:")
        names = registry.available(group)
        for name, target in names.items():
            bare = name.split(":", 1)[-1]
            dists = ", ".join(registry.providers(group, bare))
            print(f"  {name:<22} {target:<48} ({dists})")
        if not names:
            print("  (none)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list()
    _check_outputs(args)
    if args.command == "schedules":
        from .demo import plot_schedules

        return plot_schedules(args.resolution, args.out)
    cfg = DemoConfig(
        problem=args.problem,
        samplers=args.samplers,
        grid=args.grid,
        schedule=args.schedule,
        backend=args.backend,
        seed=args.seed,
        out=args.out,
    )
    if args.quick:
        cfg = cfg.quick()
    if args.steps is not None:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    if args.n is not None:
        cfg = dataclasses.replace(cfg, n=args.n)
    from .demo import run_demo

    return run_demo(cfg)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
