"""Run logging: ``metrics.jsonl`` records (interval means) and the tqdm progress bar.

One JSON object per ``log_every`` steps: ``step`` (completed steps), every metric the step
returned (``loss``, ``grad_norm``, ``ema_decay`` and the losses' own metrics; prefixed
``"{phase}/"`` when a step has several phases), ``lr`` (one default optimiser), ``examples_per_s``,
``wall_s`` and ``skipped``, each metric the mean over the steps of the interval that reported it
(array metrics such as per-λ-bin sums and counts are averaged element-wise, so ``sum/count``
ratios stay exact). Records are appended as they come; on resume
the file is rewritten atomically keeping the records with ``step ≤`` the restored step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from diff_protocol.io import atomic_write

__all__ = ["MetricsAccumulator", "MetricsLog", "read_metrics"]

# Per-step bookkeeping that is not averaged into the records.
_SKIP = frozenset({"finite"})


def _jsonable(v: Any) -> Any:
    a = np.asarray(v)
    if a.ndim == 0:
        x = a.item()
        if isinstance(x, float) and not np.isfinite(x):
            return str(x)
        return x
    return [_jsonable(e) for e in a]


class MetricsAccumulator:
    """Collects per-step metric dicts (device arrays, no host sync) and averages them."""

    def __init__(self) -> None:
        self._items: list[Mapping[str, Any]] = []

    def add(self, metrics: Mapping[str, Any]) -> None:
        self._items.append({k: v for k, v in metrics.items() if k not in _SKIP})

    def __len__(self) -> int:
        return len(self._items)

    def mean(self) -> dict[str, Any]:
        """Element-wise mean over the collected steps (float64 on the host) of every metric, each
        over the steps that reported it (alternating phases report on some steps only); empties
        the buffer."""
        if not self._items:
            return {}
        host = jax.device_get(self._items)
        self._items = []
        keys: dict[str, None] = {}
        for h in host:
            keys.update(dict.fromkeys(h))
        return {
            k: np.mean(np.stack([np.asarray(h[k], np.float64) for h in host if k in h]), axis=0)
            for k in keys
        }


class MetricsLog:
    """The run's ``metrics.jsonl`` (only process 0 writes)."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Keep records with ``step <=`` the given step (atomic rewrite); used on resume."""
        if not self.enabled:
            return
        records = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= step]
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
        atomic_write(self.path, text)

    def clear(self) -> None:
        """Start a fresh file (a new run in this directory)."""
        if self.enabled:
            atomic_write(self.path, b"")

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        line = json.dumps({k: _jsonable(v) for k, v in record.items()}, allow_nan=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (missing file: ``[]``; a torn last line is dropped)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line torn by a crash mid-write: everything after it is suspect
    return out
