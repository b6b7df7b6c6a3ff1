"""Exact data distributions and their exact (Bayes-optimal) denoisers.

For data ``x`` and the VP forward process ``z = α x + σ ε`` at log-SNR ``λ`` (α² = sigmoid(λ),
σ² = sigmoid(−λ)), the optimal x-prediction is the posterior mean ``E[x | z]``. It is available in
closed form for three families, which makes every sampler testable against ground truth:

* :class:`GaussianMixture` with diagonal covariances. Per component ``k`` (weight ``w_k``, mean
  ``μ_k``, per-dimension std ``s_k``): ``v_k = α² s_k² + σ²``,
  ``r_k(z) ∝ w_k N(z; α μ_k, v_k)`` (normalised with log-sum-exp),
  ``m_k = μ_k + α s_k² (z − α μ_k) / v_k``, ``E[x|z] = Σ_k r_k m_k``,
  ``tr Var[x|z] = Σ_k r_k (Σ_dims s_k² σ²/v_k + ‖m_k − E[x|z]‖²)`` and
  ``∇ log p_λ(z) = −Σ_k r_k (z − α μ_k)/v_k`` (Tweedie: ``E[x|z] = (z + σ² ∇ log p)/α``;
  Efron, "Tweedie's formula and selection bias", 2011; VDM, arXiv 2107.00630).
* :class:`EmpiricalDistribution`, the finite-set oracle
  ``E[x|z] = Σ_i softmax_i(−‖z − α x_i‖²/(2σ²)) x_i`` that a perfectly memorising network learns.
* :class:`ConditionalMixture`, one mixture per class label plus a null label selecting the
  class-weighted union, for classifier-free guidance tests (Ho & Salimans, arXiv 2207.12598).

Everything evaluated at a noise level is array-API code: the mixture parameters live on the host
in float64 and are converted to the namespace, dtype and device of ``z`` at each call, so the same
object works with numpy, array-api-strict, torch and JAX (also under ``jax.jit``). Objects hash by
identity (JAX drivers take the denoiser as a static argument). bfloat16/float16 states are
computed in float32 and cast back.

Squared distances are formed as ``Σ_d (z_d − α μ_kd)²`` (no cancellation, exact at high SNR) over
chunks of components, so the largest temporary has ``chunk_elements`` entries. ``method="matmul"``
instead expands ``‖z − α μ_k‖² = ‖z‖² − 2α z·μ_k + α²‖μ_k‖²`` and uses matrix products: faster on
accelerators, but the expansion loses digits at high SNR where the distances are tiny compared
with ``‖z‖²``, so it is not the default.

``logsnr`` is 0-d, a Python float, or an array whose shape is a prefix of ``z.shape``: one value
per example, or (rolling diffusion) per element of the event, in which case α and σ vary across
dimensions and the formulas above apply per dimension.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import array_api_compat
import numpy as np

from diff_protocol import alpha_sigma, arg_error, check_prediction, expand_like
from diff_protocol.arrays import as_float_array, is_lazy, work_dtype

__all__ = ["ConditionalMixture", "EmpiricalDistribution", "GaussianMixture", "gaussian"]

Array = Any

METHODS = ("direct", "matmul")
_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# host-side validation


def _host_float(func: str, arg: str, value: Any) -> np.ndarray:
    """``value`` (any backend, list or number) as a finite host float64 array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise arg_error(func, arg, "a real array", value, TypeError) from None
    if not np.all(np.isfinite(a)):
        raise arg_error(func, arg, "finite", f"non-finite values in {arg}")
    return a


