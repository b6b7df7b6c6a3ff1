"""Entropy coding with constriction (Bamler, arXiv 2201.01741): the only module importing it.

z is coded channel by channel with each channel's ``Categorical`` table; y with
``QuantizedGaussian(−K, K)`` at mean 0 (the mean is folded out: ``y_sym = round(y − μ)``) and
std ``scale_table[y_index]``; per-symbol parameter arrays in C order. The range coder (a queue)
is the default; ANS (a stack) is the option.

constriction 0.5.0 does not detect damaged input (truncated or flipped words decode to wrong
symbols; random words can raise ``AssertionError``): every exception it raises is re-raised as
``BitstreamError("entropy_decode", ...)`` (decoding) or :class:`EncodeError` (encoding).
"""

from __future__ import annotations

from collections.abc import Callable

import constriction
import numpy as np

from diff_compress.codec import CodingTables
from diff_compress.entropy_models import gaussian_likelihood_np
from diff_compress.errors import BitstreamError, EncodeError

__all__ = ["CODERS", "decode_symbols", "encode_symbols", "ideal_bits"]

CODERS = ("range", "ans")


def _check_coder(func: str, coder: str) -> None:
    if coder not in CODERS:
        raise ValueError(f"{func}: coder must be 'range' or 'ans', got {coder!r}")


def _z_models(tables: CodingTables) -> list:
    cat = constriction.stream.model.Categorical
    return [
        cat(tables.z_pmf[c, : tables.z_length[c]], perfect=False)
        for c in range(len(tables.z_length))
    ]


def encode_symbols(
    z_sym: np.ndarray,
    y_sym: np.ndarray | None,
    y_index: np.ndarray | None,
    tables: CodingTables,
    coder: str = "range",
) -> tuple[np.ndarray, np.ndarray]:
    """Encode ``z_sym`` (..., C) and ``y_sym`` (any shape, with ``y_index`` of the same shape)
    into two uint32 word arrays (``y`` may be ``None`` for the factorized model)."""
    _check_coder("encode_symbols", coder)
    z_sym = np.asarray(z_sym, np.int32)
    ch = len(tables.z_length)
    if z_sym.shape[-1] != ch:
        raise ValueError(f"encode_symbols: z_sym must have {ch} channels, got shape {z_sym.shape}")
    zc = z_sym.reshape(-1, ch) - tables.z_offset[None, :]
    if (zc < 0).any() or (zc >= tables.z_length[None, :]).any():
        raise EncodeError("encode_symbols: z symbols outside the table support (clamp them first)")
    models = _z_models(tables)
    k = tables.y_bound
    try:
        if coder == "range":
            enc = constriction.stream.queue.RangeEncoder()
            for c in range(ch):
                enc.encode(np.ascontiguousarray(zc[:, c], np.int32), models[c])
            z_words = enc.get_compressed()
        else:
            enc = constriction.stream.stack.AnsCoder()
            for c in reversed(range(ch)):
                enc.encode_reverse(np.ascontiguousarray(zc[:, c], np.int32), models[c])
            z_words = enc.get_compressed()
        y_words = np.zeros(0, np.uint32)
        if y_sym is not None and np.size(y_sym):
            ys = np.ascontiguousarray(np.asarray(y_sym, np.int32).ravel())
            if np.abs(ys).max() > k:
                raise EncodeError(
                    f"encode_symbols: y symbols outside [-{k}, {k}] (clamp them first)"
                )
            stds = tables.scale_table[np.asarray(y_index).ravel().astype(np.int64)]
            fam = constriction.stream.model.QuantizedGaussian(-k, k)
            means = np.zeros(len(ys), np.float64)
            if coder == "range":
                enc = constriction.stream.queue.RangeEncoder()
                enc.encode(ys, fam, means, stds)
            else:
                enc = constriction.stream.stack.AnsCoder()
                enc.encode_reverse(ys, fam, means, stds)
            y_words = enc.get_compressed()
    except EncodeError:
        raise
    except Exception as e:  # constriction raises KeyError/ValueError/AssertionError
        raise EncodeError(
            f"encode_symbols: the entropy coder failed ({type(e).__name__}: {e})"
        ) from e
    return np.asarray(z_words, np.uint32), np.asarray(y_words, np.uint32)


def decode_symbols(
    z_words: np.ndarray,
    y_words: np.ndarray,
    z_shape: tuple[int, ...],
    tables: CodingTables,
    hyper_fn: Callable[[np.ndarray], np.ndarray] | None,
    coder: str = "range",
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Decode z (shape ``z_shape``), call ``hyper_fn(z_sym) -> y_index`` (the CPU
    hyper-synthesis, which fixes y's shape), then decode y. ``hyper_fn=None``: z only.

    Raises:
      BitstreamError("entropy_decode"): the coder failed on the words.
    """
    _check_coder("decode_symbols", coder)
    ch = len(tables.z_length)
    n = int(np.prod(z_shape[:-1]))
    models = _z_models(tables)
    k = tables.y_bound
    try:
        if coder == "range":
            dec = constriction.stream.queue.RangeDecoder(np.asarray(z_words, np.uint32))
        else:
            dec = constriction.stream.stack.AnsCoder(np.asarray(z_words, np.uint32))
        cols = [np.asarray(dec.decode(models[c], n), np.int32) for c in range(ch)]
    except Exception as e:
        raise BitstreamError(
            "entropy_decode", f"z payload could not be decoded ({type(e).__name__}: {e})"
        ) from e
    z_sym = (np.stack(cols, axis=-1) + tables.z_offset[None, :]).reshape(z_shape).astype(np.int32)
    if hyper_fn is None:
        return z_sym, None, None
    y_index = np.asarray(hyper_fn(z_sym))
    m = y_index.size
    stds = tables.scale_table[y_index.ravel().astype(np.int64)]
    try:
        fam = constriction.stream.model.QuantizedGaussian(-k, k)
        if coder == "range":
            dec = constriction.stream.queue.RangeDecoder(np.asarray(y_words, np.uint32))
        else:
            dec = constriction.stream.stack.AnsCoder(np.asarray(y_words, np.uint32))
        ys = np.asarray(dec.decode(fam, np.zeros(m, np.float64), stds), np.int32)
    except Exception as e:
        raise BitstreamError(
            "entropy_decode", f"y payload could not be decoded ({type(e).__name__}: {e})"
        ) from e
    return z_sym, ys.reshape(y_index.shape), y_index


def ideal_bits(
    z_sym: np.ndarray,
    y_sym: np.ndarray | None,
    y_index: np.ndarray | None,
    tables: CodingTables,
) -> tuple[float, float]:
    """``(bits_z, bits_y)``: −Σ log2 of the coding-time probabilities (the tables' pmf for z, the
    discretised Gaussian at the table σ, floored at 2^-24, for y), in float64."""
    ch = len(tables.z_length)
    zc = np.asarray(z_sym).reshape(-1, ch) - tables.z_offset[None, :]
    p = tables.z_pmf[np.arange(ch)[None, :], zc]
    bz = float(-np.log2(np.maximum(p, 2.0**-24)).sum())
    by = 0.0
    if y_sym is not None and np.size(y_sym):
        s = tables.scale_table[np.asarray(y_index).astype(np.int64)]
        by = float(-np.log2(gaussian_likelihood_np(np.asarray(y_sym), s)).sum())
    return bz, by
