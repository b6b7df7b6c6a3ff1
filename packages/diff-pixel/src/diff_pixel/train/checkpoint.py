"""Orbax checkpoints of a run: train state, data position and configuration.

Layout: ``out_dir/checkpoints/<step>/{model, train, data, config}``, written by an Orbax
``CheckpointManager`` (atomic: each step is written to a temporary directory and renamed when
complete, so an interrupted save leaves no half checkpoint; stray temporary directories are not
listed as steps). Items:

* ``model``: ``{"variables", "ema"}``, every model variable and the EMA of each optimiser that
  keeps one (what inference needs; readable without knowing the optimisers);
* ``train``: ``{"opt", "count", "step", "key", "extra"}``, the rest of the
  :class:`~diff_pixel.train.state.TrainState`;
* ``data``: the loader's ``state()`` JSON (position and seed);
* ``config``: JSON with ``"format": 2``, the model description, train config, optimisers,
  phases, recipe and package versions.

Restore builds the abstract tree from the *current* state's shapes, dtypes and shardings, so a
checkpoint written on 8 devices restores on 1 (and vice versa). Checkpoints of diff-pixel 0.1
(format 1: one ``state`` item) are refused with a message saying so.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from diff_pixel.train.config import RESUMABLE_FIELDS
from diff_pixel.train.state import TrainState

__all__ = [
    "DamagedCheckpointError",
    "RunCheckpoints",
    "adam_second_moment",
    "config_differences",
    "flat_arrays",
    "package_versions",
]


class DamagedCheckpointError(ValueError):
    """A checkpoint's files cannot be read (truncated, deleted or overwritten).

    The message is one line naming the step, its path, the first line of the underlying error
    and the other steps of the run; ``step``, ``path`` and ``available`` (the other completed
    steps, ascending) let a command line suggest an older one.
    """

    def __init__(self, step: int, path: Path, cause: str, available: list[int]) -> None:
        others = ", ".join(map(str, available)) if available else "none"
        super().__init__(
            f"RunCheckpoints: the checkpoint of step {step} at {path} is damaged and cannot be "
            f"read ({cause}); other steps available: {others}"
        )
        self.step = step
        self.path = path
        self.available = available


def _silence_abandoned_reads(path: Path) -> None:
    """After a failed read, keep the reports of Orbax's abandoned reads off the terminal.

    Each array read still pending when another failed is a coroutine or future that Python
    finalises later (often at exit) with an "Exception ignored in" report, an asyncio "exception
    was never retrieved" log record or a "never awaited" warning, of up to 60 lines each and
    thousands of lines in all. Installed only after a damaged checkpoint was reported, and
    narrow: Orbax's coroutines, asyncio records about this checkpoint's ``path`` or Orbax
    frames, and the warning for Orbax's read coroutine; everything else passes.
    """
    logging.getLogger("asyncio").addFilter(_AbandonedOrbaxFutures(str(path)))
    warnings.filterwarnings(
        "ignore",
        message="coroutine '_read_array_index_and_device_put' was never awaited",
        category=RuntimeWarning,
    )
    previous = sys.unraisablehook
    if getattr(previous, "_diff_pixel_orbax_filter", False):
        return

    def hook(unraisable: Any) -> None:
        code = getattr(unraisable.object, "cr_code", None)
        if "orbax" in str(getattr(code, "co_filename", "")):
            return
        previous(unraisable)

    hook._diff_pixel_orbax_filter = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _from_orbax(exc: BaseException | None) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            if "orbax" in tb.tb_frame.f_code.co_filename:
                return True
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__
    return False


class _AbandonedOrbaxFutures(logging.Filter):
    """Drop asyncio's "exception was never retrieved" reports of Orbax's abandoned reads of
    the damaged checkpoint at ``path``."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "never retrieved" not in message:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return not (self.path in message or self.path in str(exc) or _from_orbax(exc))


@contextlib.contextmanager
def _stderr_held(quiet_s: float = 0.5, max_s: float = 5.0) -> Iterator[None]:
    """Hold file descriptor 2 in a temporary file while Orbax reads a checkpoint.

    Orbax reads every array concurrently; when one read fails, the reads still in flight end on
    TensorStore threads after Orbax's event loop has closed and each prints a "RuntimeError:
    Event loop is closed" traceback, interleaved, for seconds (hundreds to thousands of lines
    for one damaged file). On success what was written meanwhile is replayed to stderr
    unchanged; on failure, once nothing new has been written for ``quiet_s`` seconds (at most
    ``max_s``), it is dropped: the error raised names the damage in one line.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable descriptor 2: nothing to hold
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            start = last_change = time.monotonic()
            size = -1
            while time.monotonic() - last_change < quiet_s and time.monotonic() - start < max_s:
                sys.stderr.flush()
                now = os.fstat(held.fileno()).st_size
                if now != size:
                    size, last_change = now, time.monotonic()
                time.sleep(0.05)
            raise
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not failed:
                held.seek(0)
                data = held.read()
                if data:
                    os.write(2, data)


def _root_cause(exc: BaseException, limit: int = 160) -> str:
    """First line of the innermost cause of ``exc`` (Orbax wraps TensorStore errors), shortened."""
    seen = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


#: Version of the checkpoint layout (diff-pixel 0.1 wrote format 1: a single ``state`` item).
FORMAT = 2
_COMPARED = ("model", "recipe", "train", "optimizers", "phases")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, (list, tuple)) and any(isinstance(v, Mapping) for v in d):
        d = {str(i): v for i, v in enumerate(d)}
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

    Compares the ``model``, ``recipe``, ``train``, ``optimizers`` and ``phases`` sections field by
    field (nested keys joined with dots); train fields in
    :data:`~diff_pixel.train.config.RESUMABLE_FIELDS` may differ. Returns lines
    ``"section.field: checkpoint X, now Y"``.
    """
    lines = []
    for section in _COMPARED:
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


