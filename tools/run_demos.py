"""Run every installed package's CPU demo and collect the metrics into one Markdown file.

Usage (from the repository root, inside the default hatch environment)::

    hatch run demo                    # = python tools/run_demos.py --out demo-out
    hatch run demo --only diff-core   # a subset
    hatch run demo --full             # without --quick

Packages are discovered from ``packages/*/pyproject.toml``: a package takes part when it declares
a console script named like the distribution (``[project.scripts] diff-core = ...``). The runner
calls ``<script> demo --quick --out demo-out/<distribution>/`` with the environment's own console
script. A package whose demo takes other arguments declares them in its pyproject, with ``{out}``
standing for the output folder, e.g.::

    [tool.diff.demo]
    args = ["demo", "--minutes", "1", "--out", "{out}"]
    full-args = ["demo", "--out", "{out}"]   # used with --full (default: args without --quick)
    metrics = "metrics.json"                  # optional; else the first file found, see METRICS

Afterwards ``demo-out/metrics.md`` gathers, per package, its metrics table (a Markdown file the
demo wrote, or a JSON file rendered as a table), the pictures it wrote and its wall time. No
edit of this file is needed when a package is added.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

#: Files a demo may leave with its metrics, in order of preference.
METRICS = ("metrics.md", "results.md", "table.md", "metrics.json", "results.json", "eval.json")
#: Pictures listed in the summary.
PICTURES = (".png", ".gif", ".jpg", ".mp4", ".svg")
DEFAULT_ARGS = ("demo", "--quick", "--out", "{out}")


@dataclass(frozen=True)
class Demo:
    """One package's demo as declared by its pyproject.toml."""

    distribution: str
    script: str
    args: tuple[str, ...]
    full_args: tuple[str, ...]
    metrics: str | None


def discover(root: Path) -> list[Demo]:
    """Demos of every package under packages/ with a console script named after it."""
    demos = []
    for pyproject in sorted(root.glob("packages/*/pyproject.toml")):
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        project = data.get("project", {})
        name = project.get("name")
        scripts = project.get("scripts", {})
        if not name or name not in scripts:
            continue
        table = data.get("tool", {}).get("diff", {}).get("demo", {})
        args = tuple(table.get("args", DEFAULT_ARGS))
        full = tuple(table.get("full-args", [a for a in args if a != "--quick"]))
        demos.append(Demo(name, name, args, full, table.get("metrics")))
    return demos


def find_script(script: str) -> str | None:
    """The console script of the running environment, else one on PATH."""
    local = Path(sys.executable).parent / script
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(script)


def _format(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, Real):
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    if isinstance(value, list | tuple) and all(isinstance(v, Real) for v in value):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _flatten(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def json_to_markdown(data: object) -> str:
    """A Markdown table of a metrics JSON: records become rows, a mapping becomes metric | value."""
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        rows = [_flatten(r) for r in data]
        columns: list[str] = []
        for row in rows:
            columns += [c for c in row if c not in columns]
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_format(r.get(c, "")) for c in columns) + " |" for r in rows]
        return "\n".join(lines)
    if isinstance(data, dict):
        lines = ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_format(v)} |" for k, v in _flatten(data).items()]
        return "\n".join(lines)
    return f"```\n{json.dumps(data, indent=2)}\n```"


def metrics_table(out: Path, preferred: str | None) -> tuple[str | None, str]:
    """(file used, Markdown) for the metrics a demo left in ``out``."""
    candidates = ([preferred] if preferred else []) + list(METRICS)
    for name in candidates:
        path = out / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            return name, json_to_markdown(json.loads(text))
        return name, text.strip()
    return None, "_no metrics file found_ (looked for " + ", ".join(candidates) + ")"


def run_demo(demo: Demo, out_root: Path, *, full: bool, log_dir: Path) -> tuple[int, float, Path]:
    """Run one demo; its output goes to the terminal and to ``log_dir/<dist>.log``."""
    out = out_root / demo.distribution
    out.mkdir(parents=True, exist_ok=True)
    script = find_script(demo.script)
    log = log_dir / f"{demo.distribution}.log"
    if script is None:
        log.write_text(f"console script {demo.script!r} not installed in this environment\n")
        return 127, 0.0, log
    args = [a.replace("{out}", str(out)) for a in (demo.full_args if full else demo.args)]
    print(f"== {demo.distribution}: {demo.script} {' '.join(args)}", flush=True)
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(
            [script, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            fh.write(line)
        code = proc.wait()
    return code, time.perf_counter() - start, log


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every package's CPU demo.")
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder")
    parser.add_argument("--only", nargs="+", metavar="DIST", help="run these distributions only")
    parser.add_argument("--full", action="store_true", help="run the demos without --quick")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="monorepo root")
    args = parser.parse_args(argv)

    demos = discover(args.root)
    if args.only:
        unknown = sorted(set(args.only) - {d.distribution for d in demos})
        if unknown:
            parser.error(f"no demo for {unknown}; found {[d.distribution for d in demos]}")
        demos = [d for d in demos if d.distribution in args.only]
    if not demos:
        print("run_demos: no package under packages/ declares a console script named after it")
        return 1
    out_root = args.out.resolve()
    log_dir = out_root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    sections = []
    summary = ["| package | demo | wall time | result |", "|---|---|---|---|"]
    failed = []
    for demo in demos:
        code, seconds, log = run_demo(demo, out_root, full=args.full, log_dir=log_dir)
        out = out_root / demo.distribution
        status = "ok" if code == 0 else f"failed (exit {code}, log logs/{log.name})"
        if code != 0:
            failed.append(demo.distribution)
        source, table = metrics_table(out, demo.metrics)
        pictures = sorted(
            p.relative_to(out_root).as_posix()
            for p in out.rglob("*")
            if p.suffix.lower() in PICTURES and p.is_file()
        )
        command = " ".join(demo.full_args if args.full else demo.args).replace(
            "{out}", f"demo-out/{demo.distribution}"
        )
        summary.append(
            f"| {demo.distribution} | `{demo.script} {command}` | {seconds:.0f} s | {status} |"
        )
        body = [f"## {demo.distribution}", ""]
        if source:
            body += [f"From `{demo.distribution}/{source}`:", ""]
        body += [table, ""]
        if pictures:
            body += ["Pictures: " + ", ".join(f"[{Path(p).name}]({p})" for p in pictures), ""]
        sections.append("\n".join(body))
        print(f"== {demo.distribution}: {status} in {seconds:.0f} s", flush=True)

    text = "\n".join(["# Demo metrics", "", *summary, "", *sections])
    write_atomic(out_root / "metrics.md", text)
    ok = len(demos) - len(failed)
    print(f"run_demos: wrote {out_root / 'metrics.md'}; {ok} of {len(demos)} demos ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
