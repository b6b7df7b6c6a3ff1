"""Console script ``diff-core``: ``demo``, ``list`` and ``schedules``.

Defaults live once, in :class:`diff_core.demo.DemoConfig`; argparse reads them from there.
``diff-core list`` reads installed metadata only and imports no framework.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from .demo import BACKENDS, GRIDS, PROBLEMS, QUICK, SAMPLERS, DemoConfig

__all__ = ["main"]


def _positive_int_list(option: str):
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option} must be a comma-separated list of positive integers, got {text!r}"
            ) from None
        if not values or any(v < 1 for v in values):
            raise argparse.ArgumentTypeError(
                f"{option} must be a comma-separated list of positive integers, got {text!r}"
            )
        return values

    return parse


def _sampler_list(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [v for v in names if v not in SAMPLERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"--samplers must be a comma-separated subset of {','.join(SAMPLERS)}, got {text!r}"
        )
    return names


def _n_samples(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--n must be an integer >= 2, got {text!r}") from None
    if n < 2:
        raise argparse.ArgumentTypeError(f"--n must be an integer >= 2, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    d = DemoConfig()
    parser = argparse.ArgumentParser(
        prog="diff-core", description="diff-core: diffusion samplers against exact denoisers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="sample an exact mixture with each (sampler, steps); write samples.png and metrics",
    )
    demo.add_argument("--problem", choices=PROBLEMS, default=d.problem)
    demo.add_argument(
        "--samplers",
        type=_sampler_list,
        default=d.samplers,
        help=f"comma-separated (default {','.join(d.samplers)})",
    )
    demo.add_argument(
        "--steps",
        type=_positive_int_list("--steps"),
        default=None,
        help=f"comma-separated step counts (default {','.join(map(str, d.steps))})",
    )
    demo.add_argument("--grid", choices=GRIDS, default=d.grid)
    demo.add_argument("--schedule", choices=("cosine",), default=d.schedule)
    demo.add_argument("--n", type=_n_samples, default=None, help=f"samples per run (default {d.n})")
    demo.add_argument("--backend", choices=BACKENDS, default=d.backend)
    demo.add_argument("--seed", type=int, default=d.seed)
    demo.add_argument("--out", default=d.out, help=f"output folder (default {d.out})")
    demo.add_argument(
        "--quick",
        action="store_true",
        help=f"n {QUICK['n']}, steps {','.join(map(str, QUICK['steps']))} (CI)",
    )

    sub.add_parser("list", help="registered schedules, samplers and models (imports no framework)")

    sched = sub.add_parser("schedules", help="plot logsnr(t) of every schedule and each weighting")
    sched.add_argument("--resolution", type=int, default=256)
    sched.add_argument("--out", default="schedules.png")
    return parser


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
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return _list()
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