def _check_positive_int(func: str, arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise arg_error(func, arg, "a positive int", repr(value), TypeError)
    if value < 1:
        raise arg_error(func, arg, "a positive int", repr(value))
    return int(value)


def _check_method(func: str, method: Any) -> str:
    if method not in METHODS:
        raise arg_error(func, "method", "one of 'direct', 'matmul'", repr(method))
    return method


# --------------------------------------------------------------------------------------------
# array-side helpers (array API only)


class _Frame:
    """``z`` as ``zt`` of shape ``(D, N)`` (examples last, so that reductions over components and
    dimensions are vectorised over examples) with α, σ, σ² shaped ``(1, 1 or D, N)``."""

    __slots__ = ("xp", "dtype", "device", "z", "zt", "batch", "n", "alpha", "sigma", "sigma2")

    def __init__(self, func: str, z: Array, logsnr: Any, event: tuple[int, ...]) -> None:
        if getattr(z, "shape", None) is None or getattr(z, "dtype", None) is None:
            raise arg_error(func, "z", "an array", z, TypeError)
        xp = array_api_compat.array_namespace(z)
        if not xp.isdtype(z.dtype, "real floating"):
            raise arg_error(func, "z", "a real floating array", f"dtype {z.dtype}", TypeError)
        n_event = len(event)
        shape = tuple(z.shape)
        if len(shape) < n_event or shape[len(shape) - n_event :] != event:
            raise ValueError(f"{func}: z shape {shape} must end with the event shape {event}")
        batch = shape[: len(shape) - n_event]
        n = math.prod(batch)
        d = math.prod(event)
        dt = work_dtype(xp, z)
        dev = array_api_compat.device(z)
        self.xp, self.dtype, self.device, self.z, self.batch, self.n = xp, dt, dev, z, batch, n
        zf = xp.reshape(xp.astype(z, dt) if z.dtype != dt else z, (n, d))
        self.zt = xp.matrix_transpose(zf)

        if isinstance(logsnr, bool) or not (
            isinstance(logsnr, (int, float)) or getattr(logsnr, "shape", None) is not None
        ):
            raise arg_error(func, "logsnr", "a float or an array", logsnr, TypeError)
        lam = as_float_array(xp, logsnr, z)
        per_example = lam.ndim <= len(batch)
        lam = expand_like(lam, z, func=func, arg="logsnr")  # validates the prefix rule
        if lam.ndim and not is_lazy(lam) and bool(xp.all(lam == xp.reshape(lam, (-1,))[0])):
            # one noise level for the whole batch (the drivers' case): α and σ are computed once
            # and broadcast, which gives bitwise the same values as per-example coefficients
            lam = xp.reshape(lam, (-1,))[0]
        if lam.ndim == 0:
            lam = xp.reshape(lam, (1, 1, 1))
        elif per_example:
            lam = xp.reshape(lam, tuple(lam.shape[: len(batch)]))
            lam = xp.reshape(xp.broadcast_to(lam, batch), (1, 1, n))
        else:
            lam = xp.reshape(xp.broadcast_to(lam, shape), (n, d))
            lam = xp.reshape(xp.matrix_transpose(lam), (1, d, n))
        alpha, sigma = alpha_sigma(lam)
        self.alpha = xp.astype(alpha, dt) if alpha.dtype != dt else alpha
        self.sigma = xp.astype(sigma, dt) if sigma.dtype != dt else sigma
        self.sigma2 = self.sigma * self.sigma

    @property
    def per_dim(self) -> bool:
        return self.alpha.shape[1] != 1

    def const(self, a: np.ndarray) -> Array:
        return self.xp.asarray(a, dtype=self.dtype, device=self.device)

    def out_events(self, a: Array, event: tuple[int, ...]) -> Array:
        """``(D, N)`` → ``(*batch, *event)`` in z's dtype."""
        return self._cast(self.xp.reshape(self.xp.matrix_transpose(a), self.batch + event))

    def out_batch(self, a: Array) -> Array:
        """``(N,)`` → ``batch``."""
        return self._cast(self.xp.reshape(a, self.batch))

    def out_components(self, a: Array) -> Array:
        """``(K, N)`` → ``(*batch, K)``."""
        return self._cast(self.xp.reshape(self.xp.matrix_transpose(a), self.batch + (a.shape[0],)))

    def _cast(self, a: Array) -> Array:
        return self.xp.astype(a, self.z.dtype) if a.dtype != self.z.dtype else a


def _dim_sum(xp: Any, a: Array, d: int) -> Array:
    """Sum over axis 1 of ``(K, 1 or D, N)``, where a singleton stands for ``d`` equal entries."""
    return d * a[:, 0, :] if a.shape[1] == 1 else xp.sum(a, axis=1)


# --------------------------------------------------------------------------------------------
# Gaussian mixtures


class GaussianMixture:
    """A mixture of diagonal Gaussians with exact noisy-level quantities.

    Args:
      weights: mixing weights ``(K,)``, positive; normalised to sum to 1.
      means: ``(K, *event)``.
      stds: ``(K,)`` (isotropic per component) or ``(K, *event)`` (per dimension), positive.
      method: ``"direct"`` (default; distances ``Σ (z − α μ_k)²`` in chunks of components) or
        ``"matmul"`` (expanded norms and matrix products; needs isotropic stds and one logsnr
        per example; faster on accelerators, less accurate at high SNR).
      chunk_elements: bound on the size of the ``(N, K_chunk, D)`` temporaries of ``"direct"``.

    Example:
      >>> import numpy as np
      >>> gm = GaussianMixture([0.25, 0.75], [[-2.0], [1.0]], [0.25, 0.5])
      >>> x, labels = gm.sample(4, seed=0)
      >>> np.round(gm.posterior_mean(np.zeros((3, 1)), -np.inf)[:, 0], 12).tolist()
      [0.25, 0.25, 0.25]
    """

    def __init__(
        self,
        weights: Any,
        means: Any,
        stds: Any,
        *,
        method: str = "direct",
        chunk_elements: int = 2**22,
    ) -> None:
        func = "GaussianMixture"
        w = _host_float(func, "weights", weights)
        mu = _host_float(func, "means", means)
        s = _host_float(func, "stds", stds)
        if w.ndim != 1 or w.shape[0] < 1:
            raise arg_error(func, "weights", "a non-empty 1-D array", f"shape {w.shape}")
        if np.any(w <= 0):
            raise arg_error(func, "weights", "positive", f"min {w.min()!r}")
        k = w.shape[0]
        if mu.ndim < 1 or mu.shape[0] != k:
            raise arg_error(func, "means", f"shaped (K={k}, *event)", f"shape {mu.shape}")
        event = tuple(mu.shape[1:])
        if s.shape == (k,):
            s2 = (s**2).reshape(k, 1)
        elif s.shape == (k, *event):
            s2 = (s**2).reshape(k, -1)
        else:
            raise arg_error(
                func, "stds", f"shaped (K,) or (K, *event) = {(k, *event)}", str(s.shape)
            )
        if np.any(s <= 0):
            raise arg_error(func, "stds", "positive", f"min {s.min()!r}")
        self.method = _check_method(func, method)
        self.chunk_elements = _check_positive_int(func, "chunk_elements", chunk_elements)
        self.weights = w / w.sum()
        self.means = mu
        self.stds = s
        self.event_shape = event
        self.dim = math.prod(event)
        self.n_components = k
        self._mu2d = mu.reshape(k, self.dim)
        self._s2 = s2
        self._logw = np.log(self.weights)
        self._denoisers: dict[tuple[str, str], _ExactDenoiser] = {}

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(K={self.n_components}, event_shape={self.event_shape}, "
            f"method={self.method!r})"
        )

    # ---------------------------------------------------------------- host-side statistics

    def mean(self) -> np.ndarray:
        """``E[x] = Σ_k w_k μ_k`` (host float64, event shape)."""
        return np.tensordot(self.weights, self.means, axes=1)

    def covariance(self) -> np.ndarray:
        """Exact covariance of the flat event, ``Σ_k w_k (diag s_k² + (μ_k − m)(μ_k − m)ᵀ)``."""
        m = self._mu2d.T @ self.weights
        c = self._mu2d - m
        cov = (c * self.weights[:, None]).T @ c
        var = self.weights @ np.broadcast_to(self._s2, (self.n_components, self.dim))
        return cov + np.diag(var)

    def sample(self, n: int, seed: int | np.random.Generator = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` samples and their component labels (host float64 / int64).

        Labels are drawn first (``rng.choice``), then standard normals of shape ``(n, *event)``,
        from ``numpy.random.default_rng(seed)``.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise arg_error("GaussianMixture.sample", "n", "a non-negative int", repr(n))
        rng = np.random.default_rng(seed)
        labels = rng.choice(self.n_components, size=int(n), p=self.weights)
        eps = rng.standard_normal((int(n), *self.event_shape))
        s = np.sqrt(np.broadcast_to(self._s2, (self.n_components, self.dim)))
        s = s.reshape((self.n_components, *self.event_shape))
        return self.means[labels] + s[labels] * eps, labels.astype(np.int64)

    # ---------------------------------------------------------------- core computation

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        size = max(1, min(self.n_components, self.chunk_elements // max(1, n * self.dim)))
        return [(a, min(a + size, self.n_components)) for a in range(0, self.n_components, size)]

    def _params(self, fr: _Frame) -> tuple[Array, Array]:
        """Means ``(K, D, 1)`` and variances ``(K, 1 or D, 1)`` in the frame's dtype."""
        xp = fr.xp
        return xp.reshape(fr.const(self._mu2d), (self.n_components, self.dim, 1)), xp.reshape(
            fr.const(self._s2), (self.n_components, self._s2.shape[1], 1)
        )

    @staticmethod
    def _terms(fr: _Frame, mu: Array, s2: Array) -> tuple[Array, Array]:
        """``z − α μ_k`` ``(Kc, D, N)`` and ``v_k = α² s_k² + σ²`` ``(Kc, 1 or D, N)``."""
        return fr.zt[None, :, :] - fr.alpha * mu, fr.alpha * fr.alpha * s2 + fr.sigma2

    def _logits(self, fr: _Frame, logw: Array | None) -> tuple[Array, list[Any] | None]:
        """``log w_k + log N(z; α μ_k, v_k)``, shape ``(K, N)``; ``logw`` is ``(K, 1 or N)``."""
        xp, d = fr.xp, self.dim
        if logw is None:
            logw = xp.reshape(fr.const(self._logw), (self.n_components, 1))
        if self.method == "matmul":
            return self._logits_matmul(fr, logw), None
        mu, s2 = self._params(fr)
        chunks = self._chunks(fr.n)
        parts, cache = [], []
        for a, b in chunks:
            diff, v = self._terms(fr, mu[a:b, ...], s2[a:b, ...])
            if v.shape[1] == 1:
                sq = diff * diff
                quad = (sq[:, 0, :] if d == 1 else xp.sum(sq, axis=1)) / v[:, 0, :]
            else:
                quad = xp.sum(diff * diff / v, axis=1)
            logdet = _dim_sum(xp, xp.log(v), d)
            parts.append(logw[a:b, ...] - 0.5 * (quad + logdet + d * _LOG_2PI))
            if len(chunks) == 1:
                cache.append((diff, v))
        logits = parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)
        return logits, (cache if len(chunks) == 1 else None)

    def _matmul_parts(self, fr: _Frame) -> tuple[Array, Array, Array, Array]:
        if fr.per_dim or self._s2.shape[1] != 1:
            raise ValueError(
                "GaussianMixture: method='matmul' needs isotropic stds (K,) and one logsnr per "
                "example; use method='direct'"
            )
        a = fr.alpha[0, :, :]  # (1, N)
        s2 = fr.xp.reshape(fr.const(self._s2[:, 0]), (self.n_components, 1))  # (K, 1)
        v = a * a * s2 + fr.sigma2[0, :, :]  # (K, N)
        return a, s2, v, fr.const(self._mu2d)

    def _logits_matmul(self, fr: _Frame, logw: Array) -> Array:
        xp, d = fr.xp, self.dim
        a, _, v, mu = self._matmul_parts(fr)
        zz = xp.sum(fr.zt * fr.zt, axis=0)[None, :]
        mm = xp.sum(mu * mu, axis=1)[:, None]
        dist = zz - 2.0 * a * (mu @ fr.zt) + a * a * mm
        dist = xp.maximum(dist, xp.zeros_like(dist))
        return logw - 0.5 * (dist / v + d * xp.log(v) + d * _LOG_2PI)

    @staticmethod
    def _softmax(xp: Any, logits: Array) -> tuple[Array, Array]:
        m = xp.max(logits, axis=0)
        e = xp.exp(logits - m)
        s = xp.sum(e, axis=0)
        return e / s, m + xp.log(s)

    def _moments(self, fr: _Frame, logw: Array | None, want: tuple[str, ...]) -> dict[str, Array]:
        """Posterior quantities; ``want`` ⊂ {"mean", "dscore", "trvar"} (``r`` and ``logp``
        always). Shapes: r ``(K, N)``, logp ``(N,)``, mean and dscore ``(D, N)``, trvar ``(N,)``;
        ``dscore = Σ_k r_k (z − α μ_k)/v_k`` (= −score)."""
        xp = fr.xp
        logits, cache = self._logits(fr, logw)
        r, logp = self._softmax(xp, logits)
        res: dict[str, Array] = {"r": r, "logp": logp}
        if not ({"mean", "dscore", "trvar"} & set(want)):
            return res
        if self.method == "matmul":
            return self._moments_matmul(fr, r, res, want)
        mu, s2 = self._params(fr)
        need_mean = "mean" in want or "trvar" in want
        mean = dscore = None
        chunks = self._chunks(fr.n)

        def terms(idx: int, a: int, b: int) -> tuple[Array, Array]:
            return cache[idx] if cache is not None else self._terms(fr, mu[a:b, ...], s2[a:b, ...])

        for idx, (a, b) in enumerate(chunks):
            diff, v = terms(idx, a, b)
            rc = r[a:b, None, :]
            if need_mean:
                m = mu[a:b, ...] + fr.alpha * s2[a:b, ...] * diff / v
                part = xp.sum(rc * m, axis=0)
                mean = part if mean is None else mean + part
            if "dscore" in want:
                part = xp.sum(rc * (diff / v), axis=0)
                dscore = part if dscore is None else dscore + part
        if need_mean:
            res["mean"] = mean
        if dscore is not None:
            res["dscore"] = dscore
        if "trvar" in want:
            tr = None
            for idx, (a, b) in enumerate(chunks):
                diff, v = terms(idx, a, b)
                m = mu[a:b, ...] + fr.alpha * s2[a:b, ...] * diff / v
                dev = m - mean[None, :, :]
                within = _dim_sum(xp, s2[a:b, ...] * fr.sigma2 / v, self.dim)
                part = xp.sum(r[a:b, ...] * (within + xp.sum(dev * dev, axis=1)), axis=0)
                tr = part if tr is None else tr + part
            res["trvar"] = tr
        return res

    def _moments_matmul(
        self, fr: _Frame, r: Array, res: dict[str, Array], want: tuple[str, ...]
    ) -> dict[str, Array]:
        xp, d = fr.xp, self.dim
        a, s2, v, mu = self._matmul_parts(fr)
        z, mu_t = fr.zt, xp.matrix_transpose(mu)
        sig2 = fr.sigma2[0, :, :]
        if "mean" in want or "trvar" in want:
            # E = Σ r_k (σ² μ_k + α s_k² z)/v_k
            res["mean"] = mu_t @ (r * sig2 / v) + xp.sum(r * a * s2 / v, axis=0) * z
        if "dscore" in want:
            rv = r / v
            res["dscore"] = xp.sum(rv, axis=0) * z - a * (mu_t @ rv)
        if "trvar" in want:
            zz = xp.sum(z * z, axis=0)[None, :]
            mm = xp.sum(mu * mu, axis=1)[:, None]
            zm = mu @ z
            norm_m = (sig2 * sig2 * mm + 2.0 * sig2 * a * s2 * zm + a * a * s2 * s2 * zz) / (v * v)
            e = res["mean"]
            res["trvar"] = xp.sum(r * (d * s2 * sig2 / v + norm_m), axis=0) - xp.sum(e * e, axis=0)
        return res

    # ---------------------------------------------------------------- public evaluations

    def responsibilities(self, z: Array, logsnr: Any) -> Array:
        """``r_k(z) = p(k | z_λ)``, shape ``(*batch, K)``."""
        fr = _Frame("GaussianMixture.responsibilities", z, logsnr, self.event_shape)
        return fr.out_components(self._moments(fr, None, ())["r"])

    def log_marginal(self, z: Array, logsnr: Any) -> Array:
        """``log p_λ(z) = log Σ_k w_k N(z; α μ_k, v_k)``, shape ``batch``."""
        fr = _Frame("GaussianMixture.log_marginal", z, logsnr, self.event_shape)
        return fr.out_batch(self._moments(fr, None, ())["logp"])

    def posterior_mean(self, z: Array, logsnr: Any) -> Array:
        """``E[x | z_λ] = Σ_k r_k m_k`` (the exact x-prediction), shaped like ``z``."""
        fr = _Frame("GaussianMixture.posterior_mean", z, logsnr, self.event_shape)
        return fr.out_events(self._moments(fr, None, ("mean",))["mean"], self.event_shape)

    def score(self, z: Array, logsnr: Any) -> Array:
        """``∇_z log p_λ(z) = −Σ_k r_k (z − α μ_k)/v_k``, shaped like ``z``."""
        fr = _Frame("GaussianMixture.score", z, logsnr, self.event_shape)
        return fr.out_events(-self._moments(fr, None, ("dscore",))["dscore"], self.event_shape)

    def posterior_trace_var(self, z: Array, logsnr: Any) -> Array:
        """``tr Var[x | z_λ]``, shape ``batch`` (the irreducible x-error of a denoiser)."""
        fr = _Frame("GaussianMixture.posterior_trace_var", z, logsnr, self.event_shape)
        return fr.out_batch(self._moments(fr, None, ("trvar",))["trvar"])

    def component_log_prob(self, x: Array) -> Array:
        """``log N(x; μ_k, diag s_k²)`` for every k, shape ``(*batch, K)``."""
        fr = _Frame("GaussianMixture.component_log_prob", x, math.inf, self.event_shape)
        zeros = fr.xp.zeros((self.n_components, 1), dtype=fr.dtype, device=fr.device)
        return fr.out_components(self._logits(fr, zeros)[0])

    def log_prob(self, x: Array) -> Array:
        """``log p(x)`` of clean data, shape ``batch``."""
        fr = _Frame("GaussianMixture.log_prob", x, math.inf, self.event_shape)
        return fr.out_batch(self._moments(fr, None, ())["logp"])

    def assign(self, x: Array) -> Array:
        """Most probable component ``argmax_k w_k N(x; μ_k, s_k²)``, shape ``batch``."""
        fr = _Frame("GaussianMixture.assign", x, math.inf, self.event_shape)
        logits = self._logits(fr, None)[0]
        return fr.xp.reshape(fr.xp.argmax(logits, axis=0), fr.batch)

    # ---------------------------------------------------------------- denoiser

    def _denoise(self, z: Array, logsnr: Any, cond: Any, prediction: str) -> Array:
        fr = _Frame("GaussianMixture.denoiser", z, logsnr, self.event_shape)
        return _prediction_output(fr, self._moments(fr, None, _WANT[prediction]), prediction)

    def denoiser(self, prediction: str = "x", *, method: str | None = None) -> Any:
        """The exact denoiser as a :class:`diff_protocol.Denoiser` predicting ``prediction``.

        x: ``E[x|z]``; eps: ``E[ε|z] = σ Σ_k r_k (z − α μ_k)/v_k`` (finite at σ = 0); v:
        ``α ε̂ − σ x̂``. ``cond`` is ignored (the model is unconditional). The same object is
        returned for equal arguments, so JAX compilation caches stay warm.
        """
        check_prediction("GaussianMixture.denoiser", prediction)
        method = self.method if method is None else _check_method("denoiser", method)
        key = (prediction, method)
        if key not in self._denoisers:
            model = self if method == self.method else self._with_method(method)
            self._denoisers[key] = _ExactDenoiser(model, prediction)
        return self._denoisers[key]

    def _with_method(self, method: str) -> GaussianMixture:
        return GaussianMixture(
            self.weights, self.means, self.stds, method=method, chunk_elements=self.chunk_elements
        )


_WANT = {"x": ("mean",), "eps": ("dscore",), "v": ("mean", "dscore")}


def _prediction_output(fr: _Frame, res: dict[str, Array], prediction: str) -> Array:
    """x̂ = mean; ε̂ = σ · dscore (dscore = Σ r (z − α μ)/v, or Σ r (z − α x_i)/σ² for points)."""
    event = tuple(fr.z.shape[len(fr.batch) :])
    if prediction == "x":
        return fr.out_events(res["mean"], event)
    sigma, alpha = fr.sigma[0, ...], fr.alpha[0, ...]
    eps = sigma * res["dscore"]
    if prediction == "eps":
        return fr.out_events(eps, event)
    return fr.out_events(alpha * eps - sigma * res["mean"], event)


class _ExactDenoiser:
    """Denoiser view of an analytic model; hashes by identity (a valid JAX static argument)."""

    __slots__ = ("model", "prediction")

    def __init__(self, model: Any, prediction: str) -> None:
        self.model = model
        self.prediction = prediction

    def __call__(self, z: Array, logsnr: Any, cond: Any = None) -> Array:
        return self.model._denoise(z, logsnr, cond, self.prediction)

    def __repr__(self) -> str:
        return f"{self.model!r}.denoiser({self.prediction!r})"


def gaussian(mean: Any, std: Any) -> GaussianMixture:
    """A single Gaussian ``N(mean, diag std²)`` as a one-component mixture.

    A scalar ``mean`` gives 1-D data with event shape ``(1,)``; ``std`` is a scalar or shaped
    like ``mean``.

    >>> round(gaussian(0.3, 0.5).posterior_mean(np.zeros((1, 1)), 0.0).item(), 12)
    0.24
    """
    mu = _host_float("gaussian", "mean", mean)
    s = _host_float("gaussian", "std", std)
    if mu.ndim == 0:
        mu = mu.reshape(1)
    if s.ndim == 0:
        stds = s.reshape(1)
    elif s.shape == mu.shape:
        stds = s[None]
    else:
        raise arg_error("gaussian", "std", f"a scalar or shaped like mean {mu.shape}", str(s.shape))
    return GaussianMixture(np.ones(1), mu[None], stds)


# --------------------------------------------------------------------------------------------
# finite sets


class EmpiricalDistribution:
    """The uniform distribution on a finite set of points and its exact denoiser.

    ``E[x|z] = Σ_i p_i x_i / Σ_i p_i`` with ``p_i = exp(−(u_i − min_j u_j)/(2σ²))`` and
    ``u_i = ‖z − α x_i‖²`` (per-dimension σ: ``u_i = Σ_d (z_d − α_d x_id)²/σ_d²``). Points are
    visited in chunks of ``chunk_size``, so memory is bounded by ``N · chunk_size · D``: a first
    pass finds ``min_j u_j`` (the log-sum-exp shift), a second accumulates the sums in point order
    (each chunk's sum over its leading point axis starts from the running total), so the result
    does not depend on ``chunk_size`` (bitwise on numpy, which reduces a leading axis in order).
    At σ = 0 (one logsnr per example) the posterior is uniform over the nearest points (no 0/0);
    per-element logsnr must be finite.

    Args:
      data: ``(n, *event)`` points.
      chunk_size: points per chunk.
    """

    def __init__(self, data: Any, chunk_size: int = 1024) -> None:
        x = _host_float("EmpiricalDistribution", "data", data)
        if x.ndim < 1 or x.shape[0] < 1:
            raise arg_error(
                "EmpiricalDistribution", "data", "shaped (n >= 1, *event)", str(x.shape)
            )
        self.chunk_size = _check_positive_int("EmpiricalDistribution", "chunk_size", chunk_size)
        self.data = x
        self.n_points = x.shape[0]
        self.event_shape = tuple(x.shape[1:])
        self.dim = math.prod(self.event_shape)
        self._x2d = x.reshape(self.n_points, self.dim)
        self._denoisers: dict[str, _ExactDenoiser] = {}

    def __repr__(self) -> str:
        return f"EmpiricalDistribution(n={self.n_points}, event_shape={self.event_shape})"

    def mean(self) -> np.ndarray:
        """Mean of the points (host float64)."""
        return self.data.mean(axis=0)

    def covariance(self) -> np.ndarray:
        """Population covariance of the flattened points (host float64)."""
        c = self._x2d - self._x2d.mean(axis=0)
        return c.T @ c / self.n_points

    def sample(self, n: int, seed: int | np.random.Generator = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points drawn uniformly with replacement, and their indices."""
        idx = np.random.default_rng(seed).integers(0, self.n_points, size=int(n))
        return self.data[idx], idx.astype(np.int64)

    def _moments(self, fr: _Frame, want: tuple[str, ...]) -> dict[str, Array]:
        """``want`` ⊂ {"mean", "dscore", "logp", "nearest"}; mean and dscore are ``(D, N)`` with
        ``dscore = Σ_i r_i (z − α x_i)/σ²`` (= −score), logp and nearest ``(N,)``."""
        xp, n, d = fr.xp, self.n_points, self.dim
        x = xp.reshape(fr.const(self._x2d), (n, d, 1))
        bounds = [(a, min(a + self.chunk_size, n)) for a in range(0, n, self.chunk_size)]
        keep = len(bounds) == 1 or fr.n * n <= 2**24

        def distances(a: int, b: int) -> tuple[Array, Array]:
            diff = fr.zt[None, :, :] - fr.alpha * x[a:b, ...]  # (C, D, N)
            sq = diff * diff / fr.sigma2 if fr.per_dim else diff * diff
            return diff, (sq[:, 0, :] if d == 1 else xp.sum(sq, axis=1))  # u: (C, N)

        # pass 1: u_min = min_i u_i (exact whatever the chunking)
        umin, stored, nearest = None, [], None
        for a, b in bounds:
            diff, u = distances(a, b)
            cmin = xp.min(u, axis=0)
            if "nearest" in want:
                cidx = xp.argmin(u, axis=0) + a
                nearest = cidx if nearest is None else xp.where(cmin < umin, cidx, nearest)
            umin = cmin if umin is None else xp.minimum(umin, cmin)
            if keep:
                stored.append((diff if len(bounds) == 1 else None, u))
        res: dict[str, Array] = {}
        if nearest is not None:
            res["nearest"] = nearest
        if not ({"mean", "dscore", "logp"} & set(want)):
            return res
        # pass 2: p_i = exp(−(u_i − u_min) c), c = 1/(2σ²) per example (σ is folded into u per
        # dimension: c = ½). Each chunk's sum starts from the running total and runs over the
        # leading (point) axis, which numpy accumulates in order, so the result is the same
        # sequential sum whatever the chunking.
        sig2 = fr.sigma2[0, 0, :]
        frozen = sig2 == 0  # λ = +inf: uniform over the nearest points
        c = (
            0.5 * xp.ones_like(sig2)
            if fr.per_dim
            else 0.5 / xp.where(frozen, xp.ones_like(sig2), sig2)
        )
        total = None
        acc = {k: None for k in ("mean", "dscore") if k in want}
        for idx, (a, b) in enumerate(bounds):
            diff, u = stored[idx] if keep else (None, None)
            if u is None:
                diff, u = distances(a, b)
            elif diff is None and "dscore" in want:
                diff = distances(a, b)[0]
            shifted = u - umin
            p = xp.where(frozen, xp.zeros_like(u), xp.exp(-(shifted * c)))
            p = xp.where(shifted == 0, xp.ones_like(u), p)
            first = idx == 0  # (0 + t_1) + t_2 + ... = t_1 + t_2 + ...: no carry to prepend
            total = xp.sum(p if first else xp.concat([total, p], axis=0), axis=0, keepdims=True)
            for key in acc:
                terms = p[:, None, :] * (x[a:b, ...] if key == "mean" else diff)
                cat = terms if first else xp.concat([acc[key], terms], axis=0)
                acc[key] = xp.sum(cat, axis=0, keepdims=True)
        if "mean" in acc:
            res["mean"] = acc["mean"][0, ...] / total
        if "dscore" in acc:
            s2 = fr.sigma2[0, ...] if fr.per_dim else sig2
            res["dscore"] = acc["dscore"][0, ...] / total / s2
        if "logp" in want:
            log_norm = _dim_sum(xp, xp.log(2.0 * math.pi * fr.sigma2), d)[0, ...]
            res["logp"] = xp.log(total[0, ...]) - umin * c - math.log(n) - 0.5 * log_norm
        return res

    def posterior_mean(self, z: Array, logsnr: Any) -> Array:
        """``E[x | z_λ]``, shaped like ``z``."""
        fr = _Frame("EmpiricalDistribution.posterior_mean", z, logsnr, self.event_shape)
        return fr.out_events(self._moments(fr, ("mean",))["mean"], self.event_shape)

    def score(self, z: Array, logsnr: Any) -> Array:
        """``∇ log p_λ(z) = −Σ_i r_i (z − α x_i)/σ²``, shaped like ``z``."""
        fr = _Frame("EmpiricalDistribution.score", z, logsnr, self.event_shape)
        return fr.out_events(-self._moments(fr, ("dscore",))["dscore"], self.event_shape)

    def log_marginal(self, z: Array, logsnr: Any) -> Array:
        """``log p_λ(z) = log (1/n) Σ_i N(z; α x_i, σ² I)``, shape ``batch``."""
        fr = _Frame("EmpiricalDistribution.log_marginal", z, logsnr, self.event_shape)
        return fr.out_batch(self._moments(fr, ("logp",))["logp"])

    def assign(self, x: Array) -> Array:
        """Index of the nearest point (the first one on ties), shape ``batch``."""
        fr = _Frame("EmpiricalDistribution.assign", x, math.inf, self.event_shape)
        return fr.xp.reshape(self._moments(fr, ("nearest",))["nearest"], fr.batch)

    def _denoise(self, z: Array, logsnr: Any, cond: Any, prediction: str) -> Array:
        fr = _Frame("EmpiricalDistribution.denoiser", z, logsnr, self.event_shape)
        return _prediction_output(fr, self._moments(fr, _WANT[prediction]), prediction)

    def denoiser(self, prediction: str = "x") -> Any:
        """The exact (memorising) denoiser as a :class:`diff_protocol.Denoiser`."""
        check_prediction("EmpiricalDistribution.denoiser", prediction)
        if prediction not in self._denoisers:
            self._denoisers[prediction] = _ExactDenoiser(self, prediction)
        return self._denoisers[prediction]


# --------------------------------------------------------------------------------------------
# labelled mixtures


class ConditionalMixture:
    """One :class:`GaussianMixture` per class label; ``cond`` is an integer label array.

    ``p(x | c) = components[c]``; the label ``null_label`` selects the class-weighted union
    ``p(x) = Σ_c π_c p(x | c)`` (the unconditional model of classifier-free guidance). All
    evaluations run on the union's components with per-example log-weights (``−inf`` outside
    the requested class), so a batch may mix labels and the null label (guidance batches).

    Args:
      components: one mixture per class, all with the same event shape.
      class_weights: ``π_c`` ``(C,)``, positive; normalised.
      null_label: the label meaning "unconditional" (not in ``0..C−1``).
    """

    def __init__(
        self, components: Sequence[GaussianMixture], class_weights: Any, null_label: int = -1
    ) -> None:
        func = "ConditionalMixture"
        comps = list(components) if not isinstance(components, GaussianMixture) else None
        if not comps or not all(isinstance(c, GaussianMixture) for c in comps):
            raise arg_error(
                func, "components", "a non-empty sequence of GaussianMixture", components, TypeError
            )
        event = comps[0].event_shape
        for c in comps:
            if c.event_shape != event:
                raise arg_error(
                    func, "components", f"of one event shape {event}", str(c.event_shape)
                )
        pi = _host_float(func, "class_weights", class_weights)
        if pi.shape != (len(comps),) or np.any(pi <= 0):
            raise arg_error(
                func, "class_weights", f"{len(comps)} positive weights", f"{pi.tolist()!r}"
            )
        if isinstance(null_label, bool) or not isinstance(null_label, (int, np.integer)):
            raise arg_error(func, "null_label", "an int", repr(null_label), TypeError)
        if 0 <= null_label < len(comps):
            raise arg_error(func, "null_label", f"outside 0..{len(comps) - 1}", str(null_label))
        self.components = comps
        self.class_weights = pi / pi.sum()
        self.null_label = int(null_label)
        self.n_classes = len(comps)
        self.event_shape = event
        per_dim = any(c._s2.shape[-1] != 1 for c in comps)
        stds = [
            np.broadcast_to(c.stds.reshape(c.n_components, -1), (c.n_components, c.dim)).reshape(
                (c.n_components, *event)
            )
            if per_dim
            else c.stds
            for c in comps
        ]
        union_w = np.concatenate([p * c.weights for p, c in zip(self.class_weights, comps)])
        self.union = GaussianMixture(
            union_w,
            np.concatenate([c.means for c in comps]),
            np.concatenate(stds),
            method=comps[0].method,
            chunk_elements=comps[0].chunk_elements,
        )
        # row c: log w_ck on class c's components, -inf elsewhere; last row: the union
        table = np.full((self.n_classes + 1, self.union.n_components), -np.inf)
        start = 0
        for c, comp in enumerate(comps):
            table[c, start : start + comp.n_components] = np.log(comp.weights)
            start += comp.n_components
        table[-1] = np.log(self.union.weights)
        self._logw_table = table
        self._class_of = np.repeat(np.arange(self.n_classes), [c.n_components for c in comps])
        self._denoisers: dict[str, _ExactDenoiser] = {}

    def __repr__(self) -> str:
        return (
            f"ConditionalMixture(classes={self.n_classes}, K={self.union.n_components}, "
            f"null_label={self.null_label})"
        )

    def sample(
        self, n: int, seed: int | np.random.Generator = 0, label: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` samples and their class labels; from class ``label``, or the union if None."""
        if label is None or label == self.null_label:
            x, k = self.union.sample(n, seed)
            return x, self._class_of[k].astype(np.int64)
        if not 0 <= label < self.n_classes:
            raise arg_error(
                "ConditionalMixture.sample", "label", f"in 0..{self.n_classes - 1}", str(label)
            )
        x, _ = self.components[label].sample(n, seed)
        return x, np.full(int(n), label, dtype=np.int64)

    def _logw(self, fr: _Frame, cond: Any) -> Array:
        """Log-weights ``(K, N)`` per example (``(K, 1)`` without a label: the union)."""
        xp = fr.xp
        table = fr.const(self._logw_table)
        if cond is None:
            return xp.reshape(table[-1, :], (table.shape[1], 1))
        func = "ConditionalMixture"
        if isinstance(cond, (int, np.integer)) and not isinstance(cond, bool):
            cond = xp.asarray(int(cond), device=fr.device)
        elif getattr(cond, "shape", None) is None:
            raise arg_error(func, "cond", "an integer label array", cond, TypeError)
        elif not isinstance(cond, type(fr.z)) and not is_lazy(cond):
            cond = xp.asarray(np.asarray(cond), device=fr.device)
        if not xp.isdtype(cond.dtype, "integral"):
            raise arg_error(
                func, "cond", "an integer label array", f"dtype {cond.dtype}", TypeError
            )
        if not is_lazy(cond):
            host = np.asarray(cond.detach().cpu() if hasattr(cond, "detach") else cond)
            ok = ((host >= 0) & (host < self.n_classes)) | (host == self.null_label)
            if not np.all(ok):
                raise arg_error(
                    func,
                    "cond",
                    f"labels in 0..{self.n_classes - 1} or null_label={self.null_label}",
                    f"{sorted(set(host[~ok].tolist()))[:5]}",
                )
        batch = fr.batch
        if tuple(cond.shape) != tuple(batch[: cond.ndim]):
            raise ValueError(
                f"{func}: cond shape {tuple(cond.shape)} must be a prefix of z batch shape {batch}"
            )
        cond = xp.reshape(cond, tuple(cond.shape) + (1,) * (len(batch) - cond.ndim))
        cond = xp.reshape(xp.broadcast_to(cond, batch), (fr.n,))
        row = xp.where(cond == self.null_label, xp.full_like(cond, self.n_classes), cond)
        return xp.matrix_transpose(xp.take(table, row, axis=0))

    def _frame(self, func: str, z: Array, logsnr: Any) -> _Frame:
        return _Frame(f"ConditionalMixture.{func}", z, logsnr, self.event_shape)

    def posterior_mean(self, z: Array, logsnr: Any, cond: Any = None) -> Array:
        """``E[x | z_λ, c]`` (``cond=None`` or the null label: the union)."""
        fr = self._frame("posterior_mean", z, logsnr)
        res = self.union._moments(fr, self._logw(fr, cond), ("mean",))
        return fr.out_events(res["mean"], self.event_shape)

    def score(self, z: Array, logsnr: Any, cond: Any = None) -> Array:
        """``∇ log p_λ(z | c)``."""
        fr = self._frame("score", z, logsnr)
        res = self.union._moments(fr, self._logw(fr, cond), ("dscore",))
        return fr.out_events(-res["dscore"], self.event_shape)

    def log_marginal(self, z: Array, logsnr: Any, cond: Any = None) -> Array:
        """``log p_λ(z | c)``, shape ``batch``."""
        fr = self._frame("log_marginal", z, logsnr)
        return fr.out_batch(self.union._moments(fr, self._logw(fr, cond), ())["logp"])

    def responsibilities(self, z: Array, logsnr: Any, cond: Any = None) -> Array:
        """Posterior over the union's components given the label, shape ``(*batch, K_total)``."""
        fr = self._frame("responsibilities", z, logsnr)
        return fr.out_components(self.union._moments(fr, self._logw(fr, cond), ())["r"])

    def _denoise(self, z: Array, logsnr: Any, cond: Any, prediction: str) -> Array:
        fr = self._frame("denoiser", z, logsnr)
        res = self.union._moments(fr, self._logw(fr, cond), _WANT[prediction])
        return _prediction_output(fr, res, prediction)

    def denoiser(self, prediction: str = "x") -> Any:
        """The exact conditional denoiser; ``cond`` = label array (``None``/null: unconditional)."""
        check_prediction("ConditionalMixture.denoiser", prediction)
        if prediction not in self._denoisers:
            self._denoisers[prediction] = _ExactDenoiser(self, prediction)
        return self._denoisers[prediction]
