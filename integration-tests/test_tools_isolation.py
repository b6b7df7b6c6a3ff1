"""tools/isolation.py, the parts that need no build: rules, extras, sibling closure, lowest pins,
wheel contents; the import and entry-point check in a hand-made venv; the test stages (every test
collects, only the smoke tests run) with this interpreter's pytest on fixture suites. (The full
run, `hatch run tools:isolation --all`, is a CI step of its own.)"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement


def write_project(
    root: Path, folder: str, name: str, deps: list[str], extras: dict[str, list[str]]
) -> None:
    package = name.replace("-", "_")
    base = root / folder
    (base / "src" / package).mkdir(parents=True)
    quoted = lambda items: ", ".join(f'"{i}"' for i in items)  # noqa: E731
    extra_lines = "\n".join(f"{k} = [{quoted(v)}]" for k, v in extras.items())
    (base / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0.1.0"\ndependencies = [{quoted(deps)}]\n'
        f"[project.optional-dependencies]\n{extra_lines}\n"
        f'[tool.hatch.build.targets.wheel]\npackages = ["src/{package}"]\n',
        encoding="utf-8",
    )
    (base / "src" / package / "__init__.py").write_text('__version__ = "0.1.0"\n')
    (base / "CHANGELOG.md").write_text("## [Unreleased]\n")


def fixture_tree(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    write_project(
        root, "shared-core", "diff-protocol", ["array-api-compat>=1.12"], {"test": ["numpy>=2.0"]}
    )
    write_project(
        root,
        "packages/diff-core",
        "diff-core",
        ["diff-protocol>=0.1,<0.2", "numpy>=2.0", "array-api-compat>=1.13"],
        {"jax": ["jax>=0.10"], "test": ["pytest>=8", "scipy~=1.14"]},
    )
    write_project(
        root,
        "packages/diff-edm3d",
        "diff-edm3d",
        ["diff-core>=0.1,<0.2", "torch>=2.4", "numpy>=1.26"],
        {
            "e3nn": ["e3nn>=0.6"],
            "viz": ["matplotlib>=3.8", "diff-edm3d[e3nn]"],
            "all": ["diff-edm3d[viz]"],
            "test": ["pytest>=8"],
            "gpu": ["diff-pixel>=0.1,<0.2"],
        },
    )
    write_project(
        root,
        "packages/diff-pixel",
        "diff-pixel",
        ["diff-core[jax]>=0.1,<0.2", "flax>0.12", "numpy>=2.1; python_version < '3'"],
        {"test": ["pytest>=8"]},
    )


def test_rules_follow_the_design(tool) -> None:
    isolation = tool("isolation")
    rules = isolation.RULES
    for neutral in ("diff-protocol", "diff-core"):
        assert set(rules[neutral].forbid_imports) == {"jax", "torch"}
        assert set(rules[neutral].forbid_installed) == {"jax", "flax", "torch"}
        # their `all` extra brings the frameworks, which the row forbids installing
        assert rules[neutral].extras == ("test",)
    assert (
        "torch" in rules["diff-pixel"].forbid_imports
        and "jax" not in rules["diff-pixel"].forbid_imports
    )
    assert "jax" in rules["diff-edm3d"].forbid_imports
    assert rules["diff-edm3d"].extras is None and isolation.DEFAULT_RULE.extras is None


def test_install_extras_are_test_plus_all_where_defined(tmp_path: Path, tool) -> None:
    isolation = tool("isolation")
    fixture_tree(tmp_path)
    run = isolation.Isolation(tmp_path, tmp_path / "work", lowest=False, keep=True)
    projects = run.projects
    assert projects["diff-edm3d"].install_extras(isolation.DEFAULT_RULE) == ("test", "all")
    assert projects["diff-pixel"].install_extras(isolation.DEFAULT_RULE) == ("test",)
    assert projects["diff-core"].install_extras(isolation.RULES["diff-core"]) == ("test",)


def test_all_extra_must_collect_every_optional_extra(tmp_path: Path, tool) -> None:
    isolation = tool("isolation")
    fixture_tree(tmp_path)
    run = isolation.Isolation(tmp_path, tmp_path / "work", lowest=False, keep=True)
    # all -> viz -> e3nn through self-references; the accelerator extra `gpu` is exempt
    assert run.projects["diff-edm3d"].all_extra_problems() == []
    # only a test extra: nothing for `all` to collect
    assert run.projects["diff-pixel"].all_extra_problems() == []
    assert run.projects["diff-protocol"].all_extra_problems() == []
    # an extra but no `all`
    (problem,) = run.projects["diff-core"].all_extra_problems()
    assert "diff-core: defines extras ['jax'] but no `all` extra" in problem

    def project(tag: str, extras: dict[str, list[str]]):
        root = tmp_path / tag
        write_project(root, "packages/diff-x", "diff-x", [], extras)
        return isolation.Isolation(root, root / "work", lowest=False, keep=True).projects["diff-x"]

    x = project(
        "x",
        {
            "cfd": ["jax-cfd>=0.2", "diff-x[viz]"],
            "viz": ["matplotlib>=3.8"],
            "cpu": ["jax[cpu]>=0.10"],
            "all": ["jax-cfd>=0.2", "jax>=0.10"],
            "test": ["pytest>=8"],
        },
    )
    (problem,) = x.all_extra_problems()
    assert problem == (
        "diff-x: the `all` extra misses diff-x[viz] (from [cfd]), matplotlib>=3.8 (from [viz]), "
        "jax[cpu]>=0.10 (from [cpu])"
    )
    y = project("y", {"cfd": ["jax-cfd>=0.2"], "all": ["diff-x[cfd]"], "test": ["pytest>=8"]})
    assert y.all_extra_problems() == []


def test_sibling_closure_and_requirements(tmp_path: Path, tool) -> None:
    isolation = tool("isolation")
    fixture_tree(tmp_path)
    run = isolation.Isolation(tmp_path, tmp_path / "work", lowest=True, keep=True)
    projects = run.projects
    edm3d = projects["diff-edm3d"]
    names = sorted(str(r) for r in edm3d.requirements(("test", "all")))
    # all -> viz -> e3nn is followed; the gpu extra is not requested.
    assert names == sorted(
        [
            "diff-core<0.2,>=0.1",
            "torch>=2.4",
            "numpy>=1.26",
            "e3nn>=0.6",
            "matplotlib>=3.8",
            "pytest>=8",
        ]
    )
    assert isolation.sibling_closure(edm3d, projects, ("test", "all")) == {
        "diff-core": (),
        "diff-protocol": (),
    }
    assert isolation.sibling_closure(edm3d, projects, ("gpu",)) == {
        "diff-core": ("jax",),
        "diff-pixel": (),
        "diff-protocol": (),
    }
    # The marker python_version < '3' never holds: numpy>=2.1 is not a requirement of diff-pixel.
    assert [str(r) for r in projects["diff-pixel"].requirements(("test",))] == [
        "diff-core[jax]<0.2,>=0.1",
        "flax>0.12",
        "pytest>=8",
    ]


def test_lowest_pins_take_the_largest_lower_bound(tmp_path: Path, tool) -> None:
    isolation = tool("isolation")
    reqs = [
        Requirement(r)
        for r in (
            "numpy>=2.0",
            "numpy>=1.26",
            "scipy~=1.14",
            "torch>=2.4",
            "flax>0.12",
            "diff-core>=0.1,<0.2",
            "pytest",
        )
    ]
    pins, notes = isolation.lowest_pins(reqs, {"diff-core"})
    assert pins == {"numpy": "2.0", "scipy": "1.14"}
    assert any("torch>=2.4" in n and "torch==2.13.0" in n for n in notes)
    assert any("flax>0.12" in n and "exclusive" in n for n in notes)


def test_constraints_pin_siblings_and_development_pins(tmp_path: Path, tool) -> None:
    isolation = tool("isolation")
    fixture_tree(tmp_path)
    run = isolation.Isolation(tmp_path, tmp_path / "work", lowest=True, keep=True)
    path = run.constraints({"numpy": "2.0"}, tmp_path / "c.txt")
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert lines == [
        "diff-core==0.1.0",
        "diff-edm3d==0.1.0",
        "diff-pixel==0.1.0",
        "diff-protocol==0.1.0",
        "torch==2.13.0",
        "numpy==2.0",
    ]


def make_wheel(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def test_wheel_content_check(tmp_path: Path, tool) -> None:
    isolation = tool("isolation")
    fixture_tree(tmp_path)
    run = isolation.Isolation(tmp_path, tmp_path / "work", lowest=False, keep=True)
    good = make_wheel(
        tmp_path / "diff_core-0.1.0-py3-none-any.whl",
        {
            "diff_core/__init__.py": "",
            "diff_core/py.typed": "",
            "diff_core/testing.py": "",
            "diff_core-0.1.0.dist-info/METADATA": "Metadata-Version: 2.4\nName: diff-core\nLicense-Expression: Apache-2.0\n",
            "diff_core-0.1.0.dist-info/licenses/LICENSE": "Apache",
        },
    )
    assert run.check_wheel("diff-core", good) == []
    (tmp_path / "bad").mkdir()
    bad = make_wheel(
        tmp_path / "bad" / "diff_core-0.1.1-py3-none-any.whl",
        {
            "diff_core/__init__.py": "",
            "diff_core/tests/test_x.py": "",
            "tests/conftest.py": "",
            "diff_core-0.1.1.dist-info/METADATA": "Metadata-Version: 2.4\nName: diff-core\n",
        },
    )
    problems = run.check_wheel("diff-core", bad)
    assert len(problems) == 6, problems
    joined = "\n".join(problems)
    for expected in (
        "expected diff-core 0.1.0",
        "contains tests",
        "contains tests/conftest.py",
        "missing diff_core/py.typed",
        "no license file",
        "no License-Expression",
    ):
        assert expected in joined


def test_pytest_summary_lines(tool) -> None:
    isolation = tool("isolation")
    text = "tests/test_a.py::test_x\n\n===== 3 passed, 1 skipped, 2 deselected in 0.50s =====\n\n"
    assert isolation.pytest_summary(text) == "3 passed, 1 skipped, 2 deselected in 0.50s"
    assert isolation.summary_counts("3 passed, 1 skipped, 2 deselected in 0.50s") == {
        "passed": 3,
        "skipped": 1,
        "deselected": 2,
    }
    assert isolation.summary_counts("1 failed, 2 errors in 3.1s") == {"failed": 1, "errors": 2}
    assert isolation.summary_counts("259 tests collected in 1.20s") == {"tests": 259}
    assert isolation.summary_counts("1 test collected, 1 error in 0.3s") == {
        "tests": 1,
        "errors": 1,
    }
    assert isolation.summary_counts("no tests ran in 0.01s") == {}


# A distribution's tests as check_tests copies them: one smoke test among tests that must not run
# (the failing one would turn the stage red if the whole suite ran).
SUITE = {
    "conftest.py": "import pytest\n\n\n@pytest.fixture\ndef two():\n    return 2\n",
    "test_x_math.py": """\
