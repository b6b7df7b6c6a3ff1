"""Sibling-version consistency check for the diff-* monorepo.

Usage (from the repository root)::

    hatch run tools:versions            # or: python tools/check_versions.py [--root DIR]

For every distribution (``shared-core/`` and ``packages/*/``) it checks that

* ``project.version`` is static and a valid PEP 440 version;
* every requirement naming a sibling distribution is a range (lower and upper bound) that the
  sibling's local version satisfies. A local pre-release such as ``0.2.0.dev1`` fails ``>=0.2``
  because PEP 440 sorts it below ``0.2.0``; the report then says to bump straight to the next
  release number after a release instead of using ``.devN`` versions;
* no requirement (sibling or not) is an ``==``/``===`` pin or a direct reference
  (``name @ file://...``): published metadata must leave the resolver room, and PyPI rejects
  direct references;
* ``__version__`` in ``src/<import name>/__init__.py`` equals ``project.version``;
* ``CHANGELOG.md`` has a ``## [Unreleased]`` section or one for the current version.

Problems are printed as ``<file>: <problem>`` lines (paths relative to the root) and the exit
status is 1; a consistent tree prints one summary line and exits 0. Only the standard library's
``tomllib`` and ``packaging`` are needed.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

#: Where distributions live, relative to the repository root (globs).
DISTRIBUTION_GLOBS = ("shared-core", "packages/*")


@dataclass(frozen=True)
class Problem:
    """One finding: the file it concerns (relative to the root) and what is wrong."""

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class Distribution:
    """What the checks need to know about one distribution folder."""

    folder: Path
    name: str
    version: str | None
    requirements: list[tuple[str, str]] = field(default_factory=list)  # (where, requirement)
    import_names: list[str] = field(default_factory=list)


def find_repo_root(start: Path) -> Path:
    """Return the nearest ancestor of ``start`` holding hatch.toml (the monorepo root)."""
    for folder in (start, *start.parents):
        if (folder / "hatch.toml").is_file():
            return folder
    raise FileNotFoundError(f"find_repo_root: no hatch.toml above {start}")


def distribution_folders(root: Path) -> list[Path]:
    """Every folder under the distribution globs that holds a pyproject.toml, sorted."""
    folders: set[Path] = set()
    for pattern in DISTRIBUTION_GLOBS:
        folders.update(p for p in root.glob(pattern) if (p / "pyproject.toml").is_file())
    return sorted(folders)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _import_names(folder: Path, project: dict, tool: dict) -> list[str]:
    """Top-level packages of the wheel: hatch's ``packages`` setting, else src/<name>."""
    wheel = tool.get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {})
    packages = wheel.get("packages")
    if packages:
        return [Path(p).name for p in packages]
    guess = canonicalize_name(project.get("name", "")).replace("-", "_")
    return [guess] if guess else []


def read_distribution(folder: Path, root: Path, problems: list[Problem]) -> Distribution | None:
    """Parse ``folder/pyproject.toml``; record parse problems and return None when unusable."""
    pyproject = folder / "pyproject.toml"
    rel = _rel(pyproject, root)
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        problems.append(Problem(rel, f"cannot be read as TOML ({exc})"))
        return None
    project = data.get("project")
    if not isinstance(project, dict) or not project.get("name"):
        problems.append(Problem(rel, "has no [project] table with a name"))
        return None
    version = project.get("version")
    if "version" in project.get("dynamic", []) or version is None:
        problems.append(Problem(rel, "project.version must be static (no dynamic version)"))
        version = None
    else:
        try:
            Version(str(version))
        except InvalidVersion:
            problems.append(Problem(rel, f"project.version {version!r} is not a PEP 440 version"))
            version = None
    dist = Distribution(
        folder=folder,
        name=canonicalize_name(project["name"]),
        version=version,
        import_names=_import_names(folder, project, data.get("tool", {})),
    )
    for req in project.get("dependencies", []):
        dist.requirements.append(("project.dependencies", req))
    for extra, reqs in project.get("optional-dependencies", {}).items():
        for req in reqs:
            dist.requirements.append((f"project.optional-dependencies.{extra}", req))
    return dist


def _has_upper_bound(req: Requirement) -> bool:
    return any(s.operator in ("<", "<=", "~=") for s in req.specifier)


def _has_lower_bound(req: Requirement) -> bool:
    return any(s.operator in (">", ">=", "~=") for s in req.specifier)


