"""Prepare the release of one distribution: bump its version, date its changelog, name the tag.

Usage (from the repository root)::

    hatch run tools:release diff-core minor      # 0.1.0 -> 0.2.0
    hatch run tools:release diff-core patch --dry-run

PART is anything ``hatch version`` accepts: ``major``, ``minor``, ``micro``/``patch``/``fix``,
``a``/``b``/``rc``, ``post``, ``dev``, ``release``, comma-separated combinations such as
``minor,rc``, or an explicit version. The new version is computed by hatchling's standard version
scheme, the one behind ``hatch version`` (which refuses to touch our static ``project.version``
fields itself). Then, atomically per file:

* ``project.version`` in the distribution's ``pyproject.toml``;
* ``__version__`` in ``src/<package>/__init__.py``;
* ``CHANGELOG.md``: the entries under ``## [Unreleased]`` move to ``## [X.Y.Z] - YYYY-MM-DD`` and
  an empty ``## [Unreleased]`` stays on top.

It prints the tag ``NAME-vX.Y.Z`` (one tag namespace per distribution, never a shared ``v*``) and
runs the sibling-version check, which names every sibling whose range no longer admits the new
version. It never runs git: committing and tagging stay with the person releasing
(tools/RELEASING.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import stat
import sys
from pathlib import Path

from hatchling.version.scheme.standard import StandardScheme
from packaging.utils import canonicalize_name
from packaging.version import Version

from check_versions import check_tree, distribution_folders, find_repo_root, read_distribution

_PROJECT_VERSION = re.compile(r'^(version\s*=\s*)(["\'])([^"\']+)\2', re.MULTILINE)
_DUNDER_VERSION = re.compile(
    r'^(__version__\s*(?::\s*str\s*)?=\s*)(["\'])([^"\']+)\2', re.MULTILINE
)
_UNRELEASED = re.compile(r"^##\s*\[Unreleased\][^\n]*\n", re.MULTILINE | re.IGNORECASE)
_NEXT_SECTION = re.compile(r"^##\s*\[", re.MULTILINE)


class ReleaseError(Exception):
    """The release cannot be prepared; the message says why."""


def next_version(current: str, part: str) -> str:
    """``hatch version PART`` semantics (hatchling's standard scheme, bump validation on)."""
    scheme = StandardScheme(".", {"validate-bump": True})
    try:
        return scheme.update(part, current, {})
    except ValueError as exc:
        raise ReleaseError(
            f"release: PART {part!r} cannot be applied to {current}: {exc}"
        ) from None


def set_project_version(text: str, new: str) -> str:
    """Replace ``version = "..."`` inside the ``[project]`` table only."""
    start = re.search(r"^\[project\]\s*$", text, re.MULTILINE)
    if start is None:
        raise ReleaseError("release: pyproject.toml has no [project] table")
    end = re.search(r"^\[", text[start.end() :], re.MULTILINE)
    stop = start.end() + end.start() if end else len(text)
    table, count = _PROJECT_VERSION.subn(rf'\g<1>"{new}"', text[start.end() : stop], count=1)
    if count != 1:
        raise ReleaseError('release: no static version = "..." line in [project]')
    return text[: start.end()] + table + text[stop:]


def set_dunder_version(text: str, new: str) -> str:
    out, count = _DUNDER_VERSION.subn(rf'\g<1>"{new}"', text, count=1)
    if count != 1:
        raise ReleaseError('release: no __version__ = "..." line in __init__.py')
    return out


def date_changelog(text: str, new: str, date: dt.date) -> str:
    """Move the Unreleased entries under a dated section for ``new``."""
    match = _UNRELEASED.search(text)
    if match is None:
        raise ReleaseError("release: CHANGELOG.md has no '## [Unreleased]' section")
    following = _NEXT_SECTION.search(text, match.end())
    body_end = following.start() if following else len(text)
    body = text[match.end() : body_end].strip("\n")
    if not body.strip():
        raise ReleaseError(
            "release: the '## [Unreleased]' section of CHANGELOG.md is empty; "
            "describe the changes before releasing"
        )
    if re.search(rf"^##\s*\[{re.escape(new)}\]", text, re.MULTILINE):
        raise ReleaseError(f"release: CHANGELOG.md already has a section for {new}")
    section = f"## [Unreleased]\n\n## [{new}] - {date.isoformat()}\n\n{body}\n\n"
    return text[: match.start()] + section + text[body_end:].lstrip("\n")


def write_atomic(path: Path, text: str) -> None:
    """Replace an existing file atomically, keeping its permission bits.

    The one hand-rolled temporary file of the tree, on purpose: this script runs in hatch's
    detached ``tools`` environment, which has no workspace package (so no
    ``diff_protocol.io.atomic_write``). It only ever rewrites files that exist (pyproject.toml,
    ``__init__.py``, CHANGELOG.md), whose mode it copies to the new file.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def prepare(
    root: Path, name: str, part: str, *, date: dt.date, dry_run: bool
) -> tuple[str, str, list[Path]]:
    """Compute and (unless ``dry_run``) write the release; returns (old, new, files)."""
    wanted = canonicalize_name(name)
    problems: list = []
    for folder in distribution_folders(root):
        dist = read_distribution(folder, root, problems)
        if dist is not None and dist.name == wanted:
            break
    else:
        raise ReleaseError(f"release: no distribution named {name!r} under {root}")
    if dist.version is None:
        raise ReleaseError(f"release: {name} has no usable static version: {problems}")
    old = dist.version
    new = next_version(old, part)
    if Version(new) <= Version(old):
        raise ReleaseError(f"release: {new} is not higher than {old}")

    edits: dict[Path, str] = {}
    pyproject = dist.folder / "pyproject.toml"
    edits[pyproject] = set_project_version(pyproject.read_text(encoding="utf-8"), new)
    for import_name in dist.import_names:
        init_file = dist.folder / "src" / import_name / "__init__.py"
        if not init_file.is_file():
            raise ReleaseError(f"release: {init_file} is missing")
        edits[init_file] = set_dunder_version(init_file.read_text(encoding="utf-8"), new)
    changelog = dist.folder / "CHANGELOG.md"
    if not changelog.is_file():
        raise ReleaseError(f"release: {changelog} is missing")
    edits[changelog] = date_changelog(changelog.read_text(encoding="utf-8"), new, date)
    if not dry_run:
        for path, text in edits.items():
            write_atomic(path, text)
    return old, new, list(edits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bump one distribution and print its tag.")
    parser.add_argument("name", help="distribution, e.g. diff-core")
    parser.add_argument("part", help="major, minor, patch, rc, post, dev, release or X.Y.Z")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.date.today())
    parser.add_argument("--dry-run", action="store_true", help="show what would change")
    parser.add_argument("--root", type=Path, default=None, help="monorepo root")
    args = parser.parse_args(argv)
    root = (args.root or find_repo_root(Path.cwd())).resolve()
    try:
        old, new, files = prepare(root, args.name, args.part, date=args.date, dry_run=args.dry_run)
    except ReleaseError as exc:
        print(exc, file=sys.stderr)
        return 1
    name = canonicalize_name(args.name)
    verb = "would change" if args.dry_run else "changed"
    print(
        f"{name}: {old} -> {new}; {verb} "
        + ", ".join(p.relative_to(root).as_posix() for p in files)
    )
    release = Version(new).base_version
    if Version(new).is_prerelease:
        print(
            f"note: {new} is a pre-release; PEP 440 sorts it below {release}, so a sibling "
            f"range such as >={release} does not admit it"
        )
    if not args.dry_run:
        _, problems = check_tree(root)
        if problems:
            print("sibling-version check after the bump (fix these before tagging):")
            for problem in problems:
                print(f"  {problem}")
    print(f"tag: {name}-v{new}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
