"""tools/run_demos.py: discovery from pyproject console scripts, the run, demo-out/metrics.md."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

FAKE_DEMO = """#!{python}
import json, pathlib, sys
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--out") + 1])
out.mkdir(parents=True, exist_ok=True)
if "{kind}" == "json":
    glossary = {{"mmd2": {{"meaning": "squared MMD", "better": "lower", "expected": "< 0.01"}},
                "novelty": {{"meaning": "share of new molecules", "better": "higher",
                             "expected": "n/a below 1000 steps"}}}}
    (out / "metrics.json").write_text(json.dumps({{
        "mmd2": 0.0023456, "steps": 16, "args": args, "novelty": None, "unexplained": None,
        "meta": {{"expected_s": 42, "budget": "16 steps"}}, "glossary": glossary}}))
elif "{kind}" == "md":
    (out / "metrics.md").write_text("| sampler | steps |\\n|---|---|\\n| ddim | 4 |\\n")
(out / "samples.png").write_bytes(b"\\x89PNG fake")
print("demo ran with", args)
sys.exit(0 if "{kind}" != "fail" else 3)
"""


def add_package(root: Path, name: str, *, script: bool = True, table: str = "") -> None:
    folder = root / "packages" / name
    folder.mkdir(parents=True)
    scripts = f'[project.scripts]\n"{name}" = "x.cli:main"\n' if script else ""
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0.1.0"\n\n{scripts}\n{table}', encoding="utf-8"
    )


def add_script(bin_dir: Path, name: str, kind: str) -> None:
    path = bin_dir / name
    path.write_text(FAKE_DEMO.format(python=sys.executable, kind=kind), encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_discovery_reads_scripts_and_demo_table(tmp_path: Path, tool) -> None:
    run_demos = tool("run_demos")
    add_package(tmp_path, "diff-a")
    add_package(
        tmp_path,
        "diff-b",
        table='[tool.diff.demo]\nargs = ["demo", "--minutes", "1", "--out", "{out}"]\nmetrics = "metrics.json"\n',
    )
    add_package(tmp_path, "diff-c", script=False)
    demos = run_demos.discover(tmp_path)
    assert [(d.distribution, d.args, d.full_args, d.metrics) for d in demos] == [
        (
            "diff-a",
            ("demo", "--quick", "--out", "{out}", "--overwrite"),
            ("demo", "--out", "{out}", "--overwrite"),
            None,
        ),
        (
            "diff-b",
            ("demo", "--minutes", "1", "--out", "{out}"),
            ("demo", "--minutes", "1", "--out", "{out}"),
            "metrics.json",
        ),
    ]


def test_json_metrics_render_as_markdown(tool) -> None:
    run_demos = tool("run_demos")
    records = [
        {"sampler": "ddim", "steps": 4, "mmd2": 0.11312},
        {"sampler": "ddpm", "steps": 4, "nfe": 4},
    ]
    assert run_demos.json_to_markdown(records).splitlines() == [
        "| sampler | steps | mmd2 | nfe |",
        "|---|---|---|---|",
        "| ddim | 4 | 0.1131 |  |",
        "| ddpm | 4 |  | 4 |",
    ]
    nested = {"stability": {"atom": 0.98765, "molecule": 0.5}, "n": 25, "ok": True, "x": None}
    assert run_demos.json_to_markdown(nested).splitlines() == [
        "| metric | value |",
        "|---|---|",
        "| stability.atom | 0.9877 |",
        "| stability.molecule | 0.5 |",
        "| n | 25 |",
        "| ok | True |",
    ]
    explained = {
        **nested,
        "meta": {"expected_s": 60},
        "glossary": {
            "stability.atom": {"meaning": "stable atoms", "better": "higher", "expected": "0.9+"},
            "x": {"meaning": "novelty | share", "better": "higher", "expected": "n/a here"},
        },
    }
    assert run_demos.json_to_markdown(explained).splitlines() == [
        "| figure | value | better | expected at this budget | what it means |",
        "|---|---|---|---|---|",
        "| stability.atom | 0.9877 | higher | 0.9+ | stable atoms |",
        "| stability.molecule | 0.5 |  |  |  |",
        "| n | 25 |  |  |  |",
        "| ok | True |  |  |  |",
        "| x | n/a | higher | n/a here | novelty \\| share |",
    ]


def test_run_collects_metrics_pictures_and_failures(
    tmp_path: Path, tool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run_demos = tool("run_demos")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    root = tmp_path / "repo"
    for name, kind in (("diff-json", "json"), ("diff-md", "md"), ("diff-fail", "fail")):
        add_package(root, name)
        add_script(bin_dir, name, kind)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    out = tmp_path / "demo-out"
    code = run_demos.main(["--root", str(root), "--out", str(out)])
    assert code == 1  # diff-fail exited 3
    printed = capsys.readouterr().out
    assert "== diff-json: ok in 0 s (expected about 42 s)" in printed
    assert "run_demos: 2 of 3 demos ok in " in printed
    assert "(diff-fail 0 s, diff-json 0 s, diff-md 0 s)" in printed
    text = (out / "metrics.md").read_text()
    assert (
        "| diff-fail | `diff-fail demo --quick --out demo-out/diff-fail --overwrite` | 0 s | ? | "
        "failed (exit 3, log logs/diff-fail.log) |" in text
    )
    assert (
        "| diff-json | `diff-json demo --quick --out demo-out/diff-json --overwrite` | 0 s | 42 s | ok |"
        in text
    )
    assert "| mmd2 | 0.002346 | lower | < 0.01 | squared MMD |" in text
    assert "| steps | 16 |  |  |  |" in text
    assert "| novelty | n/a | higher | n/a below 1000 steps | share of new molecules |" in text
    assert "unexplained" not in text and "expected_s" not in text and "glossary" not in text
    assert "| ddim | 4 |" in text
    assert "[samples.png](diff-json/samples.png)" in text
    recorded = json.loads((out / "diff-json" / "metrics.json").read_text())["args"]
    assert recorded == ["demo", "--quick", "--out", str(out.resolve() / "diff-json"), "--overwrite"]
    assert "demo ran with" in (out / "logs" / "diff-md.log").read_text()
    # --only reruns one demo and keeps the other packages' sections, marked as earlier runs
    assert run_demos.main(["--root", str(root), "--out", str(out), "--only", "diff-md"]) == 0
    text = (out / "metrics.md").read_text()
    assert [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| diff-")] == [
        "| diff-fail",
        "| diff-json",
        "| diff-md",
    ]
    assert "## diff-json" in text and "| mmd2 | 0.002346 | lower |" in text
    assert "| ok; earlier run, " in text and text.count("earlier run") == 2
    assert (
        "| diff-md | `diff-md demo --quick --out demo-out/diff-md --overwrite` | 0 s | ? | ok |"
        in text
    )


def test_markdown_metrics_get_the_glossary_of_metrics_json(tmp_path: Path, tool) -> None:
    run_demos = tool("run_demos")
    (tmp_path / "metrics.md").write_text("| sampler | mmd2 |\n|---|---|\n| ddim | 0.01 |\n")
    glossary = {"mmd2": {"meaning": "squared MMD", "better": "lower", "expected": "< 0.03"}}
    (tmp_path / "metrics.json").write_text(
        json.dumps({"runs": [], "glossary": glossary, "meta": {"expected_s": 70}})
    )
    source, table = run_demos.metrics_table(tmp_path, None)
    assert source == "metrics.md"
    assert table.splitlines()[-3:] == [
        "| figure | what it means | better | expected at this budget |",
        "|---|---|---|---|",
        "| mmd2 | squared MMD | lower | < 0.03 |",
    ]
    assert run_demos.expected_seconds(tmp_path, None) == 70.0