def check_requirements(
    dist: Distribution, siblings: dict[str, str | None], root: Path
) -> list[Problem]:
    """Pins, direct references and sibling ranges of one distribution."""
    rel = _rel(dist.folder / "pyproject.toml", root)
    problems: list[Problem] = []
    for where, text in dist.requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            problems.append(Problem(rel, f"{where}: invalid requirement {text!r} ({exc})"))
            continue
        name = canonicalize_name(req.name)
        if req.url:
            problems.append(
                Problem(
                    rel, f"{where}: direct reference {text!r} is not allowed; use a version range"
                )
            )
            continue
        pins = [s for s in req.specifier if s.operator in ("==", "===")]
        if pins:
            problems.append(
                Problem(rel, f"{where}: {text!r} pins with {pins[0].operator}; declare a range")
            )
            continue
        if name not in siblings or name == dist.name:
            continue
        local = siblings[name]
        if not (_has_lower_bound(req) and _has_upper_bound(req)):
            problems.append(
                Problem(
                    rel,
                    f"{where}: sibling requirement {text!r} must be a range with lower and upper "
                    f"bound (e.g. {req.name}>=0.1,<0.2)",
                )
            )
        if local is None:
            continue  # the sibling's own file already reports its unusable version
        if not req.specifier.contains(Version(local), prereleases=True):
            message = f"{where}: {text!r} is not satisfied by the local {req.name} {local}"
            version = Version(local)
            if version.is_prerelease or version.is_devrelease:
                release = version.base_version
                if req.specifier.contains(Version(release), prereleases=True):
                    message += (
                        f" (PEP 440 sorts {local} below {release}, so it fails this range; "
                        f"bump straight to the next release number {release} right after a "
                        "release instead of using pre-release versions)"
                    )
            problems.append(Problem(rel, message))
    return problems


_VERSION_ASSIGN = "__version__"


def read_dunder_version(init_file: Path) -> str | None:
    """The string literal assigned to ``__version__`` at module level, or None."""
    tree = ast.parse(init_file.read_text(encoding="utf-8"), filename=str(init_file))
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and target.id == _VERSION_ASSIGN:
                value = node.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    return value.value
                return None
    return None


def check_dunder_version(dist: Distribution, root: Path) -> list[Problem]:
    """``__version__`` of every top-level package equals ``project.version``."""
    problems: list[Problem] = []
    if dist.version is None:
        return problems
    for import_name in dist.import_names:
        init_file = dist.folder / "src" / import_name / "__init__.py"
        if not init_file.is_file():
            init_file = dist.folder / import_name / "__init__.py"
        rel = _rel(init_file, root)
        if not init_file.is_file():
            problems.append(Problem(rel, f"missing (package {import_name!r} of {dist.name})"))
            continue
        found = read_dunder_version(init_file)
        if found is None:
            problems.append(Problem(rel, 'has no literal __version__ = "..." assignment'))
        elif found != dist.version:
            problems.append(
                Problem(
                    rel,
                    f"__version__ {found!r} is stale: project.version is {dist.version!r}",
                )
            )
    return problems


_SECTION = re.compile(r"^##\s*\[([^\]]+)\]", re.MULTILINE)


def check_changelog(dist: Distribution, root: Path) -> list[Problem]:
    """CHANGELOG.md exists and has ``## [Unreleased]`` or ``## [<version>]``."""
    changelog = dist.folder / "CHANGELOG.md"
    rel = _rel(changelog, root)
    if not changelog.is_file():
        return [Problem(rel, "missing (Keep a Changelog format with ## [Unreleased])")]
    sections = {s.strip().lower() for s in _SECTION.findall(changelog.read_text(encoding="utf-8"))}
    if "unreleased" in sections or (dist.version and dist.version.lower() in sections):
        return []
    return [
        Problem(
            rel,
            f"has neither a '## [Unreleased]' section nor one for version {dist.version}",
        )
    ]


def check_tree(root: Path) -> tuple[list[Distribution], list[Problem]]:
    """Run every check on the monorepo at ``root``."""
    problems: list[Problem] = []
    dists: list[Distribution] = []
    for folder in distribution_folders(root):
        dist = read_distribution(folder, root, problems)
        if dist is not None:
            dists.append(dist)
    seen: dict[str, Distribution] = {}
    for dist in dists:
        if dist.name in seen:
            problems.append(
                Problem(
                    _rel(dist.folder / "pyproject.toml", root),
                    f"distribution name {dist.name!r} is also used by "
                    f"{_rel(seen[dist.name].folder / 'pyproject.toml', root)}",
                )
            )
        seen[dist.name] = dist
    siblings = {dist.name: dist.version for dist in dists}
    for dist in dists:
        problems.extend(check_requirements(dist, siblings, root))
        problems.extend(check_dunder_version(dist, root))
        problems.extend(check_changelog(dist, root))
    return dists, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="monorepo root (default: the folder holding hatch.toml above the working directory)",
    )
    args = parser.parse_args(argv)
    root = (args.root or find_repo_root(Path.cwd())).resolve()
    dists, problems = check_tree(root)
    if not dists and not problems:
        print(f"{root}: no distributions found under {', '.join(DISTRIBUTION_GLOBS)}")
        return 1
    for problem in problems:
        print(problem)
    if problems:
        return 1
    listing = ", ".join(f"{d.name} {d.version}" for d in dists)
    print(f"check_versions: {len(dists)} distributions consistent ({listing})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
