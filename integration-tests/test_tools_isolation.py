"""tools/isolation.py, the parts that need no build: rules, sibling closure, lowest pins, wheel
contents. (The full run, `hatch run tools:isolation --all`, is a CI step of its own.)"""

from __future__ import annotations

import zipfile
from pathlib import Path

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
    assert (
        "torch" in rules["diff-pixel"].forbid_imports
        and "jax" not in rules["diff-pixel"].forbid_imports
    )
    assert "jax" in rules["diff-edm3d"].forbid_imports and rules["diff-edm3d"].extras == (
        "test",
        "all",
    )
    assert isolation.DEFAULT_RULE.extras == ("test",)


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
