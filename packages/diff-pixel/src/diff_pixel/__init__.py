"""diff-pixel: pixel-space diffusion (SiD, SiD2) in JAX/Flax NNX."""

__version__ = "0.1.0"
