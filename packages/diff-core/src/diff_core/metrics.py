"""Distances between sample sets and exact distributions (host numpy, float64).

Inputs may come from any backend (numpy, torch, JAX, array-api-strict); they are copied to the
host as float64 and flattened to ``(n, D)``. All metrics are deterministic given their ``seed``.

* :func:`sliced_wasserstein` — SW2, ``√(mean_θ W2²(θᵀx, θᵀy))`` (Bonneel et al., "Sliced and Radon
  Wasserstein barycenters of measures", 2015).
* :func:`mmd2` — squared maximum mean discrepancy with a sum of RBF kernels (Gretton et al.,
  JMLR 2012), unbiased by default.
* :func:`frechet_distance_gaussians` — ``‖m1 − m2‖² + tr C1 + tr C2 − 2 tr (C1^½ C2 C1^½)^½``
  (Dowson & Landau 1982; the FID formula of Heusel et al., arXiv 1706.08500) via symmetric
  eigendecompositions. A Fréchet distance in a learned feature space is never called FID here.
* Mixture diagnostics: :func:`mixture_log_likelihood`, :func:`mode_weights`, :func:`mode_tv`,
  :func:`mode_spread`, :func:`mode_distance_ratio`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from diff_protocol import arg_error
from diff_protocol.testing import to_numpy

__all__ = [
    "expected_distance_factor",
    "frechet_distance",
    "frechet_distance_gaussians",
    "frechet_distance_to",
    "mixture_log_likelihood",
    "mmd2",
    "mode_distance_ratio",
    "mode_spread",
    "mode_tv",
    "mode_weights",
    "sliced_wasserstein",
]


def _samples(func: str, arg: str, x: Any, min_n: int = 1) -> np.ndarray:
    """Host float64 copy of ``x`` flattened to ``(n, D)`` (1-D input is ``(n, 1)``)."""
    if getattr(x, "shape", None) is None and not isinstance(x, (list, tuple)):
        raise arg_error(func, arg, "an array of samples (n, ...)", x, TypeError)
    a = np.asarray(to_numpy(x) if getattr(x, "shape", None) is not None else x, dtype=np.float64)
    if a.ndim == 0:
        raise arg_error(func, arg, "an array of samples (n, ...)", "a 0-d array")
    a = a.reshape(a.shape[0], -1) if a.ndim > 1 else a[:, None]
    if a.shape[0] < min_n:
        raise arg_error(func, arg, f"at least {min_n} samples", f"{a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise arg_error(func, arg, "finite", f"{int(np.sum(~np.isfinite(a)))} non-finite values")
    return a


def _same_dim(func: str, x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise arg_error(func, "y", f"of dimension {x.shape[1]} like x", f"dimension {y.shape[1]}")


def _quantiles(sorted_proj: np.ndarray, m: int) -> np.ndarray:
    """Empirical quantile function at ``(i + ½)/m``, i = 0..m−1 (rows of ``sorted_proj``)."""
    n = sorted_proj.shape[-1]
    if n == m:
        return sorted_proj
    idx = np.minimum(np.floor((np.arange(m) + 0.5) * n / m).astype(np.int64), n - 1)
    return sorted_proj[..., idx]


def sliced_wasserstein(x: Any, y: Any, n_directions: int = 128, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance ``SW2 = √(mean_j W2²(θ_jᵀ x, θ_jᵀ y))``.

    In 2-D the directions are ``θ_j = (cos πj/L, sin πj/L)`` (exact for shifts: ``SW2(X, X + c)
    = ‖c‖/√2``); otherwise ``L`` Gaussian directions from ``PCG64(seed)``, normalised. 1-D W2
    compares sorted projections; unequal sizes are compared at the quantiles ``(i + ½)/m``,
    ``m = max(n_x, n_y)``.
    """
    func = "sliced_wasserstein"
    xs, ys = _samples(func, "x", x), _samples(func, "y", y)
    _same_dim(func, xs, ys)
    if isinstance(n_directions, bool) or not isinstance(n_directions, int) or n_directions < 1:
        raise arg_error(func, "n_directions", "a positive int", repr(n_directions))
    d = xs.shape[1]
    if d == 2:
        theta = np.pi * np.arange(n_directions) / n_directions
        dirs = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    else:
        dirs = np.random.Generator(np.random.PCG64(seed)).standard_normal((n_directions, d))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    m = max(xs.shape[0], ys.shape[0])
    px = _quantiles(np.sort(dirs @ xs.T, axis=1), m)
    py = _quantiles(np.sort(dirs @ ys.T, axis=1), m)
    return float(np.sqrt(np.mean((px - py) ** 2)))


