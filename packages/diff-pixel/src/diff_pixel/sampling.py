"""Sampling diff-pixel models: a thin adapter over diff-core's one driver.

:func:`sample` turns diff-pixel's conventions into a :func:`diff_core.sample` call and adds
nothing else: the schedule becomes a uniform-t grid (diff-core ``grids.uniform_t``), a
:class:`~diff_pixel.models.Cond` gets its null for classifier-free guidance (Ho & Salimans,
arXiv 2207.12598) inside a λ-interval (Kynkäänniemi et al., arXiv 2404.07724) through
diff-core's ``guided``, and the noise is per example (:class:`ExampleNoise`). The loop, the
sampler step (any sampler registered under ``diff.samplers``), the clipping and the float policy
are diff-core's; the model's parameters are traced arguments of the compiled loop, so new
weights never recompile and never go stale.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from diff_core import grids
from diff_core import guidance as core_guidance
from diff_core import sample as core_sample
from diff_core import samplers as core_samplers
from diff_pixel.losses import example_keys
from diff_pixel.models.cond import Cond
from diff_pixel.models.denoiser import as_denoiser
from diff_protocol import PREDICTIONS, SamplerStep, jax_normal, load_sampler
from diff_protocol.io import atomic_write

__all__ = ["ExampleNoise", "sample", "sample_to_npz", "sampler_step"]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ExampleNoise:
    """Per-example noise source for diff-core's driver (a pytree: a new key does not recompile).

    Draw ``i`` of example j is ``normal(fold_in(fold_in(key, first_index + j), d(i)), shape)``
    with ``d(0) = steps`` (the initial state) and ``d(k + 1) = k`` (step k): diff-pixel 0.1's
    numbering, so a seed gives the same samples as in 0.1, and a sample depends only on
    (key, first_index + j), never on the batch split.
    """

    key: jax.Array
    first_index: jax.Array
    shape: tuple[int, ...] = field(default=(), metadata={"static": True})
    steps: int = field(default=0, metadata={"static": True})

    @property
    def dtype(self) -> Any:
        return jnp.float32

    def __call__(self, i: Any) -> jax.Array:
        i = jnp.asarray(i, jnp.int32)
        draw = jnp.where(i == 0, self.steps, i - 1).astype(jnp.uint32)
        rows = self.first_index + jnp.arange(self.shape[0], dtype=jnp.uint32)
        keys = example_keys(self.key, rows)
        return jax.vmap(lambda k: jax_normal(jax.random.fold_in(k, draw), self.shape[1:]))(keys)


def sampler_step(sampler: str | SamplerStep, gamma: float = 0.0) -> SamplerStep:
    """A :class:`~diff_protocol.SamplerStep`: ``"ddpm"`` (ancestral, variance interpolation
    ``gamma``), ``"ddim"`` (η = 0), any other name registered under ``diff.samplers`` (default
    arguments), or a step object as it is."""
    if isinstance(sampler, SamplerStep):
        return sampler
    if not isinstance(sampler, str) or not sampler:
        raise TypeError(
            f"sample: sampler must be a non-empty name or a SamplerStep, got {sampler!r:.40}"
        )
    if sampler == "ddpm":
        return core_samplers.ddpm(gamma)
    if sampler == "ddim":
        return core_samplers.ddim(0.0)
    try:
        return load_sampler(sampler)
    except (LookupError, ValueError) as err:
        raise ValueError(f"sample: sampler must be a registered sampler name ({err})") from None


def _model_denoiser(model: Any) -> Any:
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], nnx.GraphDef):
        model = nnx.merge(*model)
    if isinstance(model, nnx.Module):
        return as_denoiser(model)
    if callable(model) and getattr(model, "prediction", None) in PREDICTIONS:
        return model
    raise TypeError(
        "sample: model must be an nnx.Module, a (graphdef, state) pair or a diff-protocol Denoiser "
        f"with prediction in {PREDICTIONS}, got {type(model).__name__}"
    )


def sample(
    model: Any,
    *,
    shape: tuple[int, ...],
    key: jax.Array,
    schedule: Any,
    steps: int = 256,
    sampler: str | SamplerStep = "ddpm",
    gamma: float = 0.0,
    cond: Any = None,
    guidance: float = 1.0,
    interval: tuple[float, float] = (-math.inf, math.inf),
    x_clip: float | None = 1.0,
    first_index: int = 0,
    mesh: Mesh | None = None,
    return_stats: bool = False,
    null_cond: Any = None,
) -> jax.Array | tuple[jax.Array, dict[str, int]]:
    """Draw samples (float32) from a diff-pixel model through :func:`diff_core.sample`.

    1. Grid ``t_k = 1 − k/steps`` (diff-core ``uniform_t``), λ_k from ``schedule``.
    2. Per-example noise (:class:`ExampleNoise`): example j's draws depend on
       (key, first_index + j) only.
    3. With ``guidance != 1``: diff-core's ``guided`` with the condition's null (``Cond.null``
       for a :class:`~diff_pixel.models.Cond`, else ``null_cond``), applied for λ in
       ``interval`` (lo ≤ λ < hi; the conditional and null inputs run as one 2B batch there,
       only the conditional call elsewhere). ``guidance = 0`` on the whole grid samples the null
       condition alone (the unconditional sampler, one evaluation per step).
    4. The driver: x̂ clipped to [−x_clip, x_clip] (``None``: no clipping), the sampler step,
       and the last step returns x̂.

    Args:
      model: an NNX model (prediction from its ``prediction`` attribute), a
        ``(graphdef, state)`` pair, or any diff-protocol ``Denoiser``.
      shape: output shape (B, ...).
      key: a JAX PRNG key (``jax.random.key(seed)``; an int is a ``TypeError`` naming ``key``).
      schedule: a diff-core schedule (``recipe.schedule()``).
      steps: number of sampler steps (network evaluations without guidance).
      sampler: ``"ddpm"``, ``"ddim"``, any name registered under ``diff.samplers``, or a
        :class:`~diff_protocol.SamplerStep`.
      gamma: DDPM variance interpolation (``sampler="ddpm"`` only).
      cond: a :class:`~diff_pixel.models.Cond`, or any pytree the denoiser accepts.
      guidance: the CFG weight w. interval: (λ_lo, λ_hi) where guidance applies.
      x_clip: clip x̂ to [−x_clip, x_clip] before each step (images: 1.0).
      first_index: global number of the first example (sampling in several batches).
      mesh: optional data-parallel mesh; the batch is sharded over its ``data`` axis.
      return_stats: also return ``{"evaluations": n}`` (guided steps count 2).
      null_cond: the unconditional input for non-``Cond`` conditions (e.g. the null label).

    Returns:
      x of ``shape``, or ``(x, stats)`` with ``return_stats``.
    """
    _check_key("sample", key)
    if not (
        isinstance(shape, tuple)
        and len(shape) >= 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise ValueError(f"sample: shape must be a tuple (B, ...) of positive ints, got {shape!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"sample: steps must be a positive int, got {steps!r}")
    if (
        not isinstance(guidance, (int, float))
        or isinstance(guidance, bool)
        or not math.isfinite(guidance)
    ):
        raise ValueError(f"sample: guidance must be a finite number, got {guidance!r}")
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(
            f"sample: interval must be a pair (logsnr_lo, logsnr_hi), got {interval!r}"
        ) from None
    if not lo < hi:
        raise ValueError(f"sample: interval must satisfy lo < hi, got {interval!r}")
    if (
        isinstance(first_index, bool)
        or not isinstance(first_index, (int, np.integer))
        or not 0 <= first_index <= 2**32 - shape[0]
    ):
        raise ValueError(
            f"sample: first_index must be an int in [0, 2**32 - B] (examples are numbered in "
            f"uint32), got {first_index!r}"
        )
    if not isinstance(return_stats, (bool, np.bool_)):
        raise TypeError(f"sample: return_stats must be a bool, got {return_stats!r:.40}")
    if mesh is not None and not isinstance(mesh, Mesh):
        raise TypeError(
            f"sample: mesh must be a jax.sharding.Mesh or None, got {type(mesh).__name__}"
        )
    step = sampler_step(sampler, gamma)
    denoiser = _model_denoiser(model)
    if isinstance(cond, Cond):
        cond.check_values("sample", _num_classes(model))
        if cond.fields() and cond.batch_size() != shape[0]:
            raise ValueError(
                f"sample: cond must have one entry per example (shape[0] = {shape[0]}), got "
                f"batch size {cond.batch_size()}"
            )
    grid = grids.uniform_t(schedule, steps)
    guided = guidance != 1.0
    if guided and cond is None:
        raise ValueError(
            "sample: cond must be given when guidance != 1 (there is nothing to guide), got None"
        )
    if guided and not isinstance(cond, Cond) and null_cond is None:
        raise ValueError(
            "sample: null_cond must be given for guidance with a non-Cond condition, got None"
        )
    null = Cond.null if isinstance(cond, Cond) else null_cond
    inside = np.asarray(core_guidance.in_interval(np.asarray(grid.logsnr[:steps]), (lo, hi)))
    if guided and guidance == 0.0 and bool(inside.all()):
        # w = 0 everywhere: the null condition alone (the unconditional sampler).
        cond = null(cond) if callable(null) else _broadcast_null(cond, null)
        guided = False
    if guided:
        denoiser = core_guidance.guided(
            denoiser, float(guidance), null_cond=null, interval=(lo, hi)
        )
    noise = ExampleNoise(
        key=key,
        first_index=jnp.asarray(first_index, jnp.uint32),
        shape=tuple(shape),
        steps=steps,
    )
    z_init = None
    if mesh is not None:
        if "data" not in mesh.axis_names:
            raise ValueError(f"sample: mesh must have a 'data' axis, got axes {mesh.axis_names}")
        if shape[0] % mesh.shape["data"]:
            raise ValueError(
                f"sample: shape[0] must be divisible by the mesh's data axis "
                f"({mesh.shape['data']}), got {shape[0]}"
            )
        split = NamedSharding(mesh, PartitionSpec("data"))
        rep = NamedSharding(mesh, PartitionSpec())
        noise = jax.device_put(noise, rep)
        z_init = jax.device_put(noise(0), split)
        cond = None if cond is None else jax.device_put(cond, split)
        denoiser = jax.device_put(denoiser, rep)
    x = core_sample(
        denoiser, step, grid, noise, cond=cond, z_init=z_init, final="denoise", x_clip=x_clip
    )
    if not return_stats:
        return x
    evaluations = steps
    if guided:
        evaluations += core_guidance.uncond_evaluations(grid, "denoise", (lo, hi), sampler=step)
    return x, {"evaluations": int(evaluations)}


def _num_classes(model: Any) -> int | None:
    """The backbone's ``num_classes`` (the null label) where the model has one."""
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], nnx.GraphDef):
        return None  # not merged twice; the backbone checks shapes and dtypes when traced
    seen = 0
    while model is not None and seen < 8:
        cfg = getattr(model, "config", None)
        n = getattr(cfg, "num_classes", None)
        if isinstance(n, int) and not isinstance(n, bool):
            return n if n > 0 else None
        model = getattr(model, "net", None) or getattr(model, "model", None)
        seen += 1
    return None


