r"""Stage 2: train the DORSal decoder on diff-pixel's trainer, the slot encoder frozen.

Per example and step (Jabri et al., arXiv 2306.08068; the loss form is Kingma & Gao, arXiv
2303.00848, through diff-core's ``diffusion_loss``):

- the scene's views are split at random into ``input_views`` inputs and ``target_views`` = L
  targets (disjoint; a pure function of ``(seed, step)``, :class:`ViewBatchLoader`);
- slots: ``stop_gradient(encoder.encode(inputs))`` with the frozen OSRT-lite encoder passed as the
  trainer's ``aux`` (a jit argument: no gradient, optimiser state, EMA or checkpoint), or the
  oracle slots of the scene (``slots="oracle"``, :func:`diff_dorsal.encoder.object_slots`);
  either kind goes through the decoder's trained 2-layer slot MLP;
- one t per example (stratified over the batch) shared by its L views, ``z = α x + σ ε`` per view
  with ``x = 2·image − 1``;
- conditioning dropout: with probability ``p_uncond`` every slot is masked (the unconditional
  model of guidance), and each slot independently with ``p_slot`` (0 by default: masking a slot
  whose object stays in the target teaches the decoder to put objects back, against removal
  edits);
- :math:`\ell = \tfrac12 \lVert v - \hat v\rVert^2` averaged over the views' pixels and channels
  (``diffusion_loss(..., prediction="v", weighting=v_mse())``), mean over the batch.

Our defaults (the paper's values are not confirmed): Adam 3e-4 (β 0.9/0.999), 200 warm-up steps,
cosine decay, global-norm clipping 1, EMA 0.999, batch 8, p_uncond 0.1, p_slot 0.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_core import losses as core_losses
from diff_core.weighting import v_mse
from diff_dorsal.batches import SeededBatches
from diff_dorsal.denoiser import DecoderConfig, DorsalDenoiser, build_denoiser, denoiser_from_config
from diff_dorsal.sampling import DEFAULT_SCHEDULE
from diff_pixel.losses import drop_mask, example_keys, noise_batch, stratified_times
from diff_pixel.train import Hook, RunCheckpoints, TrainConfig, Trainer, read_metrics
from diff_protocol import derive_seed
from diff_protocol.io import atomic_write

__all__ = [
    "Stage2Config",
    "ViewBatchLoader",
    "dorsal_loss",
    "load_dorsal",
    "train_dorsal",
]

_VIEW_KEYS = ("images", "origins", "directions")
_SCENE_KEYS = ("kinds", "centres", "sizes", "yaws", "colours", "valid")
_SLOT_SOURCES = ("osrt", "oracle")


def _fail(func: str, arg: str, expected: str, got: Any) -> ValueError:
    return ValueError(f"{func}: {arg} must be {expected}, got {got}")


@dataclass(frozen=True)
class Stage2Config:
    """How stage 2 trains (our defaults for 32² scenes on CPU).

    Attributes:
      decoder: the decoder architecture (:class:`~diff_dorsal.denoiser.DecoderConfig`).
      slots: ``"osrt"`` (the frozen stage-1 encoder's slots) or ``"oracle"`` (the scene's object
        slots; no stage 1 needed).
      encoder_preset: the stage-1 preset a given encoder checkpoint must have.
      max_objects: oracle slot count (slot j = object j).
      p_uncond, p_slot: conditioning dropout (all slots / each slot).
      input_views, target_views: views per scene for the encoder / as the L jointly denoised
        targets (disjoint, random per step).
      steps, batch_size, lr, warmup_steps, b1, b2, grad_clip, ema_decay: the optimiser (Adam,
        linear warm-up, cosine decay to 0, global-norm clipping, EMA).
      seed: data stream and step keys; model_seed: initial weights.
      log_every, checkpoint_every, keep_checkpoints: the trainer's records and checkpoints.
    """

    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    slots: str = "osrt"
    encoder_preset: str = "lite"
    max_objects: int = 6
    p_uncond: float = 0.1
    p_slot: float = 0.0
    input_views: int = 5
    target_views: int = 5
    steps: int = 800
    batch_size: int = 8
    lr: float = 3e-4
    warmup_steps: int = 200
    b1: float = 0.9
    b2: float = 0.999
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    model_seed: int = 0
    log_every: int = 1
    checkpoint_every: int = 200
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        name = "Stage2Config"
        if isinstance(self.decoder, Mapping):
            object.__setattr__(self, "decoder", DecoderConfig.from_dict(self.decoder))
        if not isinstance(self.decoder, DecoderConfig):
            raise _fail(name, "decoder", "a DecoderConfig", type(self.decoder).__name__)
        if self.slots not in _SLOT_SOURCES:
            raise _fail(name, "slots", f"one of {_SLOT_SOURCES}", repr(self.slots))
        if not isinstance(self.encoder_preset, str) or not self.encoder_preset:
            raise _fail(name, "encoder_preset", "a preset name", repr(self.encoder_preset))
        for k in (
            "max_objects",
            "input_views",
            "target_views",
            "batch_size",
            "log_every",
            "keep_checkpoints",
        ):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise _fail(name, k, "a positive int", repr(v))
        for k in ("steps", "warmup_steps", "seed", "model_seed", "checkpoint_every"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _fail(name, k, "an int >= 0", repr(v))
        for k in ("p_uncond", "p_slot"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise _fail(name, k, "a probability in [0, 1)", repr(v))
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise _fail(name, "lr", "a positive float", repr(self.lr))

    def replace(self, **changes: Any) -> Stage2Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["decoder"] = self.decoder.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Stage2Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Stage2Config.from_dict: unknown fields {unknown}")
        return cls(**dict(d))

    def train_config(self, out_dir: str | Path, steps: int, progress: bool) -> TrainConfig:
        return TrainConfig(
            steps=steps,
            batch_size=self.batch_size,
            lr=float(self.lr),
            warmup_steps=self.warmup_steps,
            lr_decay="cosine",
            b1=self.b1,
            b2=self.b2,
            weight_decay=0.0,
            grad_clip=float(self.grad_clip),
            ema_decay=float(self.ema_decay),
            seed=self.seed,
            log_every=self.log_every,
            checkpoint_every=self.checkpoint_every,
            keep_checkpoints=self.keep_checkpoints,
            out_dir=str(out_dir),
            progress=progress,
        )


def _check_data(func: str, data: Any, config: Stage2Config) -> tuple[int, ...]:
    if not isinstance(data, Mapping):
        raise _fail(func, "data", "a dict of arrays (SceneDataset.arrays())", type(data).__name__)
    keys = _VIEW_KEYS + (_SCENE_KEYS if config.slots == "oracle" else ())
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{func}: data must hold the keys {list(keys)}, missing {missing}")
    shape = tuple(np.shape(data["images"]))
    if len(shape) != 5 or shape[-1] != 3:
        raise _fail(func, "data['images']", "of shape (N, V, h, w, 3)", shape)
    for k in ("origins", "directions"):
        if tuple(np.shape(data[k])) != shape:
            raise _fail(func, f"data[{k!r}]", f"of the images' shape {shape}", np.shape(data[k]))
    need = config.input_views + config.target_views
    if shape[1] < need:
        raise _fail(func, "data", f"at least {need} views per scene (input + target)", shape[1])
    size = config.decoder.image_size
    if shape[2:4] != (size, size):
        raise _fail(func, "data['images']", f"{size}x{size} views (the decoder's)", shape[2:4])
    if shape[0] < 1:
        raise _fail(func, "data", "at least one scene", 0)
    return shape


class ViewBatchLoader(SeededBatches):
    """Stage-2 batches: batch ``s`` from ``PCG64(derive_seed(seed, s))``.

    ``batch_size`` distinct scenes, each with a random split of its views into ``input_views``
    inputs and ``target_views`` targets. Keys: ``images, origins, directions`` (B, L, h, w, 3) of
    the targets (images in [0, 1]); ``input_images, input_origins, input_directions``
    (B, V_in, h, w, 3) (``slots="osrt"``) or ``slots (B, S, 11), slot_mask (B, S)`` (oracle);
    ``index`` the global example numbers ``s·B + j`` (every random draw of the loss for example j
    comes from them), ``slot`` (0..B−1), ``scene`` (scene ids) and ``target_ids``, ``input_ids``
    (the views drawn).
    """

    def __init__(self, data: Mapping[str, Any], config: Stage2Config) -> None:
        n = _check_data("ViewBatchLoader", data, config)[0]
        self.arrays = {k: np.asarray(data[k], np.float32) for k in _VIEW_KEYS}
        self.oracle = config.slots == "oracle"
        if self.oracle:
            from diff_dorsal.encoder import object_slots

            scene = {k: np.asarray(data[k]) for k in _SCENE_KEYS}
            self.slots, self.slot_mask = object_slots(scene, config.max_objects)
        self.n, self.v = n, int(np.shape(data["images"])[1])
        self.batch_size = config.batch_size
        self.input_views, self.target_views = config.input_views, config.target_views
        self.seed = int(config.seed)
        self.position = 0

    def batch_at(self, s: int) -> dict[str, np.ndarray]:
        rng = np.random.Generator(np.random.PCG64(derive_seed(self.seed, int(s))))
        b, vi, vt = self.batch_size, self.input_views, self.target_views
        scenes = rng.choice(self.n, b, replace=self.n < b)
        order = rng.permuted(np.tile(np.arange(self.v), (b, 1)), axis=1)
        inp, tgt = order[:, :vi], order[:, vi : vi + vt]
        rows = scenes[:, None]
        out: dict[str, np.ndarray] = {}
        for k in _VIEW_KEYS:
            out[k] = self.arrays[k][rows, tgt]
            if not self.oracle:
                out[f"input_{k}"] = self.arrays[k][rows, inp]
        if self.oracle:
            out["slots"] = self.slots[scenes]
            out["slot_mask"] = self.slot_mask[scenes]
        out["target_ids"] = tgt.astype(np.int32)
        out["input_ids"] = inp.astype(np.int32)
        out["index"] = np.arange(s * b, (s + 1) * b, dtype=np.int64)
        out["slot"] = np.arange(b, dtype=np.int32)
        out["scene"] = scenes.astype(np.int64)
        return out

    def __repr__(self) -> str:
        return (
            f"ViewBatchLoader(n_scenes={self.n}, batch_size={self.batch_size}, "
            f"input_views={self.input_views}, target_views={self.target_views}, "
            f"oracle={self.oracle}, seed={self.seed})"
        )


def _encoder_slots(aux: Any, batch: Mapping[str, jax.Array]) -> jax.Array:
    if not isinstance(aux, Mapping) or aux.get("encoder") is None:
        raise ValueError(
            "dorsal_loss: aux must be {'encoder': the frozen OSRT-lite} when the batch holds "
            "input views (slots='osrt'), got " + ("None" if aux is None else type(aux).__name__)
        )
    slots = aux["encoder"].encode(
        batch["input_images"], batch["input_origins"], batch["input_directions"]
    )
    return jax.lax.stop_gradient(slots)


def dorsal_loss(
    model: DorsalDenoiser,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    aux: Any = None,
    *,
    p_uncond: float = 0.1,
    p_slot: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The stage-2 loss with diff-pixel's trainer signature (bind ``p_uncond``/``p_slot`` with
    ``functools.partial``; :func:`train_dorsal` does).

    ``batch``: the targets ``images, origins, directions`` (B, L, h, w, 3) (images in [0, 1]);
    either ``slots, slot_mask`` (oracle) or ``input_images, input_origins, input_directions``
    (encoded by ``aux["encoder"]`` under ``stop_gradient``); ``index`` (global example numbers)
    and optionally ``slot`` (positions for stratified t). Streams of example j's key: 0 t,
    1 ε, 2 drop-all, 3 per-slot drop.
    """
    x = 2.0 * jnp.asarray(batch["images"], jnp.float32) - 1.0
    keys = example_keys(key, batch["index"])
    t = stratified_times(keys, batch.get("slot"))
    eps = noise_batch(keys, x.shape)
    z, lam, dlam = core_losses.training_inputs(DEFAULT_SCHEDULE, x, t, eps)
    if "slots" in batch:
        slots = jax.lax.stop_gradient(jnp.asarray(batch["slots"], jnp.float32))
        mask = jnp.asarray(batch["slot_mask"], bool)
    else:
        slots = _encoder_slots(aux, batch)
        mask = jnp.ones(slots.shape[:2], bool)
    drop = drop_mask(keys, p_uncond)
    keep = jnp.logical_not(drop)[:, None]
    if p_slot > 0:
        s = slots.shape[1]
        slot_drop = jax.vmap(
            lambda k: jax.random.bernoulli(jax.random.fold_in(k, 3), p_slot, (s,))
        )(keys)
        keep = keep & jnp.logical_not(slot_drop)
    mask = mask & keep
    cond = {
        "slots": slots,
        "slot_mask": mask,
        "origins": jnp.asarray(batch["origins"], jnp.float32),
        "directions": jnp.asarray(batch["directions"], jnp.float32),
    }
    if "poses" in batch:
        cond["poses"] = batch["poses"]
    out = model(z, lam, cond, dropout_key=jax.random.fold_in(key, 2**31 - 3))
    ell = core_losses.diffusion_loss(out, x, eps, lam, dlam, prediction="v", weighting=v_mse())
    loss = jnp.mean(ell)
    return loss, {"loss": loss, "drop_rate": jnp.mean(drop.astype(jnp.float32))}


