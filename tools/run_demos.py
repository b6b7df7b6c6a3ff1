"""Run every installed package's CPU demo and collect the metrics into one Markdown file.

Usage (from the repository root, inside the default hatch environment)::

    hatch run demo                    # = python tools/run_demos.py --out demo-out --full
    hatch run demo --only diff-core   # a subset; the other packages' sections stay in metrics.md
    hatch run demo-quick              # every demo's --quick settings (what CI exercises)

Packages are discovered from ``packages/*/pyproject.toml``: a package takes part when it declares
a console script named like the distribution (``[project.scripts] diff-core = ...``). The runner
calls ``<script> demo --quick --out demo-out/<distribution>/ --overwrite`` (``--full``: without
``--quick``) with the environment's own console script: every demo refuses existing outputs
unless ``--overwrite``, and the runner replaces its own. A package whose demo takes other
arguments declares them in its pyproject, with ``{out}`` standing for the output folder, e.g.::

    [tool.diff.demo]
    args = ["demo", "--steps", "100", "--out", "{out}", "--overwrite"]
    full-args = ["demo", "--out", "{out}", "--overwrite"]  # --full (default: args minus --quick)
    metrics = "metrics.json"          # optional; else the first file found, see METRICS

What a demo leaves for the summary (the format every package follows):

* a metrics table: ``metrics.md`` (Markdown the demo wrote), else ``metrics.json`` (a JSON object
  rendered as figure | value rows, nested objects named by dotted paths, or a list of records
  rendered as a table), or another name from METRICS;
* in ``metrics.json``, two reserved keys beside the figures (see ``diff_core.figures``)::

      "meta": {"expected_s": 300, "budget": "1500 training steps, ..."},
      "glossary": {"<figure or column>": {"meaning": "...", "better": "higher" | "lower" |
                   "neither" | "closer to 1" ..., "expected": "range expected at this budget"}}

  ``meta.expected_s`` is the demo's expected wall time on 2 CPU cores (shown beside the
  measured one); the glossary adds the columns better / expected / meaning to a figure | value
  table, or follows a Markdown table as its own table. A figure whose value is null is shown
  ("n/a") only if the glossary explains it, else omitted;
* pictures (PICTURES suffixes) anywhere under its folder, listed as links.

Each demo's record (command, exit status, wall time, end time) goes to
``demo-out/logs/<distribution>.json`` beside its log; ``demo-out/metrics.md`` is rebuilt from
every record on disk, so ``--only`` refreshes one section and keeps the others (marked with the
time of their run). The runner prints each demo's wall time against its expected time and the
total. No edit of this file is needed when a package is added.
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

from diff_protocol.io import atomic_write

#: Files a demo may leave with its metrics, in order of preference.
METRICS = ("metrics.md", "results.md", "table.md", "metrics.json", "results.json", "eval.json")
#: Pictures listed in the summary.
PICTURES = (".png", ".gif", ".jpg", ".mp4", ".svg")
DEFAULT_ARGS = ("demo", "--quick", "--out", "{out}", "--overwrite")
#: Keys of a metrics JSON object that are not figures.
RESERVED = ("meta", "glossary")


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
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, Real):
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    if isinstance(value, list | tuple) and all(isinstance(v, Real) for v in value):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return _cell(value)


def _cell(value: object) -> str:
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


def _glossary_of(data: object) -> dict[str, dict[str, str]]:
    """The ``glossary`` entry of a metrics JSON object ({} if absent or malformed)."""
    glossary = data.get("glossary") if isinstance(data, dict) else None
    if not isinstance(glossary, dict):
        return {}
    return {
        str(k): {f: str(v.get(f, "")) for f in ("meaning", "better", "expected")}
        for k, v in glossary.items()
        if isinstance(v, dict)
    }


def glossary_table(glossary: dict[str, dict[str, str]]) -> str:
    """A Markdown table figure | what it means | better | expected at this budget."""
    lines = ["| figure | what it means | better | expected at this budget |", "|---|---|---|---|"]
    for name, g in glossary.items():
        lines.append(
            f"| {_cell(name)} | {_cell(g['meaning'])} | {_cell(g['better'])} | "
            f"{_cell(g['expected'])} |"
        )
    return "\n".join(lines)


def json_to_markdown(data: object) -> str:
    """A Markdown table of a metrics JSON: records become rows, a mapping becomes figure rows.

    In a mapping the reserved keys (``meta``, ``glossary``) are not figures; with a glossary the
    rows gain its better / expected / meaning columns, and a null figure appears only if the
    glossary explains it.
    """
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        rows = [_flatten(r) for r in data]
        columns: list[str] = []
        for row in rows:
            columns += [c for c in row if c not in columns]
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_format(r.get(c, "")) for c in columns) + " |" for r in rows]
        return "\n".join(lines)
    if isinstance(data, dict):
        glossary = _glossary_of(data)
        figures = _flatten({k: v for k, v in data.items() if k not in RESERVED})
        figures = {k: v for k, v in figures.items() if v is not None or k in glossary}
        if not glossary:
            lines = ["| metric | value |", "|---|---|"]
            return "\n".join(lines + [f"| {k} | {_format(v)} |" for k, v in figures.items()])
        lines = [
            "| figure | value | better | expected at this budget | what it means |",
            "|---|---|---|---|---|",
        ]
        empty = {"meaning": "", "better": "", "expected": ""}
        for k, v in figures.items():
            g = glossary.get(k, empty)
            lines.append(
                f"| {k} | {_format(v)} | {_cell(g['better'])} | {_cell(g['expected'])} | "
                f"{_cell(g['meaning'])} |"
            )
        return "\n".join(lines)
    return f"```\n{json.dumps(data, indent=2)}\n```"


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def metrics_table(out: Path, preferred: str | None) -> tuple[str | None, str]:
    """(file used, Markdown) for the metrics a demo left in ``out``, its glossary included."""
    candidates = ([preferred] if preferred else []) + list(METRICS)
    for name in candidates:
        path = out / name
        if not path.is_file():
            continue
        if path.suffix == ".json":
            return name, json_to_markdown(_read_json(path))
        text = path.read_text(encoding="utf-8").strip()
        glossary = _glossary_of(_read_json(out / "metrics.json"))
        if glossary:
            text += "\n\nWhat the figures mean:\n\n" + glossary_table(glossary)
        return name, text
    return None, "_no metrics file found_ (looked for " + ", ".join(candidates) + ")"


def expected_seconds(out: Path, preferred: str | None) -> float | None:
    """``meta.expected_s`` of the demo's metrics JSON, if it states one."""
    for name in ([preferred] if preferred and preferred.endswith(".json") else []) + [
        "metrics.json"
    ]:
        data = _read_json(out / name)
        meta = data.get("meta") if isinstance(data, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("expected_s"), Real):
            return float(meta["expected_s"])
    return None


