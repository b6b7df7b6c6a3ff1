"""hatch from a package folder says "run hatch from the repository root" (issue 8, item 11).

Inside packages/<name>, ``hatch run`` / ``hatch test`` would build an environment of that package
alone and fail in pip's or uv's resolver (its siblings are not on a package index). Every package
that depends on a sibling therefore declares, for hatch's ``default`` and ``hatch-test``
environments, a pre-install command that stops with one line saying where to run hatch (see the
root README, "Adding a package"). The root's environments (hatch.toml) never read it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ENVS = ("default", "hatch-test")
SIBLINGS = ("diff-protocol", "diff-core", "diff-pixel")


def _packages(root: Path) -> list[Path]:
    out = []
    for pyproject in sorted(root.glob("packages/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        deps = " ".join(project.get("dependencies", []))
        if any(s in deps for s in SIBLINGS):
            out.append(pyproject)
    return out


def test_every_package_with_siblings_guards_hatch_in_its_folder(repo_root: Path) -> None:
    checked = _packages(repo_root)
    assert {p.parent.name for p in checked} >= {"diff-core", "diff-pixel"}
    missing = []
    for pyproject in checked:
        envs = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        envs = envs.get("tool", {}).get("hatch", {}).get("envs", {})
        for env in ENVS:
            commands = " ".join(envs.get(env, {}).get("pre-install-commands", []))
            if "run hatch from the repository root" not in commands or "sys.exit" not in commands:
                missing.append(f"{pyproject.relative_to(repo_root)} [tool.hatch.envs.{env}]")
    assert not missing, "no 'run hatch from the repository root' pre-install command: " + ", ".join(
        missing
    )


@pytest.mark.skipif(shutil.which("hatch") is None, reason="hatch is not installed here")
def test_hatch_run_in_a_package_folder_names_the_root(repo_root: Path, tmp_path: Path) -> None:
    package = tmp_path / "diff-core"
    shutil.copytree(
        repo_root / "packages" / "diff-core",
        package,
        ignore=shutil.ignore_patterns("tests", "benchmarks", "__pycache__"),
    )
    env = {**os.environ, "HATCH_DATA_DIR": str(tmp_path / "data")}
    env["HATCH_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("HATCH_ENV_ACTIVE", None)
    proc = subprocess.run(
        ["hatch", "run", "python", "-c", "print('never')"],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "diff-core: run hatch from the repository root (cd ../..)" in proc.stdout + proc.stderr
    assert "never" not in proc.stdout
