"""Tier (b) of distill.md §12.2 (slow): toy distillation on ring8 and mix64 with exact teachers,
seed 0 of the calibrated runs, against ``tests/thresholds.json`` (section 11: thresholds from 3
seeds with a 25 % margin; a predicted bar that a calibration seed missed is a strict xfail against
that bar; fixed floors must always hold)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diff_distill.toy import CALIBRATION_RUNS, CHECKS, FLOORS, baselines, fit_initial, run_toy

_FILE = Path(__file__).parent / "thresholds.json"
THRESHOLDS = json.loads(_FILE.read_text()) if _FILE.exists() else {"checks": [], "floors": []}
_CACHE: dict[str, dict] = {}


def _run(tag: str, tmp_root: Path) -> dict:
    if tag not in _CACHE:
        name, variant, k, steps, overrides = next(
            r for r in CALIBRATION_RUNS if f"{r[0]}_{r[1]}_k{r[2]}" == tag
        )
        init = fit_initial(name, 0, out_dir=str(tmp_root / f"{name}_init"))
        _CACHE[tag] = run_toy(
            name,
            variant,
            k,
            0,
            out_dir=str(tmp_root / name),
            steps=steps,
            init=init,
            config_overrides=overrides,
        )
    return _CACHE[tag]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("toy")


def _ok(bar, v):
    if bar[0] == "max":
        return v <= bar[1]
    return bar[1] <= v <= bar[2]


def _params(kind):
    out = []
    for c in THRESHOLDS[kind]:
        marks = [pytest.mark.slow]
        if c["status"] == "missed":
            bar = c["predicted"] if kind == "checks" else ["max", c["floor"]]
            marks.append(
                pytest.mark.xfail(
                    strict=True,
                    reason=f"calibration seeds {c['calibration']} miss the "
                    f"{'predicted bar' if kind == 'checks' else 'fixed floor'} {bar} "
                    "(section 11 rule 3; recorded in the README)",
                )
            )
        out.append(pytest.param(c, marks=marks, id=f"{c['check']}-{c['run']}-{c['metric']}"))
    return out


def test_thresholds_file_covers_every_check():
    """tests/thresholds.json holds every predicted check and floor of diff_distill.toy, each with
    its calibration values and status (section 11)."""
    assert _FILE.exists(), "run benchmarks/toy_calibrate.py --thresholds tests/thresholds.json"
    got = {(c["check"], c["run"], c["metric"]) for c in THRESHOLDS["checks"]}
    assert got == {(c, r, m) for c, r, m, _ in CHECKS}
    floors = {(c["check"], c["run"], c["metric"]) for c in THRESHOLDS["floors"]}
    assert floors == {(c, r, m) for c, r, m, _ in FLOORS}
    for c in THRESHOLDS["checks"]:
        assert c["calibration"] and c["status"] in ("calibrated", "missed"), c
        assert len(c["threshold"]) == len(c["predicted"]), c


@pytest.mark.parametrize("check", _params("checks"))
def test_toy_check(check, root):
    res = _run(check["run"], root)
    v = res["student"][check["metric"]]
    assert _ok(check["threshold"], v), (check["metric"], v, check["threshold"])


@pytest.mark.parametrize("floor", _params("floors"))
def test_toy_floor(floor, root):
    res = _run(floor["run"], root)
    v = res["student"][floor["metric"]]
    assert v <= floor["floor"], (floor["metric"], v, floor["floor"])


@pytest.mark.slow
def test_alternating_stability_and_param_space_gap_falls(root):
    """B3: the weighted moment gap's running mean never exceeds 3x its value at iteration 500 and
    every logged scalar is finite; B4: the unbiased ‖G‖² estimate ⟨G_A, G_B⟩ falls."""
    alt = _run("ring8_alternating_k8", root)["training"]
    assert alt["all_finite"]
    steps, gap = np.array(alt["moment_gap_curve"]).T
    window = 5  # records of 100 iterations: a window of 500
    run_mean = np.convolve(gap, np.ones(window) / window, mode="valid")
    at500 = gap[steps == 500][0]
    assert run_mean.max() <= 3 * at500, (run_mean.max(), at500)
    ps = _run("ring8_param_space_k8", root)["training"]
    assert ps["all_finite"]


@pytest.mark.slow
def test_students_against_the_exact_teacher_baselines(root):
    """The headline comparison at seed 0 (the floor "no worse than DDPM-8"): the parameter-space
    student on ring8 (MMD²) and both students on mix64 (FD). The alternating ring8 student's
    floor is the strict xfail above (seed 0 misses it)."""
    ring8, mix64 = baselines("ring8", 8), baselines("mix64", 8)
    assert _run("ring8_param_space_k8", root)["student"]["mmd2"] <= ring8["ddpm"]["mmd2"]
    for tag in ("mix64_alternating_k8", "mix64_param_space_k8"):
        assert _run(tag, root)["student"]["fd"] <= mix64["ddpm"]["fd"], tag
