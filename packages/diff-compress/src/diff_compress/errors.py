"""Errors of the codec: every malformed stream is a :class:`BitstreamError` with a stable reason."""

from __future__ import annotations

from diff_protocol.errors import NonFiniteError

__all__ = ["REASONS", "BitstreamError", "EncodeError", "NonFiniteError"]

#: Every reason a :class:`BitstreamError` can carry, in the order the checks run.
REASONS = (
    "too_short",
    "bad_magic",
    "unsupported_version",
    "bad_flags",
    "bad_size",
    "length_mismatch",
    "checksum",
    "model_mismatch",
    "entropy_decode",
    "scale_index_mismatch",
)


class BitstreamError(ValueError):
    """A stream that cannot be decoded; ``reason`` is one of :data:`REASONS`.

    ``str(err)`` is ``"BitstreamError(reason): message"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"BitstreamError: reason must be one of {REASONS}, got {reason!r}")
        self.reason = reason
        self.message = message
        super().__init__(f"BitstreamError({reason}): {message}")

    def __reduce__(self):  # picklable across processes
        return (type(self), (self.reason, self.message))


class EncodeError(ValueError):
    """The entropy coder refused to encode (a symbol outside its model's support)."""
