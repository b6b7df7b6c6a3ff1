"""Regress a network onto a given denoiser (the "pretrained teacher" of the toy benchmarks)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_core import losses as core_losses
from diff_core import timesampling
from diff_core import weighting as core_weighting
from diff_protocol import convert

__all__ = ["SampledData", "fit_to_denoiser"]


class SampledData:
    """A resumable stream of batches drawn by ``sample_x(n, rng)`` (rng a numpy ``Generator``).

    Batch s uses ``np.random.default_rng([seed, s])``, so the stream is a pure function of
    (seed, s) and ``state()``/``restore()`` resume it exactly. Yields ``{"x", "index", "slot"}``.
    """

    def __init__(
        self, sample_x: Callable[[int, np.random.Generator], Any], batch_size: int, *, seed: int = 0
    ) -> None:
        if not callable(sample_x):
            raise TypeError(
                f"SampledData: sample_x must be callable, got {type(sample_x).__name__}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"SampledData: batch_size must be a positive int, got {batch_size!r}")
        self.sample_x, self.batch_size, self.seed = sample_x, batch_size, int(seed)
        self.position = 0

    def __iter__(self) -> SampledData:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        s = self.position // self.batch_size
        out = self.sample_x(self.batch_size, np.random.default_rng([self.seed, s]))
        x = np.asarray(out[0] if isinstance(out, tuple) else out, np.float32)
        if x.shape[0] != self.batch_size:
            raise ValueError(
                f"SampledData: sample_x must return {self.batch_size} rows, got shape {x.shape}"
            )
        index = np.arange(self.position, self.position + self.batch_size, dtype=np.int64)
        self.position += self.batch_size
        return {"x": x, "index": index, "slot": np.arange(self.batch_size, dtype=np.int32)}

    def state(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed}

    def restore(self, state: Mapping[str, int]) -> None:
        if int(state["seed"]) != self.seed:
            raise ValueError(f"SampledData.restore: seed must be {self.seed}, got {state['seed']}")
        self.position = int(state["position"])

    def __repr__(self) -> str:
        name = getattr(self.sample_x, "__qualname__", "sample_x")
        return f"SampledData({name}, batch_size={self.batch_size}, seed={self.seed})"


def _prediction(obj: Any, what: str) -> str:
    pred = getattr(obj, "prediction", None)
    if pred not in ("eps", "v", "x"):
        raise ValueError(
            f"fit_to_denoiser: {what}.prediction must be 'eps', 'v' or 'x', got {pred!r}"
        )
    return pred


def fit_to_denoiser(
    model: nnx.Module,
    target: Any,
    sample_x: Callable[[int, np.random.Generator], Any],
    schedule: Any,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    out_dir: str | None = None,
    progress: bool = True,
) -> nnx.Module:
    r"""Train ``model`` to reproduce the denoiser ``target`` and return the trained copy.

    Per example: :math:`t \sim U(0, 1)`, :math:`x \sim` ``sample_x``,
    :math:`z_t = \alpha x + \sigma\epsilon`, and the loss
    :math:`(\mathrm{SNR} + 1)\,\mathrm{mean}_d (\hat x - \hat x_{target})^2
    = \mathrm{mean}_d(\hat v - \hat v_{target})^2` (the v-loss with the noise-free target;
    computed by diff-core's ``diffusion_loss`` with the ``v_mse`` weighting, up to its factor ½).
    Adam (AdamW with no weight decay), no warm-up, no clipping, run by
    :class:`~diff_pixel.train.Trainer` (resumable from ``out_dir``, with a progress bar). It stands
    in for "start from the pretrained diffusion model" in the toy problems of diff-distill and
    diff-consistency.

    Args:
      model: an NNX model ``model(z, logsnr, cond=None, *, dropout_key)`` (e.g.
      :class:`MLPDenoiser`).
      target: a diff-protocol denoiser (e.g. ``problem("ring8").mixture.denoiser()``).
      sample_x: ``sample_x(n, rng) -> x`` or ``(x, labels)`` draws of the data.
      schedule: a diff-core schedule (λ of t).
      steps, batch_size, lr, seed: the optimisation.
      out_dir: run directory (checkpoints, metrics); a temporary one when None.

    Returns:
      The trained model (raw weights).
    """
    from diff_pixel.train import TrainConfig, Trainer

    model_pred = _prediction(model, "model")
    target_pred = _prediction(target, "target")
    weighting = core_weighting.v_mse()

    def loss_fn(
        m: nnx.Module, batch: Mapping[str, jax.Array], key: jax.Array, aux: Any = None
    ) -> Any:
        x = batch["x"]
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
            key, batch["index"].astype(jnp.uint32)
        )
        u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 0), ()))(keys)
        t = timesampling.uniform_times(u)
        eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), x.shape[1:]))(keys)
        z, lam, _ = core_losses.training_inputs(schedule, x, t, eps)
        out_t = jax.lax.stop_gradient(convert(target(z, lam), z, lam, target_pred, "v"))
        out = convert(m(z, lam), z, lam, model_pred, "v")
        # Noise-free regression target: the target's own (x̂, ε̂) play the roles of (x, ε).
        x_t = convert(out_t, z, lam, "v", "x")
        eps_t = convert(out_t, z, lam, "v", "eps")
        per = core_losses.diffusion_loss(out, x_t, eps_t, lam, prediction="v", weighting=weighting)
        loss = 2.0 * jnp.mean(per)
        return loss, {"loss": loss}

    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="fit_to_denoiser_")
        out_dir = tmp.name
    config = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=0,
        weight_decay=0.0,
        grad_clip=0.0,
        ema_decay=0.999,
        seed=seed,
        log_every=max(1, min(100, steps)),
        sample_every=0,
        checkpoint_every=0,
        out_dir=out_dir,
        progress=progress,
    )
    try:
        trainer = Trainer(model, loss_fn, config, SampledData(sample_x, batch_size, seed=seed))
        trainer.run()
        return trainer.model()
    finally:
        if tmp is not None:
            tmp.cleanup()
