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
    (out / "metrics.json").write_text(json.dumps({{"mmd2": 0.0023456, "steps": 16, "args": args}}))
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
        ("diff-a", ("demo", "--quick", "--out", "{out}"), ("demo", "--out", "{out}"), None),
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
    nested = {"stability": {"atom": 0.98765, "molecule": 0.5}, "n": 25, "ok": True}
    assert run_demos.json_to_markdown(nested).splitlines() == [
        "| metric | value |",
        "|---|---|",
        "| stability.atom | 0.9877 |",
        "| stability.molecule | 0.5 |",
        "| n | 25 |",
        "| ok | True |",
    ]


def test_run_collects_metrics_pictures_and_failures(
    tmp_path: Path, tool, monkeypatch: pytest.MonkeyPatch
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
    text = (out / "metrics.md").read_text()
    assert "| diff-fail | `diff-fail demo --quick --out demo-out/diff-fail` |" in text
    assert "failed (exit 3, log logs/diff-fail.log)" in text
    assert "| mmd2 | 0.002346 |" in text and "| steps | 16 |" in text
    assert "| ddim | 4 |" in text
    assert "[samples.png](diff-json/samples.png)" in text
    recorded = json.loads((out / "diff-json" / "metrics.json").read_text())["args"]
    assert recorded == ["demo", "--quick", "--out", str(out.resolve() / "diff-json")]
    assert "demo ran with" in (out / "logs" / "diff-md.log").read_text()
    assert run_demos.main(["--root", str(root), "--out", str(out), "--only", "diff-md"]) == 0
