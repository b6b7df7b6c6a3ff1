"""Forecast metrics by lead time (numpy, float64).

- :func:`normalized_mse`: MSE per lead over examples and pixels divided by the data variance (1
  after normalisation). A sample from the right distribution tends to ``2(1 − ρ_∞)`` once
  predictability is lost; a model regressing to the mean tends to 1.
- :func:`vorticity_correlation`: Pearson correlation over space per example and lead, averaged
  over examples (Kochkov et al., PNAS 2021); velocity fields are turned into vorticity first.
- :func:`time_to_threshold`: when the correlation first falls below a threshold (linear
  interpolation between leads; ``inf`` if never).
- :func:`energy_spectrum` / :func:`spectrum_error`: isotropic kinetic-energy spectrum summed over
  integer shells ``|k| ∈ [k − ½, k + ½)``; Parseval: ``Σ E(k) = ½⟨u² + v²⟩``.
- :func:`persistence` / :func:`climatology`: the baselines.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "climatology",
    "energy_spectrum",
    "normalized_mse",
    "persistence",
    "sample_std",
    "spectrum_error",
    "time_to_threshold",
    "vorticity_correlation",
]


def _pair(func: str, pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if p.shape != t.shape or p.ndim != 5:
        raise ValueError(
            f"{func}: pred and truth must have one shape (B, H, h, w, C), "
            f"got {p.shape} and {t.shape}"
        )
    return p, t


def normalized_mse(pred: Any, truth: Any, variance: float = 1.0) -> np.ndarray:
    """``(H,)`` mean squared error per lead divided by ``variance``."""
    p, t = _pair("normalized_mse", pred, truth)
    return ((p - t) ** 2).mean(axis=(0, 2, 3, 4)) / float(variance)


def _vorticity(x: np.ndarray) -> np.ndarray:
    if x.shape[-1] == 1:
        return x[..., 0]
    from .data.kolmogorov import velocity_to_vorticity

    return np.asarray(velocity_to_vorticity(x))[..., 0]


def vorticity_correlation(pred: Any, truth: Any) -> np.ndarray:
    """``(H,)`` spatial Pearson correlation per example and lead, averaged over examples."""
    p, t = _pair("vorticity_correlation", pred, truth)
    p, t = _vorticity(p), _vorticity(t)
    p = p - p.mean(axis=(2, 3), keepdims=True)
    t = t - t.mean(axis=(2, 3), keepdims=True)
    num = (p * t).sum(axis=(2, 3))
    den = np.sqrt((p * p).sum(axis=(2, 3)) * (t * t).sum(axis=(2, 3)))
    return (num / np.maximum(den, 1e-300)).mean(axis=0)


def time_to_threshold(corr: Any, dt: float = 1.0, threshold: float = 0.8) -> float:
    """Lead time (lead i at ``(i + 1)·dt``) where ``corr`` first drops below ``threshold``."""
    c = np.concatenate([[1.0], np.asarray(corr, np.float64)])  # lead 0: the truth itself
    below = np.nonzero(c < threshold)[0]
    if below.size == 0:
        return math.inf
    i = int(below[0])
    c0, c1 = c[i - 1], c[i]
    return dt * (i - 1 + (c0 - threshold) / (c0 - c1))


def energy_spectrum(frames: Any, domain: float = 2 * math.pi) -> tuple[np.ndarray, np.ndarray]:
    """``(k, E)`` over integer shells from velocity ``(..., n, n, 2)`` or vorticity
    ``(..., n, n, 1)`` (through the stream function), averaged over the leading axes.

    With ``û = fft2(u)/n²``, ``E(k) = Σ_{shell k} ½(|û|² + |v̂|²)``, so ``Σ_k E(k)`` equals the
    mean kinetic energy ``½⟨u² + v²⟩`` (Parseval) for ``k`` up to the corner of the grid.
    """
    x = np.asarray(frames, np.float64)
    n = x.shape[-2]
    kk = np.fft.fftfreq(n, d=1.0 / n)
    kx, ky = np.meshgrid(kk, kk, indexing="ij")
    kmag = np.sqrt(kx**2 + ky**2)
    scale = 2 * math.pi / domain
    if x.shape[-1] == 1:
        w_hat = np.fft.fft2(x[..., 0], axes=(-2, -1)) / n**2
        k2 = (kx**2 + ky**2) * scale**2
        k2[0, 0] = 1.0
        psi = w_hat / k2
        psi[..., 0, 0] = 0.0
        u_hat = 1j * ky * scale * psi
        v_hat = -1j * kx * scale * psi
    else:
        u_hat = np.fft.fft2(x[..., 0], axes=(-2, -1)) / n**2
        v_hat = np.fft.fft2(x[..., 1], axes=(-2, -1)) / n**2
    e = 0.5 * (np.abs(u_hat) ** 2 + np.abs(v_hat) ** 2)
    e = e.reshape(-1, n, n).mean(0)
    shell = np.floor(kmag + 0.5).astype(int)
    k_max = int(shell.max())
    spec = np.bincount(shell.ravel(), weights=e.ravel(), minlength=k_max + 1)
    return np.arange(k_max + 1), spec


def spectrum_error(pred: Any, truth: Any, k_max: int | None = None) -> float:
    """``mean_k |log10(E_pred(k)/E_truth(k))|`` over ``1 <= k <= k_max`` (default n/3)."""
    p, t = np.asarray(pred), np.asarray(truth)
    n = p.shape[-2]
    k_max = n // 3 if k_max is None else int(k_max)
    _, ep = energy_spectrum(p)
    _, et = energy_spectrum(t)
    sl = slice(1, k_max + 1)
    return float(np.mean(np.abs(np.log10(np.maximum(ep[sl], 1e-300) / np.maximum(et[sl], 1e-300)))))


def persistence(context: Any, n_frames: int) -> np.ndarray:
    """Copy the last context frame ``n_frames`` times: ``(B, n, h, w, C)``."""
    c = np.asarray(context)
    return np.repeat(c[:, -1:], n_frames, axis=1)


def climatology(truth: Any) -> np.ndarray:
    """A frame from another trajectory at the same lead (trajectories rolled by one)."""
    return np.roll(np.asarray(truth), 1, axis=0)


def sample_std(frames: Any) -> np.ndarray:
    """``(H,)`` standard deviation per lead over examples and pixels."""
    x = np.asarray(frames, np.float64)
    return x.std(axis=(0, 2, 3, 4))
