"""The ``Denoiser`` protocol: any callable ``(z, logsnr, cond=None) -> output`` with a
``prediction`` attribute naming what the output is (``"eps"``, ``"v"`` or ``"x"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

from .arrays import Array
from .errors import arg_error
from .vp import check_prediction, to_x_eps

__all__ = ["Denoiser", "Prediction", "as_denoiser", "check_denoiser", "denoise"]

Prediction = Literal["eps", "v", "x"]


@runtime_checkable
class Denoiser(Protocol):
    """A network or exact model predicting ε, v or x from ``z`` at log-SNR ``logsnr``.

    ``logsnr`` is 0-d or has a shape that is a prefix of ``z.shape``. ``cond`` is whatever the
    model conditions on (labels, embeddings, a dict of arrays) or ``None``.
    """

    prediction: str

    def __call__(self, z: Array, logsnr: Array, cond: Any = None) -> Array: ...


class _FunctionDenoiser:
    """A plain function given a ``prediction``; hashes by identity (usable as a JAX static)."""

    __slots__ = ("fn", "prediction", "__wrapped__")

    def __init__(self, fn: Callable[..., Array], prediction: str) -> None:
        self.fn = fn
        self.prediction = prediction
        self.__wrapped__ = fn

    def __call__(self, z: Array, logsnr: Array, cond: Any = None) -> Array:
        if cond is None:
            return self.fn(z, logsnr)
        return self.fn(z, logsnr, cond)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        return f"as_denoiser({name}, prediction={self.prediction!r})"


def as_denoiser(fn: Callable[..., Array], prediction: str) -> Denoiser:
    """Wrap ``fn(z, logsnr)`` or ``fn(z, logsnr, cond)`` as a :class:`Denoiser`.

    ``cond`` is passed only when it is not ``None``, so unconditional functions need no third
    argument.
    """
    if not callable(fn):
        raise arg_error("as_denoiser", "fn", "callable", fn, TypeError)
    check_prediction("as_denoiser", prediction)
    return _FunctionDenoiser(fn, prediction)


def check_denoiser(func: str, denoiser: Any) -> str:
    """Validate that ``denoiser`` is callable with a known ``prediction``; return the prediction."""
    if not callable(denoiser):
        raise arg_error(func, "denoiser", "callable", denoiser, TypeError)
    prediction = getattr(denoiser, "prediction", None)
    if prediction is None:
        raise TypeError(
            f"{func}: denoiser must have a 'prediction' attribute ('eps', 'v' or 'x'); "
            f"wrap plain functions with diff_protocol.as_denoiser(fn, prediction)"
        )
    return check_prediction(func, prediction)


def denoise(denoiser: Denoiser, z: Array, logsnr: Array, cond: Any = None) -> tuple[Array, Array]:
    """Evaluate ``denoiser`` and return ``(x̂, ε̂)`` whatever it predicts."""
    prediction = check_denoiser("denoise", denoiser)
    out = denoiser(z, logsnr, cond) if cond is not None else denoiser(z, logsnr)
    return to_x_eps(out, z, logsnr, prediction)
