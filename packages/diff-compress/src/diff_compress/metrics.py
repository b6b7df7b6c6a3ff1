"""Host-side image metrics (numpy). Nothing here is FID or LPIPS: PSNR, SSIM, the file rate and a
spectral realism proxy (``hf_energy_ratio``) only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bits_per_pixel", "hf_energy_ratio", "psnr", "ssim"]


def bits_per_pixel(data: bytes, height: int, width: int) -> float:
    """``8 · len(data) / (H·W)``: the whole file, header included, over the original size."""
    if height < 1 or width < 1:
        raise ValueError(f"bits_per_pixel: height and width must be >= 1, got {height}×{width}")
    return 8.0 * len(data) / (height * width)


def _u8(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise TypeError(f"psnr: {name} must be uint8, got {a.dtype}")
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

    a, b = _u8("a", a), _u8("b", b)
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
