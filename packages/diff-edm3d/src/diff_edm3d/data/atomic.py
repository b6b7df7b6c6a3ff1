"""Atomic file writes for the package's writers, on diff-protocol's one implementation.

:func:`atomic_write` collects what ``write(f)`` writes and hands it to
:func:`diff_protocol.io.atomic_write` (temporary file in the target folder, ``fsync``,
``os.replace``, the umask's permissions): a reader sees the old file or the new one, never half of
one. This module adds the package's policy: an existing file is refused unless ``overwrite``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from diff_protocol.io import atomic_write as _write_bytes

__all__ = ["atomic_write"]


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[IO[Any]], object],
    *,
    overwrite: bool = False,
    binary: bool = True,
    caller: str = "atomic_write",
) -> Path:
    """Write a file atomically: ``write(f)`` fills a buffer that then replaces ``path``.

    Args:
        path: the destination; its parent directory is created if needed.
        write: a callable receiving a binary (default) or text file object.
        overwrite: allow replacing an existing file.
        binary: give ``write`` a binary (default) or text file object.
        caller: the function name used in error messages.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false; nothing is written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{caller}: path must not exist (pass overwrite=True to replace it), got existing "
            f"{path}"
        )
    buffer: IO[Any] = io.BytesIO() if binary else io.StringIO()
    write(buffer)
    return _write_bytes(path, buffer.getvalue())
