"""Isolation check: every distribution built, installed alone and checked from outside the tree.

Usage (from the repository root)::

    hatch run tools:isolation --all
    hatch run tools:isolation diff-core diff-pixel
    hatch run tools:isolation --lowest diff-protocol diff-core
    hatch run tools:isolation --full diff-core        # the whole fast suite, as before a release
    hatch run tools:isolation --all --jobs 2           # two distributions at a time (CI)

Per distribution:

1. check the extras: a distribution with optional extras besides ``test`` defines an ``all``
   extra that collects every one of them (accelerator extras such as ``gpu`` excepted);
2. build the sdist, then the wheel *from the sdist* (``python -m build`` does exactly that), into
   one wheelhouse shared by the run; siblings the selection needs are built first;
3. check the wheel: no ``tests/`` folder, a ``py.typed`` marker in every top-level package, a
   license file and a license expression in the metadata, the version of ``pyproject.toml``;
4. create a fresh venv and install the wheel with its extras (``test`` and ``all`` where the
   distribution defines it, unless its RULES row names the extras) from the wheel file, the
   sibling wheels it needs given as files, ``--find-links`` to the wheelhouse and a constraints
   file pinning every sibling to its local version, so a same-named project on PyPI is never
   taken. Development pins (torch==2.13.0, the CPU wheel that the machine's pip configuration
   finds) go into the same constraints file. pip installs with ``--no-compile``: only the modules
   the checks import get byte-compiled, on first import (about 30 s less per JAX venv);
5. from a temporary directory, import the distribution's packages and load every entry point it
   declares (console scripts, ``diff.*`` plugins), asserting that the frameworks its RULES row
   forbids stay out of ``sys.modules`` (and, where the row says so, are not even installed);
6. copy the distribution's ``tests/`` folder and the root ``pytest.ini`` into that temporary
   directory and, against the installed copy: ``pytest --collect-only`` of the whole folder
   (every test, slow ones included, must collect) and ``pytest -m smoke``, the few
   representative fast tests the package marks ``@pytest.mark.smoke``. A distribution with no
   smoke test, or whose smoke tests all skip, fails. (The whole fast suite already ran in the
   tree in CI's test step; ``--full`` runs it here instead of the smoke subset.)

``--lowest`` adds an exact pin on every declared lower bound (``numpy>=2.0`` -> ``numpy==2.0``)
of the requirements being installed to the constraints file; a bound that pip cannot install for
this Python is reported by name.

The environment passes through to the venvs (minus variables that would let the source tree in,
see ``_LEAKY_ENV``): ``JAX_COMPILATION_CACHE_DIR`` and the cache thresholds that ``.ci/run``
exports reach the smoke tests, which then reuse what the test step compiled.

A new package needs: a few ``@pytest.mark.smoke`` tests, a ``test`` extra, an ``all`` extra if
it has other extras, and a RULES row (or none: a distribution without a row gets DEFAULT_RULE,
which imports it and forbids nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
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

    extras: extras installed with the wheel; None (the default) means ``test`` plus ``all`` where
        the distribution defines it. Extras named here that the distribution does not define are
        an error.
    forbid_imports: top-level modules that importing the distribution (and loading its entry
        points) must not load.
    forbid_installed: framework import names (keys of FRAMEWORK_DISTRIBUTIONS) whose
        distributions must not even be installed by the wheel with its extras.
    """

    extras: tuple[str, ...] | None = None
    forbid_imports: tuple[str, ...] = ()
    forbid_installed: tuple[str, ...] = ()


_JAX_PACKAGE = Rule(forbid_imports=("torch",))

#: diff-protocol and diff-core are installed with ``test`` only: their ``all`` extra brings jax
#: and torch, which these rows forbid installing (the isolation venv proves that the numpy and
#: array-api-strict paths work with no framework at all; the test step covers the frameworks).
_NEUTRAL_PACKAGE = Rule(
    extras=("test",), forbid_imports=("jax", "torch"), forbid_installed=("jax", "flax", "torch")
)

#: One row per distribution (DESIGN.md: diff-protocol and diff-core are framework-neutral,
#: JAX packages import no torch, diff-edm3d imports no JAX).
RULES: dict[str, Rule] = {
    "diff-protocol": _NEUTRAL_PACKAGE,
    "diff-core": _NEUTRAL_PACKAGE,
    "diff-pixel": _JAX_PACKAGE,
    "diff-distill": _JAX_PACKAGE,
    "diff-consistency": _JAX_PACKAGE,
    "diff-rolling": _JAX_PACKAGE,
    "diff-compress": _JAX_PACKAGE,
    "diff-semantica": _JAX_PACKAGE,
    "diff-dorsal": _JAX_PACKAGE,
    "diff-unlearn": _JAX_PACKAGE,
    "diff-edm3d": Rule(forbid_imports=("jax", "flax")),
}
DEFAULT_RULE = Rule()

