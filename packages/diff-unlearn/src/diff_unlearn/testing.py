"""Checks and helpers for users of the retention metric and the unlearning losses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_pixel import UViTConfig, build_model
from diff_pixel.testing import perturb
from diff_unlearn.metrics import RetentionReport, retention
from diff_unlearn.models import copy_model

__all__ = [
    "assert_retention_zero",
    "esd_target_reference",
    "micro_config",
    "micro_model",
    "perturbed",
]


def micro_config(**conditioning: Any) -> UViTConfig:
    """A one-block U-ViT on 8×8 single-channel images, 16 channels (compiles in seconds): the
    backbone of the package's fast tests. ``conditioning`` sets ``num_classes`` (labels, null
    label ``num_classes``) or ``vector_dim`` (prompt embeddings)."""
    return UViTConfig(
        image_size=8,
        in_channels=1,
        channels=(16,),
        blocks=(),
        block_types=(),
        mid_blocks=1,
        head_dim=8,
        dropout=(0.0,),
        **conditioning,
    )


def micro_model(seed: int = 0, scale: float = 0.05, **conditioning: Any) -> nnx.Module:
    """:func:`micro_config` built with ``seed``, its zero-initialised layers moved off zero by
    diff-pixel's ``perturb(model, seed, scale)`` (so conditioning acts from the first step)."""
    model = build_model(micro_config(**conditioning), seed=seed)
    perturb(model, seed, scale)
    return model


def assert_retention_zero(
    model: nnx.Module, conds: Sequence[int], **kwargs: Any
) -> RetentionReport:
    """Assert that ``retention(model, copy of model)`` is exactly 0 under every distance with
    ``labels_kept = 1`` and bitwise equal samples (the original-model cache is bypassed, so both
    sample sets are drawn); ``kwargs`` go to :func:`~diff_unlearn.retention`. Returns the report."""
    report = retention(model, copy_model(model), conds, cache=False, **kwargs)
    if not np.array_equal(report.samples0, report.samples1):
        diff = float(np.max(np.abs(report.samples0 - report.samples1)))
        raise AssertionError(f"assert_retention_zero: samples differ (max |Δ| = {diff:.3g})")
    bad = {k: v for k, v in report.distances.items() if v != 0.0}
    if bad or (report.labels_kept is not None and report.labels_kept != 1.0):
        raise AssertionError(
            f"assert_retention_zero: distances {bad} and labels_kept {report.labels_kept} must be "
            "exactly 0 and 1"
        )
    return report


def perturbed(model: nnx.Module, scale: float, seed: int = 0) -> nnx.Module:
    """θ₀ + scale·δ: each ``nnx.Param`` tensor p moves by ``scale·‖p‖·u`` with u a fixed
    unit-norm random direction per tensor (host ``default_rng(seed)``)."""
    if not isinstance(scale, (int, float)) or scale < 0:
        raise ValueError(f"perturbed: scale must be >= 0, got {scale!r}")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree.flatten(params)
    new = []
    for p in leaves:
        a = np.asarray(p, np.float64)
        u = rng.standard_normal(a.shape)
        u /= np.linalg.norm(u)
        new.append(jnp.asarray(a + scale * np.linalg.norm(a) * u, p.dtype))
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, new), rest)


def esd_target_reference(original: nnx.Module, z: Any, logsnr: Any, labels: Any, eta: float):
    """ESD's target written out directly, ``ε₀(z, ∅) − η (ε₀(z, c_f) − ε₀(z, ∅))`` with two
    separate calls of the original model (the reference :func:`diff_unlearn.forget_esd` is
    checked against)."""
    from diff_pixel import Cond
    from diff_protocol import to_x_eps

    labels = jnp.asarray(labels, jnp.int32)
    cond = Cond(label=labels)
    pred = getattr(original, "prediction", "v")
    e_c = to_x_eps(original(z, logsnr, cond, dropout_key=None), z, logsnr, pred)[1]
    e_u = to_x_eps(original(z, logsnr, cond.null(), dropout_key=None), z, logsnr, pred)[1]
    return e_u - eta * (e_c - e_u)
