"""The validation ELBO of a pixel diffusion model, in bits per dimension.

:func:`elbo_bpd` estimates the continuous-time variational bound on ``−ln p(x)`` of VDM (Kingma
et al., arXiv 2107.00630; Kingma & Gao, arXiv 2303.00848) for a truncated schedule with
``(λ_min, λ_max) = schedule.logsnr_range``. Per image, in nats summed over its D = H·W·C
dimensions, the bound is the sum of three terms:

* **diffusion**: ``E_{t, ε} ½ (−dλ/dt) ‖ε − ε̂(z_t, λ_t)‖²`` with t uniform on [0, 1], i.e.
  ``½ ∫_{λ_min}^{λ_max} E_ε ‖ε − ε̂‖² dλ``: diff-core's ``diffusion_loss`` with the ``elbo()``
  weighting (factor ``−dλ/dt`` on ``½‖ε − ε̂‖²``), ``space="eps"``, ``reduce="sum"``;
* **prior**: ``KL(q(z₁|x) ‖ N(0, I))`` at ``λ_min``, per dimension
  ``½ (α² x² + σ² − 1 − ln σ²)`` with ``α² = sigmoid(λ_min)``, ``σ² = sigmoid(−λ_min)``;
* **reconstruction**: ``−E_ε ln p(x | z₀)`` at ``λ_max`` with ``z₀ = α x + σ ε`` and the fixed
  decoder ``p(x | z₀) = N(x; z₀/α, σ²/α²)`` per dimension: with ``bin_width=None`` the continuous
  negative log density ``½ ln(2π σ²/α²) + ½ ε²``; with a bin width w the negative log of the
  decoder's mass on the bin ``[x − w/2, x + w/2]``, where the bin of a value below
  ``−1 + w/2`` reaches down to −∞ and that of a value above ``1 − w/2`` up to +∞ (for 8-bit
  data scaled as ``k/127.5 − 1``, ``w = 2/255`` gives a discrete likelihood over the 256 levels
  whose masses sum to 1).

The diffusion term depends on the schedule only through its end points (the bound is invariant to
the parametrisation of λ in between), so it is estimated with λ uniform on ``[λ_min, λ_max]``
(``time_sampling="logsnr"``, the default): the integrand ``½ (λ_max − λ_min) ‖ε − ε̂‖²`` stays
bounded, whereas under a cosine-type λ(t) the factor ``−dλ/dt`` reaches thousands near t = 0 and a
network that has not learned the near-clean levels makes the estimate heavy-tailed (measured on an
under-trained photo model: a spread of ±1.4 bits/dim between evaluation keys).
``time_sampling="schedule"`` samples t uniformly under the schedule's own λ(t) instead.

Monte Carlo: ``time_samples`` = K stratified times per image, ``t_k = (k + u)/K`` for
``k = 0 … K−1`` with one ``u ~ U[0, 1)`` per image (each stratum of [0, 1] is hit once, so the
estimate of the t-integral has far less variance than K independent uniform times), a fresh
ε for each ``t_k``, and one more ε for the reconstruction term. Image i draws everything from
``k_i = fold_in(key, i)`` with i its index in ``images`` (diff-pixel's example keys and streams):
``u`` from ``fold_in(k_i, 0)``, and all the noise as one normal draw of shape
``(K + 1, H, W, C)`` from ``fold_in(k_i, 1)`` (rows 0 … K−1 for the times, row K for the
reconstruction term). So the numbers depend on ``key`` and the images only, never on
``batch_size``; the noise takes ``(K + 1) · batch_size · D`` floats of memory.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.scipy.special import log_ndtr, ndtr

from diff_core.losses import diffusion_loss, training_inputs
from diff_core.weighting import elbo as elbo_weighting
from diff_pixel.losses import example_keys
from diff_pixel.models.denoiser import as_denoiser
from diff_pixel.sampling import _check_key as check_key
from diff_protocol import PREDICTIONS, diffuse

__all__ = ["TIME_SAMPLINGS", "elbo_bpd"]

#: Where the K stratified evaluation points of the diffusion term are placed.
TIME_SAMPLINGS = ("logsnr", "schedule")

_FUNC = "elbo_bpd"
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# Closed bins narrower than this (in decoder stds σ/α) use the midpoint rule with its curvature
# correction, where ln Φ(b) − ln Φ(a) would lose digits to cancellation.
_NARROW = 1e-2


class _Static:
    """A denoiser that is not a pytree of arrays, hashed by identity (a ``jax.jit`` static)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Static) and other.value is self.value