#: Extras that ``all`` need not collect: accelerator builds (multi-GB, not installable on the
#: CPU machines) and the test tooling.
NOT_IN_ALL = ("test", "all", "gpu", "cuda", "tpu")

#: The marker of the representative fast tests run against the installed wheel, and the
#: expression that selects them (a second ``-m`` replaces pytest.ini's, so it repeats
#: ``not slow and not gpu``).
SMOKE_MARKER = "smoke"
SMOKE_EXPRESSION = "smoke and not slow and not gpu"

#: Pins of the development/CI machines that hold in every venv (DESIGN.md: torch is installed as
#: the CPU wheel 2.13.0 that pip finds through the machine's find-links; any other torch is a
#: multi-GB CUDA download). These also win over --lowest.
DEVELOPMENT_PINS = {"torch": "2.13.0"}

#: Environment variables that would let the source tree or another environment leak in (and
#: PYTHONDONTWRITEBYTECODE: the venvs are installed with ``--no-compile``, which saves ~30 s of
#: byte-compiling jax, scipy, scikit-learn ... per venv, so the modules that the checks actually
#: import are compiled once, on first import, and must be allowed to cache their bytecode).
_LEAKY_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "PYTHONSTARTUP",
    "PYTHONSAFEPATH",
    "PYTHONDONTWRITEBYTECODE",
)


class IsolationError(Exception):
    """A step failed; the message says which and why."""


@dataclass
class Report:
    name: str
    seconds: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    summary: str = ""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}


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