def _kernel_sum(a: np.ndarray, b: np.ndarray, inv2h2: np.ndarray, same: bool) -> float:
    """``Σ_ij Σ_h exp(−‖a_i − b_j‖²/(2h²))`` in blocks of rows. With ``same`` (``b is a``) only
    blocks on or above the diagonal are evaluated (the rest by symmetry) and the diagonal
    distances are exactly 0."""
    total = 0.0
    aa, bb = np.sum(a * a, axis=1), np.sum(b * b, axis=1)
    step = 1024
    for i in range(0, a.shape[0], step):
        j0 = i if same else 0
        d2 = aa[i : i + step, None] + bb[None, j0:] - 2.0 * (a[i : i + step] @ b[j0:].T)
        np.maximum(d2, 0.0, out=d2)
        rows = min(step, a.shape[0] - i)
        if same:
            d2[np.arange(rows), np.arange(rows)] = 0.0
        work = np.empty_like(d2)
        for c in inv2h2:
            np.multiply(d2, -c, out=work)
            np.exp(work, out=work)
            if same:  # diagonal block once, blocks to its right twice
                total += float(np.sum(work[:, :rows])) + 2.0 * float(np.sum(work[:, rows:]))
            else:
                total += float(np.sum(work))
    return total


def mmd2(
    x: Any,
    y: Any,
    bandwidths: Sequence[float] = (0.05, 0.1, 0.2, 0.5, 1.0),
    unbiased: bool = True,
    max_samples: int = 4096,
) -> float:
    """Squared MMD with ``k(a, b) = Σ_h exp(−‖a − b‖²/(2h²))``.

    Unbiased: ``Σ_{i≠j} k(x_i, x_j)/(n(n−1)) + Σ_{i≠j} k(y_i, y_j)/(m(m−1)) − 2 mean k(x, y)``
    (can be slightly negative); biased: all means include the diagonal. Only the first
    ``max_samples`` rows of each set are used (the cost is quadratic). Squared distances use
    expanded norms on data centred at the pooled mean (float64; the diagonal is exactly 0).
    """
    func = "mmd2"
    h = np.asarray(bandwidths, dtype=np.float64).reshape(-1)
    if h.size == 0 or not np.all(np.isfinite(h) & (h > 0)):
        raise arg_error(func, "bandwidths", "positive finite floats", repr(bandwidths))
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 2:
        raise arg_error(func, "max_samples", "an int >= 2", repr(max_samples))
    min_n = 2 if unbiased else 1
    xs = _samples(func, "x", x, min_n)[:max_samples]
    ys = _samples(func, "y", y, min_n)[:max_samples]
    _same_dim(func, xs, ys)
    centre = np.concatenate([xs, ys]).mean(axis=0)
    xs, ys = xs - centre, ys - centre
    inv2h2 = 1.0 / (2.0 * h * h)
    n, m = xs.shape[0], ys.shape[0]
    kxx = _kernel_sum(xs, xs, inv2h2, True)
    kyy = _kernel_sum(ys, ys, inv2h2, True)
    kxy = _kernel_sum(xs, ys, inv2h2, False)
    if unbiased:
        diag = float(h.size)  # k(a, a) = Σ_h 1
        return (
            (kxx - n * diag) / (n * (n - 1)) + (kyy - m * diag) / (m * (m - 1)) - 2 * kxy / (n * m)
        )
    return kxx / n**2 + kyy / m**2 - 2 * kxy / (n * m)


def _resolved_spectrum(w: np.ndarray, scale: float) -> np.ndarray:
    """Eigenvalues ``w`` of a symmetric PSD matrix whose entries carry rounding of order
    ``eps · scale``, with those under the decomposition's floor ``n · eps · scale`` set to 0.
    They are indistinguishable from the null space, and their square roots (≈ 1e-8 · √scale
    each) would otherwise make ``frechet_distance(x, y)`` and ``frechet_distance(y, x)`` of
    rank-deficient covariances (fewer samples than dimensions) differ by ~1e-9 relative."""
    return np.where(w > w.size * np.finfo(np.float64).eps * scale, w, 0.0)