def _denoiser(model: Any) -> Any:
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], nnx.GraphDef):
        model = nnx.merge(*model)
    if isinstance(model, nnx.Module):
        return as_denoiser(model)
    prediction = getattr(model, "prediction", None)
    if not callable(model) or prediction not in PREDICTIONS:
        got = type(model).__name__ if prediction is None else f"prediction {prediction!r}"
        raise TypeError(
            f"{_FUNC}: model must be an nnx.Module or a diff-protocol Denoiser with a "
            f"'prediction' attribute in {PREDICTIONS}, got {got}"
        )
    return model


def _split(denoiser: Any) -> tuple[Any, _Static | None]:
    """``(traced, None)`` for a pytree of arrays (an NNX model's weights are jit arguments, never
    constants), ``(None, static)`` for anything else (a plain function)."""
    leaves, treedef = jax.tree.flatten(denoiser)
    if not jax.tree_util.treedef_is_leaf(treedef) and all(
        isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves
    ):
        return denoiser, None
    return None, _Static(denoiser)


def _check_key(key: Any) -> None:
    """The sampler's key check, and a single key (typed keys of shape ()): images fold it in."""
    check_key(_FUNC, key)
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape != ():
        raise TypeError(
            f"{_FUNC}: key must be a JAX PRNG key such as jax.random.key(0), got an array of "
            f"dtype {key.dtype} and shape {tuple(key.shape)}"
        )