def _model_item(state: TrainState) -> dict[str, Any]:
    return {"variables": state.variables, "ema": state.ema}


def _train_item(state: TrainState) -> dict[str, Any]:
    return {
        "opt": state.opt,
        "count": state.count,
        "step": state.step,
        "key": state.key,
        "extra": state.extra,
    }


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
            "state": ocp.StandardCheckpointHandler(),  # format 1 (diff-pixel 0.1), read only
            "model": ocp.StandardCheckpointHandler(),
            "train": ocp.StandardCheckpointHandler(),
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
                model=ocp.args.StandardSave(_model_item(state)),
                train=ocp.args.StandardSave(_train_item(state)),
                data=ocp.args.JsonSave(dict(data_state)),
                config=ocp.args.JsonSave({**dict(config), "format": FORMAT}),
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

    def _read(self, step: int, read: Any) -> Any:
        """``read()`` with any error of a damaged checkpoint turned into a one-line
        :class:`DamagedCheckpointError` (Orbax and TensorStore raise many types, with
        multi-line messages)."""
        try:
            with _stderr_held():
                return read()
        except Exception as exc:  # orbax raises several types for missing/damaged items
            _silence_abandoned_reads(self.path(step))
            others = [s for s in self.steps() if s != step]
            raise DamagedCheckpointError(step, self.path(step), _root_cause(exc), others) from exc

    def read_json(self, step: int | None = None) -> tuple[int, dict[str, Any], dict[str, Any]]:
        """``(step, data_state, config)`` of a checkpoint without reading the arrays.

        Raises :class:`DamagedCheckpointError` (a ``ValueError``) for a checkpoint whose files
        are damaged, naming the path and the other steps available. ``config["format"]`` is the
        layout (1 = diff-pixel 0.1).
        """
        step = self._step_or_latest(step)
        out = self._read(
            step,
            lambda: self.manager.restore(
                step,
                args=ocp.args.Composite(data=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()),
            ),
        )
        config = dict(out.config)
        config.setdefault("format", 1)
        if config["format"] not in (1, FORMAT):
            raise ValueError(
                f"RunCheckpoints: the checkpoint at {self.path(step)} has layout format "
                f"{config['format']}, this diff-pixel reads formats 1 and {FORMAT}; upgrade "
                "diff-pixel"
            )
        return step, dict(out.data), config

    def check_structure(self, step: int, like: TrainState) -> None:
        """Raise ``ValueError`` listing arrays whose path, shape or dtype differ from ``like``."""
        meta = self._read(step, lambda: self.manager.item_metadata(step))
        saved, current = {}, {}
        for item, tree in (("model", _model_item(like)), ("train", _train_item(like))):
            m = meta[item]
            saved.update({f"{item}/{k}": v for k, v in _signature(getattr(m, "tree", m)).items()})
            current.update({f"{item}/{k}": v for k, v in _signature(tree).items()})
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
                f"another model, optimiser or method state: {shown}"
            )

    def require_resumable(self, step: int, config: Mapping[str, Any]) -> None:
        """``ValueError`` for a diff-pixel 0.1 checkpoint (format 1), which cannot be resumed."""
        if config.get("format", 1) == 1:
            raise ValueError(
                f"RunCheckpoints: the checkpoint at {self.path(step)} was written by diff-pixel "
                "0.1 (train-state format 1); diff-pixel 0.2 cannot resume its training (the state "
                "now keeps named optimisers, EMAs and method state). Its weights still load for "
                "sampling (Trainer.restore, diff-pixel sample); start a new run in another out_dir"
            )

    def restore(self, step: int | None, like: TrainState) -> tuple[int, TrainState, dict, dict]:
        """Restore ``(step, state, data_state, config)`` into ``like``'s shapes and shardings.

        A diff-pixel 0.1 checkpoint cannot be resumed (its state has no named optimisers): a
        ``ValueError`` says so and points to :meth:`restore_model_arrays`, which reads its weights.
        Damaged files raise :class:`DamagedCheckpointError` naming the step and the other steps.
        """
        step, _, config = self.read_json(step)
        self.require_resumable(step, config)
        self.check_structure(step, like)

        def abstract(x: Any) -> Any:
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)

        out = self._read(
            step,
            lambda: self.manager.restore(
                step,
                args=ocp.args.Composite(
                    model=ocp.args.StandardRestore(jax.tree.map(abstract, _model_item(like))),
                    train=ocp.args.StandardRestore(jax.tree.map(abstract, _train_item(like))),
                    data=ocp.args.JsonRestore(),
                    config=ocp.args.JsonRestore(),
                ),
            ),
        )
        state = TrainState(**out.model, **out.train)
        return step, state, dict(out.data), dict(out.config)

    def restore_model_arrays(self, step: int | None = None) -> tuple[int, dict, dict, dict]:
        """``(step, variables, ema, config)``: nested dicts of arrays (no optimiser needed), what
        :meth:`Trainer.restore <diff_pixel.train.Trainer.restore>` writes into a model.

        ``ema`` maps optimiser names to their EMA trees. A diff-pixel 0.1 checkpoint (format 1)
        reads too: its model variables and its single EMA (as optimiser ``"model"``); its paths
        are 0.1's (:func:`diff_pixel.models.upgrade_v01_paths` renames them).
        """
        step, _, config = self.read_json(step)
        if config["format"] == 1:
            state = self._untargeted(step, "state")
            graph_state = state["graph_state"]
            variables = graph_state.get("0", graph_state.get(0))
            return step, dict(variables), {"model": dict(state["ema"])}, config
        model = self._untargeted(step, "model")
        return step, dict(model["variables"]), dict(model.get("ema") or {}), config

    def restore_train_arrays(self, step: int | None = None) -> tuple[int, dict, dict]:
        """``(step, train, config)``: the ``train`` item restored without a target, ``{"opt",
        "count", "step", "key", "extra"}`` as saved (optax's named tuples as dicts of their
        fields, chains as lists, empty states as ``None``, Variables as ``{"value": array}``);
        no model or optimiser needed (e.g. an optimiser's moments, a method's state).

        A diff-pixel 0.1 checkpoint (format 1) is a ``ValueError``: its train state has another
        layout.
        """
        step, _, config = self.read_json(step)
        if config["format"] == 1:
            raise ValueError(
                f"RunCheckpoints: the checkpoint at {self.path(step)} was written by diff-pixel "
                "0.1 (train-state format 1); its optimiser and method state are not read"
            )
        return step, dict(self._untargeted(step, "train")), config

    def _untargeted(self, step: int, item: str) -> Any:
        """Array item ``item`` of checkpoint ``step`` restored without a target (nested dicts)."""
        out = self._read(
            step,
            lambda: self.manager.restore(
                step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore()})
            ),
        )
        return out[item]

    def close(self) -> None:
        self.manager.close()