def _psd_sqrt(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``C^½`` of the symmetric PSD matrix with eigenvalues ``w`` and eigenvectors ``v``."""
    return (v * np.sqrt(_resolved_spectrum(w, float(np.max(np.abs(w), initial=0.0))))) @ v.T


def _host_float(func: str, arg: str, a: Any) -> np.ndarray:
    """A host float64 copy of an array or nested list of real numbers, else a named TypeError."""
    if isinstance(a, (str, bytes, bool)) or a is None:
        raise arg_error(func, arg, "an array of real numbers", a, TypeError)
    try:
        out = np.asarray(to_numpy(a) if hasattr(a, "shape") else a, dtype=np.float64)
    except (TypeError, ValueError):
        raise arg_error(func, arg, "an array of real numbers", a, TypeError) from None
    return out


def _check_covariance(
    func: str, arg: str, cov: np.ndarray, *, vectors: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Finite, symmetric and positive semi-definite, within rounding relative to its scale;
    returns the eigenvalues of its symmetric part and, with ``vectors``, its eigenvectors (one
    decomposition serves the check and the square root)."""
    if not np.all(np.isfinite(cov)):
        raise arg_error(func, arg, "finite", "non-finite entries")
    scale = max(float(np.max(np.abs(cov))) if cov.size else 0.0, np.finfo(np.float64).tiny)
    asym = float(np.max(np.abs(cov - cov.T))) if cov.size else 0.0
    if asym > 1e-8 * scale:
        raise arg_error(func, arg, "a symmetric covariance matrix", f"max |C - C^T| = {asym:.3g}")
    v = np.zeros(cov.shape) if vectors else None
    if not cov.size:
        w = np.zeros(1)
    elif vectors:
        w, v = np.linalg.eigh((cov + cov.T) / 2)
    else:
        w = np.linalg.eigvalsh((cov + cov.T) / 2)
    w_min = float(w.min())
    if w_min < -1e-8 * scale * max(1, cov.shape[0]):
        raise arg_error(
            func,
            arg,
            "positive semi-definite (a covariance matrix)",
            f"smallest eigenvalue {w_min:.6g}",
        )
    return w, v


def frechet_distance_gaussians(m1: Any, c1: Any, m2: Any, c2: Any) -> float:
    """``‖m1 − m2‖² + tr C1 + tr C2 − 2 tr (C1^½ C2 C1^½)^½`` (Fréchet / W2² of two Gaussians).

    Square roots come from symmetric eigendecompositions (eigenvalues under the decomposition's
    rounding floor, negative ones included, are set to 0), which is stable where
    ``scipy.linalg.sqrtm`` of the non-symmetric ``C1 C2`` returns complex parts.

    >>> frechet_distance_gaussians([0, 0], [[1, 0], [0, 4]], [0, 0], [[4, 0], [0, 1]])
    2.0
    """
    return _frechet("frechet_distance_gaussians", ("m1", "c1", "m2", "c2"), m1, c1, m2, c2)


def _frechet(func: str, names: tuple[str, str, str, str], m1: Any, c1: Any, m2: Any, c2: Any):
    n_m1, n_c1, n_m2, n_c2 = names
    mu1 = _host_float(func, n_m1, m1).reshape(-1)
    mu2 = _host_float(func, n_m2, m2).reshape(-1)
    d = mu1.size
    cov1 = _host_float(func, n_c1, c1)
    cov2 = _host_float(func, n_c2, c2)
    if mu2.size != d:
        raise arg_error(func, n_m2, f"of size {d} like {n_m1}", f"size {mu2.size}")
    for arg, mu in ((n_m1, mu1), (n_m2, mu2)):
        if not np.all(np.isfinite(mu)):
            raise arg_error(
                func, arg, "finite", f"{int(np.sum(~np.isfinite(mu)))} non-finite entries"
            )
    spectra = []
    for arg, cov, vectors in ((n_c1, cov1, True), (n_c2, cov2, False)):
        if cov.shape != (d, d):
            raise arg_error(func, arg, f"shaped ({d}, {d})", f"shape {cov.shape}")
        spectra.append(_check_covariance(func, arg, cov, vectors=vectors))
    (w1, v1), (w2, _) = spectra
    s1 = _psd_sqrt(w1, v1)
    inner = s1 @ cov2 @ s1  # rounding of order eps · ‖C1‖ · ‖C2‖
    scale = max(float(w1.max()), 0.0) * max(float(w2.max()), 0.0)
    ev = _resolved_spectrum(np.linalg.eigvalsh((inner + inner.T) / 2), scale)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.sum(np.sqrt(ev)))


def _moments(func: str, arg: str, x: Any) -> tuple[np.ndarray, np.ndarray]:
    xs = _samples(func, arg, x, 2)
    return xs.mean(axis=0), np.atleast_2d(np.cov(xs, rowvar=False))


def frechet_distance(x: Any, y: Any) -> float:
    """Fréchet distance between Gaussians fitted to two sample sets (unbiased covariances)."""
    mx, cx = _moments("frechet_distance", "x", x)
    my, cy = _moments("frechet_distance", "y", y)
    if mx.size != my.size:
        raise arg_error("frechet_distance", "y", f"of dimension {mx.size}", f"{my.size}")
    return frechet_distance_gaussians(mx, cx, my, cy)


