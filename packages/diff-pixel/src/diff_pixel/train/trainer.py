"""The reusable trainer: any NNX model, any loss function, resumable and data parallel.

Other packages drive it with their own ``loss_fn(model, batch, key, aux) -> (loss, metrics)``
(and, for multi-model schemes, their own ``step_fn``); the trainer owns the optimiser, the EMA,
sharding, checkpoints, logging, progress and sample grids.

Resume is automatic and exact: the data at step ``s`` is a pure function of ``(seed, s)``, the
step key is ``fold_in(key, s)`` and the EMA decay depends on ``s`` only, so on CPU a run that is
killed and restarted with the same command ends bitwise equal to an uninterrupted one.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from diff_pixel.train.checkpoint import RunCheckpoints, config_differences, package_versions
from diff_pixel.train.config import TrainConfig
from diff_pixel.train.logging import MetricsAccumulator, MetricsLog, read_metrics
from diff_pixel.train.sharding import data_mesh, mesh_size, replicate, shard_batch
from diff_pixel.train.state import TrainState, ema_model, init_train_state, train_model
from diff_pixel.train.step import LossFn, StepFn, make_train_step

__all__ = [
    "SampleFn",
    "Trainer",
    "default_optimizer",
    "describe_model",
    "lr_schedule",
    "model_from_description",
]

SampleFn = Callable[[nnx.Module, jax.Array], Any]

# The fixed sampling key of a run is fold_in(key(seed), _SAMPLE_KEY): step keys use fold_in(key, s)
# with s < 2**31 - 1, so the two never collide.
_SAMPLE_KEY = 2**31 - 1


def lr_schedule(config: TrainConfig) -> optax.Schedule:
    """Learning rate at optimiser count ``c`` (updates already applied).

    Linear warm-up ``lr·min(1, (c + 1)/warmup_steps)`` (so the first update is not wasted at
    lr = 0), then constant, or cosine ``lr·½(1 + cos(π·(c − w)/(steps − w)))`` down to 0 at
    ``steps``.
    """
    lr, warm, total = float(config.lr), int(config.warmup_steps), int(config.steps)

    def schedule(count: Any) -> jax.Array:
        c = jnp.asarray(count, jnp.float32)
        ramp = jnp.minimum(1.0, (c + 1.0) / warm) if warm > 0 else jnp.asarray(1.0, jnp.float32)
        if config.lr_decay == "constant":
            return lr * ramp
        span = max(total - warm, 1)
        frac = jnp.clip((c - warm) / span, 0.0, 1.0)
        return lr * ramp * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))

    return schedule


def default_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping (``grad_clip > 0``) followed by AdamW with :func:`lr_schedule`.

    Equal optimiser settings return the identical transformation object, so that trainers of
    equal models have equal graphdefs and share compiled steps.
    """
    fields = ("lr", "warmup_steps", "lr_decay", "b1", "b2", "eps", "weight_decay", "grad_clip")
    key = tuple((f, getattr(config, f)) for f in fields)
    steps = config.steps if config.lr_decay == "cosine" else 0
    return _optimizer(key + (("steps", steps),))


@functools.lru_cache(maxsize=64)
def _optimizer(key: tuple[tuple[str, Any], ...]) -> optax.GradientTransformation:
    config = TrainConfig(batch_size=1, **dict(key))
    adamw = optax.adamw(
        lr_schedule(config),
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
        weight_decay=config.weight_decay,
    )
    if config.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(config.grad_clip), adamw)
    return adamw


def _as_dict(obj: Any, what: str) -> dict[str, Any] | None:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    raise TypeError(f"Trainer: {what} must be a dict or have to_dict(), got {type(obj).__name__}")


def describe_model(model: nnx.Module, model_config: Any = None) -> dict[str, Any]:
    """``{"type": class name, "config": dict}`` stored in checkpoints (from ``model.config``)."""
    cfg = _as_dict(model_config, "model_config")
    if cfg is None:
        own = getattr(model, "config", None)
        if hasattr(own, "to_dict"):
            cfg = dict(own.to_dict())
        elif isinstance(own, Mapping):
            cfg = dict(own)
        else:
            cfg = {}
    return {"type": type(model).__name__, "config": cfg}