def run_demo(demo: Demo, out_root: Path, *, full: bool, log_dir: Path) -> tuple[int, float, Path]:
    """Run one demo; its output goes to the terminal and to ``log_dir/<dist>.log``."""
    out = out_root / demo.distribution
    out.mkdir(parents=True, exist_ok=True)
    script = find_script(demo.script)
    log = log_dir / f"{demo.distribution}.log"
    if script is None:
        atomic_write(log, f"console script {demo.script!r} not installed in this environment\n")
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


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} s"


def section(demo: Demo, out_root: Path, record: dict, current: bool) -> tuple[str, str]:
    """(summary row, Markdown section) of one demo from its record and its folder."""
    out = out_root / demo.distribution
    code = record.get("exit")
    log = f"logs/{demo.distribution}.log"
    status = "ok" if code == 0 else f"failed (exit {code}, log {log})"
    if not current:
        status += f"; earlier run, {record.get('finished', '?')}"
    expected = expected_seconds(out, demo.metrics)
    summary = (
        f"| {demo.distribution} | `{record.get('command', '')}` | "
        f"{_seconds(record.get('seconds'))} | {_seconds(expected)} | {status} |"
    )
    source, table = metrics_table(out, demo.metrics)
    pictures = sorted(
        p.relative_to(out_root).as_posix()
        for p in out.rglob("*")
        if p.suffix.lower() in PICTURES and p.is_file()
    )
    body = [f"## {demo.distribution}", ""]
    if source:
        body += [f"From `{demo.distribution}/{source}`:", ""]
    body += [table, ""]
    if pictures:
        body += ["Pictures: " + ", ".join(f"[{Path(p).name}]({p})" for p in pictures), ""]
    return summary, "\n".join(body)