def flat_arrays(arrays: Mapping[str, Any]) -> dict[tuple[str, ...], Any]:
    """``{path tuple: array}`` of arrays restored without a target (nested dicts keyed by path,
    Variables saved with a ``value`` leaf)."""
    flat: dict[tuple[str, ...], Any] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(arrays)[0]:
        parts = tuple(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
        flat[parts[:-1] if parts and parts[-1] == "value" else parts] = leaf
    return flat


_ADAM_FIELDS = frozenset({"count", "mu", "nu"})  # optax.ScaleByAdamState


def _adam_states(tree: Any) -> list[Mapping[str, Any]]:
    if isinstance(tree, Mapping):
        if set(tree) == _ADAM_FIELDS:
            return [tree]
        return [s for v in tree.values() for s in _adam_states(v)]
    if isinstance(tree, (list, tuple)):
        return [s for v in tree for s in _adam_states(v)]
    return []


def adam_second_moment(
    out_dir: str | Path, optimizer: str = "model", step: int | None = None
) -> dict[tuple[str, ...], np.ndarray]:
    """Adam's second-moment estimate ν of one named optimiser of a run, ``{variable path:
    array}`` (:func:`flat_arrays` form; the paths of the variables that optimiser trains).

    Read from checkpoint ``step`` (default: the latest) without building the model; found as the
    one ``optax.ScaleByAdamState`` in the optimiser's state (``adam``, ``adamw`` and chains of
    them, e.g. the default optimiser's clipping + AdamW). A run without that optimiser, an
    optimiser without exactly one Adam state, or a diff-pixel 0.1 checkpoint is a ``ValueError``
    naming what was found.
    """
    checkpoints = RunCheckpoints(out_dir, read_only=True)
    try:
        step, train, _ = checkpoints.restore_train_arrays(step)
    finally:
        checkpoints.close()
    opt = train["opt"]
    if optimizer not in opt:
        raise ValueError(
            f"adam_second_moment: optimizer must be one of the run's optimisers {sorted(opt)}, "
            f"got {optimizer!r}"
        )
    states = _adam_states(opt[optimizer])
    if len(states) != 1:
        raise ValueError(
            f"adam_second_moment: optimizer {optimizer!r} of the checkpoint at "
            f"{checkpoints.path(step)} must keep one Adam state (count, mu, nu), got "
            f"{len(states)}"
        )
    return {k: np.asarray(v) for k, v in flat_arrays(states[0]["nu"]).items()}