def pytest_summary(text: str) -> str:
    """pytest's closing line (``3 passed, 1 skipped in 0.5s``) without its ``=`` frame."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip("= ") if lines else ""


def summary_counts(summary: str) -> dict[str, int]:
    """``"3 passed, 1 skipped, 2 deselected in 0.5s"`` -> ``{"passed": 3, "skipped": 1, ...}``."""
    counts: dict[str, int] = {}
    for number, word in re.findall(r"(\d+) (\w+)", summary.split(" in ")[0]):
        key = {"error": "errors", "test": "tests", "warning": "warnings"}.get(word, word)
        counts[key] = counts.get(key, 0) + int(number)
    return counts


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

    def install_extras(self, rule: Rule) -> tuple[str, ...]:
        """The extras installed with the wheel: the row's, else ``test`` (+ ``all`` if defined)."""
        if rule.extras is not None:
            return rule.extras
        return ("test", "all") if "all" in self.optional else ("test",)

    def all_extra_problems(self) -> list[str]:
        """``all`` must exist when other extras do, and collect every one of them."""
        others = [e for e in self.optional if e not in NOT_IN_ALL]
        if not others:
            return []
        if "all" not in self.optional:
            return [
                f"{self.name}: defines extras {others} but no `all` extra collecting them "
                f"(`pip install {self.name}[all]` must install every optional dependency)"
            ]
        reached = _self_extras(self.name, {"all"}, self.optional)
        have: dict[str, set[str]] = {}
        for extra in reached:
            for text in self.optional.get(extra, []):
                req = Requirement(text)
                have.setdefault(canonicalize_name(req.name), set()).update(req.extras)
        missing = []
        for extra in others:
            if extra in reached:
                continue
            for text in self.optional[extra]:
                req = Requirement(text)
                name = canonicalize_name(req.name)
                if name == self.name:
                    if not {canonicalize_name(e) for e in req.extras} <= reached:
                        missing.append(f"{text} (from [{extra}])")
                elif name not in have or not set(req.extras) <= have[name]:
                    missing.append(f"{text} (from [{extra}])")
        if missing:
            return [f"{self.name}: the `all` extra misses {', '.join(missing)}"]
        return []

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

    def __init__(
        self, repo: Path, work: Path, *, lowest: bool, keep: bool, full: bool = False
    ) -> None:
        self.repo = repo
        self.work = work
        self.lowest = lowest
        self.keep = keep
        self.full = full
        self.wheelhouse = work / "wheelhouse"
        self.wheelhouse.mkdir(parents=True, exist_ok=True)
        self.logs = work / "logs"
        self.logs.mkdir(exist_ok=True)
        self.wheels: dict[str, Path] = {}
        # --jobs N checks distributions on threads; a wheel is built once, under its lock.
        self._build_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        dists, problems = check_tree(repo)
        unusable = [
            p for p in problems if "project.version" in p.message or "[project]" in p.message
        ]
        if unusable:
            raise IsolationError("\n".join(map(str, unusable)))
        self.projects = {d.name: Project.load(d) for d in dists}

    # -- building -----------------------------------------------------------------------------
    def build(self, name: str, report: Report) -> Path:
        with self._locks_lock:
            lock = self._build_locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self.wheels:
                self.wheels[name] = self._build(name, report)
            return self.wheels[name]

    def _build(self, name: str, report: Report) -> Path:
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
        extras = project.install_extras(rule)
        unknown = [e for e in extras if canonicalize_name(e) not in project.optional]
        if unknown:
            report.problems.append(
                f"{name}: installs extras {list(unknown)} that pyproject.toml does not define"
            )
            return report
        report.problems += project.all_extra_problems()
        siblings = sibling_closure(project, self.projects, extras)
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
            requirements = project.requirements(extras)
            for sib, sib_extras in siblings.items():
                requirements += self.projects[sib].requirements(sib_extras)
            pins, notes = lowest_pins(requirements, set(self.projects))
            for note in notes:
                print(f"  [{name}] note: {note}")
            listing = ", ".join(f"{n}=={v}" for n, v in sorted(pins.items()))
            print(f"  [{name}] lowest pins: {listing or 'none'}")
        constraints = self.constraints(pins, base / "constraints.txt")
        install = self.pip(
            python,
            "install",
            "--no-compile",
            "--find-links",
            self.wheelhouse,
            "-c",
            constraints,
            f"{wheel}[{','.join(extras)}]" if extras else wheel,
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
        start = time.perf_counter()
        problems, entry_points = self.check_imports(name, python, rule, tmp)
        report.seconds["imports"] = time.perf_counter() - start
        report.problems += problems
        outcome = check_tests(
            python,
            name,
            project.dist.folder / "tests",
            self.repo / "pytest.ini",
            tmp,
            self.logs,
            full=self.full,
        )
        report.seconds.update(outcome.seconds)
        report.problems += outcome.problems
        report.summary = f"imports and {entry_points} entry points checked; {outcome.summary}"
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

    def check_imports(
        self, name: str, python: Path, rule: Rule, cwd: Path
    ) -> tuple[list[str], int]:
        """Import every package, then load every entry point, in a fresh interpreter outside
        the tree; returns the problems and the number of entry points loaded."""
        project = self.projects[name]
        script = IMPORT_SCRIPT.format(names=project.dist.import_names, dist=name)
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
            return [f"import failed:\n{proc.stderr.strip()[-2000:]}"], 0
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        problems = []
        site = str(python.parent.parent)
        for module, file in result["files"].items():
            if not str(file).startswith(site):
                problems.append(f"{module} was imported from {file}, not from the venv")
        for module, version in result["versions"].items():
            if version != project.version:
                problems.append(f"{module}.__version__ is {version!r}, expected {project.version}")
        leaked = sorted(set(rule.forbid_imports) & set(result["loaded"]))
        if leaked:
            problems.append(f"importing {name} loads {', '.join(leaked)} (forbidden by its rule)")
        for entry, error in result["entry_point_errors"].items():
            problems.append(f"entry point {entry} does not load: {error}")
        leaked = sorted(set(rule.forbid_imports) & set(result["loaded_by_entry_points"]))
        if leaked:
            problems.append(
                f"loading the entry points of {name} loads {', '.join(leaked)} "
                "(forbidden by its rule)"
            )
        return problems, result["entry_points"]


#: Run with ``python -I -c`` in the venv: import the packages, then load every entry point.
IMPORT_SCRIPT = """\
import importlib, json, sys
from importlib.metadata import distribution
names = {names!r}
files = {{n: importlib.import_module(n).__file__ for n in names}}
versions = {{n: getattr(sys.modules[n], "__version__", None) for n in names}}
loaded = sorted({{m.split(".")[0] for m in sys.modules}})
errors = {{}}
eps = list(distribution({dist!r}).entry_points)
for ep in eps:
    try:
        ep.load()
    except Exception as exc:
        errors[f"{{ep.group}}:{{ep.name}} = {{ep.value}}"] = f"{{type(exc).__name__}}: {{exc}}"
after = sorted({{m.split(".")[0] for m in sys.modules}})
print(json.dumps({{"files": files, "versions": versions, "loaded": loaded,
                  "entry_points": len(eps), "entry_point_errors": errors,
                  "loaded_by_entry_points": after}}))
"""


@dataclass
class TestOutcome:
    """What the test stages found against one installed wheel."""

    problems: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    summary: str = ""


def _pytest(python: Path, args: list[str], cwd: Path, log: Path) -> tuple[int, str, float]:
    log.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd, log=log)
    took = time.perf_counter() - start
    return proc.returncode, pytest_summary(log.read_text(encoding="utf-8", errors="replace")), took


