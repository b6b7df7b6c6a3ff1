"""The ``Schedule`` protocol and its JSON form.

A schedule maps time ``t`` in [0, 1] (0 = data) to log-SNR λ, strictly decreasing, with the
inverse ``t_of`` and the derivative ``dlogsnr_dt``. ``to_dict`` returns the constructor's keyword
arguments plus ``"name"`` (the registry name under ``diff.schedules``), so a schedule saved with a
checkpoint can be rebuilt by any installed package.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Protocol, runtime_checkable

from .arrays import Array
from .io import dumps_json, from_jsonable

__all__ = ["Schedule", "schedule_from_dict", "schedule_from_json", "schedule_to_json"]


@runtime_checkable
class Schedule(Protocol):
    """Noise schedule ``t -> logsnr`` (strictly decreasing), array-API in ``t``."""

    name: str

    def logsnr(self, t: Array) -> Array: ...

    def t_of(self, logsnr: Array) -> Array: ...

    def dlogsnr_dt(self, t: Array) -> Array: ...

    @property
    def logsnr_range(self) -> tuple[float, float]:
        """``(λ(1), λ(0))`` as Python floats; either may be infinite."""
        ...

    def to_dict(self) -> dict[str, Any]: ...


def schedule_to_json(schedule: Schedule) -> str:
    """JSON text of ``schedule.to_dict()``; ±inf are written as the strings ``"inf"``/``"-inf"``."""
    to_dict = getattr(schedule, "to_dict", None)
    if not callable(to_dict):
        raise TypeError(
            f"schedule_to_json: schedule must implement to_dict(), got {type(schedule).__name__}"
        )
    try:
        return dumps_json(to_dict())
    except ValueError:
        raise ValueError(
            "schedule_to_json: schedule parameters must not be NaN, got a NaN parameter"
        ) from None


def schedule_from_json(text: str) -> Schedule:
    """Rebuild a schedule from :func:`schedule_to_json` output."""
    if not isinstance(text, str):
        raise TypeError(f"schedule_from_json: text must be a str, got {type(text).__name__}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"schedule_from_json: text must be JSON, got a parse error: {err}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(
            f"schedule_from_json: text must encode an object, got {type(data).__name__}"
        )
    return schedule_from_dict(from_jsonable(data))


def schedule_from_dict(d: dict[str, Any]) -> Schedule:
    """Look ``d["name"]`` up in the ``diff.schedules`` registry and call it with the other keys.

    Keys that the schedule's constructor does not take are a ``TypeError`` naming the key.
    """
    from .registry import load

    if not isinstance(d, dict) or "name" not in d:
        raise ValueError(f"schedule_from_dict: d must be a dict with a 'name' key, got {d!r}")
    name = d["name"]
    if not isinstance(name, str):
        raise TypeError(f"schedule_from_dict: d['name'] must be a str, got {name!r}")
    rest = {k: from_jsonable(v) for k, v in d.items() if k != "name"}
    cls = load("diff.schedules", name)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        params = {}
    accepts_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not accepts_kwargs:
        for key in rest:
            if key not in params:
                raise TypeError(f"schedule_from_dict: unknown key {key!r} for {name!r}")
    return cls(**rest)
