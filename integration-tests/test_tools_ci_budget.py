"""tools/ci_budget.py: test cases attributed to their distribution, budgets and hard caps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def make_tree(root: Path, names: dict[str, str]) -> None:
    """Distribution folders (folder -> name) with a bare pyproject.toml each."""
    for folder, name in names.items():
        (root / folder).mkdir(parents=True)
        (root / folder / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\nversion = "0.1.0"\n', encoding="utf-8"
        )
    (root / "hatch.toml").write_text("", encoding="utf-8")


TREE = {
    "shared-core": "diff-protocol",
    "packages/diff-core": "diff-core",
    "packages/diff-new": "diff-new",
}


def junit(cases: list[tuple[str, float, str]], suite_time: float) -> str:
    """A pytest-style JUnit XML; each case is (classname, seconds, outcome)."""
    body = []
    for i, (classname, seconds, outcome) in enumerate(cases):
        inner = {
            "passed": "",
            "skipped": '<skipped type="pytest.skip" message="no jax">x</skipped>',
            "failed": '<failure message="assert">x</failure>',
        }[outcome]
        body.append(
            f'<testcase classname="{classname}" name="test_{i}" time="{seconds}">{inner}</testcase>'
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        f'<testsuite name="pytest" errors="0" failures="0" skipped="0" tests="{len(cases)}" '
        f'time="{suite_time}">{"".join(body)}</testsuite></testsuites>'
    )


def write(tmp_path: Path, cases, suite_time: float = 0.0) -> Path:
    path = tmp_path / "junit.xml"
    path.write_text(junit(cases, suite_time or sum(c[1] for c in cases) + 5), encoding="utf-8")
    return path


def test_cases_go_to_their_distribution_and_budgets_apply(tmp_path: Path, tool) -> None:
    ci_budget = tool("ci_budget")
    make_tree(tmp_path, TREE)
    path = write(
        tmp_path,
        [
            ("shared-core.tests.test_protocol_vp", 4.0, "passed"),
            ("shared-core.tests.test_protocol_vp", 0.0, "skipped"),
            ("packages.diff-core.tests.test_core_x", 60.0, "passed"),
            ("packages.diff-core.tests.test_core_x.TestClass", 40.0, "failed"),
            ("packages.diff-new.tests.test_new_a", 100.0, "passed"),  # over 90, under 120
            ("integration-tests.test_integration_registry", 2.0, "passed"),
            ("elsewhere.test_stray", 1.0, "passed"),
        ],
        suite_time=215.0,
    )
    result = ci_budget.evaluate(path, tmp_path)
    rows = {r.name: r for r in result.rows}
    assert [r.name for r in result.rows] == [
        "diff-core",
        "diff-new",
        "diff-protocol",
        "integration-tests",
    ]
    assert (rows["diff-protocol"].tests, rows["diff-protocol"].skipped) == (2, 1)
    assert (rows["diff-core"].tests, rows["diff-core"].seconds, rows["diff-core"].failed) == (
        2,
        100.0,
        1,
    )
    assert rows["diff-core"].budget == ci_budget.BUDGETS["diff-core"]
    assert rows["diff-new"].budget == ci_budget.DEFAULT_BUDGET
    assert (ci_budget.DEFAULT_BUDGET.seconds, ci_budget.DEFAULT_BUDGET.cap) == (90, 120)
    assert result.unattributed.tests == 1
    assert result.problems == []
    assert result.warnings == ["diff-new: 100 s is over its budget of 90 s (hard cap 120 s)"]
    text = ci_budget.report(result, path)
    assert "diff-new                  1    100.0      90   120  over budget" in text
    assert "diff-core                 2    100.0     155   210  ok (65% of budget)" in text
    assert "(unattributed)" in text
    assert "suite 215.0 s, of which 8.0 s collection and start-up" in text
    assert ci_budget.main([str(path), "--root", str(tmp_path)]) == 0


def test_a_readme_commands_case_is_charged_to_that_readmes_distribution(
    tmp_path: Path, tool
) -> None:
    ci_budget = tool("ci_budget")
    make_tree(tmp_path, TREE)
    name = "test_readme_fast_commands_run_verbatim"
    cases = [
        (f"{name}[packages/diff-new/README.md]", 7.0),  # diff-new's README: diff-new
        (f"{name}[shared-core/README.md]", 3.0),  # diff-protocol's folder
        (f"{name}[README.md]", 5.0),  # the root README stays with the folder
        (f"{name}[packages/diff-gone/README.md]", 2.0),  # no such distribution: the folder
        ("test_readme_blocks_are_parsed", 1.0),
        ("packages.diff-new.tests.test_new_a", 10.0),
    ]
    body = "".join(
        f'<testcase classname="integration-tests.test_readme_commands" name="{n}" time="{t}"/>'
        if not n.startswith("packages.")
        else f'<testcase classname="{n}" name="test_a" time="{t}"/>'
        for n, t in cases
    )
    path = tmp_path / "junit.xml"
    path.write_text(
        f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
        f'time="30">{body}</testsuite></testsuites>',
        encoding="utf-8",
    )
    rows = {r.name: r for r in ci_budget.evaluate(path, tmp_path).rows}
    assert (rows["diff-new"].tests, rows["diff-new"].seconds) == (2, 17.0)
    assert (rows["diff-protocol"].tests, rows["diff-protocol"].seconds) == (1, 3.0)
    assert (rows["integration-tests"].tests, rows["integration-tests"].seconds) == (3, 8.0)
    assert rows["diff-core"].tests == 0


def test_over_the_hard_cap_warns_and_fails_only_past_the_machine_variation(
    tmp_path: Path, tool, capsys
) -> None:
    ci_budget = tool("ci_budget")
    assert ci_budget.MACHINE_VARIATION == 2.0
    make_tree(tmp_path, TREE)
    cases = [
        ("shared-core.tests.test_protocol_vp", 1.0, "passed"),
        ("packages.diff-core.tests.test_core_x", 10.0, "passed"),
        ("packages.diff-new.tests.test_new_a", 70.0, "passed"),
        ("packages.diff-new.tests.test_new_b", 51.0, "passed"),
        ("integration-tests.test_tools_x", 1.0, "passed"),
    ]
    path = write(tmp_path, cases)
    assert ci_budget.main([str(path), "--root", str(tmp_path)]) == 0  # 121 s: a slow machine
    out = capsys.readouterr().out
    assert "ci_budget: warning: diff-new: 121 s is over its hard cap of 120 s (budget 90 s" in out
    assert "diff-new                  2    121.0      90   120  over hard cap (warning)" in out
    assert "ci_budget: 4 rows, 0 failing (over 2 x), 1 over the hard cap, 0 over budget" in out
    cases[3] = ("packages.diff-new.tests.test_new_b", 171.0, "passed")  # 241 s > 2 x 120 s
    path = write(tmp_path, cases)
    assert ci_budget.main([str(path), "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "ci_budget: diff-new: 241 s is over 2 x its hard cap of 120 s (budget 90 s" in out
    assert "diff-new                  2    241.0      90   120  FAILS: over 2 x the hard cap" in out


def test_two_workers_divide_by_the_measured_slowdown(tmp_path: Path, tool, capsys) -> None:
    ci_budget = tool("ci_budget")
    assert ci_budget.PARALLEL_SLOWDOWN == {1: 1.0, 2: 1.44}
    make_tree(tmp_path, TREE)
    cases = [
        ("shared-core.tests.test_protocol_vp", 1.44, "passed"),
        ("packages.diff-core.tests.test_core_x", 14.4, "passed"),
        ("packages.diff-new.tests.test_new_a", 172.0, "passed"),  # 119.4 s in one process
        ("integration-tests.test_tools_x", 1.44, "passed"),
    ]
    path = write(tmp_path, cases, suite_time=100.0)
    # one process: 172 s is over the hard cap of 120 s
    assert ci_budget.main([str(path), "--root", str(tmp_path)]) == 0
    assert (
        "diff-new                  1    172.0      90   120  over hard cap"
        in capsys.readouterr().out
    )
    # two workers: 172 / 1.44 = 119.4 s, under the cap; the cases took 189.28 s / 2 = 94.6 s of
    # the suite's 100 s wall time, the rest is start-up
    assert ci_budget.main([str(path), "--root", str(tmp_path), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "the suite ran on 2 worker processes: each figure is the cases' seconds / 1.44" in out
    assert "diff-new                  1    119.4      90   120  over budget" in out
    assert "suite 100.0 s, of which 5.4 s collection and start-up" in out
    # 2 x the cap is judged on the one-process figure too: 345.6 / 1.44 = 240 s passes, more fails
    cases[2] = ("packages.diff-new.tests.test_new_a", 346.0, "passed")
    path = write(tmp_path, cases)
    assert ci_budget.main([str(path), "--root", str(tmp_path), "--workers", "2"]) == 1
    assert "diff-new: 240 s is over 2 x its hard cap of 120 s" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        ci_budget.main([str(path), "--root", str(tmp_path), "--workers", "3"])
    assert "--workers must be one of [1, 2] (the measured slowdowns), got 3" in (
        capsys.readouterr().err
    )


def test_the_whole_suite_over_twice_the_budgets_fails(tmp_path: Path, tool, capsys) -> None:
    ci_budget = tool("ci_budget")
    make_tree(tmp_path, TREE)
    # budgets: protocol 15 + core 155 + new 90 + integration-tests 110 = 370 s; allowed 740 s
    assert ci_budget.BUDGETS["integration-tests"].seconds == 110
    cases = [
        ("shared-core.tests.test_protocol_vp", 29.0, "passed"),  # each under 2 x its cap
        ("packages.diff-core.tests.test_core_x", 410.0, "passed"),
        ("packages.diff-new.tests.test_new_a", 230.0, "passed"),
        ("integration-tests.test_tools_x", 290.0, "passed"),
    ]
    assert ci_budget.main([str(write(tmp_path, cases)), "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "the fast suite: 959 s is over 2 x the sum of the budgets (740 s)" in out


def test_a_distribution_without_tests_fails(tmp_path: Path, tool, capsys) -> None:
    ci_budget = tool("ci_budget")
    make_tree(tmp_path, TREE)
    path = write(
        tmp_path,
        [
            ("shared-core.tests.test_protocol_vp", 0.0, "skipped"),
            ("packages.diff-core.tests.test_core_x", 10.0, "passed"),
            ("packages.diff-new.tests.test_new_a", 70.0, "passed"),
            ("integration-tests.test_tools_x", 1.0, "passed"),
        ],
    )
    assert ci_budget.main([str(path), "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "ci_budget: diff-protocol: ran no test in the fast suite" in out
    assert (
        "ci_budget: 4 rows, 0 failing (over 2 x), 0 over the hard cap, 0 over budget, 1 without"
        in out
    )


def test_spec_budgets_and_caps(tool) -> None:
    budgets = tool("ci_budget").BUDGETS
    assert {n: (b.seconds, b.cap) for n, b in budgets.items()} == {
        "diff-protocol": (15, 20),
        "diff-core": (155, 210),
        "diff-edm3d": (240, 320),
        "diff-pixel": (300, 400),
        "integration-tests": (110, 150),
    }


def test_unreadable_file_is_one_line(tmp_path: Path, tool, capsys) -> None:
    ci_budget = tool("ci_budget")
    make_tree(tmp_path, TREE)
    assert ci_budget.main([str(tmp_path / "missing.xml"), "--root", str(tmp_path)]) == 1
    assert capsys.readouterr().out.startswith("ci_budget: cannot read ")
    (tmp_path / "bad.xml").write_text("<testsuites><testcase", encoding="utf-8")
    assert ci_budget.main([str(tmp_path / "bad.xml"), "--root", str(tmp_path)]) == 1


def test_real_pytest_junit_is_attributed(tmp_path: Path, tool, repo_root: Path) -> None:
    """pytest's own XML (importlib mode, the root pytest.ini) maps onto the folders."""
    ci_budget = tool("ci_budget")
    make_tree(tmp_path, TREE)
    (tmp_path / "pytest.ini").write_text((repo_root / "pytest.ini").read_text(), encoding="utf-8")
    tests = {
        "shared-core/tests/test_protocol_a.py": "def test_a():\n    pass\n",
        "packages/diff-core/tests/test_core_a.py": (
            "import pytest\n\n\nclass TestA:\n    def test_a(self):\n        pass\n\n"
            "@pytest.mark.slow\ndef test_slow():\n    pass\n\n"
            "@pytest.mark.parametrize('n', [1, 2])\ndef test_b(n):\n    pass\n"
        ),
        "packages/diff-new/tests/test_new_a.py": "def test_a():\n    pass\n",
        "integration-tests/test_integration_a.py": "def test_a():\n    pass\n",
    }
    for rel, text in tests.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    xml = tmp_path / "out" / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"]
        + ["shared-core/tests", "packages/diff-core/tests", "packages/diff-new/tests"]
        + ["integration-tests"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = ci_budget.evaluate(xml, tmp_path)
    assert {r.name: r.tests for r in result.rows} == {
        "diff-core": 3,  # the slow test is deselected and not in the XML
        "diff-new": 1,
        "diff-protocol": 1,
        "integration-tests": 1,
    }
    assert result.unattributed.tests == 0 and result.problems == []


@pytest.mark.parametrize("seconds", [15, 90, 155, 240, 300])
def test_cap_is_four_thirds_rounded_up_to_ten(tool, seconds: int) -> None:
    cap = tool("ci_budget")._cap(seconds)
    assert cap % 10 == 0 and seconds * 4 / 3 <= cap < seconds * 4 / 3 + 10
