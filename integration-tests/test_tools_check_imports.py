"""tools/check_imports.py: the repository is clean, and planted cycles (module level and hidden
inside functions) and a sibling's private import are each reported with their modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "check_imports.py"


def dist(root: Path, folder: str, package: str, files: dict[str, str]) -> None:
    base = root / folder
    (base / "src" / package).mkdir(parents=True)
    (base / "pyproject.toml").write_text(f'[project]\nname = "{package}"\nversion = "0.1.0"\n')
    for name, text in {"__init__.py": "", **files}.items():
        path = base / "src" / package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def run(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), "--root", str(root)], capture_output=True, text=True
    )


def test_the_repository_has_no_cycles_and_no_private_imports():
    out = run(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no import cycles, no private imports across distributions" in out.stdout


def test_planted_problems_are_each_named(tmp_path):
    dist(tmp_path, "shared-core", "core_a", {"_hidden.py": "X = 1\n", "public.py": "Y = 2\n"})
    dist(
        tmp_path,
        "packages/pkg-b",
        "pkg_b",
        {
            "one.py": "from pkg_b import two\n",
            # the cycle is hidden inside a function: still a cycle
            "two.py": "def f():\n    from . import one\n    return one\n",
            "sub/__init__.py": "from pkg_b.sub import leaf\n",  # a package re-exporting: fine
            "sub/leaf.py": "from pkg_b.sub import helper\n",
            "sub/helper.py": "import core_a.public\nfrom core_a._hidden import X\n",
        },
    )
    out = run(tmp_path)
    assert out.returncode == 1
    lines = out.stdout.strip().splitlines()
    assert "pkg-b: import cycle pkg_b.one <-> pkg_b.two" in lines
    assert (
        "pkg-b: pkg_b.sub.helper imports core_a._hidden, a private module of another distribution"
        in lines
    )
    assert lines[-1] == "check_imports: 2 problems in 2 distributions"
