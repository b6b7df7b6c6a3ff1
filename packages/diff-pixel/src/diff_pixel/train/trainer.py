"""The reusable trainer: any NNX model, any losses, named optimisers, frozen parts, resumable.

Other packages drive it with their own losses. The trainer knows networks, not methods: what is
trainable (a filter, or named optimisers for alternating schemes), what is frozen (everything no
optimiser selects: no gradient, optimiser state, weight decay or EMA), the method's ``extra``
state, sharding, checkpoints, logging, progress and hooks (pictures, interruptions).

Resume is automatic and exact: the data at step ``s`` is a pure function of ``(seed, s)``, the
step key is ``fold_in(key, s)``, the phases that run at ``s`` and the EMA decays depend on the
step and update counts only, so on CPU a run that is interrupted and restarted with the same
command ends bitwise equal to an uninterrupted one (under its real learning-rate schedule).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from diff_pixel import models
from diff_pixel.train.checkpoint import (
    RunCheckpoints,
    config_differences,
    flat_arrays,
    package_versions,
)
from diff_pixel.train.config import TrainConfig
from diff_pixel.train.hooks import Hook
from diff_pixel.train.logging import MetricsAccumulator, MetricsLog
from diff_pixel.train.optim import DEFAULT_OPTIMIZER, OptimizerSpec, lr_schedule
from diff_pixel.train.sharding import data_mesh, mesh_size, replicate, shard_batch
from diff_pixel.train.spec import LossFn, Phase, StepSpec
from diff_pixel.train.state import TrainState, init_train_state, state_model
from diff_pixel.train.step import make_train_step
from diff_protocol.io import jsonable

__all__ = ["Trainer", "TrainingInterrupted", "describe_model", "restore_arrays"]

# The fixed sampling key of a run is fold_in(key(seed), SAMPLE_KEY): step keys use fold_in(key, s)
# with s < 2**31 - 1, so the two never collide.
SAMPLE_KEY = 2**31 - 1


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during :meth:`Trainer.run`: a checkpoint was written at ``step``."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint written to {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


def _as_dict(obj: Any, what: str) -> dict[str, Any] | None:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    raise TypeError(f"Trainer: {what} must be a dict or have to_dict(), got {type(obj).__name__}")


def describe_model(model: nnx.Module, model_config: Any = None) -> dict[str, Any]:
    """``{"type", "config"}`` stored in checkpoints.

    A model registered under the ``diff.models`` entry points is described by
    :func:`diff_pixel.models.describe` (so :meth:`Trainer.restore` can rebuild it); any other model
    (a container of several networks) by its class name and ``model_config`` (default
    ``model.config.to_dict()`` if it has one); :meth:`Trainer.restore` then needs ``model_fn``.
    """
    if model_config is None:
        try:
            return models.describe(model)
        except TypeError:  # not a registered model: described by its class
            pass
    cfg = _as_dict(model_config, "model_config")
    if cfg is None:
        own = getattr(model, "config", None)
        cfg = (
            _as_dict(own, "model.config")
            if isinstance(own, Mapping) or hasattr(own, "to_dict")
            else {}
        )
    return {"type": type(model).__name__, "config": cfg}


def _loader_name(data: Any) -> str:
    return str(getattr(getattr(data, "source", None), "name", type(data).__name__))


def _progress_key(record: Mapping[str, Any]) -> str | None:
    if "loss" in record:
        return "loss"
    return next((k for k in record if k.endswith("loss")), None)


def restore_arrays(model: nnx.Module, flat: Mapping[tuple[str, ...], Any], what: str) -> None:
    """Write ``{path tuple: array}`` (:func:`flat_arrays`) into ``model`` in place, by variable
    path; every restored path must exist in the model with the same shape."""
    restored = {"/".join(p): a for p, a in flat.items()}
    flat_state = nnx.to_flat_state(nnx.state(model))
    by_path = {"/".join(map(str, p)): (p, v) for p, v in flat_state}
    missing = sorted(set(restored) - set(by_path))
    if missing:
        raise ValueError(
            f"Trainer.restore: the checkpoint's {what} has variables the model lacks: "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''} (another model? pass model_fn)"
        )
    pairs = []
    for k, arr in restored.items():
        p, var = by_path[k]
        if tuple(np.shape(arr)) != tuple(var.shape):
            raise ValueError(
                f"Trainer.restore: {what} variable {k!r} must have shape {tuple(var.shape)}, "
                f"got {tuple(np.shape(arr))}"
            )
        pairs.append((p, var.replace(value=jax.numpy.asarray(arr, var.dtype))))
    if pairs:
        nnx.update(model, nnx.from_flat_state(pairs))


class Trainer:
    """Train an NNX model: named optimisers, frozen parts, method state; resumable, data parallel.

    Args:
      model: the NNX model (parameters float32; compute dtype is the model's business). It may
        hold several networks (a student and an auxiliary, a frozen teacher or encoder).
      loss_fn: ``loss_fn(model, batch, key, aux) -> (loss, metrics)`` for the one-phase case;
        ``batch`` holds the loader's arrays on device (``x``, ``label``, ``index``, ``slot``);
        ``key`` is ``fold_in(run_key, step)``. Give ``phases`` instead for several losses.
      config: :class:`TrainConfig`.
      data: a :class:`~diff_pixel.data.Loader` (or anything with ``__next__``, ``state()`` and
        ``restore(state)``) yielding this process's share of each global batch.
      trainable: filter of the variables the (single, default) optimiser trains; default
        ``nnx.Param``. Everything else is frozen. Not with ``optimizers``.
      tx: the default optimiser's optax transformation (default
        :func:`~diff_pixel.train.default_optimizer` of ``config``). Not with ``optimizers``.
      optimizers: ``{name: OptimizerSpec}`` for several networks (e.g. ``student`` and ``aux``);
        filters must be disjoint.
      phases: the step's :class:`~diff_pixel.train.Phase` list (alternating schemes); default one
        phase running ``loss_fn`` on every optimiser.
      extra: initial method-state pytree (curriculum position, running moments, ...), kept in the
        train state, checkpointed, passed to phases with ``updates_extra=True``.
      aux: frozen pytree passed to the losses as a jit argument (teacher, encoder, ...).
      mesh: a mesh with a ``data_axis`` axis (default: one device).
      data_axis: name of the batch axis of ``mesh``.
      hooks: :class:`~diff_pixel.train.Hook` objects (sample grids, curves, interruption).
      recipe: the recipe (dict or object with ``to_dict``), stored and compared on resume.
      model_config: model description to store instead of the registry's / ``model.config``.
      resume: continue from the latest checkpoint in ``out_dir`` (default); with ``False`` an
        ``out_dir`` that already holds checkpoints is a ``ValueError``.

    Example (a frozen encoder inside the model; only the decoder trains):
      >>> trainer = Trainer(
      ...     model,
      ...     loss_fn,
      ...     TrainConfig(steps=1500, batch_size=128),
      ...     loader,
      ...     trainable=nnx.All(nnx.Param, nnx.Not(nnx.PathContains("encoder"))),
      ... )
      >>> state = trainer.run()  # resumes automatically if out_dir has checkpoints
    """

    def __init__(
        self,
        model: nnx.Module,
        loss_fn: LossFn | None,
        config: TrainConfig,
        data: Iterator[Mapping[str, Any]],
        *,
        trainable: Any = None,
        tx: optax.GradientTransformation | None = None,
        optimizers: Mapping[str, OptimizerSpec] | None = None,
        phases: Sequence[Phase] | None = None,
        extra: Any = None,
        aux: Any = None,
        mesh: Mesh | None = None,
        data_axis: str = "data",
        hooks: Sequence[Hook] = (),
        recipe: Any = None,
        model_config: Any = None,
        resume: bool = True,
    ) -> None:
        if not isinstance(model, nnx.Module):
            raise TypeError(f"Trainer: model must be an nnx.Module, got {type(model).__name__}")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"Trainer: config must be a TrainConfig, got {type(config).__name__}")
        for method in ("__next__", "state", "restore"):
            if not hasattr(data, method):
                raise TypeError(
                    f"Trainer: data must be a Loader-like iterator with state() and restore(), "
                    f"got {type(data).__name__} without {method}"
                )
        data_batch = getattr(data, "batch_size", config.batch_size)
        if data_batch != config.batch_size:
            raise ValueError(
                f"Trainer: batch_size must equal the loader's global batch size {data_batch}, "
                f"got config.batch_size={config.batch_size}"
            )
        optimizers = self._optimizers(trainable, tx, optimizers)
        phases = self._phases(loss_fn, phases, tuple(optimizers))
        hooks = tuple(hooks)
        for h in hooks:
            if not isinstance(h, Hook):
                raise TypeError(
                    f"Trainer: hooks must be diff_pixel.train.Hook objects, got {type(h).__name__}"
                )
        self.mesh = mesh if mesh is not None else data_mesh(1, data_axis)
        self.data_axis = data_axis
        n_dev = mesh_size(self.mesh, data_axis)
        if config.batch_size % n_dev:
            raise ValueError(
                f"Trainer: batch_size must be divisible by the {n_dev} devices of mesh axis "
                f"{data_axis!r}, got {config.batch_size}"
            )
        self.config = config
        self.data = data
        self.hooks = hooks
        self.out_dir = Path(config.out_dir)
        self.is_main = jax.process_index() == 0
        self._block_each_step = n_dev > 1 and self.mesh.devices.flat[0].platform == "cpu"
        default_tx = [n for n, o in optimizers.items() if o.tx is None]
        self._lr_fn = lr_schedule(config) if len(default_tx) == 1 else None
        self.optimizers = {n: o.resolved(config) for n, o in optimizers.items()}
        self.phases = phases

        self.graphdef, state = init_train_state(model, self.optimizers, config.seed, extra)
        self.state: TrainState = replicate(state, self.mesh)
        self.aux = replicate(aux, self.mesh) if aux is not None else None
        self.spec = StepSpec(
            self.graphdef,
            phases,
            tuple(self.optimizers.items()),
            mesh=self.mesh if n_dev > 1 else None,
        )
        self._step = make_train_step(self.spec)
        self.run_config = jsonable(
            {
                "model": describe_model(model, model_config),
                "recipe": _as_dict(recipe, "recipe"),
                "train": config.to_dict(),
                "optimizers": {n: o.describe() for n, o in optimizers.items()},
                "phases": [p.describe() for p in phases],
                "versions": package_versions(),
                "data": {"source": _loader_name(data), "loader": repr(data)},
            }
        )
        self.checkpoints = RunCheckpoints(self.out_dir, keep=config.keep_checkpoints)
        self.metrics_log = MetricsLog(self.out_dir / "metrics.jsonl", enabled=self.is_main)
        self.restored_step: int | None = None
        self.stopped_at: int | None = None
        self._resume(resume)

    @staticmethod
    def _optimizers(
        trainable: Any, tx: Any, optimizers: Mapping[str, OptimizerSpec] | None
    ) -> dict[str, OptimizerSpec]:
        if optimizers is None:
            return {
                DEFAULT_OPTIMIZER: OptimizerSpec(
                    wrt=nnx.Param if trainable is None else trainable, tx=tx
                )
            }
        if trainable is not None or tx is not None:
            raise ValueError(
                "Trainer: give either trainable/tx (one optimiser) or optimizers (several), "
                "got both"
            )
        if not isinstance(optimizers, Mapping) or not optimizers:
            raise TypeError(
                f"Trainer: optimizers must be a non-empty dict name -> OptimizerSpec, "
                f"got {optimizers!r}"
            )
        for name, spec in optimizers.items():
            if not isinstance(name, str) or not name or "/" in name:
                raise ValueError(
                    f"Trainer: optimizer names must be non-empty strings without '/', got {name!r}"
                )
            if not isinstance(spec, OptimizerSpec):
                raise TypeError(
                    f"Trainer: optimizers[{name!r}] must be an OptimizerSpec, "
                    f"got {type(spec).__name__}"
                )
        return dict(optimizers)

    @staticmethod
    def _phases(
        loss_fn: LossFn | None, phases: Sequence[Phase] | None, names: tuple[str, ...]
    ) -> tuple[Phase, ...]:
        if phases is None:
            if loss_fn is None or not callable(loss_fn):
                raise TypeError(
                    f"Trainer: loss_fn must be callable (or phases given), "
                    f"got {type(loss_fn).__name__}"
                )
            return (Phase(loss_fn, names),)
        if loss_fn is not None:
            raise ValueError("Trainer: give either loss_fn or phases, got both")
        return tuple(phases)

    # -- resume --------------------------------------------------------------------------------
    def _resume(self, resume: bool) -> None:
        latest = self.checkpoints.latest_step()
        if latest is None:
            self.metrics_log.truncate_after(0)
            return
        if not resume:
            raise ValueError(
                f"Trainer: out_dir must not hold checkpoints when resume=False, got "
                f"{self.checkpoints.directory} with steps {self.checkpoints.steps()}"
            )
        _, _, saved = self.checkpoints.read_json(latest)
        self.checkpoints.require_resumable(latest, saved)
        diffs = config_differences(saved, self.run_config)
        saved_steps = saved.get("train", {}).get("steps")
        if self.config.lr_decay != "constant" and saved_steps != self.config.steps:
            diffs.append(
                f"train.steps: checkpoint {saved_steps!r}, now {self.config.steps!r} (the "
                f"{self.config.lr_decay} learning-rate schedule depends on it)"
            )
        if diffs:
            raise ValueError(
                f"Trainer: the checkpoint in {self.checkpoints.directory} was written with another "
                "configuration; differing fields: "
                + "; ".join(diffs)
                + ". Use another out_dir or the checkpoint's configuration."
            )
        step, state, data_state, _ = self.checkpoints.restore(latest, self.state)
        self.state = state
        self.data.restore(data_state)
        self.restored_step = step
        self.metrics_log.truncate_after(step)

    # -- stepping ------------------------------------------------------------------------------
    @property
    def step_count(self) -> int:
        """Completed steps."""
        return int(jax.device_get(self.state.step))

    def _device_step(self, batch: Mapping[str, Any], step: int) -> dict[str, Any]:
        sharded = shard_batch(batch, self.mesh, self.data_axis)
        self.state, metrics = self._step(self.state, sharded, self.aux, step=step)
        if self._block_each_step:
            # jax 0.10.2 can deadlock in collectives on forced CPU devices unless each step's
            # output is waited for before the next is dispatched.
            jax.block_until_ready((self.state, metrics))
        if self.config.on_nonfinite == "raise" and not bool(jax.device_get(metrics["finite"])):
            last = self.checkpoints.latest_step()
            where = str(self.checkpoints.path(last)) if last is not None else "none"
            raise FloatingPointError(
                f"non-finite loss at step {step + 1}; last checkpoint: {where}"
            )
        return metrics

    def step(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Run one step on ``batch`` (host arrays, this process's share); return host metrics.

        Raises ``FloatingPointError`` on a non-finite loss or gradient when
        ``on_nonfinite="raise"``; with ``"skip"`` the update is discarded (only the step counter
        advances) and ``metrics["finite"]`` is ``False``.
        """
        metrics = self._device_step(batch, self.step_count)
        return {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}

    def step_cost(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """XLA's cost analysis (``flops``, ``bytes accessed``, ...) of the next step on ``batch``
        (host arrays, as for :meth:`step`), from the lowered program: nothing runs, the state is
        unchanged. Benchmarks divide ``flops`` by the measured step time for TFLOP/s."""
        sharded = shard_batch(batch, self.mesh, self.data_axis)
        return self._step.cost(self.state, sharded, self.aux, step=self.step_count)

    # -- models --------------------------------------------------------------------------------
    def model(self) -> nnx.Module:
        """A copy of the model with the current raw weights."""
        return state_model(self.graphdef, self.state.variables)

    def ema_model(self) -> nnx.Module:
        """A copy of the model with every optimiser's EMA weights (raw where it keeps none)."""
        return state_model(self.graphdef, self.state.variables, self.state.ema)

    def sample_key(self) -> jax.Array:
        """The run's fixed sampling key (the same for every grid, so grids are comparable)."""
        return jax.random.fold_in(jax.random.key(self.config.seed), SAMPLE_KEY)

    # -- outputs -------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write a checkpoint at the current step (all processes must call it)."""
        step = self.step_count
        return self.checkpoints.save(step, self.state, self.data.state(), self.run_config)

    def _record(
        self, step: int, acc: MetricsAccumulator, rate: float, wall: float, skipped: int
    ) -> dict[str, Any]:
        record: dict[str, Any] = {"step": step}
        record.update(acc.mean())
        if self._lr_fn is not None:
            record["lr"] = float(self._lr_fn(step - 1))
        record["examples_per_s"] = rate
        record["wall_s"] = wall
        record["skipped"] = skipped
        return record

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> TrainState:
        """Train up to ``config.steps`` (resuming from ``out_dir`` if it holds checkpoints).

        A run restored from a checkpoint first prints ``resuming from step N of M (PATH)`` to
        stderr (process 0, when ``config.progress``). Logs every ``log_every`` steps and at the
        end; checkpoints every ``checkpoint_every`` steps, at the end and when stopped; calls the
        hooks. A hook's stop request (e.g.
        :class:`~diff_pixel.train.StopAt`) checkpoints and returns; Ctrl-C checkpoints after the
        current step and raises :class:`TrainingInterrupted`. Returns the final
        :class:`TrainState`.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        step = self.step_count
        if self.restored_step is not None and cfg.progress and self.is_main:
            where = self.checkpoints.path(self.restored_step)
            if step >= cfg.steps:
                print(f"run complete: step {step} of {cfg.steps} ({where})", file=sys.stderr)
            else:
                print(f"resuming from step {step} of {cfg.steps} ({where})", file=sys.stderr)
        for h in self.hooks:
            h.on_start(self)
        if step >= cfg.steps:
            return self.state
        bar = tqdm(
            total=cfg.steps,
            initial=step,
            desc="train",
            dynamic_ncols=True,
            disable=not (cfg.progress and self.is_main),
        )
        acc = MetricsAccumulator()
        start = time.perf_counter()
        t_last, n_last, skipped = start, 0, 0
        saved_at = -1
        stop = False
        with _sigint_flag() as interrupted:
            try:
                while step < cfg.steps:
                    batch = next(self.data)
                    metrics = self._device_step(batch, step)
                    step += 1
                    n_last += 1
                    if cfg.on_nonfinite == "skip" and not bool(jax.device_get(metrics["finite"])):
                        skipped += 1
                    acc.add(metrics)
                    for h in self.hooks:
                        stop = bool(h.on_step(self, step, metrics)) or stop
                    stop = stop or interrupted.is_set()
                    final = step == cfg.steps
                    if step % cfg.log_every == 0 or final:
                        now = time.perf_counter()
                        rate = n_last * cfg.batch_size / max(now - t_last, 1e-9)
                        record = self._record(step, acc, rate, now - start, skipped)
                        self.metrics_log.write(record)
                        key = _progress_key(record)
                        if key is not None:
                            bar.set_postfix(loss=f"{float(record[key]):.4f}", img_s=f"{rate:.0f}")
                        for h in self.hooks:
                            h.on_log(self, record)
                        t_last, n_last, skipped = now, 0, 0
                    if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or final or stop:
                        self.save_checkpoint()
                        saved_at = step
                    bar.update(1)
                    if stop:
                        break
            finally:
                bar.close()
            if interrupted.is_set():
                where = self.checkpoints.path(saved_at) if saved_at >= 0 else None
                raise TrainingInterrupted(step, where)
        if stop:
            self.stopped_at = step
            return self.state
        for h in self.hooks:
            h.on_end(self)
        return self.state

    # -- loading a finished run ----------------------------------------------------------------
    @classmethod
    def restore(
        cls,
        out_dir: str | Path,
        step: int | None = None,
        *,
        model_fn: Callable[[Mapping[str, Any]], nnx.Module] | None = None,
    ) -> tuple[nnx.Module, nnx.Module, dict[str, Any]]:
        """Load ``(model, ema_model, config)`` from a run directory (no optimiser needed).

        A checkpoint whose files are damaged raises
        :class:`~diff_pixel.train.DamagedCheckpointError` (a ``ValueError``) naming its step,
        path and the other steps available (load one with ``step=N``).

        Args:
          out_dir: the run directory.
          step: checkpoint step (default: the latest).
          model_fn: builds the model from the stored ``config["model"]`` description
            (``{"type", "config"}``); default :func:`diff_pixel.models.from_description`, which
            rebuilds any model registered under the ``diff.models`` entry points.
        """
        checkpoints = RunCheckpoints(out_dir, read_only=True)
        try:
            step, variables, ema, saved = checkpoints.restore_model_arrays(step)
        finally:
            checkpoints.close()
        build = models.from_description if model_fn is None else model_fn
        model = build(saved["model"])
        if not isinstance(model, nnx.Module):
            raise TypeError(
                f"Trainer.restore: model_fn must return an nnx.Module, got {type(model).__name__}"
            )
        # diff-pixel 0.1 checkpoints (format 1) carry 0.1's parameter paths
        upgrade = models.upgrade_v01_paths if saved["format"] == 1 else dict
        restore_arrays(model, upgrade(flat_arrays(variables)), "variables")
        averaged = nnx.clone(model)
        for name, part in ema.items():
            restore_arrays(averaged, upgrade(flat_arrays(part)), f"EMA of optimizer {name!r}")
        return model, averaged, saved


@contextlib.contextmanager
def _sigint_flag() -> Iterator[threading.Event]:
    """Turn Ctrl-C into a flag checked between steps (the main thread only)."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag.is_set():  # a second Ctrl-C: stop at once
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