def render(demos: list[Demo], out_root: Path, current: set[str]) -> str:
    """``metrics.md`` from the record of every demo on disk (this run's and earlier ones)."""
    summary = [
        "| package | demo | wall time | expected | result |",
        "|---|---|---|---|---|",
    ]
    sections = []
    for demo in demos:
        record = _read_json(out_root / "logs" / f"{demo.distribution}.json")
        if not isinstance(record, dict):
            continue
        row, text = section(demo, out_root, record, demo.distribution in current)
        summary.append(row)
        sections.append(text)
    intro = (
        "Each package's figures with what they mean, which direction is better and the range "
        "expected at the demo's budget (`expected`: the demo's own estimate on 2 CPU cores)."
    )
    return "\n".join(["# Demo metrics", "", intro, "", *summary, "", *sections])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every package's CPU demo.")
    parser.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)"
    )
    parser.add_argument(
        "--only", nargs="+", metavar="DIST", help="run these distributions only (default: all)"
    )
    parser.add_argument(
        "--full", action="store_true", help="run the demos without --quick (default: --quick)"
    )
    parser.add_argument(
        "--root", type=Path, default=Path.cwd(), help="monorepo root (default: the current folder)"
    )
    args = parser.parse_args(argv)

    every = discover(args.root)
    demos = every
    if args.only:
        unknown = sorted(set(args.only) - {d.distribution for d in every})
        if unknown:
            parser.error(f"no demo for {unknown}; found {[d.distribution for d in every]}")
        demos = [d for d in every if d.distribution in args.only]
    if not demos:
        print("run_demos: no package under packages/ declares a console script named after it")
        return 1
    out_root = args.out.resolve()
    log_dir = out_root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    failed, times = [], []
    start = time.perf_counter()
    for demo in demos:
        code, seconds, _ = run_demo(demo, out_root, full=args.full, log_dir=log_dir)
        command = " ".join(demo.full_args if args.full else demo.args).replace(
            "{out}", f"demo-out/{demo.distribution}"
        )
        record = {
            "distribution": demo.distribution,
            "command": f"{demo.script} {command}",
            "exit": code,
            "seconds": round(seconds, 1),
            "full": args.full,
            "finished": time.strftime("%Y-%m-%d %H:%M"),
        }
        atomic_write(log_dir / f"{demo.distribution}.json", json.dumps(record, indent=2) + "\n")
        if code != 0:
            failed.append(demo.distribution)
        expected = expected_seconds(out_root / demo.distribution, demo.metrics)
        status = (
            "ok"
            if code == 0
            else f"failed (exit {code}, log {log_dir.name}/{demo.distribution}.log)"
        )
        shown = f" (expected about {expected:.0f} s)" if expected is not None else ""
        print(f"== {demo.distribution}: {status} in {seconds:.0f} s{shown}", flush=True)
        times.append(f"{demo.distribution} {seconds:.0f} s")
    total = time.perf_counter() - start

    text = render(every, out_root, {d.distribution for d in demos})
    atomic_write(out_root / "metrics.md", text)
    ok = len(demos) - len(failed)
    print(
        f"run_demos: {ok} of {len(demos)} demos ok in {total:.0f} s ({', '.join(times)}); "
        f"wrote {out_root / 'metrics.md'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
