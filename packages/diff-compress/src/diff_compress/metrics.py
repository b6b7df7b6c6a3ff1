"""Host-side image metrics (numpy). Nothing here is FID or LPIPS: PSNR, SSIM, MS-SSIM, the file
rate, a spectral realism proxy (``hf_energy_ratio``) and PFD-rand (``feature_distance``, a Fréchet
distance of a fixed *random* conv net's features of image patches) only; and the Bjøntegaard
averages of two rate-distortion curves (``bd_rate``, ``bd_psnr``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from diff_protocol.checks import check_int

__all__ = [
    "MS_SSIM_WEIGHTS",
    "MSSSIM",
    "bd_psnr",
    "bd_rate",
    "bits_per_pixel",
    "feature_distance",
    "hf_energy_ratio",
    "ms_ssim",
    "patch_features",
    "psnr",
    "ssim",
]


def bits_per_pixel(data: bytes, height: int, width: int) -> float:
    """``8 · len(data) / (H·W)``: the whole file, header included, over the original size."""
    if height < 1 or width < 1:
        raise ValueError(f"bits_per_pixel: height and width must be >= 1, got {height}×{width}")
    return 8.0 * len(data) / (height * width)


def _u8(name: str, a: np.ndarray, func: str = "psnr") -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise TypeError(f"{func}: {name} must be uint8, got {a.dtype}")
    return a


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (data range 255); ``inf`` when equal."""
    a, b = _u8("a", a), _u8("b", b)
    if a.shape != b.shape:
        raise ValueError(f"psnr: a and b must have one shape, got {a.shape} and {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """``skimage.metrics.structural_similarity`` with Gaussian weights (σ = 1.5), population
    covariance, data range 255 (channel axis last for colour)."""
    from skimage.metrics import structural_similarity

    a, b = _u8("a", a, "ssim"), _u8("b", b, "ssim")
    return float(
        structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=-1 if a.ndim == 3 else None,
            data_range=255,
        )
    )


def _luma(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x @ np.array([0.299, 0.587, 0.114]) if x.ndim == 3 else x


def hf_energy_ratio(out: np.ndarray, ref: np.ndarray) -> float:
    """Energy of the upper half (radial frequency > Nyquist/2) of the luma power spectrum, out/ref.

    Blurred (MSE) reconstructions give ≪ 1; realistic detail pushes it toward 1.
    """

    def hf(x: np.ndarray) -> float:
        y = _luma(x)
        y = y - y.mean()
        p = np.abs(np.fft.fft2(y)) ** 2
        fy = np.fft.fftfreq(y.shape[0])[:, None]
        fx = np.fft.fftfreq(y.shape[1])[None, :]
        r = np.sqrt(fx**2 + fy**2)
        return float(p[r > 0.25].sum())

    return hf(out) / max(hf(ref), 1e-30)


# --------------------------------------------------------------------------------------------
# MS-SSIM

#: Per-scale exponents of Wang, Simoncelli & Bovik (2003), finest scale first (they sum to 1.0001).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

_WIN = 11  # the 11×11 Gaussian window of ``ssim``: σ = 1.5, radius int(3.5·σ + 0.5) = 5
_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03
_RANGE = 255.0


class MSSSIM(NamedTuple):
    """The result of :func:`ms_ssim`.

    ``value`` is the MS-SSIM, ``scales`` how many scales were used (5 when the short side is at
    least 176 px, fewer on smaller images) and ``weights`` the exponents applied, finest scale
    first. ``float(result)`` is ``result.value``.
    """

    value: float
    scales: int
    weights: tuple[float, ...]

    def __float__(self) -> float:
        return self.value


def _window_1d() -> np.ndarray:
    r = (_WIN - 1) // 2
    k = np.exp(-0.5 * (np.arange(-r, r + 1, dtype=np.float64) / _SIGMA) ** 2)
    return k / k.sum()


def _valid_filter(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable correlation of (H, W, C) with ``k ⊗ k`` over the valid region only."""
    from numpy.lib.stride_tricks import sliding_window_view

    x = sliding_window_view(x, k.size, axis=0) @ k  # (H − 10, W, C)
    return sliding_window_view(x, k.size, axis=1) @ k  # (H − 10, W − 10, C)


def _ssim_terms(x: np.ndarray, y: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel means of the contrast-structure map and of the full SSIM map."""
    c1, c2 = (_K1 * _RANGE) ** 2, (_K2 * _RANGE) ** 2
    mx, my = _valid_filter(x, k), _valid_filter(y, k)
    vxx = _valid_filter(x * x, k) - mx * mx
    vyy = _valid_filter(y * y, k) - my * my
    vxy = _valid_filter(x * y, k) - mx * my
    cs = (2.0 * vxy + c2) / (vxx + vyy + c2)
    lum = (2.0 * mx * my + c1) / (mx * mx + my * my + c1)
    return cs.mean(axis=(0, 1)), (lum * cs).mean(axis=(0, 1))


def _pool2(x: np.ndarray) -> np.ndarray:
    """2×2 average pooling, stride 2; an odd last row or column is dropped."""
    h, w = x.shape[0] // 2, x.shape[1] // 2
    return x[: 2 * h, : 2 * w].reshape(h, 2, w, 2, x.shape[2]).mean(axis=(1, 3))


def _ms_ssim_images(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    func = "ms_ssim"
    x, y = _u8("a", a, func), _u8("b", b, func)
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] != 3):
        raise ValueError(
            f"{func}: a must be a grey (H, W) or colour (H, W, 3) image, got shape {x.shape}"
        )
    if y.shape != x.shape:
        raise ValueError(f"{func}: b must have the shape of a {x.shape}, got {y.shape}")
    if min(x.shape[:2]) < _WIN:
        raise ValueError(
            f"{func}: a and b must be at least {_WIN}×{_WIN} pixels (the Gaussian window), "
            f"got {x.shape[0]}×{x.shape[1]}"
        )
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    return x.astype(np.float64), y.astype(np.float64)


def ms_ssim(a: np.ndarray, b: np.ndarray, *, scales: int | None = None) -> MSSSIM:
    """Multi-scale SSIM of two uint8 images (data range 255), grey (H, W) or colour (H, W, 3).

    Z. Wang, E. P. Simoncelli, A. C. Bovik, "Multiscale structural similarity for image quality
    assessment", Asilomar Conference on Signals, Systems and Computers, 2003. At each scale the
    SSIM terms are computed as in :func:`ssim` (an 11×11 Gaussian window, σ = 1.5, normalised to
    sum 1, over the valid region only; population statistics; ``C1 = (0.01·255)²``,
    ``C2 = (0.03·255)²``) and averaged over space per channel; between scales the images are
    2×2 average-pooled (stride 2; an odd last row or column is dropped). Following the paper and
    ``tf.image.ssim_multiscale``, the contrast-structure term ``cs`` enters at every scale but the
    coarsest, where the full SSIM (luminance × contrast-structure) enters instead::

        MS-SSIM_c = Π_{j<M} relu(cs_j,c)^w_j · relu(SSIM_M,c)^w_M,    MS-SSIM = mean_c MS-SSIM_c

    with ``w = MS_SSIM_WEIGHTS`` = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), the channel mean
    taken last (as tf does). Computed in float64 on the host.

    Negative terms: a spatially averaged ``cs`` (or the coarsest SSIM) can be negative for
    anti-correlated images, and a negative number has no real fractional power. Like tf, the
    terms are clipped at 0 (``relu``) before the powers, so such a pair scores 0 and the result
    lies in [0, 1].

    Scales: every scale needs at least 11 px on the short side, so 5 scales need a short side of
    at least ``11·2⁴ = 176`` px. On smaller images the coarsest scales are dropped (``M`` is the
    largest with ``short_side ≥ 11·2^(M−1)``: 4 scales from 88 px, 3 from 44, 2 from 22, 1 from
    11) and the first ``M`` weights are renormalised to sum to 1; with all 5 scales the paper's
    weights are used as published (sum 1.0001, as tf does). With one scale the result is the
    mean SSIM, i.e. :func:`ssim` (clipped at 0). tf instead shrinks the window on small images
    and pads odd sizes before pooling, so on images below 176 px or of odd sizes the numbers
    differ from tf's.

    Args:
      a, b: uint8 images of one shape, (H, W) or (H, W, 3), short side ≥ 11.
      scales: ``None`` (default) for as many scales as the image allows, at most 5; an int in
        1..5 to ask for exactly that many (the image must be large enough for them).

    Returns:
      :class:`MSSSIM` ``(value, scales, weights)``: the MS-SSIM, the number of scales used and
      the exponents applied. ``float(result)`` gives the value.

    Raises:
      TypeError: ``a`` or ``b`` is not uint8, or ``scales`` is not an int.
      ValueError: bad shape, shapes differ, the image is smaller than 11×11 or too small for
        the requested ``scales``, or ``scales`` is outside 1..5.
    """
    func = "ms_ssim"
    x, y = _ms_ssim_images(a, b)
    short = min(x.shape[:2])
    n_max = max(m for m in range(1, len(MS_SSIM_WEIGHTS) + 1) if short >= _WIN * 2 ** (m - 1))
    if scales is None:
        n = n_max
    else:
        if isinstance(scales, bool) or not isinstance(scales, numbers.Integral):
            raise TypeError(f"{func}: scales must be None or an int in 1..5, got {scales!r}")
        n = int(scales)
        if not 1 <= n <= len(MS_SSIM_WEIGHTS):
            raise ValueError(f"{func}: scales must be None or an int in 1..5, got {scales!r}")
        if n > n_max:
            raise ValueError(
                f"{func}: scales={n} needs a short side of at least {_WIN * 2 ** (n - 1)} px "
                f"(11·2^(scales−1)), got {x.shape[0]}×{x.shape[1]} (at most {n_max} scales)"
            )
    w = np.asarray(MS_SSIM_WEIGHTS[:n], np.float64)
    if n < len(MS_SSIM_WEIGHTS):
        w = w / w.sum()
    k = _window_1d()
    terms = []
    for j in range(n):
        cs, full = _ssim_terms(x, y, k)
        terms.append(full if j == n - 1 else cs)
        if j < n - 1:
            x, y = _pool2(x), _pool2(y)
    t = np.maximum(np.stack(terms), 0.0)  # (scales, C), relu as in tf
    per_channel = np.prod(t ** w[:, None], axis=0)
    return MSSSIM(float(per_channel.mean()), n, tuple(float(v) for v in w))


# --------------------------------------------------------------------------------------------
# PFD-rand


def _feature_images(func: str, arg: str, images: Any) -> list[np.ndarray]:
    """One uint8 image (H, W) / (H, W, 3), an (N, H, W, C) uint8 array, or a sequence of images
    -> a list of (H, W, C) uint8 arrays with C in {1, 3}."""
    expected = "a uint8 image (H, W) or (H, W, 3), an (N, H, W, C) uint8 array or a list of images"
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            items = list(images)
        elif images.ndim in (2, 3):
            items = [images]
        else:
            raise ValueError(f"{func}: {arg} must be {expected}, got shape {images.shape}")
    elif isinstance(images, (list, tuple)):
        items = list(images)
        if not items:
            raise ValueError(f"{func}: {arg} must hold at least one image, got an empty sequence")
    else:
        raise TypeError(f"{func}: {arg} must be {expected}, got {type(images).__name__}")
    out = []
    for i, im in enumerate(items):
        where = arg if len(items) == 1 else f"{arg}[{i}]"
        if not isinstance(im, np.ndarray):
            raise TypeError(f"{func}: {where} must be a uint8 numpy array, got {type(im).__name__}")
        if im.dtype != np.uint8:
            raise TypeError(f"{func}: {where} must be uint8 (values 0..255), got {im.dtype}")
        if im.ndim == 2:
            im = im[..., None]
        if im.ndim != 3 or im.shape[2] not in (1, 3):
            raise ValueError(f"{func}: {where} must be shaped (H, W) or (H, W, 3), got {im.shape}")
        out.append(im)
    return out


def _patches(
    func: str, arg: str, images: list[np.ndarray], patch: int | None, stride: int
) -> np.ndarray:
    """(N, p, p, C) float32 patches in [−1, 1] on a regular grid (top-left corners 0, stride,
    2·stride, … while the patch fits); ``patch=None``: the whole images (one size)."""
    if patch is None:
        shape = images[0].shape
        for i, im in enumerate(images):
            if im.shape != shape:
                raise ValueError(
                    f"{func}: with patch=None every image of {arg} must have the shape of "
                    f"{arg}[0] {shape}, got {im.shape} ({arg}[{i}])"
                )
        crops = np.stack(images)
    else:
        parts = []
        for i, im in enumerate(images):
            h, w = im.shape[:2]
            if min(h, w) < patch:
                raise ValueError(
                    f"{func}: every image of {arg} must be at least patch={patch} px on each side, "
                    f"got {h}×{w} ({arg}[{i}])"
                )
            for top in range(0, h - patch + 1, stride):
                for left in range(0, w - patch + 1, stride):
                    parts.append(im[top : top + patch, left : left + patch])
        crops = np.stack(parts)
    if crops.shape[0] < 2:
        raise ValueError(
            f"{func}: {arg} must give at least 2 patches (a covariance needs 2 samples), got "
            f"{crops.shape[0]}; pass more images or a smaller patch/stride"
        )
    return crops.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def feature_distance(
    a: Any,
    b: Any,
    *,
    features: str | Callable[[np.ndarray], Any] = "random-conv",
    patch: int | None = 64,
    stride: int = 32,
    seed: int = 0,
) -> float:
    """**PFD-rand**: Fréchet distance between features of overlapping patches of ``a`` and ``b``.

    Both sides are cut into ``patch × patch`` patches whose top-left corners lie on a grid of
    step ``stride`` (0, stride, 2·stride, … while the patch fits; no extra patch flush with the
    border), pooled over all images of the side (≈ 190–230 patches per 400×600 photo with the
    defaults), mapped from uint8 [0, 255] to float [−1, 1] (``x / 127.5 − 1``) and embedded by
    ``features``. The distance is diff-core's ``frechet_distance`` between Gaussian fits of the
    two feature sets (Dowson & Landau 1982; the construction of FID, Heusel et al.,
    arXiv 1706.08500 — but this is **not FID**).

    With ``features="random-conv"`` (the default) the embedding is diff-pixel's
    ``diff_pixel.metrics.random_conv_features``: a fixed, seeded, *untrained* 4-layer conv net
    (ReLU, global average pool, 64-d; random embeddings as evaluation features: Naeem et al.,
    arXiv 2002.09797), and the distance is diff-pixel's ``photo_feature_distance``; reports call
    it **PFD-rand**. Its numbers are only comparable within one seed, patch size and stride.

    ``features`` may instead be a callable ``images (N, p, p, C) float32 in [−1, 1] -> (N, D)``;
    then the caller names the metric (e.g. a trained ``diff_pixel.metrics.DigitsClassifier``'s
    ``.features`` with ``patch=None`` on digits gives an FD-digits). There is no
    ``features="digits-classifier"`` string: diff-pixel exposes the digits features only as a
    method of a classifier trained with ``train_digits_classifier`` (≈ 20 CPU seconds), which a
    string cannot carry; pass the bound method.

    Args:
      a, b: each a uint8 image (H, W) or (H, W, 3), an (N, H, W, C) uint8 array or a list of
        such images (sizes may differ when ``patch`` is an int); all images of both sides must
        have the same number of channels. Grey images reach the random network as repeated RGB.
      features: ``"random-conv"`` or a callable (above).
      patch: patch side in px (≥ 8 for ``"random-conv"``), or ``None`` to use the whole images
        as the samples (then all images of a side share one size and ``stride`` is unused).
      stride: grid step in px (patches overlap when ``stride < patch``).
      seed: the random network's seed (unused with a callable).

    Returns:
      The Fréchet distance (float, ≥ 0 up to rounding). Identical sides give 0 up to the
      rounding of the matrix square roots: within ~1e-10 when each side has well over 64
      patches (a 512×512 photo gives 225), but up to ~1e-6 with fewer than 65 patches, where
      the 64-d covariance is singular. Few patches also make the Gaussian fits noisy: compare
      PFD-rand values only at one patch count.

    Raises:
      TypeError / ValueError naming the argument: not uint8, bad shapes, mixed channel counts,
      an image smaller than ``patch``, fewer than 2 patches on a side, a bad ``features``,
      ``patch``, ``stride`` or ``seed``, or features that are not a finite (N, D) array.
    """
    func = "feature_distance"
    if isinstance(features, str):
        if features != "random-conv":
            raise ValueError(
                f"{func}: features must be 'random-conv' or a callable images -> features, got "
                f"{features!r} (for digits pass a DigitsClassifier's .features)"
            )
    elif not callable(features):
        raise TypeError(
            f"{func}: features must be 'random-conv' or a callable images -> features, got "
            f"{type(features).__name__}"
        )
    if patch is not None:
        patch = check_int(func, "patch", patch, minimum=8 if isinstance(features, str) else 1)
    stride = check_int(func, "stride", stride, minimum=1)
    seed = check_int(func, "seed", seed, minimum=0)
    ims_a = _feature_images(func, "a", a)
    ims_b = _feature_images(func, "b", b)
    channels = ims_a[0].shape[2]
    for arg, ims in (("a", ims_a), ("b", ims_b)):
        for i, im in enumerate(ims):
            if im.shape[2] != channels:
                raise ValueError(
                    f"{func}: every image of a and b must have the channel count of a[0] "
                    f"({channels}), got {im.shape[2]} ({arg}[{i}])"
                )
    pa = _patches(func, "a", ims_a, patch, stride)
    pb = _patches(func, "b", ims_b, patch, stride)
    if pa.shape[1:] != pb.shape[1:]:
        raise ValueError(
            f"{func}: b's samples must have the (H, W, C) of a's {pa.shape[1:]}, got {pb.shape[1:]}"
        )
    from diff_core.metrics import frechet_distance

    if isinstance(features, str):
        return float(frechet_distance(_random_conv(pa, seed), _random_conv(pb, seed)))
    fa = _user_features(func, features, pa)
    fb = _user_features(func, features, pb)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(
            f"{func}: features must give one dimension for a and b, got {fa.shape[1]} and "
            f"{fb.shape[1]}"
        )
    return float(frechet_distance(fa, fb))


def _random_conv(patches: np.ndarray, seed: int) -> np.ndarray:
    """diff-pixel's random-conv features of ``patches`` in [−1, 1], as float64 (the moments of
    ``photo_feature_distance``)."""
    from diff_pixel.metrics import random_conv_features

    return random_conv_features(patches, seed=seed).astype(np.float64)


def patch_features(images: Any, *, patch: int = 64, stride: int = 32, seed: int = 0) -> np.ndarray:
    """PFD-rand's embedding of ``images``: the (N, 64) float64 random-conv features of their
    patch grid, exactly as :func:`feature_distance` computes them. For one reference scored
    against many candidates, ``diff_core.metrics.frechet_distance(patch_features(c), ref)``
    with ``ref = patch_features(reference)`` computed once equals ``feature_distance(c,
    reference)``."""
    func = "patch_features"
    patch = check_int(func, "patch", patch, minimum=8)
    stride = check_int(func, "stride", stride, minimum=1)
    seed = check_int(func, "seed", seed, minimum=0)
    return _random_conv(
        _patches(func, "images", _feature_images(func, "images", images), patch, stride), seed
    )


def _user_features(func: str, features: Callable[[np.ndarray], Any], x: np.ndarray) -> np.ndarray:
    f = np.asarray(features(x))
    if f.ndim != 2 or f.shape[0] != x.shape[0] or f.dtype.kind not in "fiu":
        raise ValueError(
            f"{func}: features must return a real (N, D) array with N = {x.shape[0]} samples, "
            f"got {f.dtype} {f.shape}"
        )
    f = f.astype(np.float64)
    if not np.all(np.isfinite(f)):
        raise ValueError(
            f"{func}: features must return finite values, got {int(np.sum(~np.isfinite(f)))} "
            "non-finite"
        )
    return f


# --------------------------------------------------------------------------------------------
# Bjøntegaard deltas (BD-rate, BD-PSNR) with piecewise-cubic Hermite interpolation


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Monotone piecewise-cubic Hermite (PCHIP) derivatives at the knots ``x`` (strictly
    increasing, ≥ 2 points), as SciPy's ``PchipInterpolator`` and MATLAB's ``pchip`` compute them.

    Interior knots: 0 where the neighbouring secants ``m_{k−1}``, ``m_k`` differ in sign or one is
    0 (a local extremum stays flat), else the weighted harmonic mean
    ``(w1 + w2) / (w1/m_{k−1} + w2/m_k)`` with ``w1 = 2h_k + h_{k−1}``, ``w2 = h_k + 2h_{k−1}``
    (Fritsch & Butland 1984), which satisfies Fritsch & Carlson's (1980) sufficient conditions for
    a monotone interpolant on monotone data. End knots: the one-sided three-point estimate
    ``((2h_0 + h_1) m_0 − h_0 m_1) / (h_0 + h_1)``, set to 0 if its sign differs from ``m_0`` and
    clipped to ``3 m_0`` if ``m_0`` and ``m_1`` differ in sign (Moler, *Numerical Computing with
    MATLAB*, §3.6). Two points: both slopes are the secant (linear interpolation).
    """
    h = np.diff(x)
    m = np.diff(y) / h
    if x.size == 2:
        return np.array([m[0], m[0]])
    d = np.zeros_like(y)
    w1 = 2.0 * h[1:] + h[:-1]
    w2 = h[1:] + 2.0 * h[:-1]
    flat = (np.sign(m[1:]) != np.sign(m[:-1])) | (m[1:] == 0) | (m[:-1] == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / m[:-1] + w2 / m[1:])
    d[1:-1] = np.where(flat, 0.0, harmonic)

    def edge(h0: float, h1: float, m0: float, m1: float) -> float:
        e = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(e) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(e) > 3.0 * abs(m0):
            return 3.0 * m0
        return float(e)

    d[0] = edge(h[0], h[1], m[0], m[1])
    d[-1] = edge(h[-1], h[-2], m[-1], m[-2])
    return d


