"""**PFD-rand**: a Fréchet distance between features of a fixed, seeded, *untrained* conv net.

This is **not FID**: no pretrained network is involved. The features come from a random
convolutional network (randomly initialised embeddings as evaluation features: Naeem et al.,
arXiv 2002.09797), and the distance is the Fréchet distance between Gaussian fits of the two
feature sets (Dowson & Landau; as used by FID, Heusel et al., arXiv 1706.08500), computed by
diff-core's ``frechet_distance``. Reports call it **PFD-rand**. Its numbers are comparable only
within one run (same seed, same image size) and against a floor measured there with the same
sample sizes, e.g. ``PFD-rand(held-out real images, reference)``: the Gaussian fits of finite
samples put that floor above 0.

The network (weights drawn on the host with ``numpy.random.default_rng(seed)``, He-normal
``N(0, 2/fan_in)`` with ``fan_in = 9·C_in``, no biases, so the features are the same on any
machine and JAX version up to float rounding):

    conv3×3(3 → 32, stride 1) → ReLU → conv3×3(32 → 64, stride 2) → ReLU
    → conv3×3(64 → 64, stride 2) → ReLU → conv3×3(64 → 64, stride 2) → ReLU
    → global average pool over space → 64 features

with ``SAME`` padding (NHWC, ``jax.lax.conv_general_dilated`` at the highest precision). Grey
images (C = 1) are repeated to 3 channels, so a grey image and its RGB copy have the same
features. Any H, W ≥ 8 works.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["FEATURE_DIM", "photo_feature_distance", "random_conv_features"]

FEATURE_DIM = 64

_WIDTHS = (32, 64, 64, FEATURE_DIM)
_STRIDES = (1, 2, 2, 2)
_MIN_SIZE = 8


@functools.lru_cache(maxsize=8)
def _weights(seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    weights = []
    c_in = 3
    for c_out in _WIDTHS:
        std = math.sqrt(2.0 / (9 * c_in))
        w = (rng.standard_normal((3, 3, c_in, c_out)) * std).astype(np.float32)
        w.setflags(write=False)
        weights.append(w)
        c_in = c_out
    return tuple(weights)


@jax.jit
def _forward(weights: tuple[jax.Array, ...], x: jax.Array) -> jax.Array:
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    h = x
    for w, stride in zip(weights, _STRIDES):
        h = jax.lax.conv_general_dilated(
            h,
            w,
            window_strides=(stride, stride),
            padding="SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
        h = jax.nn.relu(h)
    return jnp.mean(h, axis=(1, 2))


def _check_images(func: str, arg: str, images: Any, min_n: int = 1) -> np.ndarray:
    if getattr(images, "shape", None) is None or getattr(images, "dtype", None) is None:
        raise TypeError(
            f"{func}: {arg} must be a float array (N, H, W, C), got {type(images).__name__}"
        )
    x = np.asarray(images)
    if x.dtype.kind != "f":
        raise TypeError(f"{func}: {arg} must be a float array (N, H, W, C), got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(
            f"{func}: {arg} must be 4-D (N, H, W, C) with C in (1, 3), got shape {x.shape}"
        )
    if x.shape[0] < min_n:
        raise ValueError(f"{func}: {arg} must hold at least {min_n} images, got {x.shape[0]}")
    if min(x.shape[1:3]) < _MIN_SIZE:
        raise ValueError(
            f"{func}: {arg} must be at least {_MIN_SIZE}×{_MIN_SIZE} pixels, "
            f"got {x.shape[1]}×{x.shape[2]}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"{func}: {arg} must be finite, got {int(np.sum(~np.isfinite(x)))} non-finite values"
        )
    return x.astype(np.float32, copy=False)


def _check_seed(func: str, seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{func}: seed must be a non-negative int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{func}: seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _features(x: np.ndarray, seed: int, batch_size: int) -> np.ndarray:
    weights = tuple(jnp.asarray(w) for w in _weights(seed))
    n = x.shape[0]
    size = min(batch_size, n)
    out = np.empty((n, FEATURE_DIM), np.float32)
    for start in range(0, n, size):
        # the last batch is padded with copies of the last image: one compilation per size
        rows = np.minimum(np.arange(start, start + size), n - 1)
        keep = min(size, n - start)
        out[start : start + keep] = np.asarray(_forward(weights, jnp.asarray(x[rows])))[:keep]
    return out


def random_conv_features(images: Any, *, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """64-d features of ``images`` from the fixed random network of ``seed`` (module docstring).

    Args:
      images: (N, H, W, C) real floating array, C in {1, 3}, H and W ≥ 8, finite (any range;
        diff-pixel images lie in [−1, 1]).
      seed: the network's seed (``numpy.random.default_rng(seed)``), a non-negative int.
      batch_size: images per compiled call (the results do not depend on it).

    Returns:
      float32 array (N, :data:`FEATURE_DIM`).
    """
    func = "random_conv_features"
    x = _check_images(func, "images", images)
    seed = _check_seed(func, seed)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"{func}: batch_size must be a positive int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"{func}: batch_size must be a positive int, got {batch_size!r}")
    return _features(x, seed, int(batch_size))


def photo_feature_distance(images: Any, reference: Any, *, seed: int = 0) -> float:
    """PFD-rand: Fréchet distance between random-network features of ``images`` and ``reference``.

    Not FID (see the module docstring): compare it only with numbers of the same run, seed and
    image size, and against the floor ``PFD-rand(real held-out images, reference)`` measured
    with the same two sample sizes.

    Args:
      images: (N, H, W, C) float array, N ≥ 2, C in {1, 3}, H and W ≥ 8, finite.
      reference: (M, H, W, C) float array of the same H, W, C, M ≥ 2.
      seed: the feature network's seed.

    Returns:
      ``‖μ₁ − μ₂‖² + tr C₁ + tr C₂ − 2 tr (C₁^½ C₂ C₁^½)^½`` over the 64-d features (float64
      moments, unbiased covariances).
    """
    from diff_core.metrics import frechet_distance

    func = "photo_feature_distance"
    x = _check_images(func, "images", images, min_n=2)
    ref = _check_images(func, "reference", reference, min_n=2)
    if ref.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"{func}: reference must have the (H, W, C) of images {x.shape[1:]}, "
            f"got {ref.shape[1:]}"
        )
    seed = _check_seed(func, seed)
    a = _features(x, seed, 256).astype(np.float64)
    b = _features(ref, seed, 256).astype(np.float64)
    return float(frechet_distance(a, b))
