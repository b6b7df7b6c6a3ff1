"""Output parameterisations as wrappers over any network, the model registry (describe /
from_description through the diff.models entry points) and deterministic fast construction."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_pixel.models import (
    Cond,
    ConsistencyCoefficients,
    ConsistencyOutput,
    EDMCoefficients,
    MLPDenoiser,
    Predicts,
    UViTConfig,
    abstract_model,
    build_model,
    describe,
    from_description,
    model_class,
    upgrade_v01_paths,
)
from diff_pixel.testing import jit_forward, perturb

SIGMA_D = 0.5


@pytest.fixture(scope="module")
def mlp():
    net = MLPDenoiser(6, width=16, depth=2, rngs=nnx.Rngs(0))
    perturb(net, 1, 0.3)  # a non-zero raw output F
    return net


def _points(seed, lam):
    z = jnp.asarray(np.random.default_rng(seed).standard_normal((len(lam), 6)), jnp.float32)
    return z, jnp.asarray(lam, jnp.float32)


def test_declared_prediction_wrapper(mlp):
    z, lam = _points(0, [-3.0, 0.0, 2.0, 9.0])
    for pred in ("eps", "v", "x"):
        wrapped = Predicts(mlp, pred)
        assert wrapped.prediction == pred
        np.testing.assert_array_equal(wrapped(z, lam), mlp(z, lam))
    with pytest.raises(ValueError, match=r"prediction must be one of \('eps', 'v', 'x'\), got 's'"):
        Predicts(mlp, "s")
    with pytest.raises(TypeError, match="net must be a callable nnx.Module"):
        Predicts(lambda z, lam: z, "x")


def test_consistency_output_equals_hand_formula(mlp):
    lam64 = np.array([-12.0, -4.0, -0.5, 0.0, 1.5, 5.0, 10.0])
    z, lam = _points(1, lam64)
    f = np.asarray(mlp(z, lam), np.float64)
    zz = np.asarray(z, np.float64)
    for logsnr_max in (None, 6.0):
        model = ConsistencyOutput(mlp, EDMCoefficients(SIGMA_D, logsnr_max))
        assert model.prediction == "x"
        sigma = np.exp(-lam64 / 2)
        d = sigma if logsnr_max is None else np.maximum(sigma - math.exp(-logsnr_max / 2), 0)
        c_skip = SIGMA_D**2 / (d**2 + SIGMA_D**2)
        c_out = SIGMA_D * d / np.sqrt(sigma**2 + SIGMA_D**2)
        expected = c_skip[:, None] * zz + c_out[:, None] * f
        np.testing.assert_allclose(np.asarray(model(z, lam)), expected, rtol=2e-6, atol=1e-6)
    # EDM's own choice (no boundary shift): c_skip(0) = σd²/(1 + σd²) = 0.2, c_out(0) = √0.2.
    c_skip, c_out = EDMCoefficients(SIGMA_D)(jnp.zeros(()))
    assert abs(float(c_skip) - 0.2) < 1e-7 and abs(float(c_out) - math.sqrt(0.2)) < 1e-7


def test_consistency_boundary_is_exact(mlp):
    # With logsnr_max the output is z bitwise at (and above) the boundary, F whatever it is.
    z, lam = _points(2, [6.0, 6.0, 8.0, 30.0])
    shifted = ConsistencyOutput(mlp, EDMCoefficients(SIGMA_D, logsnr_max=6.0))
    np.testing.assert_array_equal(shifted(z, lam), z)
    # Without it the identity holds only in the limit: exactly at λ = +inf, not at λ = 30.
    plain = ConsistencyOutput(mlp, EDMCoefficients(SIGMA_D))
    np.testing.assert_array_equal(plain(z, jnp.full((4,), jnp.inf)), z)
    assert 0 < float(jnp.max(jnp.abs(plain(z, lam)[3] - z[3]))) < 1e-5
    # At λ = −inf: c_skip = 0 and c_out = σd, so the output is σd·F exactly (no nan).
    out = plain(z, jnp.full((4,), -jnp.inf))
    np.testing.assert_array_equal(out, SIGMA_D * mlp(z, jnp.full((4,), -jnp.inf)))
    with pytest.raises(ValueError, match="logsnr_max must be None or a finite number"):
        EDMCoefficients(SIGMA_D, float("inf"))


@dataclasses.dataclass(frozen=True)
class SigmoidCoefficients(ConsistencyCoefficients):
    """A caller's own family: c_skip = sigmoid(λ − shift), c_out = sigmoid(shift − λ)."""

    kind = "test_sigmoid"
    shift: float = 0.0

    def __call__(self, logsnr):
        lam = jnp.asarray(logsnr, jnp.float32) - self.shift
        return jax.nn.sigmoid(lam), jax.nn.sigmoid(-lam)


