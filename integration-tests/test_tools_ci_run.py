""".ci/run and the root configuration it relies on: step order and time-outs, the recap, exit
status, the JAX compilation cache, the README's test command, registered markers.

The script itself runs here against a stand-in `hatch` (a shell script in a copy's .ci-venv/bin)
that records how it is called, so no environment is built."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

CI_LIMIT_S = 90 * 60
STEPS = ["env", "lint", "versions", "imports", "test", "budget", "isolation", "isolation-lowest"]

FAKE_HATCH = r"""#!/usr/bin/env bash
# Stand-in for hatch: records each call and the environment .ci/run exports, then acts per step.
root="$(cd "$(dirname "$0")/../.." && pwd)"
if [ "$1" = "--version" ]; then echo "Hatch, version 1.18.2"; exit 0; fi
echo "$* | $JAX_COMPILATION_CACHE_DIR | $JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS | $JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES | $HATCH_DATA_DIR" >> "$root/calls.txt"
case "$*" in
  "run lint:check") [ -n "$FAKE_SLOW_LINT" ] && exec sleep 5 ;;
  "run test --junitxml="*)
    xml="${3#--junitxml=}"
    echo '<testsuites/>' > "$xml"
    echo "..."
    echo "======= 3 passed, 1 skipped in 0.12s ======="
    exit "${FAKE_TEST_RC:-0}" ;;
  "run tools:budget "*) [ -f "$3" ] || { echo "no junit file $3"; exit 1; } ;;
  "run tools:isolation --all --jobs 2") echo "isolation: 4 passed, 0 failed"; exit "${FAKE_ISOLATION_RC:-0}" ;;