@dataclass(frozen=True)
class _Loss:
    """``dorsal_loss`` with its dropout rates bound (hashable, so equal runs share a compiled
    step)."""

    p_uncond: float
    p_slot: float

    def __call__(self, model, batch, key, aux=None):
        return dorsal_loss(model, batch, key, aux, p_uncond=self.p_uncond, p_slot=self.p_slot)


class _Losses(Hook):
    """Keeps every step's loss of this call (host floats)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.losses: list[Any] = []

    def on_step(self, trainer: Any, step: int, metrics: Mapping[str, Any]) -> None:
        self.steps.append(step)
        self.losses.append(metrics["loss"])


def _resolve_encoder(config: Stage2Config, encoder: Any) -> tuple[Any, str | None]:
    """``(OSRTLite or None, encoder_dir or None)``; refuses an encoder of another preset."""
    if config.slots == "oracle":
        return None, None
    if encoder is None:
        raise ValueError(
            "train: encoder must be a stage-1 workdir or an OSRTLite when slots='osrt', got None"
        )
    if isinstance(encoder, (str, Path)):
        from diff_dorsal.stage1 import load_encoder

        model, meta = load_encoder(encoder)
        if meta.get("preset") != config.encoder_preset:
            raise ValueError(
                f"train: encoder checkpoint {encoder} has preset {meta.get('preset')!r}, config "
                f"asks for {config.encoder_preset!r}"
            )
        return model, str(encoder)
    preset = getattr(getattr(encoder, "config", None), "preset", None)
    if not callable(getattr(encoder, "encode", None)):
        raise TypeError(
            f"train: encoder must be an OSRTLite or a stage-1 workdir, got {type(encoder).__name__}"
        )
    if preset is not None and preset != config.encoder_preset:
        raise ValueError(
            f"train: encoder has preset {preset!r}, config asks for {config.encoder_preset!r}"
        )
    return encoder, None


def _copy(model: nnx.Module) -> nnx.Module:
    graphdef, state = nnx.split(model)
    return nnx.merge(graphdef, jax.tree.map(lambda a: jnp.array(a, copy=True), state))


def train_dorsal(
    data: Mapping[str, Any],
    config: Stage2Config | None = None,
    workdir: str | Path = "runs/stage2",
    *,
    encoder: Any = None,
    steps: int | None = None,
    progress: bool = True,
    hooks: Sequence[Hook] = (),
) -> tuple[DorsalDenoiser, dict[str, Any]]:
    """Train (or resume) the DORSal decoder in ``workdir``; returns ``(ema_model, history)``.

    ``data``: ``SceneDataset.arrays()`` (``images`` in [0, 1], ``origins``, ``directions``; the
    padded scene keys for ``slots="oracle"``). ``encoder``: a stage-1 workdir (its preset must be
    ``config.encoder_preset``) or an OSRTLite, frozen (``slots="osrt"``); ignored for oracle slots.
    ``steps`` overrides ``config.steps``. A workdir holding a checkpoint of the same configuration
    resumes from it (bitwise equal to an uninterrupted run on CPU). ``hooks`` go to the trainer
    (e.g. ``StopAt(n)``).

    ``history``: ``"step"``, ``"loss"`` (every step of this call, numpy), ``"logged_step"``,
    ``"logged_loss"`` (``metrics.jsonl``, the whole run), ``"restored_step"``, ``"stopped_at"``,
    ``"seconds"`` and ``"trainer"`` (the :class:`~diff_pixel.train.Trainer`; ``.model()`` is the
    raw model).
    """
    config = Stage2Config() if config is None else config
    if not isinstance(config, Stage2Config):
        raise TypeError(f"train_dorsal: config must be a Stage2Config, got {type(config).__name__}")
    steps = config.steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise _fail("train_dorsal", "steps", "an int >= 0", repr(steps))
    shape = _check_data("train_dorsal", data, config)
    enc, encoder_dir = _resolve_encoder(config, encoder)
    out = Path(workdir)
    loader = ViewBatchLoader(data, config)
    if config.slots == "oracle":
        slot_dim = int(loader.slots.shape[-1])
        aux = None
    else:
        slot_dim = (
            int(enc.config.slot_dim)
            if hasattr(enc, "config")
            else int(
                enc.encode(
                    jnp.zeros((1, config.input_views) + shape[2:]),
                    jnp.zeros((1, config.input_views) + shape[2:]),
                    jnp.ones((1, config.input_views) + shape[2:]),
                ).shape[-1]
            )
        )
        aux = {"encoder": _copy(enc)}
    model = build_denoiser(config.decoder, slot_dim, nnx.Rngs(config.model_seed))
    recipe = {
        "stage2": {**config.to_dict(), "steps": None},
        "n_scenes": shape[0],
        "slot_dim": slot_dim,
    }
    losses = _Losses()
    trainer = Trainer(
        model,
        _Loss(float(config.p_uncond), float(config.p_slot)),
        config.train_config(out, steps, progress),
        loader,
        aux=aux,
        hooks=(*hooks, losses),
        recipe=recipe,
    )
    meta = {
        "stage2": config.to_dict(),
        "slot_dim": slot_dim,
        "slots": config.slots,
        "encoder_dir": encoder_dir,
        "encoder_preset": config.encoder_preset if config.slots == "osrt" else None,
        "n_scenes": shape[0],
        "resolution": int(shape[2]),
    }
    atomic_write(out / "dorsal.json", json.dumps(meta, indent=2))
    t0 = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - t0
    records = read_metrics(out / "metrics.jsonl")
    history = {
        "step": np.asarray(losses.steps, np.int64),
        "loss": np.asarray([float(v) for v in jax.device_get(losses.losses)], np.float64),
        "logged_step": np.asarray([r["step"] for r in records if "loss" in r], np.int64),
        "logged_loss": np.asarray([r["loss"] for r in records if "loss" in r], np.float64),
        "restored_step": trainer.restored_step,
        "stopped_at": trainer.stopped_at,
        "seconds": seconds,
        "trainer": trainer,
    }
    return trainer.ema_model(), history


def load_dorsal(
    workdir: str | Path, step: int | None = None
) -> tuple[DorsalDenoiser, DorsalDenoiser, dict[str, Any]]:
    """``(model, ema_model, meta)`` of a stage-2 run directory (latest checkpoint or ``step``).

    ``meta`` is ``dorsal.json`` (``"stage2"`` config dict, ``"slot_dim"``, ``"slots"``,
    ``"encoder_dir"`` — load the frozen encoder with :func:`diff_dorsal.stage1.load_encoder` —
    ...) plus ``"config"`` (the :class:`Stage2Config`) and ``"step"``.
    """
    out = Path(workdir)
    path = out / "dorsal.json"
    if not path.is_file():
        raise ValueError(
            f"load_dorsal: workdir must hold a stage-2 run (dorsal.json), got none in {str(out)!r}"
        )
    meta = json.loads(path.read_text())
    if step is None:
        ckpts = RunCheckpoints(out, read_only=True)
        try:
            step = ckpts.latest_step()
        finally:
            ckpts.close()
        if step is None:
            raise ValueError(
                f"load_dorsal: workdir must hold a checkpoint, got none in {str(out)!r}"
            )
    model, ema, _ = Trainer.restore(out, step, model_fn=denoiser_from_config)
    meta["config"] = Stage2Config.from_dict(meta["stage2"])
    meta["step"] = int(step)
    return model, ema, meta