def test_wrappers_round_trip_through_the_registry(mlp):
    z, lam = _points(3, [-2.0, 0.5, 3.0])
    stack = Predicts(ConsistencyOutput(mlp, SigmoidCoefficients(shift=1.5)), "x")
    desc = json.loads(json.dumps(describe(stack)))
    assert desc == {
        "type": "predicts",
        "config": {
            "prediction": "x",
            "net": {
                "type": "consistency_output",
                "config": {
                    "net": {"type": "mlp_denoiser", "config": mlp.config},
                    "coefficients": {"kind": "test_sigmoid", "shift": 1.5},
                },
            },
        },
    }
    rebuilt = from_description(desc, seed=5)
    assert isinstance(rebuilt.net.coefficients, SigmoidCoefficients)
    nnx.update(rebuilt, nnx.state(stack))
    np.testing.assert_array_equal(rebuilt(z, lam), stack(z, lam))
    lam_r = np.asarray(lam, np.float64) - 1.5
    s = 1 / (1 + np.exp(-lam_r))
    expected = s[:, None] * np.asarray(z) + (1 - s)[:, None] * np.asarray(mlp(z, lam))
    np.testing.assert_allclose(np.asarray(stack(z, lam)), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"kind must be one of .*'edm'.*got 'nope'"):
        ConsistencyCoefficients.from_config({"kind": "nope"})


ONE_LEVEL = UViTConfig(
    8, 2, patch_size=2, channels=(16,), blocks=(), block_types=(), mid_blocks=1, head_dim=8,
    dropout=(0.0,), num_classes=4,
)  # fmt: skip
SID = UViTConfig(
    8, 1, arch="uvit", channels=(8, 16), blocks=(1,), block_types=("res",), mid_blocks=1,
    head_dim=8, dropout=(0.0, 0.0), vector_dim=3,
)  # fmt: skip


@pytest.mark.smoke
def test_backbones_round_trip_bitwise():
    rng = np.random.default_rng(4)
    for cfg, cond_kw in (
        (ONE_LEVEL, {"label": jnp.array([0, 3, 4])}),
        (SID, {"vector": jnp.asarray(rng.standard_normal((3, 3)), jnp.float32)}),
    ):
        model = build_model(cfg, seed=2)
        perturb(model, 3, 0.1)
        desc = json.loads(json.dumps(describe(model)))
        assert desc["type"] == cfg.arch and "embedders" not in desc["config"]
        rebuilt = from_description(desc, seed=9)
        assert type(rebuilt) is type(model) and rebuilt.config == cfg
        nnx.update(rebuilt, nnx.state(model))
        z = jnp.asarray(rng.standard_normal((3, 8, 8, cfg.in_channels)), jnp.float32)
        lam = jnp.array([-5.0, 0.0, 5.0])
        cond = Cond(**cond_kw)
        a = np.asarray(jit_forward(model)(z, lam, cond))
        np.testing.assert_array_equal(np.asarray(jit_forward(rebuilt)(z, lam, cond)), a)
        assert np.abs(a).max() > 1e-3


def test_registry_names_errors_and_legacy_types():
    assert model_class("residual_uvit").registry_name == "residual_uvit"
    with pytest.raises(
        ValueError, match=r"registered under diff.models \(.*residual_uvit.*got 'x'"
    ):
        from_description({"type": "x", "config": {}})
    with pytest.raises(ValueError, match=r"must name a class with from_config, got 'gaussian_mix"):
        from_description({"type": "gaussian_mixture", "config": {}})
    with pytest.raises(ValueError, match=r"description must be a dict"):
        from_description(["residual_uvit"])
    with pytest.raises(TypeError, match="describe: model must have a registry_name"):
        describe(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    # diff-pixel 0.1 checkpoints stored the class name and the bare config ...
    legacy = from_description({"type": "MLPDenoiser", "config": {"dim": 3, "width": 8}})
    assert isinstance(legacy, MLPDenoiser) and legacy.width == 8
    # ... and the label / vector parameters under their 0.1 paths.
    model = abstract_model(ONE_LEVEL.replace(vector_dim=2))
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    v01 = {("label_emb", "embedding"), ("vector_proj", "kernel"), ("vector_proj", "bias")}
    v01 |= {("vector_null",)}
    renamed = {p: v for p, v in flat.items() if p[:1] not in {("label_emb",), ("vector_emb",)}}
    old = {**renamed, **{p: None for p in v01}}
    assert set(upgrade_v01_paths(old)) == set(flat)


def _flat(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_initialisation_is_deterministic_in_every_context():
    a, b, c = (build_model("tiny-8-l1", seed=s) for s in (3, 3, 4))
    fa, fb, fc = _flat(a), _flat(b), _flat(c)
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(fa, fc, strict=True))
    # Built inside a trace, the initialisers run the same host draws (through pure_callback).
    traced = nnx.jit(lambda: build_model("tiny-8-l1", seed=3))()
    assert all(np.array_equal(x, y) for x, y in zip(fa, _flat(traced), strict=True))
    # LeCun normal as in JAX: a standard normal truncated to [-2, 2], rescaled to the standard
    # deviation sqrt(1 / fan_in) (0.8796 is the truncated normal's standard deviation).
    qkv = np.asarray(a.mid[0].attn.qkv.kernel[...]) * math.sqrt(64) * 0.87962566
    assert 1.99 < np.abs(qkv).max() <= 2.0 + 1e-6
    assert abs(qkv.std() / 0.87962566 - 1) < 0.02