def frechet_distance_to(x: Any, mean: Any, cov: Any) -> float:
    """Fréchet distance between the Gaussian fitted to ``x`` and ``N(mean, cov)`` (exact moments,
    e.g. ``mixture.mean()`` and ``mixture.covariance()``)."""
    func = "frechet_distance_to"
    mx, cx = _moments(func, "x", x)
    for arg, a in (("mean", mean), ("cov", cov)):
        if getattr(a, "shape", None) is None and not isinstance(a, (list, tuple)):
            raise arg_error(func, arg, "an array", a, TypeError)
    return _frechet(func, ("x", "x", "mean", "cov"), mx, cx, mean, cov)


# --------------------------------------------------------------------------------------------
# mixture diagnostics


def _mixture_samples(func: str, x: Any, mixture: Any) -> np.ndarray:
    for attr in ("assign", "weights", "means", "stds", "event_shape", "n_components"):
        if not hasattr(mixture, attr):
            raise arg_error(func, "mixture", "a GaussianMixture", mixture, TypeError)
    xs = _samples(func, "x", x)
    d = math.prod(mixture.event_shape)
    if xs.shape[1] != d:
        raise arg_error(func, "x", f"samples of dimension {d}", f"dimension {xs.shape[1]}")
    return xs.reshape((xs.shape[0], *mixture.event_shape))


def _assigned(func: str, x: Any, mixture: Any) -> tuple[np.ndarray, np.ndarray]:
    xs = _mixture_samples(func, x, mixture)
    return xs.reshape(xs.shape[0], -1), np.asarray(mixture.assign(xs))


def _component_var(mixture: Any) -> np.ndarray:
    """``Σ_d s_kd²`` per component."""
    s2 = np.asarray(mixture.stds, dtype=np.float64).reshape(mixture.n_components, -1) ** 2
    d = math.prod(mixture.event_shape)
    return s2.sum(axis=1) * (d if s2.shape[1] == 1 else 1)


def mixture_log_likelihood(x: Any, mixture: Any) -> float:
    """Mean ``log p(x)`` of the samples under the exact mixture (nats)."""
    xs = _mixture_samples("mixture_log_likelihood", x, mixture)
    return float(np.mean(mixture.log_prob(xs)))


def _mode_weights(func: str, x: Any, mixture: Any) -> np.ndarray:
    _, k = _assigned(func, x, mixture)
    return np.bincount(k, minlength=mixture.n_components) / k.shape[0]


def mode_weights(x: Any, mixture: Any) -> np.ndarray:
    """Fraction of samples assigned (``mixture.assign``) to each component, shape ``(K,)``."""
    return _mode_weights("mode_weights", x, mixture)


def mode_tv(x: Any, mixture: Any, reference: Any = None) -> float:
    """Total variation ``½ Σ_k |ŵ_k − w_k|`` between assigned fractions and ``reference``
    (default: the mixing weights)."""
    w_hat = _mode_weights("mode_tv", x, mixture)
    ref = mixture.weights if reference is None else np.asarray(reference, dtype=np.float64)
    if ref.shape != w_hat.shape:
        raise arg_error("mode_tv", "reference", f"shaped {w_hat.shape}", f"shape {ref.shape}")
    return float(0.5 * np.sum(np.abs(w_hat - ref)))


def mode_spread(x: Any, mixture: Any) -> float:
    """Mean over samples of ``‖x − μ_k‖² / Σ_d s_kd²`` for the assigned ``k`` (1 for the truth;
    < 1 over-concentrated, > 1 blurred)."""
    xs, k = _assigned("mode_spread", x, mixture)
    mu = np.asarray(mixture.means, dtype=np.float64).reshape(mixture.n_components, -1)
    sq = np.sum((xs - mu[k]) ** 2, axis=1)
    return float(np.mean(sq / _component_var(mixture)[k]))


def expected_distance_factor(d: int) -> float:
    """``c_D = √2 Γ((D+1)/2)/Γ(D/2)``: ``E‖ε‖`` for ``ε ~ N(0, I_D)`` (``c_2 = √(π/2)``)."""
    return math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


def mode_distance_ratio(x: Any, mixture: Any) -> float:
    """Mean over samples of ``‖x − μ_k‖ / (s_k c_D)`` for the assigned ``k``.

    ``c_D`` is :func:`expected_distance_factor` (the mean distance of a true sample from its
    centre in units of ``s_k``); per-dimension stds use ``s_k = √(Σ_d s_kd²/D)``. 1 for the truth,
    < 1 over-concentrated, > 1 blurred; unlike :func:`mode_spread` (a variance ratio) it is not
    dominated by the few samples that land between modes.
    """
    xs, k = _assigned("mode_distance_ratio", x, mixture)
    d = xs.shape[1]
    mu = np.asarray(mixture.means, dtype=np.float64).reshape(mixture.n_components, -1)
    s = np.sqrt(_component_var(mixture) / d)
    dist = np.sqrt(np.sum((xs - mu[k]) ** 2, axis=1))
    return float(np.mean(dist / (s[k] * expected_distance_factor(d))))
