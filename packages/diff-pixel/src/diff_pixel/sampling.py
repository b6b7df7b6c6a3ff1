"""Sampling under ``jax.jit``: a ``lax.scan`` over diff-core sampler steps with classifier-free
guidance inside a λ-interval and per-example noise.

Guidance (Ho & Salimans, arXiv 2207.12598) inside an interval (Kynkäänniemi et al.,
arXiv 2404.07724): at grid point k with :math:`\\lambda_k` in ``interval`` the conditional and the
null-conditioned inputs are evaluated as one batch of 2B and combined by diff-core's
:math:`\\hat v = \\hat v_u + w(\\hat v_c - \\hat v_u)`; elsewhere only the conditional call runs
(``lax.cond`` on a per-step flag). The time grid (diff-core ``uniform_t``), the sampler step
(diff-core ``ddpm``/``ddim``), the interval rule and the CFG combination all come from diff-core;
this module only owns the loop, so that an NNX model's parameters are traced arguments (no
recompilation for new weights and no multi-GB constants).
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from diff_core import grids, samplers
from diff_core import guidance as core_guidance
from diff_pixel.models.cond import Cond
from diff_protocol import to_x_eps

__all__ = ["sample", "sample_noise", "sample_to_npz"]

_PREDICTIONS = ("eps", "v", "x")


def sample_noise(
    key: jax.Array, first_index: int | jax.Array, batch: int, shape: tuple[int, ...], i: Any
) -> jax.Array:
    """Draw ``i`` of the per-example noise: row j is
    ``normal(fold_in(fold_in(key, first_index + j), i), shape)``."""
    idx = jnp.asarray(first_index, jnp.uint32) + jnp.arange(batch, dtype=jnp.uint32)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, idx)
    return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, i), shape))(keys)


def _concat(a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: jnp.concatenate([x, y], axis=0), a, b)


def _split_model(model: Any) -> tuple[Any, Any, str, bool]:
    """(static part, traced part, prediction, is_nnx)."""
    if isinstance(model, nnx.Module):
        graphdef, state = nnx.split(model)
        return graphdef, state, getattr(model, "prediction", "v"), True
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], nnx.GraphDef):
        graphdef, state = model
        pred = getattr(nnx.merge(graphdef, state), "prediction", "v")
        return graphdef, state, pred, True
    if callable(model) and getattr(model, "prediction", None) in _PREDICTIONS:
        return model, None, model.prediction, False
    raise TypeError(
        "sample: model must be an nnx.Module, a (graphdef, state) pair or a diff-protocol Denoiser "
        f"with prediction in {_PREDICTIONS}, got {type(model).__name__}"
    )


@functools.lru_cache(maxsize=64)
def _sampler_fn(
    static: Any,
    is_nnx: bool,
    prediction: str,
    shape: tuple[int, ...],
    steps: int,
    sampler: str,
    gamma: float,
    guided: str,
    clip_x: bool,
    mesh: Mesh | None,
) -> Callable[..., jax.Array]:
    """The jitted sampler; ``guided`` is "none", "cfg" (2B-batch CFG where inside) or "null"
    (w = 0: the null condition alone where inside, which is exactly CFG with w = 0)."""
    step_fn = samplers.ddpm(gamma) if sampler == "ddpm" else samplers.ddim(0.0)
    batch = shape[0]
    sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec("data"))

    def constrain(a: jax.Array) -> jax.Array:
        return a if sharding is None else jax.lax.with_sharding_constraint(a, sharding)

    def run(state, key, first_index, logsnr, inside, scale, cond, null_cond):
        if is_nnx:
            net = nnx.merge(static, state)

            def call(z, lam, c):
                return net(z, lam, c) if c is not None else net(z, lam)
        else:

            def call(z, lam, c):
                return static(z, lam) if c is None else static(z, lam, c)

        def x_hat_at(z, k):
            lam = jnp.full((batch,), logsnr[k], jnp.float32)

            def cond_only(z):
                return call(z, lam, cond)

            if guided == "cfg":

                def both(z):
                    out = call(
                        jnp.concatenate([z, z], axis=0),
                        jnp.concatenate([lam, lam]),
                        _concat(cond, null_cond),
                    )
                    return core_guidance.cfg_combine(out[:batch], out[batch:], scale)

                out = jax.lax.cond(inside[k], both, cond_only, z)
            elif guided == "null":
                out = jax.lax.cond(inside[k], lambda z: call(z, lam, null_cond), cond_only, z)
            else:
                out = cond_only(z)
            x_hat = to_x_eps(out.astype(jnp.float32), z, lam, prediction)[0]
            return jnp.clip(x_hat, -1.0, 1.0) if clip_x else x_hat

        noise = functools.partial(sample_noise, key, first_index, batch, shape[1:])
        z = constrain(noise(steps))
        carry = (z, step_fn.init(z))

        def body(carry, k):
            z, sstate = carry
            x_hat = x_hat_at(z, k)
            eps = noise(k) if step_fn.stochastic else None
            z, sstate = step_fn.step(z, x_hat, logsnr[k], logsnr[k + 1], eps, sstate)
            return (constrain(z), sstate), None

        (z, _), _ = jax.lax.scan(body, carry, jnp.arange(steps - 1))
        return x_hat_at(z, steps - 1)

    return jax.jit(run)


def sample(
    model: Any,
    *,
    shape: tuple[int, ...],
    key: jax.Array,
    schedule: Any,
    steps: int = 256,
    sampler: str = "ddpm",
    gamma: float = 0.0,
    cond: Any = None,
    guidance: float = 1.0,
    interval: tuple[float, float] = (-math.inf, math.inf),
    clip_x: bool = True,
    first_index: int = 0,
    mesh: Mesh | None = None,
    return_stats: bool = False,
    null_cond: Any = None,
) -> jax.Array | tuple[jax.Array, dict[str, int]]:
    """Draw samples x ∈ [−1, 1] (float32) with a jitted ``lax.scan`` over diff-core sampler steps.

    1. Grid ``t_k = 1 − k/steps`` (diff-core ``uniform_t``), λ_k from ``schedule``.
    2. Example j uses the noise draws ``normal(fold_in(fold_in(key, first_index + j), i))``; the
       initial state is draw ``steps`` and step k uses draw k, so a sample depends only on
       (key, first_index + j), never on the batch split.
    3. At step k, if ``guidance != 1`` and λ_k lies in ``interval`` (diff-core's rule lo ≤ λ < hi),
       conditional and null-conditioned inputs run as one 2B batch and are combined with diff-core's
       CFG rule; otherwise only the conditional call. w = 1 is no guidance; w = 0 evaluates only
       the null condition there (the CFG combination with w = 0 is exactly the unconditional
       output), so w = 0 on the whole grid is the unconditional sampler, bitwise.
    4. x̂ from the output with the VP helpers, clipped to [−1, 1] if ``clip_x``; the diff-core step
       (ancestral DDPM with variance interpolation ``gamma``, or DDIM η = 0) gives z at t_{k+1};
       the last step returns x̂.

    Args:
      model: an NNX model (e.g. a backbone, prediction "v"), a ``(graphdef, state)`` pair, or any
        diff-protocol ``Denoiser`` with prediction "eps", "x" or "v" (e.g. diff-core's exact ones).
      shape: output shape (B, ...).
      key: a JAX PRNG key.
      schedule: a diff-core schedule (``recipe.schedule()``).
      cond: a :class:`~diff_pixel.Cond` (its null is ``cond.replace(drop=ones)``), or any pytree
        the denoiser accepts together with ``null_cond``.
      guidance: the CFG weight w.
      interval: (λ_lo, λ_hi) where guidance applies.
      first_index: global number of the first example (for sampling in several batches).
      mesh: optional data-parallel mesh; the batch is sharded over its ``data`` axis.
      return_stats: also return ``{"evaluations": n}`` (guided steps count 2).
      null_cond: the unconditional input for non-``Cond`` conditions (e.g. the null label).

    Returns:
      x of ``shape``, or ``(x, stats)`` with ``return_stats``.
    """
    if not (
        isinstance(shape, tuple)
        and len(shape) >= 2
        and all(isinstance(s, int) and s > 0 for s in shape)
    ):
        raise ValueError(f"sample: shape must be a tuple (B, ...) of positive ints, got {shape!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"sample: steps must be a positive int, got {steps!r}")
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sample: sampler must be 'ddpm' or 'ddim', got {sampler!r}")
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
    if not isinstance(first_index, (int, np.integer)) or first_index < 0:
        raise ValueError(f"sample: first_index must be a non-negative int, got {first_index!r}")
    static, state, prediction, is_nnx = _split_model(model)
    grid = grids.uniform_t(schedule, steps)
    logsnr = jnp.asarray(grid.logsnr, jnp.float32)
    guided = guidance != 1.0
    inside_np = np.asarray(core_guidance.in_interval(np.asarray(grid.logsnr[:steps]), (lo, hi)))
    if guided and cond is None:
        raise ValueError(
            "sample: cond must be given when guidance != 1 (there is nothing to guide), got None"
        )
    if guided:
        if isinstance(cond, Cond):
            b = shape[0]
            drop = cond.drop if cond.drop is not None else jnp.zeros((b,), bool)
            cond = cond.replace(drop=drop)
            null_cond = cond.replace(drop=jnp.ones((b,), bool))
        elif null_cond is None:
            raise ValueError(
                "sample: null_cond must be given for guidance with a non-Cond condition, got None"
            )
        else:
            null_cond = jax.tree.map(
                lambda c, n: jnp.broadcast_to(jnp.asarray(n, jnp.asarray(c).dtype), jnp.shape(c)),
                cond,
                null_cond,
            )
    else:
        null_cond = None
    mode = "none"
    if guided:
        mode = "null" if guidance == 0.0 else "cfg"
        if mode == "null" and bool(inside_np.all()):
            # w = 0 everywhere: the unconditional sampler itself (one evaluation per step).
            cond, null_cond, mode = null_cond, None, "none"
    if mesh is not None:
        if "data" not in mesh.axis_names:
            raise ValueError(f"sample: mesh must have a 'data' axis, got axes {mesh.axis_names}")
        if shape[0] % mesh.shape["data"]:
            raise ValueError(
                f"sample: shape[0] must be divisible by the mesh's data axis "
                f"({mesh.shape['data']}), got {shape[0]}"
            )
    if mesh is not None:
        # Parameters and scalars replicated, conditions split over the data axis.
        rep = NamedSharding(mesh, PartitionSpec())
        split = NamedSharding(mesh, PartitionSpec("data"))
        state = None if state is None else jax.device_put(state, rep)
        key = jax.device_put(key, rep)
        cond = None if cond is None else jax.device_put(cond, split)
        null_cond = None if null_cond is None else jax.device_put(null_cond, split)
    fn = _sampler_fn(
        static,
        is_nnx,
        prediction,
        tuple(shape),
        steps,
        sampler,
        float(gamma),
        mode,
        bool(clip_x),
        mesh,
    )
    x = fn(
        state,
        key,
        jnp.asarray(first_index, jnp.uint32),
        logsnr,
        jnp.asarray(inside_np),
        jnp.float32(guidance),
        cond,
        null_cond,
    )
    if not return_stats:
        return x
    evaluations = steps
    if mode == "cfg":
        evaluations += core_guidance.uncond_evaluations(grid, "denoise", (lo, hi))
    return x, {"evaluations": int(evaluations)}


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
    x = np.asarray(samples, np.float32)
    data: dict[str, np.ndarray] = {
        "samples": x,
        "index": np.arange(first_index, first_index + x.shape[0], dtype=np.int64),
    }
    if labels is not None:
        data["labels"] = np.asarray(labels)
    if seed is not None:
        data["seed"] = np.asarray(seed, np.int64)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
