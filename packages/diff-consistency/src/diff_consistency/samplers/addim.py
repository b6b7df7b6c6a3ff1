"""Entry point ``addim`` (MCM Algorithm 3); the step and variance models live in
:mod:`diff_consistency.addim`."""

from diff_consistency.addim import addim

__all__ = ["addim"]