def model_from_description(description: Mapping[str, Any]) -> nnx.Module:
    """Rebuild a diff-pixel model from the ``{"type", "config"}`` stored in checkpoints.

    Handles ``ResidualUViT``/``UViT`` (``UViTConfig.from_dict``) and ``MLPDenoiser`` (its
    constructor arguments); other models need ``Trainer.restore(..., model_fn=...)``. Weights
    are initialised with a fixed seed and then overwritten by the restore.
    """
    from diff_pixel import models

    kind = description.get("type") if isinstance(description, Mapping) else None
    cfg = dict(description.get("config") or {}) if isinstance(description, Mapping) else {}
    if kind in ("ResidualUViT", "UViT"):
        return models.build_model(models.UViTConfig.from_dict(cfg))
    if kind == "MLPDenoiser" and cfg:
        return models.MLPDenoiser(**cfg, rngs=nnx.Rngs(0))
    raise ValueError(
        "Trainer.restore: model_fn must be given for a checkpoint of model type "
        f"{kind!r} (diff-pixel rebuilds ResidualUViT, UViT and MLPDenoiser only), got none"
    )


def _jsonable_tree(d: Any) -> Any:
    """Tuples → lists and ±inf → strings, as JSON stores them (so configs compare equal)."""
    if isinstance(d, Mapping):
        return {str(k): _jsonable_tree(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable_tree(v) for v in d]
    if isinstance(d, float) and not math.isfinite(d):
        return str(d)
    if isinstance(d, np.generic):
        return d.item()
    return d


class Trainer:
    """Train an NNX model with a user loss; resumable, data parallel, logged.

    Args:
      model: the NNX model (parameters float32; compute dtype is the model's business).
      loss_fn: ``loss_fn(model, batch, key, aux) -> (loss, metrics)``; ``batch`` holds the
        loader's arrays on device (``x``, ``label``, ``index``, ``slot``); ``key`` is
        ``fold_in(key, step)``.
      config: :class:`TrainConfig`.
      data: a :class:`~diff_pixel.data.Loader` (or anything with ``__next__``, ``state()``
        and ``restore(state)``) yielding this process's share of each global batch.
      aux: frozen pytree passed to ``loss_fn`` as a jit argument (teacher, encoder, ...).
      mesh: a mesh with a ``data_axis`` axis (default: one device).
      data_axis: name of the batch axis of ``mesh``.
      sample_fn: ``sample_fn(ema_model, key) -> images`` or ``(images, labels)``; its grid is
        written every ``sample_every`` steps and at the end (fixed key, comparable grids).
      tx: optax transformation (default :func:`default_optimizer`).
      step_fn: builder with the signature of :func:`~diff_pixel.train.step.train_step_fn`
        replacing the default step (multi-model schemes).
      recipe: the recipe (dict or object with ``to_dict``), stored in checkpoints and compared
        on resume.
      model_config: model config to store (default ``model.config.to_dict()`` if present).
      resume: continue from the latest checkpoint in ``out_dir`` (default); with ``False`` an
        ``out_dir`` that already holds checkpoints is a ``ValueError``.

    Example:
      >>> trainer = Trainer(
      ...     model, loss_fn, TrainConfig(steps=1500, batch_size=128), Loader(digits(), 128, seed=0)
      ... )
      >>> state = trainer.run()  # resumes automatically if out_dir has checkpoints
    """

    def __init__(
        self,
        model: nnx.Module,
        loss_fn: LossFn,
        config: TrainConfig,
        data: Iterator[Mapping[str, Any]],
        *,
        aux: Any = None,
        mesh: Mesh | None = None,
        data_axis: str = "data",
        sample_fn: SampleFn | None = None,
        tx: optax.GradientTransformation | None = None,
        step_fn: Callable[..., StepFn] | None = None,
        recipe: Any = None,
        model_config: Any = None,
        resume: bool = True,
    ) -> None:
        if not isinstance(model, nnx.Module):
            raise TypeError(f"Trainer: model must be an nnx.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"Trainer: loss_fn must be callable, got {type(loss_fn).__name__}")
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
        if sample_fn is not None and not callable(sample_fn):
            raise TypeError(f"Trainer: sample_fn must be callable, got {type(sample_fn).__name__}")
        self.mesh = mesh if mesh is not None else data_mesh(1, data_axis)
        self.data_axis = data_axis
        n_dev = mesh_size(self.mesh, data_axis)
        if config.batch_size % n_dev:
            raise ValueError(
                f"Trainer: batch_size must be divisible by the {n_dev} devices of mesh axis "
                f"{data_axis!r}, got {config.batch_size}"
            )
        self.config = config
        self.loss_fn = loss_fn
        self.data = data
        self.sample_fn = sample_fn
        self.out_dir = Path(config.out_dir)
        self.is_main = jax.process_index() == 0
        self._block_each_step = n_dev > 1 and self.mesh.devices.flat[0].platform == "cpu"
        self._lr_fn = lr_schedule(config) if tx is None else None
        tx = default_optimizer(config) if tx is None else tx

        self.graphdef, state = init_train_state(model, tx, config.seed)
        self.state: TrainState = replicate(state, self.mesh)
        self.aux = replicate(aux, self.mesh) if aux is not None else None
        self._step = make_train_step(
            self.graphdef,
            loss_fn,
            config.ema_decay,
            config.ema_warmup,
            mesh=self.mesh,
            step_fn=step_fn,
        )
        self.run_config = {
            "model": _jsonable_tree(describe_model(model, model_config)),
            "recipe": _jsonable_tree(_as_dict(recipe, "recipe")),
            "train": _jsonable_tree(config.to_dict()),
            "versions": package_versions(),
            "data": {
                "source": str(getattr(getattr(data, "source", None), "name", type(data).__name__)),
                "loader": repr(data),
            },
        }
        self.checkpoints = RunCheckpoints(self.out_dir, keep=config.keep_checkpoints)
        self.metrics_log = MetricsLog(self.out_dir / "metrics.jsonl", enabled=self.is_main)
        self.restored_step: int | None = None
        self._resume(resume)

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
        diffs = config_differences(saved, self.run_config)
        if (
            self.config.lr_decay == "cosine"
            and saved.get("train", {}).get("steps") != self.config.steps
        ):
            diffs.append(
                f"train.steps: checkpoint {saved.get('train', {}).get('steps')!r}, now "
                f"{self.config.steps!r} (the cosine schedule depends on it)"
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

    def _device_step(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        sharded = shard_batch(batch, self.mesh, self.data_axis)
        self.state, metrics = self._step(self.state, sharded, self.aux)
        if self._block_each_step:
            # jax 0.10.2 can deadlock in collectives on forced CPU devices unless each step's
            # output is waited for before the next is dispatched.
            jax.block_until_ready((self.state, metrics))
        if not bool(jax.device_get(metrics["finite"])) and self.config.on_nonfinite == "raise":
            step = int(jax.device_get(self.state.step))
            last = self.checkpoints.latest_step()
            where = str(self.checkpoints.path(last)) if last is not None else "none"
            raise FloatingPointError(f"non-finite loss at step {step}; last checkpoint: {where}")
        return metrics

    def step(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Run one step on ``batch`` (host arrays, this process's share); return host metrics.

        Raises ``FloatingPointError`` on a non-finite loss or gradient when
        ``on_nonfinite="raise"``; with ``"skip"`` the update is discarded (only the step counter
        advances) and ``metrics["finite"]`` is ``False``.
        """
        metrics = self._device_step(batch)
        return {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}

    # -- models --------------------------------------------------------------------------------
    def model(self) -> nnx.Module:
        """A copy of the model with the current raw weights."""
        return train_model(self.graphdef, self.state)

    def ema_model(self) -> nnx.Module:
        """A copy of the model with the EMA weights."""
        return ema_model(self.graphdef, self.state)

    def sample_key(self) -> jax.Array:
        """The run's fixed sampling key (the same for every grid, so grids are comparable)."""
        return jax.random.fold_in(jax.random.key(self.config.seed), _SAMPLE_KEY)

    # -- outputs -------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write a checkpoint at the current step (all processes must call it)."""
        step = self.step_count
        return self.checkpoints.save(step, self.state, self.data.state(), self.run_config)

    def write_samples(self) -> Path | None:
        """Write ``samples/step_{step:07d}.png`` from ``sample_fn`` (process 0); return its path."""
        if self.sample_fn is None:
            return None
        from diff_pixel.images import save_grid

        out = self.sample_fn(self.ema_model(), self.sample_key())
        images, labels = out if isinstance(out, tuple) else (out, None)
        path = self.out_dir / "samples" / f"step_{self.step_count:07d}.png"
        if self.is_main:
            save_grid(
                path,
                np.asarray(jax.device_get(images)),
                labels=None if labels is None else np.asarray(jax.device_get(labels)),
            )
        return path

    def write_loss_curve(self) -> Path | None:
        """Draw ``loss.png`` from ``metrics.jsonl`` (process 0)."""
        from diff_pixel.images import save_loss_curve

        records = read_metrics(self.metrics_log.path)
        if not self.is_main or not records:
            return None
        path = self.out_dir / "loss.png"
        save_loss_curve(path, records)
        return path

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> TrainState:
        """Train up to ``config.steps`` (resuming from ``out_dir`` if it holds checkpoints).

        Logs every ``log_every`` steps and at the end, checkpoints every ``checkpoint_every``
        steps and at the end, writes a sample grid every ``sample_every`` steps and at the end,
        and ``loss.png`` at the end. Returns the final :class:`TrainState`.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        step = self.step_count
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
        try:
            while step < cfg.steps:
                batch = next(self.data)
                metrics = self._device_step(batch)
                step += 1
                n_last += 1
                if cfg.on_nonfinite == "skip" and not bool(jax.device_get(metrics["finite"])):
                    skipped += 1
                acc.add(metrics)
                final = step == cfg.steps
                if step % cfg.log_every == 0 or final:
                    now = time.perf_counter()
                    means = acc.mean()
                    rate = n_last * cfg.batch_size / max(now - t_last, 1e-9)
                    record: dict[str, Any] = {"step": step, "loss": means.pop("loss")}
                    record["grad_norm"] = means.pop("grad_norm")
                    if self._lr_fn is not None:
                        record["lr"] = float(self._lr_fn(step - 1))
                    record["ema_decay"] = means.pop("ema_decay")
                    record["examples_per_s"] = rate
                    record["wall_s"] = now - start
                    record["skipped"] = skipped
                    record.update(means)
                    self.metrics_log.write(record)
                    bar.set_postfix(loss=f"{float(record['loss']):.4f}", img_s=f"{rate:.0f}")
                    t_last, n_last, skipped = now, 0, 0
                if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or final:
                    self.save_checkpoint()
                if (cfg.sample_every and step % cfg.sample_every == 0) or final:
                    self.write_samples()
                bar.update(1)
        finally:
            bar.close()
        self.write_loss_curve()
        return self.state

    # -- loading a finished run ----------------------------------------------------------------
    @classmethod
    def restore(
        cls,
        out_dir: str | Path,
        step: int | None = None,
        *,
        model_fn: Callable[[Mapping[str, Any]], nnx.Module] | None = None,
        tx: optax.GradientTransformation | None = None,
    ) -> tuple[nnx.Module, nnx.Module, dict[str, Any]]:
        """Load ``(model, ema_model, config)`` from a run directory.

        Args:
          out_dir: the run directory.
          step: checkpoint step (default: the latest).
          model_fn: builds the model from the stored ``config["model"]`` description
            (``{"type", "config"}``); default :func:`model_from_description` (diff-pixel's own
            backbones and ``MLPDenoiser``).
          tx: the optimiser the run used, if not the default of its train config.
        """
        checkpoints = RunCheckpoints(out_dir, read_only=True)
        step, _, saved = checkpoints.read_json(step)
        model = (model_from_description if model_fn is None else model_fn)(saved["model"])
        train_cfg = TrainConfig.from_dict(saved["train"])
        tx = default_optimizer(train_cfg) if tx is None else tx
        graphdef, like = init_train_state(model, tx, train_cfg.seed)
        like = replicate(like, data_mesh(1))
        _, state, _, _ = checkpoints.restore(step, like)
        checkpoints.close()
        return train_model(graphdef, state), ema_model(graphdef, state), saved
