"""Teachers from anywhere: a diff-pixel run, any NNX denoiser, diff-core's exact mixtures.

:class:`ParametricTeacher` is the frozen teacher as a pytree (parameters as leaves, the apply
function as static data) so it travels into the jitted train step as the trainer's ``aux``
argument — never a closed-over constant, never in an optimiser. It is also a diff-protocol
``Denoiser`` with ``prediction = "x"``. The parameter-space variant differentiates its ``apply``
with respect to ``params`` (teacher gradient and JVP, MM Algorithm 3).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_protocol import check_denoiser, to_x_eps

__all__ = [
    "LoadedTeacher",
    "ParametricTeacher",
    "load_teacher",
    "teacher_adam_nu",
    "teacher_fingerprint",
]


class _NNXApply:
    """``apply(params, rest, z, logsnr, cond, dropout_key) -> x̂`` of an NNX graphdef (hashable,
    so equal architectures share compiled steps)."""

    def __init__(self, graphdef: Any, prediction: str) -> None:
        self.graphdef, self.prediction = graphdef, prediction

    def __call__(self, params, rest, z, logsnr, cond=None, dropout_key=None):
        model = nnx.merge(self.graphdef, params, rest)
        out = model(z, logsnr, cond, dropout_key=dropout_key)
        return to_x_eps(out, z, logsnr, self.prediction)[0]

    def __hash__(self) -> int:
        return hash((self.graphdef, self.prediction))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _NNXApply)
            and self.graphdef == other.graphdef
            and self.prediction == other.prediction
        )


def _mixture_apply(params, rest, z, logsnr, cond=None, dropout_key=None):
    r"""Exact E[x | z] of an isotropic Gaussian mixture θ = (means, log-stds, weight logits):
    r_k ∝ π_k N(z; α μ_k, v_k I) with v_k = α² s_k² + σ² and
    E[x | z, k] = μ_k + α s_k²/v_k (z − α μ_k).
    """
    means, log_stds, logits = params["means"], params["log_stds"], params["weight_logits"]
    b = z.shape[0]
    zf = z.reshape(b, -1)
    d = zf.shape[1]
    lam = jnp.broadcast_to(jnp.asarray(logsnr, zf.dtype).reshape(-1), (b,))
    a2 = jax.nn.sigmoid(lam)[:, None]
    s2 = jax.nn.sigmoid(-lam)[:, None]
    alpha = jnp.sqrt(a2)
    var_k = jnp.exp(2.0 * log_stds)[None, :]  # (1, K)
    v = a2 * var_k + s2  # (B, K)
    diff = zf[:, None, :] - alpha[:, :, None] * means[None]  # (B, K, D)
    sq = jnp.sum(jnp.square(diff), axis=-1)
    logr = jax.nn.log_softmax(logits)[None] - 0.5 * d * jnp.log(v) - 0.5 * sq / v
    r = jax.nn.softmax(logr, axis=-1)
    gain = (alpha * var_k / v)[:, :, None]  # (B, K, 1)
    x_k = means[None] + gain * diff
    return jnp.sum(r[:, :, None] * x_k, axis=1).reshape(z.shape)


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class ParametricTeacher:
    """A frozen teacher ``x̂_θ(z, λ, cond)`` as ``apply(params, rest, z, logsnr, cond,
    dropout_key)``.

    Attributes:
      apply: the pure function (static under ``jax.jit``); returns x̂ whatever the network predicts.
      params: the parameters θ (``nnx.Param`` state, or the mixture's arrays); never updated.
      rest: non-parameter state (None for a mixture).
      kind: ``"nnx"`` or ``"mixture"``.
    """

    apply: Callable[..., Any]
    params: Any
    rest: Any = None
    kind: str = field(default="nnx")

    prediction = "x"

    def __call__(self, z: Any, logsnr: Any, cond: Any = None) -> Any:
        return self.apply(self.params, self.rest, z, logsnr, cond, None)

    def x_hat(
        self, params: Any, z: Any, logsnr: Any, cond: Any = None, dropout_key: Any = None
    ) -> Any:
        """x̂ with the given ``params`` (what the parameter-space variant differentiates)."""
        return self.apply(params, self.rest, z, logsnr, cond, dropout_key)

    def tree_flatten(self):
        return (self.params, self.rest), (self.apply, self.kind)

    @classmethod
    def tree_unflatten(cls, static, children):
        return cls(static[0], children[0], children[1], static[1])

    @classmethod
    def from_nnx(cls, model: nnx.Module) -> ParametricTeacher:
        """Split an NNX denoiser ``model(z, logsnr, cond, *, dropout_key)`` once."""
        if not isinstance(model, nnx.Module) or not callable(model):
            raise TypeError(
                f"ParametricTeacher.from_nnx: model must be a callable nnx.Module, "
                f"got {type(model).__name__}"
            )
        pred = check_denoiser("ParametricTeacher.from_nnx", model)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        return cls(_NNXApply(graphdef, pred), params, rest, "nnx")

    @classmethod
    def from_mixture(cls, mixture: Any, dtype: Any = jnp.float32) -> ParametricTeacher:
        """The exact denoiser of an isotropic Gaussian mixture (diff-core ``GaussianMixture``)
        with θ = (means, log-stds, weight logits) as parameters: a stationary point of its own
        denoising loss on the true data."""
        for attr in ("weights", "means", "stds"):
            if not hasattr(mixture, attr):
                raise TypeError(
                    f"ParametricTeacher.from_mixture: mixture must be a diff-core GaussianMixture, "
                    f"got {type(mixture).__name__} without {attr}"
                )
        means = np.asarray(mixture.means, np.float64)
        stds = np.asarray(mixture.stds, np.float64).reshape(-1)
        k = means.shape[0]
        if stds.size == 1:
            stds = np.full((k,), float(stds[0]))
        if stds.shape != (k,):
            raise ValueError(
                "ParametricTeacher.from_mixture: mixture must be isotropic (one std per "
                f"component), got stds of shape {np.shape(mixture.stds)}"
            )
        params = {
            "means": jnp.asarray(means.reshape(k, -1), dtype),
            "log_stds": jnp.asarray(np.log(stds), dtype),
            "weight_logits": jnp.asarray(np.log(np.asarray(mixture.weights, np.float64)), dtype),
        }
        return cls(_mixture_apply, params, None, "mixture")


def teacher_fingerprint(teacher: Any) -> str:
    """SHA-256 of a teacher's arrays (NNX module or :class:`ParametricTeacher`), or of the repr
    of another denoiser (stored in the run and compared on resume)."""
    if teacher is None:
        return "none"
    if isinstance(teacher, nnx.Module):
        leaves = jax.tree.leaves(nnx.state(teacher))
    elif isinstance(teacher, ParametricTeacher):
        leaves = jax.tree.leaves((teacher.params, teacher.rest))
    else:
        return "repr:" + hashlib.sha256(repr(teacher).encode()).hexdigest()
    h = hashlib.sha256()
    for leaf in leaves:
        a = np.asarray(jax.device_get(leaf))
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class LoadedTeacher:
    """A restored diff-pixel run: the frozen (EMA) ``model``, its ``schedule``, ``prediction``,
    ``num_classes``, the stored ``config`` and its ``path``."""

    model: Any
    schedule: Any
    prediction: str
    num_classes: int
    config: dict
    path: Path


def _num_classes(model: Any) -> int:
    while hasattr(model, "net"):
        model = model.net
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "num_classes", 0) or 0)


def load_teacher(run_dir: str | Path, *, use_ema: bool = True) -> LoadedTeacher:
    """``Trainer.restore`` of a diff-pixel run (or of a diff-distill run's student): the (EMA)
    model, its schedule and prediction. A folder without ``checkpoints/`` or without the run's
    config JSON raises ``ValueError`` naming ``teacher`` and the missing file."""
    from diff_pixel.train import Trainer
    from diff_protocol import schedule_from_json

    path = Path(run_dir)
    if not (path / "checkpoints").is_dir():
        raise ValueError(
            f"teacher: {path} holds no diff-pixel run (missing {path / 'checkpoints'})"
        )
    model, ema, config = Trainer.restore(path)
    recipe = config.get("recipe") or {}
    if recipe.get("method") == "diff-distill":
        schedule = schedule_from_json(recipe["schedule"])
        model, ema = model.student, ema.student
    else:
        from diff_pixel.sid import recipe_from_dict

        try:
            schedule = recipe_from_dict(recipe).schedule()
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(
                f"teacher: {path} is not a diff-pixel diffusion run (its config has no recipe "
                f"with a schedule: {err})"
            ) from None
    net = ema if use_ema else model
    return LoadedTeacher(
        net, schedule, getattr(net, "prediction", "v"), _num_classes(net), config, path
    )


def teacher_adam_nu(teacher: str | Path | LoadedTeacher, params: Any) -> Any:
    """The teacher's Adam second moment ν at its last checkpoint, as a pytree like ``params``
    (a :class:`ParametricTeacher`'s ``nnx.Param`` state): the diagonal preconditioner of the
    parameter-space variant, ``precond="adam"`` (MM Algorithm 3, arXiv 2406.04103).

    ``teacher``: a diff-pixel run directory (or its :class:`LoadedTeacher`); ν is that of the
    run's optimiser ``"model"`` (diff-pixel's default clipping + AdamW), read from the same
    checkpoint as the weights by :func:`diff_pixel.train.adam_second_moment`. It estimates the
    raw weights' squared gradients; the teacher is the EMA network of the same architecture.
    A run without Adam state, a diff-distill run, or a ν whose paths or shapes differ from
    ``params`` is a ``ValueError`` naming ``precond``.
    """
    from diff_pixel.train import adam_second_moment

    loaded = teacher if isinstance(teacher, LoadedTeacher) else None
    path = Path(loaded.path if loaded is not None else teacher)
    if loaded is not None and (loaded.config.get("recipe") or {}).get("method") == "diff-distill":
        raise ValueError(
            f"precond: 'adam' needs a diff-pixel teacher run's Adam state, got the diff-distill "
            f"run {path} (a student); use precond='identity'"
        )
    try:
        nu = adam_second_moment(path, "model")
    except ValueError as err:
        raise ValueError(f"precond: 'adam' needs the teacher's Adam second moment: {err}") from None
    pairs, missing = [], []
    for p, var in nnx.to_flat_state(params):
        key = tuple(map(str, p))
        if key not in nu:
            missing.append("/".join(key))
            continue
        if tuple(nu[key].shape) != tuple(var.shape):
            raise ValueError(
                f"precond: the teacher's Adam second moment of {'/'.join(key)!r} has shape "
                f"{tuple(nu[key].shape)}, its parameter {tuple(var.shape)}"
            )
        pairs.append((p, var.replace(value=jnp.asarray(nu[key], var.dtype))))
    if missing:
        raise ValueError(
            f"precond: the teacher run {path} keeps no Adam second moment for the parameters "
            f"{missing[:3]}{' ...' if len(missing) > 3 else ''}"
        )
    return nnx.from_flat_state(pairs)
