"""tools/release.py: version bump with hatch's scheme, dated changelog, per-package tag."""

from __future__ import annotations

import datetime as dt
import stat
import subprocess
import sys
from pathlib import Path

import pytest

CHANGELOG = """# Changelog

All notable changes to this project are documented here.

## [Unreleased]

### Added
- interval guidance for JAX

## [0.1.0] - 2025-01-01

### Added
- first release
"""


def make_tree(root: Path) -> None:
    for folder, name, deps in (
        ("shared-core", "diff-protocol", '"array-api-compat>=1.12"'),
        ("packages/diff-core", "diff-core", '"diff-protocol>=0.1,<0.2"'),
        ("packages/diff-pixel", "diff-pixel", '"diff-core>=0.1,<0.2"'),
    ):
        package = name.replace("-", "_")
        (root / folder / "src" / package).mkdir(parents=True)
        (root / folder / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["hatchling"]\n\n'
            f'[project]\nname = "{name}"\nversion = "0.1.0"  # static\ndependencies = [{deps}]\n\n'
            '[tool.other]\nversion = "9.9.9"\n'
            f'[tool.hatch.build.targets.wheel]\npackages = ["src/{package}"]\n',
            encoding="utf-8",
        )
        (root / folder / "src" / package / "__init__.py").write_text(
            '"""Doc."""\n\nfrom os import path\n\n__version__ = "0.1.0"\n', encoding="utf-8"
        )
        (root / folder / "CHANGELOG.md").write_text(CHANGELOG, encoding="utf-8")


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        ("minor", "0.2.0"),
        ("patch", "0.1.1"),
        ("major", "1.0.0"),
        ("minor,rc", "0.2.0rc0"),
        ("0.3.0", "0.3.0"),
    ],
)
def test_next_version_follows_hatch_scheme(tool, part: str, expected: str) -> None:
    assert tool("release").next_version("0.1.0", part) == expected


def test_lower_explicit_version_is_refused(tool) -> None:
    release = tool("release")
    with pytest.raises(release.ReleaseError, match="not higher"):
        release.next_version("0.2.0", "0.1.5")


def test_release_bumps_files_dates_changelog_and_reports_dependents(tmp_path: Path, tool) -> None:
    release = tool("release")
    make_tree(tmp_path)
    (tmp_path / "packages" / "diff-core" / "CHANGELOG.md").chmod(0o640)
    old, new, files = release.prepare(
        tmp_path, "diff-core", "minor", date=dt.date(2025, 3, 4), dry_run=False
    )
    assert (old, new) == ("0.1.0", "0.2.0")
    core = tmp_path / "packages" / "diff-core"
    assert sorted(p.relative_to(core).as_posix() for p in files) == [
        "CHANGELOG.md",
        "pyproject.toml",
        "src/diff_core/__init__.py",
    ]
    pyproject = (core / "pyproject.toml").read_text()
    assert 'version = "0.2.0"  # static' in pyproject
    assert 'version = "9.9.9"' in pyproject  # only [project] is touched
    assert '__version__ = "0.2.0"' in (core / "src/diff_core/__init__.py").read_text()
    log = (core / "CHANGELOG.md").read_text()
    # rewritten through a temporary file, each file keeps its permission bits
    assert stat.S_IMODE((core / "CHANGELOG.md").stat().st_mode) == 0o640
    assert sorted(p.name for p in core.iterdir()) == ["CHANGELOG.md", "pyproject.toml", "src"]
    assert (
        log.index("## [Unreleased]")
        < log.index("## [0.2.0] - 2025-03-04")
        < log.index("- interval guidance for JAX")
        < log.index("## [0.1.0] - 2025-01-01")
    )
    # The Unreleased section is empty again.
    between = log[log.index("## [Unreleased]") + len("## [Unreleased]") : log.index("## [0.2.0]")]
    assert between.strip() == ""
    # Untouched siblings stay at 0.1.0, and diff-pixel's range now excludes diff-core 0.2.0.
    assert (
        '__version__ = "0.1.0"'
        in (tmp_path / "shared-core/src/diff_protocol/__init__.py").read_text()
    )
    _, problems = tool("check_versions").check_tree(tmp_path)
    assert [
        (p.file, "not satisfied by the local diff-core 0.2.0" in p.message) for p in problems
    ] == [("packages/diff-pixel/pyproject.toml", True)]


def test_empty_unreleased_section_and_dry_run(tmp_path: Path, tool) -> None:
    release = tool("release")
    make_tree(tmp_path)
    core = tmp_path / "packages" / "diff-core"
    before = {p: p.read_text() for p in core.rglob("*") if p.is_file()}
    _, new, _ = release.prepare(
        tmp_path, "diff-core", "patch", date=dt.date(2025, 1, 2), dry_run=True
    )
    assert new == "0.1.1"
    assert {p: p.read_text() for p in core.rglob("*") if p.is_file()} == before
    (core / "CHANGELOG.md").write_text("# Changelog\n\n## [Unreleased]\n\n## [0.1.0]\n- x\n")
    with pytest.raises(release.ReleaseError, match="empty"):
        release.prepare(tmp_path, "diff-core", "patch", date=dt.date(2025, 1, 2), dry_run=False)
    with pytest.raises(release.ReleaseError, match="no distribution named"):
        release.prepare(tmp_path, "diff-nope", "patch", date=dt.date(2025, 1, 2), dry_run=False)


def test_cli_prints_per_package_tag(tmp_path: Path, repo_root: Path) -> None:
    make_tree(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            str(repo_root / "tools" / "release.py"),
            "diff-protocol",
            "patch",
            "--root",
            str(tmp_path),
            "--date",
            "2025-05-06",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("diff-protocol: 0.1.0 -> 0.1.1; changed ")
    assert lines[-1] == "tag: diff-protocol-v0.1.1"
    assert "## [0.1.1] - 2025-05-06" in (tmp_path / "shared-core/CHANGELOG.md").read_text()
