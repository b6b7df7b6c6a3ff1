"""Errors shared by every diff-* package.

Messages follow one form so users can grep them:
``"<function>: <argument> must be <expected>, got <what came>"``.
"""

from __future__ import annotations

__all__ = ["DrawIndexError", "NonFiniteError", "RegistryError", "arg_error", "describe"]


class NonFiniteError(ValueError):
    """A denoiser output or sampler state stopped being finite during sampling.

    The message names the step index, its time ``t``, its ``logsnr`` and the quantity
    (``"denoiser output"`` or ``"state"``).
    """


class DrawIndexError(ValueError, IndexError):
    """A draw or table index outside ``[0, n)``: a ``ValueError`` (the project's rule) that is
    also an ``IndexError`` (what indexing code expects)."""


class RegistryError(LookupError):
    """A plugin name is unknown, or provided by more than one distribution."""


def describe(value: object) -> str:
    """Short description of ``value`` for error messages (type, shape and dtype of arrays)."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        kind = f"{type(value).__module__.split('.')[0]}.{type(value).__name__}"
        return f"{kind} of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def arg_error(
    func: str, arg: str, expected: str, got: object, cls: type[Exception] = ValueError
) -> Exception:
    """Build the project's standard bad-argument exception (the caller raises it).

    >>> raise arg_error("ddim", "eta", "in [0, 1]", 1.5)
    Traceback (most recent call last):
    ...
    ValueError: ddim: eta must be in [0, 1], got 1.5
    """
    got_text = got if isinstance(got, str) else describe(got)
    return cls(f"{func}: {arg} must be {expected}, got {got_text}")