import math

import pytest


@pytest.mark.smoke
@pytest.mark.parametrize("n", [1, 4])
def test_cosine_contraction(n, two):
    assert abs(math.cos(math.pi / (two * n)) ** n - {1: 0.0, 4: 0.72855339}[n]) < 1e-8


def test_not_a_smoke_test():
    assert False, "the whole suite ran, not the smoke subset"


@pytest.mark.slow
@pytest.mark.smoke
def test_slow_smoke_is_still_slow():
    assert False, "a slow test ran"
""",
}


def write_suite(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def run_check_tests(tmp_path: Path, tool, repo_root: Path, files: dict[str, str], **kwargs):
    isolation = tool("isolation")
    tests = write_suite(tmp_path / "src-tests", files)
    (tmp_path / "logs").mkdir()
    (tmp_path / "outside").mkdir()
    return isolation.check_tests(
        Path(sys.executable),
        "diff-x",
        tests,
        repo_root / "pytest.ini",
        tmp_path / "outside",
        tmp_path / "logs",
        **kwargs,
    )


def test_only_smoke_tests_run_and_every_test_collects(tmp_path: Path, tool, repo_root) -> None:
    outcome = run_check_tests(tmp_path, tool, repo_root, SUITE)
    assert outcome.problems == []
    # 4 tests collect (slow included); 2 smoke parametrisations pass, the rest is deselected
    assert outcome.summary.startswith("4 tests collect; smoke: 2 passed, 2 deselected in ")
    assert set(outcome.seconds) == {"collect", "smoke"}
    log = (tmp_path / "logs" / "diff-x-smoke.log").read_text()
    assert "-m smoke and not slow and not gpu tests" in log
    # run against a copy, from outside the source folder, with the root pytest.ini
    assert (tmp_path / "outside" / "tests" / "conftest.py").is_file()
    assert (tmp_path / "outside" / "pytest.ini").read_text() == (
        repo_root / "pytest.ini"
    ).read_text()


def test_full_runs_the_whole_fast_suite(tmp_path: Path, tool, repo_root) -> None:
    outcome = run_check_tests(tmp_path, tool, repo_root, SUITE, full=True)
    (problem,) = outcome.problems
    assert problem.startswith("diff-x: tests failed, exit 1")
    assert "the whole suite ran, not the smoke subset" in problem
    assert "a slow test ran" not in problem  # default markers still deselect slow tests


def test_a_distribution_without_smoke_tests_fails_by_name(tmp_path: Path, tool, repo_root) -> None:
    files = {"test_x_plain.py": "def test_one():\n    assert 1 + 1 == 2\n"}
    outcome = run_check_tests(tmp_path, tool, repo_root, files)
    (problem,) = outcome.problems
    assert problem.startswith("diff-x has no smoke test: mark a few representative fast tests")
    assert outcome.summary.startswith("1 tests collect; smoke: 1 deselected")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "import pytest\n\n@pytest.mark.smoke\ndef test_s():\n    assert 2 + 2 == 5\n",
            "diff-x: smoke tests failed, exit 1",
        ),
        (
            "import pytest\n\n@pytest.mark.smoke\ndef test_s():\n    pytest.importorskip('no_such_framework')\n",
            "diff-x: every smoke test skipped, nothing was checked against the installed wheel",
        ),
    ],
    ids=["failing", "all-skipped"],
)
def test_failing_or_skipped_smoke_tests_fail(
    tmp_path: Path, tool, repo_root, body: str, expected: str
) -> None:
    outcome = run_check_tests(tmp_path, tool, repo_root, {"test_x_s.py": body})
    (problem,) = outcome.problems
    assert problem.startswith(expected), problem


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("import no_such_module_of_the_wheel\n\ndef test_a():\n    pass\n", "ModuleNotFoundError"),
        ("import pytest\n\n@pytest.mark.slwo\ndef test_a():\n    pass\n", "'slwo' not found in"),
    ],
    ids=["import-error", "unregistered-marker"],
)
def test_tests_that_do_not_collect_are_reported(
    tmp_path: Path, tool, repo_root, body: str, expected: str
) -> None:
    files = {**SUITE, "test_x_broken.py": body}
    outcome = run_check_tests(tmp_path, tool, repo_root, files)
    collect = [p for p in outcome.problems if "do not collect" in p]
    assert len(collect) == 1 and expected in collect[0], outcome.problems
    assert collect[0].startswith("diff-x: tests do not collect against the installed wheel")


def test_clean_env_keeps_the_jax_cache_and_drops_leaks(tool, monkeypatch) -> None:
    isolation = tool("isolation")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/ci/jax-cache")
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    monkeypatch.setenv("PYTHONPATH", "/repo/src")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    env = isolation._clean_env()
    assert env["JAX_COMPILATION_CACHE_DIR"] == "/ci/jax-cache"
    assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    assert "PYTHONPATH" not in env and "PYTHONDONTWRITEBYTECODE" not in env


def fake_installed_venv(root: Path, version: str = "0.1.0") -> Path:
    """A venv (no pip) holding a hand-made diff-core 'installation' and a stand-in `jax`."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    pkg = site / "diff_core"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f'__version__ = "{version}"\n')
    (pkg / "cli.py").write_text("def main():\n    return 0\n")
    (pkg / "samplers.py").write_text("def ddim():\n    return 'ddim'\n")
    (pkg / "heavy.py").write_text("import jax\n\nModel = jax.Model\n")
    (site / "jax").mkdir()
    (site / "jax" / "__init__.py").write_text("Model = object\n")
    info = site / f"diff_core-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.4\nName: diff-core\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "[console_scripts]\ndiff-core = diff_core.cli:main\n\n"
        "[diff.samplers]\nddim = diff_core.samplers:ddim\nbroken = diff_core.missing:thing\n\n"
        "[diff.models]\nheavy = diff_core.heavy:Model\n"
    )
    return venv / "bin" / "python"