esac
exit 0
"""


def ci_script(repo_root: Path) -> str:
    return (repo_root / ".ci" / "run").read_text(encoding="utf-8")


def steps_and_limits(text: str) -> list[tuple[str, int, str]]:
    return [
        (m.group(1), int(m.group(2)), m.group(3))
        for m in re.finditer(r"^run_step (\S+) (\d+) (.*)$", text, re.MULTILINE)
    ]


def test_every_step_has_a_time_out_and_all_fit_in_the_ci_limit(repo_root: Path) -> None:
    text = ci_script(repo_root)
    steps = steps_and_limits(text)
    assert [name for name, _, _ in steps] == STEPS
    venv = int(re.search(r"^venv_limit=\$\(scaled (\d+)\)$", text, re.MULTILINE).group(1))
    total = venv + sum(limit for _, limit, _ in steps)
    # even if every step ran into its time-out, the recap prints 5 minutes before CI's limit
    assert total <= CI_LIMIT_S - 300, total
    limits = {name: limit for name, limit, _ in steps}
    # margin against the measured times of the last green run (env 51 s, test 276 s, ...)
    for name, measured in {
        "env": 51,
        "test": 276,
        "isolation": 341,
        "isolation-lowest": 41,
    }.items():
        assert limits[name] >= 4 * measured, name


def test_test_step_is_the_readme_command_and_feeds_the_budget(repo_root: Path) -> None:
    commands = {name: command for name, _, command in steps_and_limits(ci_script(repo_root))}
    assert commands["test"] == 'hatch run test "--junitxml=$junit"'
    assert commands["budget"] == 'hatch run tools:budget "$junit" --workers 2'
    assert commands["isolation"] == "hatch run tools:isolation --all --jobs 2"
    hatch = tomllib.loads((repo_root / "hatch.toml").read_text(encoding="utf-8"))
    script = hatch["envs"]["default"]["scripts"]["test"]
    assert script.endswith(" {args}")
    # the budget step divides by the slowdown of as many workers as the test command starts
    assert script.startswith("pytest -q -n 2 --dist loadfile ")
    assert "pytest-xdist>=3.6" in hatch["envs"]["default"]["dependencies"]
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    assert f"| `hatch run test [ARGS]` | `{script.removesuffix(' {args}')}` (fast suite)" in readme
    assert hatch["envs"]["tools"]["scripts"]["budget"] == "python tools/ci_budget.py {args}"


def test_markers_used_anywhere_are_registered(repo_root: Path) -> None:
    ini = configparser.ConfigParser()
    ini.read(repo_root / "pytest.ini", encoding="utf-8")
    assert "--strict-markers" in ini["pytest"]["addopts"]
    registered = {
        line.split(":")[0].strip() for line in ini["pytest"]["markers"].splitlines() if line.strip()
    }
    # the specs' markers (AMENDMENTS B: ablation, demo) and the isolation check's smoke
    assert {"slow", "peer", "gpu", "smoke", "ablation", "demo"} <= registered
    builtin = {"parametrize", "usefixtures", "skip", "skipif", "xfail", "filterwarnings"}
    used = set()
    files = [*(repo_root / "shared-core").rglob("*.py"), *(repo_root / "packages").rglob("*.py")]
    # the tools' tests hold fixture suites (an unregistered marker on purpose) as strings
    files += [
        p for p in (repo_root / "integration-tests").glob("*.py") if "test_tools_" not in p.name
    ]
    for path in files:
        if "tests" in path.parts or path.parent.name == "integration-tests":
            used |= set(re.findall(r"pytest\.mark\.(\w+)", path.read_text(encoding="utf-8")))
    assert used - builtin <= registered, used - builtin - registered


def ci_copy(tmp_path: Path, repo_root: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".ci").mkdir(parents=True)
    shutil.copy2(repo_root / ".ci" / "run", root / ".ci" / "run")
    hatch = root / ".ci-venv" / "bin" / "hatch"
    hatch.parent.mkdir(parents=True)
    hatch.write_text(FAKE_HATCH, encoding="utf-8")
    hatch.chmod(hatch.stat().st_mode | stat.S_IXUSR)
    return root


def run_ci(root: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAX_", "HATCH_", "CI_TIMEOUT", "FAKE_"))
    }
    return subprocess.run(
        ["bash", str(root / ".ci" / "run")],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=120,
        check=False,
    )


def test_green_run_recaps_every_step_and_ends_with_pytest_summary(
    tmp_path: Path, repo_root: Path
) -> None:
    if shutil.which("timeout") is None:
        pytest.skip("coreutils timeout is not on PATH")
    root = ci_copy(tmp_path, repo_root)
    proc = run_ci(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "======= 3 passed, 1 skipped in 0.12s ======="
    for name, limit, _ in steps_and_limits(ci_script(repo_root)):
        assert re.search(rf"^  {name}: ok in \d+ s \(limit {limit} s\)$", proc.stdout, re.M), name
    assert re.search(r"^  total: \d+ s \(0 min \d+ s; CI's limit is 90 min\)$", proc.stdout, re.M)
    assert "  jax compilation cache: 0 entries" in proc.stdout
    calls = (root / "calls.txt").read_text().splitlines()
    junit = root / ".ci-venv" / "logs" / "test-junit.xml"
    cache = root / ".ci-venv" / "jax-cache"
    hatch_data = root / ".ci-venv" / "hatch-data"
    assert [c.split(" | ")[0] for c in calls] == [
        "env create default",
        "run pip check",
        "run lint:check",
        "run tools:versions",
        "run tools:imports",
        f"run test --junitxml={junit}",
        f"run tools:budget {junit} --workers 2",
        "run tools:isolation --all --jobs 2",
        "run tools:isolation --lowest diff-protocol diff-core",
    ]
    # every step sees the same persistent cache under .ci-venv and thresholds that cache all
    assert {tuple(c.split(" | ")[1:]) for c in calls} == {(str(cache), "0", "-1", str(hatch_data))}
    assert cache.is_dir()


def test_failures_and_time_outs_are_recapped_and_fail_the_run(
    tmp_path: Path, repo_root: Path
) -> None:
    if shutil.which("timeout") is None:
        pytest.skip("coreutils timeout is not on PATH")
    root = ci_copy(tmp_path, repo_root)
    # 1 % of each time-out: lint's 120 s become 1 s, and the stand-in lint sleeps 5 s
    proc = run_ci(
        root,
        CI_TIMEOUT_PERCENT="1",
        FAKE_SLOW_LINT="1",
        FAKE_TEST_RC="5",
        FAKE_ISOLATION_RC="3",
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "own-cache"),
    )
    assert proc.returncode == 1
    out = proc.stdout
    assert re.search(r"^  lint: FAILED \(timed out after 1 s\) in \d+ s \(limit 1 s\)$", out, re.M)
    assert re.search(r"^  test: FAILED \(pytest collected no tests \(exit 5\)\)", out, re.M)
    assert re.search(r"^  isolation: FAILED \(exit 3\)", out, re.M)
    assert re.search(r"^  versions: ok in \d+ s \(limit 1 s\)$", out, re.M)
    assert "[ci] FAILED steps: lint test isolation" in out
    assert out.strip().splitlines()[-1] == "======= 3 passed, 1 skipped in 0.12s ======="
    # a cache directory given by the caller is kept
    calls = (root / "calls.txt").read_text().splitlines()
    assert all(c.split(" | ")[1] == str(tmp_path / "own-cache") for c in calls)
