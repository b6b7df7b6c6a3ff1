"""B6 of distill.md §12.2 (opt-in: ``-m "slow and ablation"``, ≈ 7 minutes on 2 quiet cores):
the weighting caveat of §5.5 on ring8 (alternating, k = 8, 4,000 iterations, seed 0), through
``benchmarks/weighting_ablation.py``. Measured (benchmarks/results/weighting_ablation_4000.json):
MMD² 0.0286 exact teacher + uniform, 0.0357 exact + SNR + 1, 0.118 network + SNR + 1."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).parents[1] / "benchmarks" / "weighting_ablation.py"

pytestmark = [pytest.mark.slow, pytest.mark.ablation]


@pytest.fixture(scope="module")
def b6(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("weighting_ablation", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.ablation(tmp_path_factory.mktemp("b6"), steps=4000, seed=0)
    assert all(r["all_finite"] for r in result["runs"].values())
    return result


def test_b6_snr_plus_one_hurts_with_the_exact_teacher(b6):
    """With the exact teacher, ``snr_plus_one`` ends with a higher MMD² than ``uniform`` (spec
    M: 0.105 vs 0.0245; measured 0.0357 vs 0.0286)."""
    assert b6["summary"]["exact_teacher_snr_plus_one_worse_than_uniform"], b6["summary"]["mmd2"]


@pytest.mark.xfail(
    strict=True,
    reason="distill.md §12.2 B6 predicts that a network teacher improves the snr_plus_one "
    "student over the exact teacher (spec M: 0.043 vs 0.145 at lr 2e-5); measured at seed 0, "
    "4,000 iterations, our toy-2d learning rates: 0.118 (network) vs 0.0357 (exact) — the "
    "opposite (section 11 rule 3; recorded in the README)",
)
def test_b6_network_teacher_rescues_snr_plus_one(b6):
    assert b6["summary"]["network_teacher_improves_snr_plus_one"], b6["summary"]["mmd2"]