def _check_key(func: str, key: Any) -> None:
    """``TypeError`` unless ``key`` is a JAX PRNG key: a typed key (``jax.random.key(seed)``) or
    a legacy raw uint32 key of shape (2,) (``jax.random.PRNGKey(seed)``)."""
    dtype = getattr(key, "dtype", None)
    if isinstance(key, (jax.Array, np.ndarray)) and dtype is not None:
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            return
        if dtype == np.uint32 and tuple(key.shape) == (2,):
            return
        what = f"an array of dtype {dtype} and shape {tuple(key.shape)}"
    else:
        what = f"{type(key).__name__} {key!r}"[:80]
    raise TypeError(f"{func}: key must be a JAX PRNG key such as jax.random.key(0), got {what}")


def _broadcast_null(cond: Any, null_cond: Any) -> Any:
    return jax.tree.map(
        lambda c, n: jnp.broadcast_to(jnp.asarray(n, jnp.asarray(c).dtype), jnp.shape(c)),
        cond,
        null_cond,
    )


def sample_to_npz(
    path: str,
    samples: Any,
    labels: Any = None,
    *,
    seed: int | None = None,
    first_index: int = 0,
    overwrite: bool = False,
) -> str:
    """Save samples (float32 in [−1, 1]) with their labels and the seed/indices that made them, as
    an ``.npz`` written atomically. An existing file is an error unless ``overwrite``."""
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"sample_to_npz: path must not exist (pass overwrite=True), got {path!r}")
    x = np.asarray(samples)
    if x.dtype.kind not in "iuf" or x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(
            f"sample_to_npz: samples must be a real array (N, ...) with N >= 1, got "
            f"{x.dtype} {x.shape}"
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError("sample_to_npz: samples must be finite, got NaN or inf")
    if labels is not None and np.shape(labels)[:1] != x.shape[:1]:
        raise ValueError(
            f"sample_to_npz: labels must have one entry per sample ({x.shape[0]}), got shape "
            f"{np.shape(labels)}"
        )
    if isinstance(first_index, bool) or not isinstance(first_index, (int, np.integer)):
        raise TypeError(f"sample_to_npz: first_index must be an int, got {first_index!r:.40}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"sample_to_npz: seed must be an int or None, got {seed!r:.40}")
    data: dict[str, np.ndarray] = {
        "samples": x,
        "index": np.arange(first_index, first_index + x.shape[0], dtype=np.int64),
    }
    if labels is not None:
        data["labels"] = np.asarray(labels)
    if seed is not None:
        data["seed"] = np.asarray(seed, np.int64)
    buf = io.BytesIO()
    np.savez(buf, **data)
    atomic_write(path, buf.getvalue())
    return path
