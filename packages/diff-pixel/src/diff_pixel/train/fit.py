"""Regress a network onto a given denoiser (the "pretrained teacher" of the toy benchmarks), with
the trainer."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_core import losses as core_losses
from diff_core import weighting as core_weighting
from diff_pixel.data.sampled import SampledData
from diff_pixel.losses import example_keys, noise_batch, uniform_times
from diff_pixel.train.config import TrainConfig
from diff_pixel.train.trainer import Trainer
from diff_protocol import check_denoiser, convert

__all__ = ["fit_to_denoiser"]


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
    model_pred = check_denoiser("fit_to_denoiser", model)
    target_pred = check_denoiser("fit_to_denoiser", target)
    weighting = core_weighting.v_mse()

    def loss_fn(
        m: nnx.Module, batch: Mapping[str, jax.Array], key: jax.Array, aux: Any = None
    ) -> Any:
        x = batch["x"]
        keys = example_keys(key, batch["index"])
        t = uniform_times(keys)
        eps = noise_batch(keys, x.shape, x.dtype)
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
