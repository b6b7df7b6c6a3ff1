"""What a demo's figures mean: the ``glossary`` and ``meta`` entries of its ``metrics.json``.

Every package's demo writes its figures to ``metrics.json`` with two reserved keys beside them,
which ``tools/run_demos.py`` renders into ``demo-out/metrics.md`` and the demo prints beside its
figures::

    {
      "class_accuracy": 0.98, ...,                      # the figures (any JSON; nested dicts
                                                        # are named by dotted paths: "a.b")
      "meta": {"expected_s": 300,                       # the demo's expected wall time on
               "budget": "1500 training steps, ..."},   # 2 CPU cores, and what it ran
      "glossary": {
        "class_accuracy": {                             # a figure's name, or a column of a
          "meaning": "share of generated digits ...",  # table of records (e.g. "mmd2")
          "better": "higher",                           # "higher", "lower", "neither" or a
                                                        # phrase such as "closer to 1"
          "expected": "0.95 to 1.0 at 1500 steps"       # the range expected at this budget
        }
      }
    }

:func:`entry` builds one glossary entry (validated), :func:`check_glossary` a whole glossary,
and :func:`describe` formats figures with their entries as plain text for a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["FIELDS", "check_glossary", "describe", "entry"]

#: The fields of one glossary entry, each a non-empty string.
FIELDS = ("meaning", "better", "expected")


def entry(meaning: str, better: str, expected: str) -> dict[str, str]:
    """One glossary entry: what the figure means, which direction is better (``"higher"``,
    ``"lower"``, ``"neither"`` or a phrase such as ``"closer to 1"``) and the range expected at
    the demo's budget."""
    out = {"meaning": meaning, "better": better, "expected": expected}
    for name, value in out.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"entry: {name} must be a non-empty string, got {value!r}")
    return out


def check_glossary(glossary: Any) -> dict[str, dict[str, str]]:
    """Validate a glossary (``{figure: {meaning, better, expected}}``) and return it as dicts."""
    if not isinstance(glossary, Mapping):
        raise TypeError(f"check_glossary: glossary must be a dict, got {type(glossary).__name__}")
    out = {}
    for name, item in glossary.items():
        if not isinstance(item, Mapping) or set(item) != set(FIELDS):
            raise ValueError(
                f"check_glossary: glossary[{name!r}] must have exactly the fields "
                f"{', '.join(FIELDS)}, got {item!r}"
            )
        out[str(name)] = entry(item["meaning"], item["better"], item["expected"])
    return out


def _value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _better(better: str) -> str:
    if better in ("higher", "lower"):
        return f"{better} is better"
    if better == "neither":
        return "no better direction"
    return f"better: {better}"


def describe(
    glossary: Mapping[str, Mapping[str, str]], values: Mapping[str, Any] | None = None
) -> str:
    """Plain-text lines for a terminal: each figure (with its value when ``values`` has it), the
    better direction and the expected range, then its meaning indented on the next line."""
    lines = []
    width = max((len(k) for k in glossary), default=0)
    for name, item in glossary.items():
        shown = f"  {_value(values[name])}" if values is not None and name in values else ""
        lines.append(
            f"{name:<{width}}{shown}   {_better(item['better'])}; expected {item['expected']}"
        )
        lines.append(f"{'':<4}{item['meaning']}")
    return "\n".join(lines)
