"""Overfitting 64 digits against the empirical oracle (spec check 11, slow)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diff_core.testing import EmpiricalDistribution
from diff_pixel.data import ArraySource, Loader, digits
from diff_pixel.models import Cond, build_model
from diff_pixel.sampling import sample
from diff_pixel.sid import RUN_PRESETS, diffusion_loss
from diff_pixel.train import TrainConfig, Trainer


class _Oracle:
    """An exact denoiser with the backbone signature; it ignores the condition."""

    prediction = "v"

    def __init__(self, den):
        self.den = den

    def __call__(self, z, logsnr, cond=None, *, dropout_key=None):
        return self.den(z, logsnr)


class _FullCovGaussian:
    """Exact v-denoiser of N(μ, Σ) with full covariance (diff-core's Gaussians are diagonal):
    x̂ = μ + U diag(α s/(α² s + σ²)) Uᵀ (z − α μ) with Σ = U diag(s) Uᵀ."""

    prediction = "v"

    def __init__(self, data):
        flat = data.reshape(len(data), -1).astype(np.float64)
        self.shape = data.shape[1:]
        self.mu = jnp.asarray(flat.mean(0), jnp.float32)
        s, u = np.linalg.eigh(np.cov(flat, rowvar=False, bias=True))
        self.s, self.u = jnp.asarray(np.clip(s, 0, None), jnp.float32), jnp.asarray(u, jnp.float32)

    def __call__(self, z, logsnr, cond=None, *, dropout_key=None):
        b = z.shape[0]
        lam = jnp.broadcast_to(logsnr, (b,))[:, None]
        a2, s2 = jax.nn.sigmoid(lam), jax.nn.sigmoid(-lam)
        alpha, sigma = jnp.sqrt(a2), jnp.sqrt(s2)
        zf = z.reshape(b, -1)
        coef = alpha * self.s[None] / (a2 * self.s[None] + s2)
        x_hat = self.mu + ((zf - alpha * self.mu) @ self.u * coef) @ self.u.T
        v_hat = (alpha * zf - x_hat) / sigma  # x̂ = α z − σ v̂
        return v_hat.reshape(z.shape)


def _rms_to_nearest(samples, data):
    d = samples.reshape(len(samples), 1, -1) - data.reshape(1, len(data), -1)
    return np.sqrt((d**2).mean(-1)).min(1)


@pytest.mark.slow
def test_overfit_closes_the_gap_to_the_empirical_oracle(tmp_path):
    src = digits(16)
    images, labels = np.asarray(src.images[:64]), np.asarray(src.labels[:64])
    recipe = RUN_PRESETS["digits"].recipe("sid2").replace(batch_size=64, p_uncond=0.0)
    assert abs(recipe.bias - 4.16) < 0.01
    model = build_model("tiny-16", dropout=(0.0, 0.0, 0.0, 0.0))
    config = TrainConfig.from_recipe(
        recipe,
        steps=1500,
        log_every=500,
        checkpoint_every=0,
        out_dir=str(tmp_path / "run"),
        progress=False,
    )
    loader = Loader(ArraySource(images, labels, num_classes=10), 64, seed=0)
    trainer = Trainer(
        model, lambda m, b, k, a=None: diffusion_loss(m, b, k, recipe), config, loader
    )
    trainer.run()
    ema = trainer.ema_model()

    oracle = _Oracle(EmpiricalDistribution(images).denoiser("v"))
    fit = _FullCovGaussian(images)
    batch = {
        "x": jnp.asarray(images),
        "label": jnp.asarray(labels),
        "index": jnp.arange(64, dtype=jnp.int32),
    }

    def mean_loss(m):
        f = jax.jit(lambda k: diffusion_loss(m, batch, k, recipe)[0])
        return float(
            np.mean([f(jax.random.key(1000 + r)) for r in range(64)])
        )  # common random numbers

    l_oracle, l_gauss, l_ema = mean_loss(oracle), mean_loss(fit), mean_loss(ema)
    closure = (l_gauss - l_ema) / (l_gauss - l_oracle)
    print(f"L_oracle {l_oracle:.4f} L_gauss {l_gauss:.4f} L_EMA {l_ema:.4f} closure {closure:.3f}")
    assert l_oracle < l_ema < l_gauss
    assert closure >= 0.70, (l_oracle, l_gauss, l_ema, closure)

    schedule = recipe.schedule()
    cond = Cond(label=jnp.asarray(labels[:32]))
    x = np.asarray(
        sample(
            ema,
            shape=(32, 16, 16, 1),
            key=jax.random.key(7),
            schedule=schedule,
            steps=64,
            cond=cond,
        )
    )
    rms = _rms_to_nearest(x, images)
    print(
        f"samples near a training image: {np.mean(rms < 0.1):.2f}, median RMS {np.median(rms):.3f}"
    )
    assert np.mean(rms < 0.1) >= 0.70
    xo = np.asarray(
        sample(
            EmpiricalDistribution(images).denoiser("x"),
            shape=(32, 16, 16, 1),
            key=jax.random.key(7),
            schedule=schedule,
            steps=64,
        )
    )
    assert _rms_to_nearest(xo, images).max() <= 1e-6
