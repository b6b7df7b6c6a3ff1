"""Data: linear-Gaussian sequences with an exact denoiser, Kolmogorov flow (jax-cfd) and the
user's own ``.npz`` sequences, with a resumable clip sampler for training."""

from .gaussian import GaussianVideo, GaussianVideoDenoiser, LossFloor

__all__ = ["GaussianVideo", "GaussianVideoDenoiser", "LossFloor"]
