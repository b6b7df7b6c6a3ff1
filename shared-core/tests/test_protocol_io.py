"""diff_protocol.io: atomic writes keep the old file on failure and the umask's permissions; JSON
with infinities round-trips."""

from __future__ import annotations

import math
import os
import stat

import numpy as np
import pytest

from diff_protocol.io import atomic_write, dumps_json, from_jsonable, jsonable, loads_json


def test_atomic_write_replaces_and_keeps_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    atomic_write(target, "first")
    old = os.umask(0o027)
    try:
        atomic_write(target, b"second")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_atomic_write_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "file.txt"
    atomic_write(target, "kept")
    with pytest.raises(TypeError, match="atomic_write: data must be bytes or str"):
        atomic_write(target, 3.5)
    assert target.read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_json_with_infinities_round_trips():
    value = {"interval": (-math.inf, 2.5), "n": np.int64(3), "x": np.float32(0.5), "ok": True}
    plain = jsonable(value)
    assert plain == {"interval": ["-inf", 2.5], "n": 3, "x": 0.5, "ok": True}
    assert type(plain["n"]) is int and type(plain["x"]) is float
    text = dumps_json(value)
    assert "Infinity" not in text
    assert loads_json(text) == {"interval": [-math.inf, 2.5], "n": 3, "ok": True, "x": 0.5}
    assert from_jsonable(["inf", "text"]) == [math.inf, "text"]
    with pytest.raises(ValueError, match="NaN"):
        jsonable({"a": math.nan})
