"""File conventions shared by every diff-* package: atomic writes and JSON with infinities.

* :func:`atomic_write` writes through a temporary file in the target folder, ``fsync`` and
  ``os.replace``: a reader sees the old file or the new one, never half of one, and a crash never
  loses the file a user had. The new file gets the permissions ``open()`` would give it (the
  process umask), not ``mkstemp``'s private 0o600.
* :func:`jsonable` / :func:`from_jsonable` map configurations to plain JSON: tuples become lists,
  numpy scalars Python numbers, and ±inf the strings ``"inf"`` / ``"-inf"`` (JSON has no
  infinity; schedules and guidance intervals need it). NaN is refused.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import arg_error

__all__ = ["atomic_write", "dumps_json", "from_jsonable", "jsonable", "loads_json"]


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically; create parent folders.

    Returns the path. The temporary file is removed if anything fails.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise arg_error("atomic_write", "data", "bytes or str", data, TypeError)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def jsonable(value: Any) -> Any:
    """A plain-JSON copy of ``value``: dicts (string keys), lists, str, int, float, bool, None;
    ±inf as ``"inf"``/``"-inf"``; tuples as lists; numpy scalars and 0-d arrays as Python
    numbers. NaN is a ``ValueError``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 0) == 0 and not isinstance(value, (int, float)):
        value = item()
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("jsonable: values must not be NaN, got nan")
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def from_jsonable(value: Any) -> Any:
    """Inverse of :func:`jsonable` for infinities: ``"inf"``/``"-inf"`` become floats (lists stay
    lists; a caller that wants tuples converts its own fields)."""
    if isinstance(value, str):  # never compare arrays with strings (elementwise in numpy)
        return math.inf if value == "inf" else -math.inf if value == "-inf" else value
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: from_jsonable(v) for k, v in value.items()}
    return value


def dumps_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps(jsonable(value), allow_nan=False, sort_keys=True, **kwargs)``."""
    kwargs.setdefault("sort_keys", True)
    return json.dumps(jsonable(value), allow_nan=False, **kwargs)


def loads_json(text: str) -> Any:
    """``from_jsonable(json.loads(text))``."""
    return from_jsonable(json.loads(text))
