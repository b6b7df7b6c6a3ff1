"""EDM's polynomial_2 schedule taken from diff-core (spec 7.1, 13.1 #1)."""

from __future__ import annotations

import math

import pytest
import torch

from diff_edm3d import EDM, QM9_WITH_H, EDMConfig, EGNNConfig, EGNNDynamics
from diff_edm3d.schedule import EDMSchedule, alpha_t_given_s, sigma2_t_given_s

pytestmark = pytest.mark.usefixtures("single_thread")


TABLE = {
    0: -11.512915, 1: -11.330595, 10: -8.468260, 100: -3.896443, 250: -1.982042,
    500: -0.251309, 750: 1.440859, 900: 3.284428, 999: 11.176731, 1000: 11.512516,
}  # fmt: skip


@pytest.fixture(scope="module")
def schedule():
    return EDMSchedule(T=1000, schedule="polynomial_2", precision=1e-5)


@pytest.mark.smoke
def test_table_values(schedule):
    g = schedule.gamma_table
    assert g.dtype == torch.float64 and g.shape == (1001,)
    for k, v in TABLE.items():
        assert abs(float(g[k]) - v) < 1e-6, (k, float(g[k]))
    assert abs(schedule.sigma0 - 3.162278e-3) < 1e-9
    alpha2_T = float(torch.sigmoid(-g[1000]))
    assert abs(alpha2_T - 1.0004e-5) < 1e-9


def test_monotone_and_exact_inverse(schedule):
    g = schedule.gamma_table
    steps = g[1:] - g[:-1]
    assert bool((steps > 0).all())
    k = int(torch.argmin(steps))
    assert (k, k + 1) == (509, 510) and abs(float(steps[k]) - 0.006092) < 1e-6
    t = schedule.protocol_schedule.t_of((-g).numpy())
    assert (t == torch.arange(1001).numpy() / 1000).all()  # exactly k/T
    assert torch.equal(schedule.k_of_logsnr(-g), torch.arange(1001))


def test_snr_ratio_sum_and_constants(schedule):
    assert abs(schedule.snr_ratio_sum() - 24.906605) < 1e-5
    assert abs(schedule.x_constant_per_dim() - (-4.837519)) < 1e-6
    assert abs(8 * schedule.sigma0 - 0.025298) < 1e-6


def test_transition_helpers(schedule):
    g = schedule.gamma_table
    gt, gs = g[1:], g[:-1]
    a2t, a2s = torch.sigmoid(-gt), torch.sigmoid(-gs)
    # sigma2_{t|s} = 1 - alpha2_t/alpha2_s computed stably, alpha_{t|s} = alpha_t/alpha_s
    assert torch.allclose(sigma2_t_given_s(gt, gs), 1 - a2t / a2s, rtol=1e-9, atol=0)
    assert torch.allclose(alpha_t_given_s(gt, gs), torch.sqrt(a2t / a2s), rtol=1e-12, atol=0)


def test_norm_values_rejected():
    dyn = EGNNDynamics(EGNNConfig(nf=8, n_layers=1), QM9_WITH_H)
    with pytest.raises(ValueError, match="norm_values"):
        EDM(dyn, EDMConfig(norm_values=(1.0, 4.0, 40.0)), None)
    EDM(dyn, EDMConfig(norm_values=(1.0, 4.0, 10.0)), None)
    with pytest.raises(ValueError, match="schedule"):
        EDMSchedule(schedule="learned")
    assert math.isclose(EDMSchedule(T=500).gamma_table[0], TABLE[0], abs_tol=1e-6)
