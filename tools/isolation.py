"""Isolation check: every distribution built, installed alone and tested from outside the tree.

Usage (from the repository root)::

    hatch run tools:isolation --all
    hatch run tools:isolation diff-core diff-pixel
    hatch run tools:isolation --lowest diff-protocol diff-core

Per distribution:

1. build the sdist, then the wheel *from the sdist* (``python -m build`` does exactly that), into
   one wheelhouse shared by the run; siblings the selection needs are built first;
2. check the wheel: no ``tests/`` folder, a ``py.typed`` marker in every top-level package, a
   license file and a license expression in the metadata, the version of ``pyproject.toml``;
3. create a fresh venv and install the wheel with its extras (``test``, plus the row's extras in
   RULES) from the wheel file, the sibling wheels it needs given as files, ``--find-links`` to
   the wheelhouse and a constraints file pinning every sibling to its local version, so a
   same-named project on PyPI is never taken. Development pins (torch==2.13.0, the CPU wheel that
   the machine's pip configuration finds) go into the same constraints file;
4. from a temporary directory, import the distribution's packages and assert that the frameworks
   its RULES row forbids stay out of ``sys.modules`` (and, where the row says so, are not even
   installed);
5. copy the distribution's ``tests/`` folder and the root ``pytest.ini`` into that temporary
   directory and run pytest against the installed copy (default markers: fast tests only).

``--lowest`` adds an exact pin on every declared lower bound (``numpy>=2.0`` -> ``numpy==2.0``)
of the requirements being installed to the constraints file; a bound that pip cannot install for
this Python is reported by name.

A new package adds one row to RULES (or none: a distribution without a row gets DEFAULT_RULE,
which imports it and forbids nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from check_versions import Distribution, check_tree, find_repo_root

#: Frameworks by import name, with the distributions that provide them.
FRAMEWORK_DISTRIBUTIONS = {
    "jax": ("jax", "jaxlib"),
    "flax": ("flax",),
    "torch": ("torch",),
}


@dataclass(frozen=True)
class Rule:
    """Import rules of one distribution.

    extras: extras installed with the wheel (those the distribution does not define are an error).
    forbid_imports: top-level modules that importing the distribution must not load.
    forbid_installed: framework import names (keys of FRAMEWORK_DISTRIBUTIONS) whose
        distributions must not even be installed by the wheel with its extras.
    """

    extras: tuple[str, ...] = ("test",)
    forbid_imports: tuple[str, ...] = ()
    forbid_installed: tuple[str, ...] = ()


_JAX_PACKAGE = Rule(forbid_imports=("torch",))

#: One row per distribution (DESIGN.md: diff-protocol and diff-core are framework-neutral,
#: JAX packages import no torch, diff-edm3d imports no JAX).
RULES: dict[str, Rule] = {
    "diff-protocol": Rule(
        forbid_imports=("jax", "torch"), forbid_installed=("jax", "flax", "torch")
    ),
    "diff-core": Rule(forbid_imports=("jax", "torch"), forbid_installed=("jax", "flax", "torch")),
    "diff-pixel": _JAX_PACKAGE,
    "diff-distill": _JAX_PACKAGE,
    "diff-consistency": _JAX_PACKAGE,
    "diff-rolling": _JAX_PACKAGE,
    "diff-compress": _JAX_PACKAGE,
    "diff-semantica": _JAX_PACKAGE,
    "diff-dorsal": _JAX_PACKAGE,
    "diff-unlearn": _JAX_PACKAGE,
    "diff-edm3d": Rule(extras=("test", "all"), forbid_imports=("jax", "flax")),
}
DEFAULT_RULE = Rule()

#: Pins of the development/CI machines that hold in every venv (DESIGN.md: torch is installed as
#: the CPU wheel 2.13.0 that pip finds through the machine's find-links; any other torch is a
#: multi-GB CUDA download). These also win over --lowest.
DEVELOPMENT_PINS = {"torch": "2.13.0"}

#: Environment variables that would let the source tree or another environment leak in.
_LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONSAFEPATH")


class IsolationError(Exception):
    """A step failed; the message says which and why."""


@dataclass
class Report:
    name: str
    seconds: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    summary: str = ""


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(cmd: list[str], *, cwd: Path | None = None, log: Path) -> subprocess.CompletedProcess:
    """Run a command, appending its output to ``log``; never reads stdin."""
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(map(str, cmd))}\n")
        fh.flush()
        return subprocess.run(
            [str(c) for c in cmd],
            cwd=cwd,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=False,
        )


def _tail(log: Path, lines: int = 25) -> str:
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join("    " + line for line in text[-lines:])


def _self_extras(dist_name: str, extras: set[str], optional: dict[str, list[str]]) -> set[str]:
    """Extras reached from ``extras``, following self-references such as ``pkg[e3nn,qm9]``."""
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional.get(extra, []):
            req = Requirement(text)
            if canonicalize_name(req.name) == dist_name:
                todo.extend(req.extras)
    return seen


@dataclass
class Project:
    """A distribution folder with the metadata isolation needs."""

    dist: Distribution
    dependencies: list[str]
    optional: dict[str, list[str]]

    @property
    def name(self) -> str:
        return self.dist.name

    @property
    def version(self) -> str:
        assert self.dist.version is not None
        return self.dist.version

    @classmethod
    def load(cls, dist: Distribution) -> Project:
        data = tomllib.loads((dist.folder / "pyproject.toml").read_text(encoding="utf-8"))
        project = data["project"]
        return cls(
            dist=dist,
            dependencies=list(project.get("dependencies", [])),
            optional={
                canonicalize_name(k): list(v)
                for k, v in project.get("optional-dependencies", {}).items()
            },
        )

    def requirements(self, extras: tuple[str, ...]) -> list[Requirement]:
        """Requirements installed with ``extras`` whose markers hold here (self-refs resolved)."""
        env = default_environment()
        reached = _self_extras(self.name, {canonicalize_name(e) for e in extras}, self.optional)
        texts = list(self.dependencies)
        for extra in sorted(reached):
            texts.extend(self.optional.get(extra, []))
        out = []
        for text in texts:
            req = Requirement(text)
            if canonicalize_name(req.name) == self.name:
                continue
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            out.append(req)
        return out


def sibling_closure(
    root: Project, projects: dict[str, Project], extras: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    """Siblings (with their extras) that installing ``root`` with ``extras`` pulls in."""
    needed: dict[str, set[str]] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(root.name, extras)]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, want = todo.pop()
        if (name, want) in seen:
            continue
        seen.add((name, want))
        for req in projects[name].requirements(want):
            sib = canonicalize_name(req.name)
            if sib in projects and sib != root.name:
                needed.setdefault(sib, set()).update(req.extras)
                todo.append((sib, tuple(sorted(req.extras))))
    return {name: tuple(sorted(e)) for name, e in needed.items()}


def lowest_pins(
    requirements: list[Requirement], siblings: set[str]
) -> tuple[dict[str, str], list[str]]:
    """Exact pins for every declared lower bound; notes for bounds that cannot be pinned."""
    pins: dict[str, str] = {}
    notes: list[str] = []
    for req in requirements:
        name = canonicalize_name(req.name)
        if name in siblings:
            continue
        for spec in req.specifier:
            if spec.operator in (">=", "~="):
                if name in DEVELOPMENT_PINS:
                    notes.append(
                        f"{req}: lower bound not pinned, {name}=={DEVELOPMENT_PINS[name]} is the "
                        "development pin (the only build on the machine's find-links)"
                    )
                    continue
                current = pins.get(name)
                if current is None or Version(spec.version) > Version(current):
                    pins[name] = spec.version
            elif spec.operator == ">":
                notes.append(f"{req}: exclusive lower bound cannot be pinned exactly")
    return pins, notes


class Isolation:
    """One run: a work folder, one wheelhouse, reports per distribution."""

    def __init__(self, repo: Path, work: Path, *, lowest: bool, keep: bool) -> None:
        self.repo = repo
        self.work = work
        self.lowest = lowest
        self.keep = keep
        self.wheelhouse = work / "wheelhouse"
        self.wheelhouse.mkdir(parents=True, exist_ok=True)
        self.logs = work / "logs"
        self.logs.mkdir(exist_ok=True)
        self.wheels: dict[str, Path] = {}
        dists, problems = check_tree(repo)
        unusable = [
            p for p in problems if "project.version" in p.message or "[project]" in p.message
        ]
        if unusable:
            raise IsolationError("\n".join(map(str, unusable)))
        self.projects = {d.name: Project.load(d) for d in dists}

    # -- building -----------------------------------------------------------------------------
    def build(self, name: str, report: Report) -> Path:
        if name in self.wheels:
            return self.wheels[name]
        project = self.projects[name]
        out = self.work / "dist" / name
        shutil.rmtree(out, ignore_errors=True)
        log = self.logs / f"{name}-build.log"
        start = time.perf_counter()
        # Without --sdist/--wheel, build makes the sdist and then the wheel from the unpacked sdist.
        proc = _run([sys.executable, "-m", "build", "--outdir", out, project.dist.folder], log=log)
        report.seconds["build"] = report.seconds.get("build", 0.0) + time.perf_counter() - start
        if proc.returncode != 0:
            raise IsolationError(f"build of {name} failed (log {log}):\n{_tail(log)}")
        sdists = list(out.glob("*.tar.gz"))
        wheels = list(out.glob("*.whl"))
        if len(sdists) != 1 or len(wheels) != 1:
            raise IsolationError(
                f"build of {name} gave {sdists + wheels}, expected one sdist and one wheel"
            )
        wheel = self.wheelhouse / wheels[0].name
        shutil.copy2(wheels[0], wheel)
        self.wheels[name] = wheel
        return wheel

    def check_wheel(self, name: str, wheel: Path) -> list[str]:
        """Contents of the wheel: no tests, py.typed, license, version."""
        project = self.projects[name]
        problems: list[str] = []
        dist_name, version, _, _ = parse_wheel_filename(wheel.name)
        if canonicalize_name(dist_name) != name or str(version) != str(Version(project.version)):
            problems.append(f"{wheel.name}: expected {name} {project.version}")
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
            metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
            metadata = zf.read(metadata_name).decode("utf-8")
        tests = sorted({n for n in names if "tests" in n.split("/")[:-1] or n.startswith("tests/")})
        if tests:
            problems.append(f"{wheel.name}: contains tests ({tests[0]} ...)")
        conftests = [n for n in names if n.endswith("conftest.py")]
        if conftests:
            problems.append(f"{wheel.name}: contains {conftests[0]}")
        for import_name in project.dist.import_names:
            if f"{import_name}/py.typed" not in names:
                problems.append(f"{wheel.name}: missing {import_name}/py.typed")
            if f"{import_name}/__init__.py" not in names:
                problems.append(f"{wheel.name}: missing {import_name}/__init__.py")
        license_files = [n for n in names if ".dist-info/licenses/" in n]
        if not license_files:
            problems.append(f"{wheel.name}: no license file under *.dist-info/licenses/")
        headers = [line.split(":", 1)[0] for line in metadata.splitlines() if ":" in line]
        if "License-Expression" not in headers and "License" not in headers:
            problems.append(f"{wheel.name}: METADATA declares no License-Expression")
        return problems

    # -- installing and testing ---------------------------------------------------------------
    def constraints(self, pins: dict[str, str], path: Path) -> Path:
        lines = [f"# generated by tools/isolation.py for {path.parent.name}"]
        lines += [f"{n}=={p.version}" for n, p in sorted(self.projects.items())]
        lines += [f"{n}=={v}" for n, v in sorted(DEVELOPMENT_PINS.items())]
        lines += [f"{n}=={v}" for n, v in sorted(pins.items())]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def pip(self, python: Path, *args: str | Path) -> list[str | Path]:
        # pip of this (tools) environment installs into the target venv: no pip bootstrap per venv.
        return [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "--disable-pip-version-check",
            *args,
        ]

    def check_dist(self, name: str) -> Report:
        report = Report(name)
        project = self.projects[name]
        rule = RULES.get(name, DEFAULT_RULE)
        unknown = [e for e in rule.extras if canonicalize_name(e) not in project.optional]
        if unknown:
            report.problems.append(
                f"{name}: RULES asks for extras {unknown} that pyproject.toml does not define"
            )
            return report
        siblings = sibling_closure(project, self.projects, rule.extras)
        try:
            wheel = self.build(name, report)
            report.problems += self.check_wheel(name, wheel)
            sibling_wheels = [self.build(s, report) for s in siblings]
        except IsolationError as exc:
            report.problems.append(str(exc))
            return report

        base = self.work / "runs" / name
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        venv = base / "venv"
        python = venv / "bin" / "python"
        log = self.logs / f"{name}-install.log"
        log.unlink(missing_ok=True)
        start = time.perf_counter()
        proc = _run([sys.executable, "-m", "venv", "--without-pip", venv], log=log)
        if proc.returncode != 0:
            report.problems.append(f"venv creation failed:\n{_tail(log)}")
            return report
        pins: dict[str, str] = {}
        if self.lowest:
            requirements = project.requirements(rule.extras)
            for sib, sib_extras in siblings.items():
                requirements += self.projects[sib].requirements(sib_extras)
            pins, notes = lowest_pins(requirements, set(self.projects))
            for note in notes:
                print(f"  [{name}] note: {note}")
            listing = ", ".join(f"{n}=={v}" for n, v in sorted(pins.items()))
            print(f"  [{name}] lowest pins: {listing or 'none'}")
        constraints = self.constraints(pins, base / "constraints.txt")
        extras = ",".join(rule.extras)
        install = self.pip(
            python,
            "install",
            "--find-links",
            self.wheelhouse,
            "-c",
            constraints,
            f"{wheel}[{extras}]" if extras else wheel,
            *sibling_wheels,
        )
        proc = _run(install, log=log)
        report.seconds["install"] = time.perf_counter() - start
        if proc.returncode != 0:
            message = f"install failed (log {log}):\n{_tail(log)}"
            if pins:
                bad = self.uninstallable(python, pins, log)
                if bad:
                    message += "\n  lower bounds pip cannot install here: " + ", ".join(bad)
                else:
                    message += (
                        "\n  each lower bound installs on its own: they conflict with each other "
                        "or with a dependency (pip's report above names the pair)"
                    )
            report.problems.append(message)
            return report
        report.problems += self.check_installed(name, python, rule, log)

        tmp = base / "outside"
        tmp.mkdir()
        report.problems += self.check_imports(name, python, rule, tmp)
        tests = project.dist.folder / "tests"
        if not tests.is_dir():
            report.problems.append(f"{name}: no tests/ folder")
            return report
        shutil.copytree(tests, tmp / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(self.repo / "pytest.ini", tmp / "pytest.ini")
        log = self.logs / f"{name}-tests.log"
        log.unlink(missing_ok=True)
        start = time.perf_counter()
        proc = _run(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=tmp, log=log
        )
        report.seconds["tests"] = time.perf_counter() - start
        lines = [
            ln
            for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()
            if ln.strip()
        ]
        report.summary = lines[-1].strip("= ") if lines else ""
        if proc.returncode == 5:
            report.problems.append(f"pytest collected no tests (log {log})")
        elif proc.returncode != 0:
            report.problems.append(
                f"tests failed, exit {proc.returncode} (log {log}):\n{_tail(log, 40)}"
            )
        if not self.keep:
            shutil.rmtree(venv, ignore_errors=True)
        return report

    def uninstallable(self, python: Path, pins: dict[str, str], log: Path) -> list[str]:
        """Pins that pip cannot install on their own for this interpreter."""
        bad = []
        for n, v in sorted(pins.items()):
            probe = self.pip(
                python, "install", "--dry-run", "--no-deps", "--ignore-installed", f"{n}=={v}"
            )
            if _run(probe, log=log).returncode != 0:
                bad.append(f"{n}=={v}")
        return bad

    def check_installed(self, name: str, python: Path, rule: Rule, log: Path) -> list[str]:
        listing = subprocess.run(
            [str(c) for c in self.pip(python, "list", "--format=json")],
            capture_output=True,
            text=True,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if listing.returncode != 0:
            return [f"pip list failed: {listing.stderr.strip()}"]
        installed = {canonicalize_name(d["name"]): d["version"] for d in json.loads(listing.stdout)}
        with log.open("a", encoding="utf-8") as fh:
            fh.write("\ninstalled: " + json.dumps(installed, sort_keys=True) + "\n")
        problems = []
        for framework in rule.forbid_installed:
            present = [d for d in FRAMEWORK_DISTRIBUTIONS[framework] if d in installed]
            if present:
                problems.append(
                    f"{name}: installing it with its extras installs {', '.join(present)}"
                )
        for sib, project in self.projects.items():
            if sib in installed and installed[sib] != str(Version(project.version)):
                problems.append(
                    f"{name}: sibling {sib} {installed[sib]} installed, local is {project.version}"
                )
        return problems

    def check_imports(self, name: str, python: Path, rule: Rule, cwd: Path) -> list[str]:
        """Import every package of the distribution in a fresh interpreter outside the tree."""
        script = (
            "import importlib, json, sys\n"
            f"names = {self.projects[name].dist.import_names!r}\n"
            "files = {n: importlib.import_module(n).__file__ for n in names}\n"
            "versions = {n: getattr(sys.modules[n], '__version__', None) for n in names}\n"
            "loaded = sorted({m.split('.')[0] for m in sys.modules})\n"
            "print(json.dumps({'files': files, 'versions': versions, 'loaded': loaded}))\n"
        )
        proc = subprocess.run(
            [str(python), "-I", "-c", script],
            cwd=cwd,
            capture_output=True,
            text=True,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if proc.returncode != 0:
            return [f"import failed:\n{proc.stderr.strip()[-2000:]}"]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        problems = []
        site = str(python.parent.parent)
        for module, file in result["files"].items():
            if not str(file).startswith(site):
                problems.append(f"{module} was imported from {file}, not from the venv")
        for module, version in result["versions"].items():
            if version != self.projects[name].version:
                problems.append(
                    f"{module}.__version__ is {version!r}, expected {self.projects[name].version}"
                )
        leaked = sorted(set(rule.forbid_imports) & set(result["loaded"]))
        if leaked:
            problems.append(f"importing {name} loads {', '.join(leaked)} (forbidden by its rule)")
        return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build, install alone and test each distribution.")
    parser.add_argument("names", nargs="*", help="distribution names (e.g. diff-core)")
    parser.add_argument("--all", action="store_true", help="every distribution of the monorepo")
    parser.add_argument(
        "--lowest", action="store_true", help="pin every declared lower bound exactly"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="work folder (default: a temporary one)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the venvs and the work folder")
    args = parser.parse_args(argv)
    if bool(args.names) == args.all:
        parser.error("give either --all or one or more distribution names")

    repo = find_repo_root(Path.cwd())
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="diff-isolation-"))
    try:
        run = Isolation(repo, work, lowest=args.lowest, keep=args.keep or args.work is not None)
    except IsolationError as exc:
        print(f"isolation: {exc}")
        return 1
    names = sorted(run.projects) if args.all else [canonicalize_name(n) for n in args.names]
    unknown = [n for n in names if n not in run.projects]
    if unknown:
        parser.error(f"unknown distributions {unknown}; known: {sorted(run.projects)}")
    print(f"isolation{' --lowest' if args.lowest else ''}: {', '.join(names)} (work folder {work})")
    reports = []
    for name in names:
        start = time.perf_counter()
        print(f"[{name}] building, installing in a fresh venv, testing ...", flush=True)
        report = run.check_dist(name)
        report.seconds["total"] = time.perf_counter() - start
        reports.append(report)
        times = ", ".join(f"{k} {v:.0f} s" for k, v in report.seconds.items())
        status = "ok" if not report.problems else "FAILED"
        print(f"[{name}] {status}: {report.summary or 'no test summary'} ({times})", flush=True)
        for problem in report.problems:
            print(f"[{name}]   {problem}")
    failed = [r.name for r in reports if r.problems]
    print(f"isolation: {len(reports) - len(failed)} passed, {len(failed)} failed")
    if not failed and not (args.keep or args.work):
        shutil.rmtree(work, ignore_errors=True)
    elif failed:
        print(f"isolation: logs kept in {work / 'logs'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
