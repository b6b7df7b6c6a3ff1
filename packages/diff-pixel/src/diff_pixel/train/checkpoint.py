"""Orbax checkpoints of a run: train state, data position and configuration.

Layout: ``out_dir/checkpoints/<step>/{state, data, config}``, written by an Orbax
``CheckpointManager`` (atomic: each step is written to a temporary directory and renamed when
complete, so an interrupted save leaves no half checkpoint; stray temporary directories are not
listed as steps). Items:

* ``state``: the :class:`~diff_pixel.train.state.TrainState` tree
  ``{"graph_state", "ema", "step", "key"}`` (Orbax PyTree, sharding-aware);
* ``data``: the loader's ``state()`` JSON (position and seed);
* ``config``: JSON with the model config, train config, recipe and package versions.

Restore builds the abstract tree from the *current* state's shapes, dtypes and shardings, so a
checkpoint written on 8 devices restores on 1 (and vice versa).
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from diff_pixel.train.config import RESUMABLE_FIELDS
from diff_pixel.train.state import TrainState

__all__ = ["RunCheckpoints", "config_differences", "package_versions"]


class _QuietReadOnly(logging.Filter):
    """Drop Orbax's warning that a directory opened for restoring only is read-only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Given directory is read only" not in record.getMessage()


logging.getLogger("absl").addFilter(_QuietReadOnly())

_PACKAGES = ("diff-pixel", "diff-core", "diff-protocol", "jax", "flax", "optax", "orbax-checkpoint")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that determine a run's numerics."""
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


_ABSENT = object()


def _show(v: Any) -> str:
    return "<absent>" if v is _ABSENT else repr(v)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Fields that differ between a checkpoint's config and the current run's.

    Compares the ``model``, ``recipe`` and ``train`` sections field by field (nested keys joined
    with dots); train fields in :data:`~diff_pixel.train.config.RESUMABLE_FIELDS` may differ.
    Returns lines ``"section.field: checkpoint X, now Y"``.
    """
    lines = []
    for section in ("model", "recipe", "train"):
        a = _flatten(saved.get(section) or {})
        b = _flatten(current.get(section) or {})
        for k in sorted(set(a) | set(b)):
            if section == "train" and k in RESUMABLE_FIELDS:
                continue
            va, vb = a.get(k, _ABSENT), b.get(k, _ABSENT)
            if not _same(va, vb):
                lines.append(f"{section}.{k}: checkpoint {_show(va)}, now {_show(vb)}")
    return lines


def _signature(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """``path -> (shape, dtype)`` with Variable ``value`` wrappers dropped from the paths."""
    out = {}
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype")
    )[0]
    for path, leaf in leaves:
        parts = []
        for p in path:
            name = getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))
            if str(name) != "value":
                parts.append(str(name))
        out["/".join(parts)] = (tuple(int(s) for s in leaf.shape), str(np.dtype(leaf.dtype)))
    return out


class RunCheckpoints:
    """The checkpoints of one run directory (``out_dir/checkpoints``).

    Args:
      out_dir: the run directory.
      keep: number of most recent checkpoints kept.
      read_only: open for restore only (never writes or deletes).
    """

    def __init__(self, out_dir: str | os.PathLike, keep: int = 3, read_only: bool = False) -> None:
        self.directory = Path(out_dir).absolute() / "checkpoints"
        if read_only and not self.directory.is_dir():
            raise ValueError(
                f"RunCheckpoints: out_dir must contain a checkpoints/ folder, got {str(out_dir)!r}"
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(int(keep)),
            enable_async_checkpointing=False,
            read_only=read_only,
            create=not read_only,
            save_interval_steps=0 if read_only else 1,
        )
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "data": ocp.JsonCheckpointHandler(),
            "config": ocp.JsonCheckpointHandler(),
        }
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=handlers
        )

    def steps(self) -> list[int]:
        """Completed checkpoint steps, ascending (temporary directories are not steps)."""
        self.manager.reload()
        return sorted(int(s) for s in self.manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def path(self, step: int) -> Path:
        return self.directory / str(step)

    def save(
        self,
        step: int,
        state: TrainState,
        data_state: Mapping[str, Any],
        config: Mapping[str, Any],
    ) -> Path:
        """Write checkpoint ``step`` (blocking; atomic rename when complete)."""
        self.manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state.as_dict()),
                data=ocp.args.JsonSave(dict(data_state)),
                config=ocp.args.JsonSave(dict(config)),
            ),
            force=True,
        )
        self.manager.wait_until_finished()
        return self.path(step)

    def _step_or_latest(self, step: int | None) -> int:
        steps = self.steps()
        if not steps:
            raise ValueError(
                f"RunCheckpoints: out_dir must hold a checkpoint, got none in {self.directory}"
            )
        if step is None:
            return steps[-1]
        if step not in steps:
            raise ValueError(f"RunCheckpoints: step must be one of {steps}, got {step}")
        return int(step)

    def read_json(self, step: int | None = None) -> tuple[int, dict[str, Any], dict[str, Any]]:
        """``(step, data_state, config)`` of a checkpoint without reading the arrays."""
        step = self._step_or_latest(step)
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(data=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()),
        )
        return step, dict(out.data), dict(out.config)

    def check_structure(self, step: int, like: TrainState) -> None:
        """Raise ``ValueError`` listing arrays whose path, shape or dtype differ from ``like``."""
        meta = self.manager.item_metadata(step)["state"]
        saved = _signature(getattr(meta, "tree", meta))
        current = _signature(like.as_dict())
        problems = []
        for k in sorted(set(saved) | set(current)):
            a, b = saved.get(k), current.get(k)
            if a != b:
                problems.append(f"{k}: checkpoint {a}, now {b}")
        if problems:
            shown = "; ".join(problems[:8]) + (
                f"; ... ({len(problems)} in all)" if len(problems) > 8 else ""
            )
            raise ValueError(
                f"RunCheckpoints.restore: the checkpoint at {self.path(step)} holds a state of "
                f"another model or optimiser: {shown}"
            )

    def restore(self, step: int | None, like: TrainState) -> tuple[int, TrainState, dict, dict]:
        """Restore ``(step, state, data_state, config)`` into ``like``'s shapes and shardings."""
        step = self._step_or_latest(step)
        self.check_structure(step, like)

        def abstract(x: Any) -> Any:
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)

        target = jax.tree.map(abstract, like.as_dict())
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target),
                data=ocp.args.JsonRestore(),
                config=ocp.args.JsonRestore(),
            ),
        )
        return step, TrainState.from_dict(out.state), dict(out.data), dict(out.config)

    def close(self) -> None:
        self.manager.close()