def test_imports_and_entry_points_load_in_the_venv(tmp_path: Path, tool) -> None:
    isolation = tool("isolation")
    fixture_tree(tmp_path / "repo")
    run = isolation.Isolation(tmp_path / "repo", tmp_path / "work", lowest=False, keep=True)
    python = fake_installed_venv(tmp_path)
    (tmp_path / "outside").mkdir()
    problems, loaded = run.check_imports(
        "diff-core", python, isolation.RULES["diff-core"], tmp_path / "outside"
    )
    assert loaded == 4
    assert problems == [
        "entry point diff.samplers:broken = diff_core.missing:thing does not load: "
        "ModuleNotFoundError: No module named 'diff_core.missing'",
        "loading the entry points of diff-core loads jax (forbidden by its rule)",
    ]
    # a rule that allows jax: only the broken entry point is left
    problems, _ = run.check_imports("diff-core", python, isolation.DEFAULT_RULE, tmp_path)
    assert len(problems) == 1 and "diff_core.missing" in problems[0]


def test_a_wheel_is_built_once_when_checks_run_on_threads(tmp_path: Path, tool, monkeypatch):
    """--jobs N checks distributions on threads: two that need the same sibling wait for one
    build of it instead of building it twice into the same folder."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    isolation = tool("isolation")
    fixture_tree(tmp_path)
    run = isolation.Isolation(tmp_path, tmp_path / "work", lowest=False, keep=True)
    calls: list[str] = []
    inside = threading.Event()

    def slow_build(name: str, report) -> Path:
        calls.append(name)
        inside.set()
        time.sleep(0.2)  # the other thread asks for the same wheel meanwhile
        return tmp_path / f"{name}.whl"

    monkeypatch.setattr(run, "_build", slow_build)
    with ThreadPoolExecutor(max_workers=4) as pool:
        wheels = list(
            pool.map(
                lambda n: run.build(n, isolation.Report(n)), ["diff-core"] * 3 + ["diff-pixel"]
            )
        )
    assert inside.is_set()
    assert sorted(calls) == ["diff-core", "diff-pixel"]
    assert wheels == [tmp_path / "diff-core.whl"] * 3 + [tmp_path / "diff-pixel.whl"]
    with pytest.raises(SystemExit):
        isolation.main(["--all", "--jobs", "0"])
