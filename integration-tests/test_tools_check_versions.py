"""Check 32 (first half): tools/check_versions.py passes on the tree and reports every planted
problem of a fixture tree with its file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def write_dist(
    root: Path,
    folder: str,
    name: str,
    version: str,
    *,
    deps: tuple[str, ...] = (),
    extras: dict[str, list[str]] | None = None,
    init_version: str | None = None,
    changelog: str = "# Changelog\n\n## [Unreleased]\n\n## [0.1.0] - 2025-01-01\n\n- first\n",
) -> Path:
    """A minimal distribution folder as the monorepo lays it out."""
    base = root / folder
    package = name.replace("-", "_")
    (base / "src" / package).mkdir(parents=True)
    dep_lines = ", ".join(f'"{d}"' for d in deps)
    extra_lines = "\n".join(
        f"{k} = [{', '.join(repr(v) for v in vs)}]" for k, vs in (extras or {}).items()
    ).replace("'", '"')
    (base / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = [{dep_lines}]\n\n'
        f"[project.optional-dependencies]\n{extra_lines}\n\n"
        f'[tool.hatch.build.targets.wheel]\npackages = ["src/{package}"]\n',
        encoding="utf-8",
    )
    (base / "src" / package / "__init__.py").write_text(
        f'"""{name}."""\n\n__version__ = "{init_version or version}"\n', encoding="utf-8"
    )
    (base / "CHANGELOG.md").write_text(changelog, encoding="utf-8")
    return base


@pytest.fixture
def clean_tree(tmp_path: Path) -> Path:
    write_dist(tmp_path, "shared-core", "diff-protocol", "0.1.0", deps=("array-api-compat>=1.12",))
    write_dist(
        tmp_path,
        "packages/diff-core",
        "diff-core",
        "0.1.0",
        deps=("diff-protocol>=0.1,<0.2", "numpy>=2.0"),
        extras={"test": ["pytest>=8"]},
    )
    return tmp_path


def test_clean_fixture_tree_passes(clean_tree: Path, tool) -> None:
    check_versions = tool("check_versions")
    dists, problems = check_versions.check_tree(clean_tree)
    assert problems == []
    assert {(d.name, d.version) for d in dists} == {
        ("diff-protocol", "0.1.0"),
        ("diff-core", "0.1.0"),
    }


def test_every_planted_problem_is_reported_with_its_file(tmp_path: Path, tool) -> None:
    check_versions = tool("check_versions")
    # pkg-a is at a dev pre-release of 0.2.0: the classic pitfall for dependents asking >=0.2.
    write_dist(tmp_path, "shared-core", "pkg-a", "0.2.0.dev1")
    write_dist(tmp_path, "packages/pkg-pitfall", "pkg-pitfall", "0.1.0", deps=("pkg-a>=0.2,<0.3",))
    write_dist(tmp_path, "packages/pkg-range", "pkg-range", "0.1.0", deps=("pkg-a>=0.3,<0.4",))
    write_dist(tmp_path, "packages/pkg-pin", "pkg-pin", "0.1.0", deps=("pkg-a==0.2.0.dev1",))
    write_dist(
        tmp_path,
        "packages/pkg-direct",
        "pkg-direct",
        "0.1.0",
        extras={"test": ["pkg-a @ file:///somewhere/pkg_a-0.2.0-py3-none-any.whl"]},
    )
    write_dist(tmp_path, "packages/pkg-stale", "pkg-stale", "0.1.1", init_version="0.1.0")
    write_dist(
        tmp_path,
        "packages/pkg-log",
        "pkg-log",
        "0.3.0",
        changelog="# Changelog\n\n## [0.2.0] - 2025-01-01\n\n- old\n",
    )
    _, problems = check_versions.check_tree(tmp_path)
    by_file: dict[str, list[str]] = {}
    for problem in problems:
        by_file.setdefault(problem.file, []).append(problem.message)

    assert set(by_file) == {
        "packages/pkg-pitfall/pyproject.toml",
        "packages/pkg-range/pyproject.toml",
        "packages/pkg-pin/pyproject.toml",
        "packages/pkg-direct/pyproject.toml",
        "packages/pkg-stale/src/pkg_stale/__init__.py",
        "packages/pkg-log/CHANGELOG.md",
    }
    assert all(len(messages) == 1 for messages in by_file.values()), by_file
    (pitfall,) = by_file["packages/pkg-pitfall/pyproject.toml"]
    assert "not satisfied by the local pkg-a 0.2.0.dev1" in pitfall
    assert "PEP 440 sorts 0.2.0.dev1 below 0.2.0" in pitfall
    assert "next release number" in pitfall
    (unsatisfied,) = by_file["packages/pkg-range/pyproject.toml"]
    assert "'pkg-a>=0.3,<0.4' is not satisfied by the local pkg-a 0.2.0.dev1" in unsatisfied
    assert "PEP 440" not in unsatisfied  # no pitfall hint: 0.2.0 would not satisfy it either
    (pin,) = by_file["packages/pkg-pin/pyproject.toml"]
    assert "pins with ==" in pin and "project.dependencies" in pin
    (direct,) = by_file["packages/pkg-direct/pyproject.toml"]
    assert "direct reference" in direct and "optional-dependencies.test" in direct
    (stale,) = by_file["packages/pkg-stale/src/pkg_stale/__init__.py"]
    assert "'0.1.0' is stale" in stale and "'0.1.1'" in stale
    (log,) = by_file["packages/pkg-log/CHANGELOG.md"]
    assert "Unreleased" in log and "0.3.0" in log


def test_sibling_requirement_needs_both_bounds(clean_tree: Path, tool) -> None:
    check_versions = tool("check_versions")
    write_dist(clean_tree, "packages/diff-x", "diff-x", "0.1.0", deps=("diff-core>=0.1",))
    _, problems = check_versions.check_tree(clean_tree)
    assert [p.file for p in problems] == ["packages/diff-x/pyproject.toml"]
    assert "lower and upper bound" in problems[0].message


def test_cli_prints_file_lines_and_exit_status(
    tmp_path: Path, clean_tree: Path, repo_root: Path
) -> None:
    script = repo_root / "tools" / "check_versions.py"
    ok = subprocess.run(
        [sys.executable, str(script), "--root", str(clean_tree)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 distributions consistent" in ok.stdout
    write_dist(clean_tree, "packages/diff-bad", "diff-bad", "0.1.0", deps=("diff-core==0.1.0",))
    bad = subprocess.run(
        [sys.executable, str(script), "--root", str(clean_tree)], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        "packages/diff-bad/pyproject.toml: project.dependencies: 'diff-core==0.1.0' pins with ==; "
        "declare a range"
    ]


def test_repository_tree_is_consistent(repo_root: Path, tool) -> None:
    check_versions = tool("check_versions")
    dists, problems = check_versions.check_tree(repo_root)
    assert [str(p) for p in problems] == []
    assert {"diff-protocol", "diff-core"} <= {d.name for d in dists}
