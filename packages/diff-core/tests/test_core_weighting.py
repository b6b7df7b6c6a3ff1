"""Weightings: closed forms, overflow-free space factors, exact identities, serialisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diff_core.weighting import (
    SPACES,
    Weighting,
    edm,
    elbo,
    eps_mse,
    kingma_gao,
    min_snr,
    sigmoid,
    v_mse,
    weighting_from_dict,
    x_mse,
)
from diff_protocol.testing import BACKENDS, backend, to_numpy

LAM = np.linspace(-20.0, 15.0, 701)
SLOPE = -np.linspace(0.3, 900.0, 701)[::-1]


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


# W written from core.md §3.2's table, independently of the library
CLOSED_FORMS = {
    "eps_mse": (eps_mse(), lambda lam, d: np.ones_like(lam)),
    "v_mse": (v_mse(), lambda lam, d: 1 + np.exp(-lam)),
    "x_mse": (x_mse(), lambda lam, d: np.exp(-lam)),
    "elbo": (elbo(), lambda lam, d: -d),
    "kingma_gao": (
        kingma_gao(lambda lam: lam**2 / (1 + lam**2)),
        lambda lam, d: -d * lam**2 / (1 + lam**2),
    ),
    "sigmoid": (sigmoid(-1.5), lambda lam, d: -d * _sig(-1.5 - lam)),
    "edm": (edm(), lambda lam, d: 1 + np.exp(-lam) / 0.25),
    "edm_1": (edm(1.0), lambda lam, d: 1 + np.exp(-lam)),
    "min_snr": (min_snr(), lambda lam, d: np.minimum(1.0, 5.0 * np.exp(-lam))),
}


@pytest.mark.parametrize("key", sorted(CLOSED_FORMS))
def test_weighting_closed_forms_and_space_factors(key):
    w, closed = CLOSED_FORMS[key]
    ref = closed(LAM, SLOPE)
    np.testing.assert_allclose(w.fn(LAM, SLOPE), ref, rtol=1e-13)
    np.testing.assert_allclose(w.factor(LAM, SLOPE, "eps"), ref, rtol=1e-13)
    # x- and v-space factors: W e^λ and W sigmoid(λ) (check 13's factor identities)
    np.testing.assert_allclose(w.factor(LAM, SLOPE, "x"), ref * np.exp(LAM), rtol=1e-12)
    np.testing.assert_allclose(w.factor(LAM, SLOPE, "v"), ref * _sig(LAM), rtol=1e-12)


def test_sigmoid_x_factor_is_overflow_free():
    w = sigmoid(bias=2.0)
    lam = np.array([-np.inf, -30.0, 0.0, 30.0, 700.0, np.inf])
    d = np.full_like(lam, -3.0)
    with np.errstate(all="raise"):
        fx = w.factor(lam, d, "x")
        fe = w.factor(lam, d, "eps")
        fv = w.factor(lam, d, "v")
    # (−λ') e^b sigmoid(λ − b): 0 at λ = −inf, (−λ') e^b at λ = +inf where W e^λ is 0·inf
    np.testing.assert_allclose(fx, 3 * math.exp(2) * _sig(lam - 2.0), rtol=1e-13)
    assert fx[0] == 0.0 and fx[-1] == 3 * math.exp(2)
    np.testing.assert_array_equal(fe[[0, -1]], [3.0, 0.0])
    assert np.all(np.isfinite(fv)) and fv[0] == 0.0 and fv[-1] == 0.0
    with np.errstate(all="ignore"):
        naive = fe * np.exp(lam)  # W e^λ: NaN (0·inf) at λ = +inf
    finite = np.isfinite(naive)
    assert finite.sum() == 5
    np.testing.assert_allclose(fx[finite], naive[finite], rtol=1e-12)
    # float32 far past e^λ's overflow: still finite
    lam32 = np.array([60.0, 88.0, 120.0], dtype=np.float32)
    fx32 = sigmoid(-3.0).factor(lam32, np.full_like(lam32, -1.0), "x")
    assert fx32.dtype == np.float32 and np.all(np.isfinite(fx32))
    np.testing.assert_allclose(fx32, math.exp(-3.0), rtol=1e-6)


@pytest.mark.parametrize("name", BACKENDS)
def test_exact_weighting_identities_on_every_backend(name):
    xp, asarray = backend(name)
    lam = asarray(LAM, "float32")
    for space in SPACES:
        a = to_numpy(edm(sigma_data=1.0).factor(lam, None, space))
        b = to_numpy(v_mse().factor(lam, None, space))
        assert np.array_equal(a, b), space  # edm(1) is v_mse exactly
        a = to_numpy(min_snr(gamma=1e30).factor(lam, None, space))
        b = to_numpy(eps_mse().factor(lam, None, space))
        assert np.array_equal(a, b), space  # min_snr(∞-ish) is eps_mse exactly
    assert np.array_equal(to_numpy(v_mse().factor(lam, None, "v")), np.ones(LAM.size, np.float32))
    assert np.array_equal(to_numpy(x_mse().factor(lam, None, "x")), np.ones(LAM.size, np.float32))
    assert v_mse().factor(lam, None, "x").dtype == lam.dtype


def test_generic_path_matches_builtin_sigmoid():
    """kingma_gao(w) goes through the generic W e^λ / W sigmoid(λ) path."""
    b = -2.0
    generic = kingma_gao(lambda lam: 1 / (1 + np.exp(lam - b)))
    for space in SPACES:
        np.testing.assert_allclose(
            generic.factor(LAM, SLOPE, space), sigmoid(b).factor(LAM, SLOPE, space), rtol=1e-12
        )


def test_serialisation_round_trip_equality_and_hash():
    for w in (eps_mse(), v_mse(), x_mse(), elbo(), sigmoid(-3), edm(0.7), min_snr(2)):
        d = w.to_dict()
        assert json.loads(json.dumps(d)) == d
        back = weighting_from_dict(d)
        assert back == w and hash(back) == hash(w) and isinstance(back, Weighting)
        np.testing.assert_array_equal(back.factor(LAM, SLOPE, "x"), w.factor(LAM, SLOPE, "x"))
    assert sigmoid(-3).to_dict() == {"name": "sigmoid", "bias": -3.0}
    assert sigmoid(-3) != sigmoid(-2) and len({sigmoid(-3), sigmoid(-3.0)}) == 1
    name, params, fn = min_snr(5)  # a plain NamedTuple
    assert (name, params) == ("min_snr", {"gamma": 5.0}) and callable(fn)
    assert not eps_mse().uses_dlogsnr_dt and sigmoid().uses_dlogsnr_dt


def test_weighting_errors():
    with pytest.raises(TypeError, match="Weighting.to_dict: weighting must be a built-in"):
        kingma_gao(lambda lam: lam).to_dict()
    with pytest.raises(ValueError, match="weighting_from_dict: name must be one of"):
        weighting_from_dict({"name": "kingma_gao"})
    with pytest.raises(TypeError, match="weighting_from_dict: unknown key 'foo' for 'sigmoid'"):
        weighting_from_dict({"name": "sigmoid", "foo": 1})
    with pytest.raises(ValueError, match="weighting_from_dict: d must be a dict with a 'name'"):
        weighting_from_dict({"bias": 1})
    with pytest.raises(
        ValueError, match="edm: sigma_data must be a positive finite number, got 0.0"
    ):
        edm(0.0)
    with pytest.raises(ValueError, match="min_snr: gamma must be a positive finite number"):
        min_snr(-1)
    with pytest.raises(ValueError, match="sigmoid: bias must be a finite number, got nan"):
        sigmoid(float("nan"))
    with pytest.raises(TypeError, match="kingma_gao: w must be a callable"):
        kingma_gao(3.0)
    with pytest.raises(
        ValueError, match="Weighting.factor: dlogsnr_dt must be an array for weighting 'elbo'"
    ):
        elbo().factor(LAM)
    with pytest.raises(ValueError, match="Weighting.factor: space must be one of 'eps', 'x', 'v'"):
        eps_mse().factor(LAM, None, "score")
