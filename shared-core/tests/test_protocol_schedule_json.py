"""Schedule protocol and JSON form (diff_protocol.schedule): the protocol part of check 11.

The schedules here are defined in the test and registered at run time with
``diff_protocol.register``, so the round trips need no diff-core. The diff-core row of §3.13
(``schedule_from_dict({"name": "cosine", "foo": 1})``) runs when diff-core is installed.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import re

import numpy as np
import pytest

import diff_protocol as dp

INF = math.inf
LOGIT = "protocol_test_logit"
KNOTS = "protocol_test_knots"


class LogitSchedule:
    """``λ(t) = clip(shift + slope·ln((1 − t)/t), logsnr_min, logsnr_max)`` (numpy only).

    Untruncated (the default) it reaches λ(0) = +inf and λ(1) = −inf, the case the JSON form must
    carry as the strings "inf"/"-inf".
    """

    name = LOGIT

    def __init__(self, slope=1.0, shift=0.0, logsnr_min=-INF, logsnr_max=INF):
        if not logsnr_min < logsnr_max:
            raise ValueError("LogitSchedule: logsnr_min must be < logsnr_max")
        self.slope, self.shift = float(slope), float(shift)
        self.logsnr_min, self.logsnr_max = float(logsnr_min), float(logsnr_max)

    def logsnr(self, t):
        t = np.asarray(t, dtype=np.float64)
        with np.errstate(divide="ignore"):
            lam = self.shift + self.slope * (np.log1p(-t) - np.log(t))
        return np.clip(lam, self.logsnr_min, self.logsnr_max)

    def t_of(self, logsnr):
        return 1.0 / (1.0 + np.exp((np.asarray(logsnr) - self.shift) / self.slope))

    def dlogsnr_dt(self, t):
        t = np.asarray(t, dtype=np.float64)
        return -self.slope / (t * (1.0 - t))

    @property
    def logsnr_range(self):
        return (float(self.logsnr(1.0)), float(self.logsnr(0.0)))

    def to_dict(self):
        return {
            "name": self.name,
            "slope": self.slope,
            "shift": self.shift,
            "logsnr_min": self.logsnr_min,
            "logsnr_max": self.logsnr_max,
        }


class KnotSchedule:
    """Piecewise linear λ between uniform knots; the knot list may carry infinite ends."""

    name = KNOTS

    def __init__(self, logsnr, meta=None):
        self.knots = [float(v) for v in logsnr]
        self.meta = meta

    def logsnr(self, t):
        t = np.asarray(t, dtype=np.float64)
        grid = np.linspace(0.0, 1.0, len(self.knots))
        return np.interp(t, grid, self.knots)

    def t_of(self, logsnr):
        grid = np.linspace(0.0, 1.0, len(self.knots))
        return np.interp(-np.asarray(logsnr, dtype=np.float64), -np.asarray(self.knots), grid)

    def dlogsnr_dt(self, t):
        n = len(self.knots)
        k = np.clip(np.floor(np.asarray(t) * (n - 1)), 0, n - 2).astype(int)
        knots = np.asarray(self.knots)
        return (knots[k + 1] - knots[k]) * (n - 1)

    @property
    def logsnr_range(self):
        return (self.knots[-1], self.knots[0])

    def to_dict(self):
        return {"name": self.name, "logsnr": self.knots, "meta": self.meta}


@pytest.fixture(autouse=True)
def _registered():
    dp.register("diff.schedules", LOGIT, LogitSchedule, overwrite=True)
    dp.register("diff.schedules", KNOTS, KnotSchedule, overwrite=True)


TS = np.linspace(0.0, 1.0, 1000)


@pytest.mark.parametrize(
    "schedule",
    [
        LogitSchedule(),
        LogitSchedule(slope=1.7, shift=-0.25),
        LogitSchedule(slope=2.0, logsnr_min=-15.0, logsnr_max=15.0),
        LogitSchedule(logsnr_min=-INF, logsnr_max=9.5),
        LogitSchedule(slope=0.1 + 0.2, shift=1 / 3),  # floats that need all 17 digits
    ],
    ids=["untruncated", "shifted", "truncated", "half", "digits"],
)
def test_json_round_trip_reproduces_logsnr_bitwise(schedule):
    text = dp.schedule_to_json(schedule)
    assert "Infinity" not in text and "NaN" not in text
    # strict JSON: any non-finite literal would reach parse_constant
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["name"] == LOGIT
    rebuilt = dp.schedule_from_json(text)
    assert isinstance(rebuilt, LogitSchedule) and rebuilt is not schedule
    assert rebuilt.to_dict() == schedule.to_dict()
    a, b = schedule.logsnr(TS), rebuilt.logsnr(TS)
    assert a.tobytes() == b.tobytes()  # bitwise, infinite ends included
    assert rebuilt.logsnr_range == schedule.logsnr_range
    # the dict form works directly, with floats or the JSON strings for ±inf
    assert dp.schedule_from_dict(schedule.to_dict()).logsnr(TS).tobytes() == a.tobytes()
    assert dp.schedule_from_dict(data).logsnr(TS).tobytes() == a.tobytes()


def test_untruncated_json_text():
    text = dp.schedule_to_json(LogitSchedule())
    assert json.loads(text) == {
        "logsnr_max": "inf",
        "logsnr_min": "-inf",
        "name": LOGIT,
        "shift": 0.0,
        "slope": 1.0,
    }
    assert text == json.dumps(json.loads(text), sort_keys=True)  # keys sorted: stable text
    s = dp.schedule_from_json(text)
    assert s.logsnr_range == (-INF, INF)
    assert s.logsnr(0.0) == INF and s.logsnr(1.0) == -INF
    assert isinstance(s, dp.Schedule)


def test_nested_infinities_in_lists_and_dicts():
    schedule = KnotSchedule([INF, 4.0, -1.5, -INF], meta={"bounds": [-INF, INF], "note": "x"})
    text = dp.schedule_to_json(schedule)
    assert "Infinity" not in text
    assert json.loads(text)["logsnr"] == ["inf", 4.0, -1.5, "-inf"]
    rebuilt = dp.schedule_from_json(text)
    assert rebuilt.knots == [INF, 4.0, -1.5, -INF]
    assert rebuilt.meta == {"bounds": [-INF, INF], "note": "x"}
    finite = np.linspace(0.01, 0.99, 50)
    assert rebuilt.logsnr(finite).tobytes() == schedule.logsnr(finite).tobytes()


def test_schedule_from_dict_accepts_arrays():
    """A dict built by hand may hold numpy arrays; they pass through to the constructor."""
    s = dp.schedule_from_dict({"name": KNOTS, "logsnr": np.array([5.0, 0.0, -5.0])})
    assert s.knots == [5.0, 0.0, -5.0]


def test_schedule_from_dict_errors():
    with pytest.raises(
        TypeError, match=re.escape(f"schedule_from_dict: unknown key 'foo' for '{LOGIT}'")
    ):
        dp.schedule_from_dict({"name": LOGIT, "foo": 1})
    with pytest.raises(
        ValueError, match=re.escape("schedule_from_dict: d must be a dict with a 'name' key")
    ):
        dp.schedule_from_dict({"slope": 1.0})
    with pytest.raises(ValueError, match=re.escape("schedule_from_dict: d must be a dict")):
        dp.schedule_from_dict([("name", LOGIT)])
    with pytest.raises(
        dp.RegistryError, match=re.escape("no diff.schedules plugin named 'no_such'")
    ) as info:
        dp.schedule_from_dict({"name": "no_such"})
    assert LOGIT in str(info.value).split("available:")[1]  # the error lists what exists
    assert isinstance(info.value, LookupError)
    # the constructor's own validation still runs
    with pytest.raises(ValueError, match="logsnr_min must be < logsnr_max"):
        dp.schedule_from_dict({"name": LOGIT, "logsnr_min": 3.0, "logsnr_max": "-inf"})


def test_schedule_json_errors():
    with pytest.raises(
        ValueError, match=re.escape("schedule_to_json: schedule parameters must not be NaN")
    ):
        dp.schedule_to_json(LogitSchedule(shift=math.nan))
    with pytest.raises(
        TypeError, match=re.escape("schedule_to_json: schedule must implement to_dict(), got int")
    ):
        dp.schedule_to_json(3)
    with pytest.raises(
        TypeError, match=re.escape("schedule_from_json: text must be a str, got dict")
    ):
        dp.schedule_from_json({"name": LOGIT})
    with pytest.raises(
        ValueError, match=re.escape("schedule_from_json: text must encode an object, got list")
    ):
        dp.schedule_from_json("[1, 2]")


def test_diff_core_unknown_key_message():
    """§3.13 verbatim: ``schedule_from_dict({"name": "cosine", "foo": 1})``."""
    try:
        importlib.metadata.distribution("diff-core")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("diff-core is not installed")
    with pytest.raises(
        TypeError, match=re.escape("schedule_from_dict: unknown key 'foo' for 'cosine'")
    ):
        dp.schedule_from_dict({"name": "cosine", "foo": 1})
