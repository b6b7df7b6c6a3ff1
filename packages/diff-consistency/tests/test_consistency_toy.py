"""Tier (b) (spec §11.2, slow): toy distillation A1–A5 on ring8 / mix64 with exact teachers, seed 0,
against ``tests/thresholds.json`` (distill.md §11: calibrated from seeds 0, 1, 2 by
``benchmarks/toy_calibrate.py``). A predicted bar that a calibration seed missed is not moved: its
test is a strict xfail against the prediction, with the measured values in the reason. Floors F
are fixed (never calibrated)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

TABLE = json.loads((Path(__file__).parent / "thresholds.json").read_text())
RUNS = {
    "ring8_cd_S8": ("ring8", "cd", 8, 6000),
    "ring8_cd_S4": ("ring8", "cd", 4, 4000),
    "ring8_cd_S2": ("ring8", "cd", 2, 4000),
    "ring8_cd_S1": ("ring8", "cd", 1, 4000),
    "ring8_ct_S8": ("ring8", "ct", 8, 6000),
    "mix64_cd_S8": ("mix64", "cd", 8, 4000),
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Runs each toy configuration once (seed 0) and caches its metrics."""
    from diff_consistency.toy import fit_initial, run_toy

    root = tmp_path_factory.mktemp("toy")
    inits: dict = {}
    cache: dict = {}

    def get(tag: str) -> dict:
        if tag not in cache:
            name, mode, s, steps = RUNS[tag]
            if name not in inits:
                inits[name] = fit_initial(name, 0, out_dir=str(root / f"{name}_init"))
            cache[tag] = run_toy(
                name, mode, s, 0, out_dir=str(root / name), steps=steps, init=inits[name]
            )["student"]
        return cache[tag]

    return get


def _holds(bar, v):
    if bar[0] == "max":
        return v <= bar[1]
    if bar[0] == "min":
        return v >= bar[1]
    return bar[1] <= v <= bar[2]


def _reason(entry, what):
    seeds = ", ".join(f"seed {k}: {v:.4g}" for k, v in entry["calibration"].items())
    return f"{entry['check']} {entry['run']} {entry['metric']} misses {what} ({seeds})"


def _check_params():
    params = []
    for e in TABLE["checks"]:
        marks = []
        if e["status"] == "missed":
            marks.append(
                pytest.mark.xfail(
                    strict=True, reason=_reason(e, f"the prediction {e['predicted']}")
                )
            )
        params.append(pytest.param(e, id=f"{e['check']}-{e['run']}-{e['metric']}", marks=marks))
    return params


def _floor_params():
    params = []
    for e in TABLE["floors"]:
        marks = []
        if e["status"] == "missed":
            marks.append(
                pytest.mark.xfail(strict=True, reason=_reason(e, f"the floor {e['floor']}"))
            )
        params.append(pytest.param(e, id=f"F-{e['check']}-{e['run']}-{e['metric']}", marks=marks))
    return params


@pytest.mark.parametrize("entry", _floor_params())
def test_floor(toy, entry):
    """Fixed floors: about the initial student's or the exact teacher's level (catch sign,
    indexing and target errors)."""
    value = toy(entry["run"])[entry["metric"]]
    assert value <= entry["floor"], value


@pytest.mark.parametrize("entry", _check_params())
def test_prediction(toy, entry):
    """The calibrated (or, where a seed missed it, the predicted) bar of each learned check."""
    value = toy(entry["run"])[entry["metric"]]
    assert _holds(entry["threshold"], value), (value, entry["threshold"])


def test_fewer_steps_ordering_and_single_step_bridges(toy):
    """A2: MMD²(S = 1) > MMD²(S = 2) > MMD²(S = 4) > 0.8·MMD²(S = 8). A3: the single-step jump is
    discontinuous between modes, so bridge samples appear: the 1 % quantile of log p for S = 1
    lies below that of S = 4."""
    m = {s: toy(f"ring8_cd_S{s}")["mmd2"] for s in (1, 2, 4, 8)}
    assert m[1] > m[2] > m[4] > 0.8 * m[8], m
    assert toy("ring8_cd_S1")["log_p_q01"] < toy("ring8_cd_S4")["log_p_q01"]
    assert np.isfinite(list(m.values())).all()