def _hermite_coefficients(
    x: np.ndarray, y: np.ndarray, d: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per interval k, ``p_k(s) = c0 + c1 s + c2 s² + c3 s³`` with ``s = t − x_k`` in ``[0, h_k]``:
    the cubic with values ``y_k, y_{k+1}`` and slopes ``d_k, d_{k+1}`` at the ends."""
    h = np.diff(x)
    m = np.diff(y) / h
    c2 = (3.0 * m - 2.0 * d[:-1] - d[1:]) / h
    c3 = (d[:-1] + d[1:] - 2.0 * m) / h**2
    return y[:-1], d[:-1], c2, c3


def _pchip_eval(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The PCHIP interpolant of ``(x, y)`` at ``t`` (inside ``[x_0, x_−1]``)."""
    c0, c1, c2, c3 = _hermite_coefficients(x, y, _pchip_slopes(x, y))
    k = np.clip(np.searchsorted(x, t, side="right") - 1, 0, x.size - 2)
    s = t - x[k]
    return c0[k] + s * (c1[k] + s * (c2[k] + s * c3[k]))


def _pchip_integral(x: np.ndarray, y: np.ndarray, a: float, b: float) -> float:
    """``∫_a^b`` of the PCHIP interpolant of ``(x, y)``, ``x_0 ≤ a ≤ b ≤ x_−1``, exactly: on each
    interval the Hermite cubic's antiderivative ``c0 s + c1 s²/2 + c2 s³/3 + c3 s⁴/4`` is taken
    between the interval's part of ``[a, b]`` (a whole interval gives
    ``h (y_k + y_{k+1})/2 + h² (d_k − d_{k+1})/12``)."""
    c0, c1, c2, c3 = _hermite_coefficients(x, y, _pchip_slopes(x, y))
    lo = np.clip(a, x[:-1], x[1:]) - x[:-1]
    hi = np.clip(b, x[:-1], x[1:]) - x[:-1]

    def antiderivative(s: np.ndarray) -> np.ndarray:
        return s * (c0 + s * (c1 / 2.0 + s * (c2 / 3.0 + s * c3 / 4.0)))

    return float(np.sum(antiderivative(hi) - antiderivative(lo)))


def _real_vector(func: str, arg: str, v: Any) -> np.ndarray:
    a = np.asarray(v)
    if a.dtype.kind not in "fiu":
        raise TypeError(
            f"{func}: {arg} must be a 1-D sequence of real numbers, got "
            f"{type(v).__name__} of dtype {a.dtype}"
        )
    if a.ndim != 1:
        raise ValueError(f"{func}: {arg} must be 1-D (one value per point), got shape {a.shape}")
    return a.astype(np.float64)


def _rd_curve(
    func: str, kind: str, rate: Any, quality: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one R-D curve; return (rate, log-rate, PSNR), sorted by rate."""
    rn, pn = f"rate_{kind}", f"psnr_{kind}"
    r, p = _real_vector(func, rn, rate), _real_vector(func, pn, quality)
    if r.size != p.size:
        raise ValueError(
            f"{func}: {rn} and {pn} must have one length (one PSNR per rate), got {r.size} "
            f"and {p.size}"
        )
    if r.size < 2:
        raise ValueError(
            f"{func}: {rn} and {pn} must hold at least 2 points (an R-D curve), got {r.size}"
        )
    for name, v in ((rn, r), (pn, p)):
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise ValueError(
                f"{func}: {name} must be finite, got {v[bad[0]]} at index {bad[0]} "
                f"({bad.size} non-finite)"
            )
    bad = np.flatnonzero(r <= 0)
    if bad.size:
        raise ValueError(
            f"{func}: {rn} must be > 0 (rates are interpolated in log), got {r[bad[0]]} at index "
            f"{bad[0]}"
        )
    order = np.argsort(r, kind="stable")
    r, p = r[order], p[order]
    same = np.flatnonzero(np.diff(r) == 0)
    if same.size:
        raise ValueError(
            f"{func}: {rn} must hold distinct rates, got {r[same[0]]} at indices "
            f"{order[same[0]]} and {order[same[0] + 1]}"
        )
    down = np.flatnonzero(np.diff(p) <= 0)
    if down.size:
        i = down[0]
        raise ValueError(
            f"{func}: {pn} must increase strictly with the rate (after sorting by {rn}), got "
            f"{p[i]} dB at rate {r[i]} and {p[i + 1]} dB at rate {r[i + 1]} (indices {order[i]} "
            f"and {order[i + 1]})"
        )
    return r, np.log(r), p


def _mean_gap(
    func: str,
    what: str,
    x_ref: np.ndarray,
    y_ref: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> float:
    """``(1 / (hi − lo)) ∫_lo^hi (y_test(x) − y_ref(x)) dx`` of the two PCHIP interpolants over
    the interval both ``x`` ranges cover (both sorted increasing); ``what`` is the refusal's
    message when they do not overlap."""
    lo, hi = max(x_ref[0], x_test[0]), min(x_ref[-1], x_test[-1])
    if not hi > lo:
        raise ValueError(f"{func}: {what}")
    lo, hi = float(lo), float(hi)
    gap = _pchip_integral(x_test, y_test, lo, hi) - _pchip_integral(x_ref, y_ref, lo, hi)
    return gap / (hi - lo)


def bd_rate(rate_ref: Any, psnr_ref: Any, rate_test: Any, psnr_test: Any) -> float:
    """Bjøntegaard delta rate: the average rate difference, in %, of the test curve against the
    reference curve at equal PSNR (negative: the test codec needs fewer bits).

    G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves", ITU-T SG16 Q.6,
    document VCEG-M33, Austin, April 2001 (a cubic polynomial fit of log-rate against PSNR);
    G. Bjøntegaard, "Improvements of the BD-PSNR model", ITU-T SG16 Q.6, document VCEG-AI11,
    Berlin, July 2008 (piecewise-cubic interpolation instead of the fit, which can oscillate).
    This is the piecewise-cubic version: for each curve, the log-rate ``ln R`` is interpolated as
    a function of PSNR by the monotone piecewise-cubic Hermite interpolant (PCHIP; slopes of
    Fritsch & Carlson 1980 / Fritsch & Butland 1984 as SciPy's ``PchipInterpolator`` and
    MATLAB's ``pchip``, written here in numpy). Over the PSNR interval ``[lo, hi]`` both curves
    cover (``lo`` = the larger of the two lowest PSNRs, ``hi`` the smaller of the two highest)::

        Δ = (1 / (hi − lo)) ∫_lo^hi (ln R_test(P) − ln R_ref(P)) dP,    BD-rate = 100 (e^Δ − 1) %

    The integrals are exact (each Hermite cubic's antiderivative in closed form), not sampled.
    The logarithm's base cancels (``10^Δ₁₀ = e^Δ``), so the result equals that of the usual
    log10 formulation. Consequences that hold exactly (up to rounding): a test curve with
    every rate multiplied by ``k`` at the same PSNRs gives ``100 (k − 1)``; swapping the curves
    gives ``r'`` with ``(1 + r/100)(1 + r'/100) = 1``.

    Args:
      rate_ref, psnr_ref: the reference curve (e.g. JPEG): rates (bpp, bits or bytes; any
        positive unit, the same for both curves) and PSNRs in dB, one per point, any order.
      rate_test, psnr_test: the tested curve, in the same units.

    Each curve needs at least 2 points, distinct positive finite rates, and finite PSNRs that
    increase strictly with the rate (after sorting by rate).

    Returns:
      The BD-rate in percent (float).

    Raises:
      TypeError: an argument is not a sequence of real numbers.
      ValueError, naming the argument, what was expected and what came: not 1-D, the rate and
        PSNR of a curve differ in length, fewer than 2 points, a non-finite value, a rate ≤ 0,
        repeated rates, PSNR not strictly increasing with the rate, or PSNR ranges that do not
        overlap (then :func:`bd_psnr` may still be defined over a common rate interval).
    """
    func = "bd_rate"
    _, lr, pr = _rd_curve(func, "ref", rate_ref, psnr_ref)
    _, lt, pt = _rd_curve(func, "test", rate_test, psnr_test)
    delta = _mean_gap(
        func,
        f"psnr_test must overlap psnr_ref in PSNR (BD-rate averages over the common PSNR "
        f"interval), got psnr_ref in [{pr[0]:.6g}, {pr[-1]:.6g}] dB and psnr_test in "
        f"[{pt[0]:.6g}, {pt[-1]:.6g}] dB",
        pr,
        lr,
        pt,
        lt,
    )
    return float(100.0 * np.expm1(delta))


def bd_psnr(rate_ref: Any, psnr_ref: Any, rate_test: Any, psnr_test: Any) -> float:
    """Bjøntegaard delta PSNR: the average PSNR difference, in dB, of the test curve against the
    reference curve at equal rate (positive: the test codec is better).

    Bjøntegaard, VCEG-M33 (2001) and VCEG-AI11 (2008), as :func:`bd_rate`, with the roles of the
    axes exchanged: for each curve the PSNR is interpolated as a function of ``ln R`` by the
    monotone piecewise-cubic Hermite interpolant (PCHIP), and::

        BD-PSNR = (1 / (b − a)) ∫_a^b (P_test(L) − P_ref(L)) dL      (L = ln R)

    over the log-rate interval ``[a, b]`` both curves cover, integrated exactly. A test curve
    with every PSNR shifted by ``d`` at the same rates gives exactly ``d``; swapping the curves
    negates the result.

    Args and validation: as :func:`bd_rate`; the curves must overlap in rate (not in PSNR).

    Returns:
      The BD-PSNR in dB (float).

    Raises:
      TypeError / ValueError as :func:`bd_rate`; the "no overlap" error names the rate ranges.
    """
    func = "bd_psnr"
    rr, lr, pr = _rd_curve(func, "ref", rate_ref, psnr_ref)
    rt, lt, pt = _rd_curve(func, "test", rate_test, psnr_test)
    return float(
        _mean_gap(
            func,
            f"rate_test must overlap rate_ref (BD-PSNR averages over the common log-rate "
            f"interval), got rate_ref in [{rr[0]:.6g}, {rr[-1]:.6g}] and rate_test in "
            f"[{rt[0]:.6g}, {rt[-1]:.6g}]",
            lr,
            pr,
            lt,
            pt,
        )
    )