def _check_int(arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{_FUNC}: {arg} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{_FUNC}: {arg} must be a positive int, got {value!r}")
    return int(value)


def _check_images(images: Any, bin_width: float | None) -> np.ndarray:
    if getattr(images, "shape", None) is None or getattr(images, "dtype", None) is None:
        raise TypeError(
            f"{_FUNC}: images must be a float array (N, H, W, C), got {type(images).__name__}"
        )
    x = np.asarray(images)
    if x.dtype.kind != "f":
        raise TypeError(f"{_FUNC}: images must be a float array (N, H, W, C), got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[0] == 0 or 0 in x.shape:
        raise ValueError(
            f"{_FUNC}: images must be a non-empty 4-D array (N, H, W, C), got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"{_FUNC}: images must be finite, got {int(np.sum(~np.isfinite(x)))} non-finite values"
        )
    if bin_width is not None and (x.min() < -1.0 or x.max() > 1.0):
        raise ValueError(
            f"{_FUNC}: images must lie in [-1, 1] when bin_width is set, "
            f"got [{float(x.min()):.6g}, {float(x.max()):.6g}]"
        )
    return x.astype(np.float32, copy=False)


def _check_schedule(schedule: Any) -> tuple[float, float]:
    for attr in ("logsnr", "dlogsnr_dt"):
        if not callable(getattr(schedule, attr, None)):
            raise TypeError(
                f"{_FUNC}: schedule must be a diff-core schedule with {attr}(t), "
                f"got {type(schedule).__name__}"
            )
    rng = getattr(schedule, "logsnr_range", None)
    if not isinstance(rng, tuple) or len(rng) != 2:
        raise TypeError(f"{_FUNC}: schedule must have a logsnr_range (λ_min, λ_max), got {rng!r}")
    try:
        hash(schedule)
    except TypeError:
        raise TypeError(
            f"{_FUNC}: schedule must be hashable (a diff-core schedule), "
            f"got {type(schedule).__name__}"
        ) from None
    lo, hi = float(rng[0]), float(rng[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(
            f"{_FUNC}: schedule must have a finite logsnr_range (a truncated schedule), "
            f"got ({lo!r}, {hi!r})"
        )
    return lo, hi


def _check_cond(cond: Any, n: int) -> Any:
    if cond is None:
        return None
    for leaf in jax.tree.leaves(cond):
        shape = getattr(leaf, "shape", None)
        if shape is None or len(shape) == 0 or shape[0] != n:
            got = "a scalar" if not shape else f"shape {tuple(shape)}"
            raise ValueError(
                f"{_FUNC}: cond must be a pytree of arrays with leading dimension {n}, got {got}"
            )
    return cond


def _log1mexp(d: jax.Array) -> jax.Array:
    """``ln(1 − e^d)`` for ``d ≤ 0`` without cancellation (Mächler's two branches)."""
    return jnp.where(d > -math.log(2.0), jnp.log(-jnp.expm1(d)), jnp.log1p(-jnp.exp(d)))


def _log_phi(x: jax.Array) -> jax.Array:
    """``ln Φ(x)``; for ``x > 0`` as ``ln(1 − Φ(−x))`` so that ``−ln Φ(x) ≈ Φ(−x)`` keeps its
    relative precision (float32 ``log_ndtr`` takes the log of a rounded ``Φ(x)`` for
    ``0 < x ≤ 5``: ``ln Φ(5)`` comes out 4 % off)."""
    pos = x > 0.0
    return jnp.where(pos, jnp.log1p(-ndtr(-jnp.where(pos, x, 0.0))), log_ndtr(jnp.minimum(x, 0.0)))


def _log_bin_mass(
    center: jax.Array, half: jax.Array, lower_open: jax.Array, upper_open: jax.Array
) -> jax.Array:
    """``ln(Φ(b) − Φ(a))`` for the bin ``[a, b] = [center − half, center + half]`` (``a = −∞``
    where ``lower_open``, ``b = +∞`` where ``upper_open``), never ``ln 0`` from rounding.

    Wide bins: the difference is formed in the tail on the bin's side of the median
    (``Φ(b) − Φ(a) = Φ(−a) − Φ(−b)``), as ``ln Φ(hi) + ln(1 − e^{ln Φ(lo) − ln Φ(hi)})`` with
    ``log_ndtr`` (and ``ln(1 − Φ(−x))`` for ``x > 0``), so a bin far in either tail keeps its
    relative precision and a bin holding nearly all the mass gives ``≈ −Φ(outside)``, not
    ``ln(1 − 1)`` or a float32-rounded 0. Narrow closed bins (``2·half < 10⁻²``):
    ``ln(2h φ(c)) + ln(1 + h²(c² − 1)/6)`` from ``center`` and ``half`` directly (error
    O(h⁴); no width formed by subtracting rounded edges).
    """
    a = jnp.where(lower_open, -jnp.inf, center - half)
    b = jnp.where(upper_open, jnp.inf, center + half)
    flip = (a + b) > 0.0  # -inf + inf is nan -> False: the unflipped branch handles it
    lo = jnp.where(flip, -b, a)
    hi = jnp.where(flip, -a, b)
    log_hi = _log_phi(hi)
    wide = log_hi + _log1mexp(jnp.minimum(_log_phi(lo) - log_hi, 0.0))
    narrow_bin = (2.0 * half < _NARROW) & ~lower_open & ~upper_open
    h = jnp.where(narrow_bin, half, 1.0)
    c = jnp.where(narrow_bin, center, 0.0)
    narrow = jnp.log(2.0 * h) - 0.5 * c * c - _HALF_LOG_2PI + jnp.log1p(h * h * (c * c - 1) / 6)
    return jnp.where(narrow_bin, narrow, wide)


@functools.partial(
    jax.jit,
    static_argnames=("static_denoiser", "schedule", "time_samples", "time_sampling", "bin_width"),
)
def _batch_nats(
    denoiser: Any,
    x: jax.Array,
    cond: Any,
    index: jax.Array,
    key: jax.Array,
    *,
    static_denoiser: _Static | None,
    schedule: Any,
    time_samples: int,
    time_sampling: str,
    bin_width: float | None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-image ``(diffusion, prior, reconstruction)`` in nats, each (B,)."""
    den = denoiser if static_denoiser is None else static_denoiser.value
    lam_min, lam_max = (float(v) for v in schedule.logsnr_range)
    shape = x.shape[1:]
    dims = math.prod(shape)
    # image i: u ~ U[0, 1) from fold_in(k_i, 0) and one flat normal draw of (K + 1)·D values
    # from fold_in(k_i, 1), rows 0..K−1 for the K times and row K for the reconstruction term
    # (few, flat PRNG calls: under vmap each one costs XLA about a second of compilation on CPU)
    keys = example_keys(key, index)
    u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 0), (1,), jnp.float32))(keys)
    u = u[:, 0]
    noise = jax.vmap(
        lambda k: jax.random.normal(jax.random.fold_in(k, 1), ((time_samples + 1) * dims,))
    )(keys)
    noise = jnp.moveaxis(noise.reshape(x.shape[0], time_samples + 1, *shape), 1, 0)
    weighting = elbo_weighting()

    def step(total: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        k, eps = inputs
        t = jnp.minimum((k + u) / time_samples, 1.0)
        if time_sampling == "schedule":
            z, lam, dlam = training_inputs(schedule, x, t, eps)
        else:  # λ uniform on [λ_min, λ_max]: dλ/dt constant, no heavy tail at the schedule's ends
            lam = lam_max - t * (lam_max - lam_min)
            dlam = jnp.full_like(lam, lam_min - lam_max)
            z = diffuse(x, eps, lam)
        out = den(z, lam) if cond is None else den(z, lam, cond)
        loss = diffusion_loss(
            out,
            x,
            eps,
            lam,
            dlam,
            prediction=den.prediction,
            weighting=weighting,
            space="eps",
            reduce="sum",
        )
        return total + loss.astype(jnp.float32), None

    strata = jnp.arange(time_samples, dtype=jnp.float32)
    total, _ = jax.lax.scan(step, jnp.zeros(x.shape[0], jnp.float32), (strata, noise[:-1]))
    diffusion = total / time_samples

    # prior: ½(α² x² + σ² − 1 − ln σ²) = ½(α² x² + softplus(λ) − sigmoid(λ)) per dimension; the
    # constant is formed in float64 on the host (it is a difference of two nearly equal numbers)
    alpha2_min = 1.0 / (1.0 + math.exp(-lam_min))
    const = math.log1p(math.exp(lam_min)) - alpha2_min
    flat = x.reshape(x.shape[0], -1)
    prior = 0.5 * (alpha2_min * jnp.sum(flat * flat, axis=1) + dims * const)

    # reconstruction: x − z₀/α = −(σ/α) ε exactly, with σ/α = e^{−λ_max/2}
    eps0 = noise[-1].reshape(x.shape[0], -1)
    if bin_width is None:
        recon = dims * (_HALF_LOG_2PI - 0.5 * lam_max) + 0.5 * jnp.sum(eps0 * eps0, axis=1)
    else:
        # w/2 in units of the decoder's std σ/α = e^{−λ_max/2}; inf (mass 1) past float32's range
        half = 0.5 * bin_width * math.exp(min(0.5 * lam_max, 100.0))
        half = jnp.float32(half if half < 1e38 else math.inf)
        # the bin of x, relative to the decoder mean x + (σ/α) ε, in decoder stds: −ε ± half
        lower_open = flat < -1.0 + 0.5 * bin_width
        upper_open = flat > 1.0 - 0.5 * bin_width
        recon = -jnp.sum(_log_bin_mass(-eps0, half, lower_open, upper_open), axis=1)
    return diffusion, prior, recon


def _per_image_nats(
    model: Any,
    images: Any,
    schedule: Any,
    *,
    key: jax.Array,
    cond: Any = None,
    time_samples: int = 1,
    time_sampling: str = "logsnr",
    bin_width: float | None = 2 / 255,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """The three terms per image, in nats summed over dimensions: float64 arrays (N,)."""
    denoiser = _denoiser(model)
    if bin_width is not None:
        if isinstance(bin_width, bool) or not isinstance(bin_width, numbers.Real):
            raise TypeError(
                f"{_FUNC}: bin_width must be None or a number in (0, 2], got {bin_width!r}"
            )
        if not 0.0 < float(bin_width) <= 2.0:
            raise ValueError(
                f"{_FUNC}: bin_width must be None or a number in (0, 2], got {bin_width!r}"
            )
        bin_width = float(bin_width)
    x = _check_images(images, bin_width)
    _check_schedule(schedule)
    _check_key(key)
    time_samples = _check_int("time_samples", time_samples)
    batch_size = _check_int("batch_size", batch_size)
    if time_sampling not in TIME_SAMPLINGS:
        raise ValueError(
            f"{_FUNC}: time_sampling must be one of {TIME_SAMPLINGS}, got {time_sampling!r}"
        )
    n = x.shape[0]
    cond = _check_cond(cond, n)
    traced, static = _split(denoiser)

    size = min(batch_size, n)
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, n, size):
        # the last batch is padded by repeating the last image (dropped below): one compilation
        rows = np.minimum(np.arange(start, start + size), n - 1)
        batch_cond = None if cond is None else jax.tree.map(lambda c, r=rows: c[r], cond)
        terms = _batch_nats(
            traced,
            jnp.asarray(x[rows]),
            batch_cond,
            jnp.arange(start, start + size, dtype=jnp.uint32),
            key,
            static_denoiser=static,
            schedule=schedule,
            time_samples=time_samples,
            time_sampling=time_sampling,
            bin_width=bin_width,
        )
        keep = min(size, n - start)
        parts.append(tuple(np.asarray(t, dtype=np.float64)[:keep] for t in terms))
    names = ("diffusion", "prior", "reconstruction")
    out = {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(names)}
    for name, values in out.items():
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"{_FUNC}: model must give finite outputs, got a non-finite {name} term for "
                f"{int(np.sum(~np.isfinite(values)))} of {n} images"
            )
    return out


def elbo_bpd(
    model: Any,
    images: Any,
    schedule: Any,
    *,
    key: jax.Array,
    cond: Any = None,
    time_samples: int = 1,
    time_sampling: str = "logsnr",
    bin_width: float | None = 2 / 255,
    batch_size: int = 256,
) -> dict[str, float]:
    """Validation negative ELBO of ``images`` under ``model``, in bits per dimension.

    See the module docstring for the three terms and the sampling of t and ε. Everything is
    computed in float32 per image and averaged over images in float64 on the host.

    Args:
      model: an NNX model called as ``model(z, logsnr, cond, dropout_key=None)`` (wrapped with
        :func:`~diff_pixel.models.denoiser.as_denoiser`, its weights traced, not baked into the
        compiled function), a ``(graphdef, state)`` pair, or any diff-protocol ``Denoiser``
        (callable ``(z, logsnr, cond=None)`` with ``prediction`` in ``"eps"``, ``"v"``, ``"x"``,
        e.g. ``diff_protocol.as_denoiser(fn, prediction)``).
      images: (N, H, W, C) real floating array (cast to float32); with a ``bin_width`` every
        value must lie in [−1, 1] (the edge bins are anchored at ±1), with ``bin_width=None``
        any finite value is accepted.
      schedule: a diff-core schedule with a finite ``logsnr_range = (λ_min, λ_max)``.
      key: a JAX PRNG key; image i uses ``fold_in(key, i)`` only.
      cond: ``None`` or a pytree (e.g. a :class:`~diff_pixel.models.Cond`) whose leaves have
        leading dimension N, sliced per batch and passed to the model.
      time_samples: K ≥ 1 stratified times per image.
      time_sampling: ``"logsnr"`` (default): λ uniform on the schedule's range; ``"schedule"``:
        t uniform under the schedule's own λ(t). Same expectation, different variance.
      bin_width: the width w of a data bin (``2/255`` for 8-bit data in [−1, 1]) for the
        discrete reconstruction term, or ``None`` for the continuous density.
      batch_size: images per compiled call; the network sees batches of this size (the last
        one padded). The results do not depend on it.

    Returns:
      ``{"bpd", "diffusion_bpd", "prior_bpd", "reconstruction_bpd", "bpd_stderr"}`` as floats:
      the mean over images of each term (nats / (D ln 2)), ``bpd`` their sum, and
      ``bpd_stderr`` the standard error over images of the per-image total (NaN for N = 1).

    Raises:
      TypeError: ``model`` is not a model/denoiser with a ``prediction``, ``images`` is not a
        float array, ``key`` is not a PRNG key, or an int argument is not an int.
      ValueError: bad shapes or values (``images`` not 4-D, non-finite or outside [−1, 1] with a
        ``bin_width``; ``bin_width`` not in (0, 2]; ``time_samples`` or ``batch_size`` < 1; an
        untruncated schedule; ``cond`` leaves without leading dimension N; a non-finite term).

    Example:
      >>> from diff_core.schedules import CosineSchedule
      >>> sched = CosineSchedule(-15.0, 15.0)
      >>> m = elbo_bpd(model, x_val, sched, key=jax.random.key(0))  # doctest: +SKIP
      >>> m["bpd"], m["bpd_stderr"]  # doctest: +SKIP
    """
    terms = _per_image_nats(
        model,
        images,
        schedule,
        key=key,
        cond=cond,
        time_samples=time_samples,
        time_sampling=time_sampling,
        bin_width=bin_width,
        batch_size=batch_size,
    )
    n = terms["diffusion"].size
    dims = math.prod(np.shape(images)[1:])
    scale = 1.0 / (dims * math.log(2.0))
    total = (terms["diffusion"] + terms["prior"] + terms["reconstruction"]) * scale
    out = {f"{name}_bpd": float(np.mean(v) * scale) for name, v in terms.items()}
    stderr = float(np.std(total, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return {
        "bpd": out["diffusion_bpd"] + out["prior_bpd"] + out["reconstruction_bpd"],
        "diffusion_bpd": out["diffusion_bpd"],
        "prior_bpd": out["prior_bpd"],
        "reconstruction_bpd": out["reconstruction_bpd"],
        "bpd_stderr": stderr,
    }