def check_tests(
    python: Path,
    name: str,
    tests: Path,
    pytest_ini: Path,
    cwd: Path,
    logs: Path,
    *,
    full: bool = False,
) -> TestOutcome:
    """Copy ``tests`` and ``pytest_ini`` into ``cwd`` and run pytest there with ``python``.

    Two stages: ``--collect-only`` of every test (no marker filter: slow and gpu tests must
    collect too), then the smoke subset (``-m SMOKE_EXPRESSION``), or with ``full`` the whole
    fast suite. Problems name the distribution and the log.
    """
    outcome = TestOutcome()
    if not tests.is_dir():
        outcome.problems.append(f"{name}: no tests/ folder")
        return outcome
    shutil.rmtree(cwd / "tests", ignore_errors=True)
    shutil.copytree(tests, cwd / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(pytest_ini, cwd / "pytest.ini")

    log = logs / f"{name}-collect.log"
    rc, summary, took = _pytest(python, ["--collect-only", "-m", "", "tests"], cwd, log)
    outcome.seconds["collect"] = took
    collected = summary_counts(summary).get("tests", 0) if rc == 0 else 0
    if rc == 5:
        outcome.problems.append(f"{name}: pytest collected no tests (log {log})")
    elif rc != 0:
        outcome.problems.append(
            f"{name}: tests do not collect against the installed wheel, exit {rc} "
            f"(log {log}):\n{_tail(log, 30)}"
        )

    if full:
        stage, args = "tests", ["tests"]
    else:
        stage, args = "smoke", ["-m", SMOKE_EXPRESSION, "tests"]
    log = logs / f"{name}-{stage}.log"
    rc, summary, took = _pytest(python, args, cwd, log)
    outcome.seconds[stage] = took
    counts = summary_counts(summary)
    if rc == 5 and not full:
        outcome.problems.append(
            f"{name} has no smoke test: mark a few representative fast tests "
            f"@pytest.mark.{SMOKE_MARKER} (log {log})"
        )
    elif rc == 5:
        outcome.problems.append(f"{name}: pytest collected no tests (log {log})")
    elif rc != 0:
        outcome.problems.append(
            f"{name}: {'smoke tests' if stage == 'smoke' else 'tests'} failed, exit {rc} "
            f"(log {log}):\n{_tail(log, 40)}"
        )
    elif counts.get("passed", 0) == 0:
        outcome.problems.append(
            f"{name}: every {stage} test skipped, nothing was checked against the installed "
            f"wheel ({summary}; log {log})"
        )
    outcome.summary = f"{collected} tests collect; {stage}: {summary or 'no pytest summary'}"
    return outcome


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
    parser.add_argument(
        "--full",
        action="store_true",
        help="run the whole fast suite against each wheel instead of the smoke subset (slow; "
        "what a release checks)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="distributions checked at once (default 1); each uses its own venv and folders, "
        "so on a 2-core machine 2 overlaps one's pip install with another's tests",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be a positive integer, got {args.jobs}")
    if bool(args.names) == args.all:
        parser.error("give either --all or one or more distribution names")

    repo = find_repo_root(Path.cwd())
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="diff-isolation-"))
    try:
        run = Isolation(
            repo, work, lowest=args.lowest, keep=args.keep or args.work is not None, full=args.full
        )
    except IsolationError as exc:
        print(f"isolation: {exc}")
        return 1
    names = sorted(run.projects) if args.all else [canonicalize_name(n) for n in args.names]
    unknown = [n for n in names if n not in run.projects]
    if unknown:
        parser.error(f"unknown distributions {unknown}; known: {sorted(run.projects)}")
    flags = "".join(f" --{f}" for f in ("lowest", "full") if getattr(args, f))
    print(f"isolation{flags}: {', '.join(names)} (work folder {work})")
    stage = "the whole fast suite" if args.full else "collecting every test, smoke tests"
    print(f"isolation: {args.jobs} at a time; each line is printed when its check ends")
    run_start = time.perf_counter()
    print_lock = threading.Lock()

    def check(name: str) -> Report:
        start = time.perf_counter()
        with print_lock:
            print(f"[{name}] building, installing in a fresh venv, {stage} ...", flush=True)
        report = run.check_dist(name)
        report.seconds["total"] = time.perf_counter() - start
        times = ", ".join(f"{k} {v:.0f} s" for k, v in report.seconds.items())
        status = "ok" if not report.problems else "FAILED"
        with print_lock:
            print(f"[{name}] {status}: {report.summary or 'no test summary'} ({times})", flush=True)
            for problem in report.problems:
                print(f"[{name}]   {problem}")
        return report

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        reports = list(pool.map(check, names))
    failed = [r.name for r in reports if r.problems]
    took = time.perf_counter() - run_start
    print(f"isolation: {len(reports) - len(failed)} passed, {len(failed)} failed in {took:.0f} s")
    if not failed and not (args.keep or args.work):
        shutil.rmtree(work, ignore_errors=True)
    elif failed:
        print(f"isolation: logs kept in {work / 'logs'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
