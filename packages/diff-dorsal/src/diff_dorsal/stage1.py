"""Stage 1: train OSRT-lite (slot encoder + slot-mixer decoder) on multi-view scenes.

The loss (:func:`ray_mse_loss`) is the mean squared error of the decoder's RGB on
``rays_per_scene`` random rays of the target views, given the slots of the input views (OSRT,
Sajjadi et al., arXiv 2206.06922). Each step draws ``batch_size`` scenes, splits each scene's
views at random into ``input_views`` inputs and ``target_views`` targets, and draws the rays from
the targets; the draw of step ``s`` is a pure function of ``(seed, s)`` (:class:`RayBatchLoader`),
so a run interrupted and restarted with the same command ends bitwise equal to an uninterrupted
one (diff-pixel's :class:`~diff_pixel.train.Trainer` restores everything else).

Our defaults (the paper's values are not confirmed): 5 input + 5 target views drawn from the 10
of a scene per step, 1024 target rays per scene (the stelzner/osrt port used 2304, OSRT 8192),
batch 8, Adam 4e-4 with 200 warm-up steps and cosine decay, global-norm clipping 1, no EMA.

After stage 1 the encoder is frozen: :func:`load_encoder` gives the trained model and its
``meta`` (with ``"preset"``, which stage 2 checks against its own configuration).
"""

from __future__ import annotations

import dataclasses
import functools
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

from diff_dorsal.batches import SeededBatches, pad_rows
from diff_dorsal.encoder import EncoderConfig
from diff_dorsal.osrt import OSRTLite
from diff_pixel.train import (
    Hook,
    OptimizerSpec,
    RunCheckpoints,
    TrainConfig,
    Trainer,
    read_metrics,
)
from diff_protocol import derive_seed
from diff_protocol.io import atomic_write

__all__ = [
    "RayBatchLoader",
    "Stage1Config",
    "load_encoder",
    "novel_view_psnr",
    "ray_mse_loss",
    "render_views",
    "train_encoder",
]

_VIEW_KEYS = ("images", "origins", "directions")


@dataclass(frozen=True)
class Stage1Config:
    """How stage 1 trains (our defaults for 32² scenes on CPU).

    Attributes:
      encoder: the OSRT-lite architecture (:class:`~diff_dorsal.encoder.EncoderConfig`).
      steps, batch_size: optimiser steps and scenes per step.
      rays_per_scene: target rays per scene per step (drawn without replacement).
      input_views, target_views: views per scene given to the encoder / used as targets.
      view_sampling: ``"random"`` (a fresh split of each scene's views every step) or ``"fixed"``
        (inputs are views ``0..input_views-1``, targets the next ``target_views``).
      lr, warmup_steps, b1, b2, grad_clip: Adam with linear warm-up and cosine decay to 0.
      seed: data stream and step keys; model_seed: initial weights.
      log_every, checkpoint_every, keep_checkpoints: the trainer's records and checkpoints.
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    steps: int = 400
    batch_size: int = 8
    rays_per_scene: int = 1024
    input_views: int = 5
    target_views: int = 5
    view_sampling: str = "random"
    lr: float = 4e-4
    warmup_steps: int = 200
    b1: float = 0.9
    b2: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    model_seed: int = 0
    log_every: int = 1
    checkpoint_every: int = 200
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, EncoderConfig):
            raise ValueError(
                f"Stage1Config: encoder must be an EncoderConfig, got {type(self.encoder).__name__}"
            )
        for name in (
            "batch_size",
            "rays_per_scene",
            "input_views",
            "target_views",
            "log_every",
            "keep_checkpoints",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Stage1Config: {name} must be a positive int, got {v!r}")
        for name in ("steps", "warmup_steps", "seed", "model_seed", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"Stage1Config: {name} must be an int >= 0, got {v!r}")
        if self.view_sampling not in ("random", "fixed"):
            raise ValueError(
                "Stage1Config: view_sampling must be 'random' or 'fixed', "
                f"got {self.view_sampling!r}"
            )
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"Stage1Config: lr must be a positive float, got {self.lr!r}")

    @property
    def preset(self) -> str:
        return self.encoder.preset

    def replace(self, **changes: Any) -> Stage1Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["encoder"] = self.encoder.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Stage1Config:
        d = dict(d)
        if "encoder" in d and not isinstance(d["encoder"], EncoderConfig):
            d["encoder"] = EncoderConfig.from_dict(d["encoder"])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Stage1Config.from_dict: unknown fields {unknown}")
        return cls(**d)

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
            seed=self.seed,
            log_every=self.log_every,
            checkpoint_every=self.checkpoint_every,
            keep_checkpoints=self.keep_checkpoints,
            out_dir=str(out_dir),
            progress=progress,
        )


def _check_arrays(where: str, arrays: Any, min_views: int) -> tuple[int, int, int, int]:
    if not isinstance(arrays, Mapping):
        raise ValueError(
            f"{where}: data must be a dict of arrays (images, origins, directions), "
            f"got {type(arrays).__name__}"
        )
    missing = [k for k in _VIEW_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{where}: data must hold the keys {list(_VIEW_KEYS)}, missing {missing}")
    shape = np.shape(arrays["images"])
    if len(shape) != 5 or shape[-1] != 3:
        raise ValueError(f"{where}: data['images'] must have shape (N, V, h, w, 3), got {shape}")
    for k in ("origins", "directions"):
        if np.shape(arrays[k]) != shape:
            raise ValueError(
                f"{where}: data[{k!r}] must have the images' shape {shape}, got "
                f"{np.shape(arrays[k])}"
            )
    if shape[1] < min_views:
        raise ValueError(
            f"{where}: data must have at least {min_views} views per scene (input + target), "
            f"got {shape[1]}"
        )
    if shape[0] < 1:
        raise ValueError(f"{where}: data must hold at least one scene, got 0")
    return shape[:4]


class RayBatchLoader(SeededBatches):
    """Stage-1 batches for the trainer: input views and target rays of random scenes.

    Batch ``s`` is drawn with ``PCG64(derive_seed(seed, s))``: ``batch_size`` distinct scenes
    (with replacement across steps), a split of each scene's views into inputs and targets, and
    ``rays_per_scene`` distinct target pixels. Keys: ``images, origins, directions`` ``(B, V_in,
    h, w, 3)``, ``target_origins, target_directions, target_rgb`` ``(B, R, 3)``, ``index`` (scene
    ids).
    """

    def __init__(
        self,
        arrays: Mapping[str, Any],
        batch_size: int,
        *,
        input_views: int = 5,
        target_views: int = 5,
        rays_per_scene: int = 1024,
        view_sampling: str = "random",
        seed: int = 0,
    ) -> None:
        n, v, h, w = _check_arrays("RayBatchLoader", arrays, input_views + target_views)
        if rays_per_scene > target_views * h * w:
            raise ValueError(
                f"RayBatchLoader: rays_per_scene must be at most target_views·h·w = "
                f"{target_views * h * w}, got {rays_per_scene}"
            )
        self.arrays = {k: np.asarray(arrays[k], np.float32) for k in _VIEW_KEYS}
        self.n, self.v, self.h, self.w = n, v, h, w
        self.batch_size = int(batch_size)
        self.input_views, self.target_views = int(input_views), int(target_views)
        self.rays_per_scene = int(rays_per_scene)
        self.view_sampling = view_sampling
        self.seed = int(seed)
        self.position = 0

    def batch_at(self, s: int) -> dict[str, np.ndarray]:
        rng = np.random.Generator(np.random.PCG64(derive_seed(self.seed, int(s))))
        b, vi, vt = self.batch_size, self.input_views, self.target_views
        scenes = rng.choice(self.n, b, replace=self.n < b)
        if self.view_sampling == "random":
            order = rng.permuted(np.tile(np.arange(self.v), (b, 1)), axis=1)
        else:
            order = np.tile(np.arange(self.v), (b, 1))
        inp, tgt = order[:, :vi], order[:, vi : vi + vt]
        pix = vt * self.h * self.w
        rays = np.stack([rng.choice(pix, self.rays_per_scene, replace=False) for _ in range(b)])
        out: dict[str, np.ndarray] = {}
        rows = scenes[:, None]
        for k in _VIEW_KEYS:
            a = self.arrays[k]
            out[k] = a[rows, inp]
            t = a[rows, tgt].reshape(b, pix, 3)
            out["target_rgb" if k == "images" else f"target_{k}"] = np.take_along_axis(
                t, rays[:, :, None], axis=1
            )
        out["index"] = scenes.astype(np.int64)
        return out

    def __repr__(self) -> str:
        return (
            f"RayBatchLoader(n_scenes={self.n}, batch_size={self.batch_size}, "
            f"input_views={self.input_views}, target_views={self.target_views}, "
            f"rays_per_scene={self.rays_per_scene}, view_sampling={self.view_sampling!r}, "
            f"seed={self.seed})"
        )


def ray_mse_loss(
    model: OSRTLite, batch: Mapping[str, jax.Array], key: jax.Array, aux: Any = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Stage-1 loss with the trainer's signature: mean over scenes, rays and channels of
    ``(decoder(encoder(inputs), target rays) − target rgb)²``."""
    del aux
    slots = model.encode(batch["images"], batch["origins"], batch["directions"], key=key)
    rgb, _ = model.decoder(slots, batch["target_origins"], batch["target_directions"])
    mse = jnp.mean(jnp.square(rgb - batch["target_rgb"]))
    return mse, {"mse": mse}


def train_encoder(
    data: Mapping[str, Any],
    config: Stage1Config | None = None,
    workdir: str | Path = "runs/stage1",
    *,
    steps: int | None = None,
    progress: bool = True,
    hooks: Sequence[Hook] = (),
) -> tuple[OSRTLite, dict[str, Any]]:
    """Train (or resume) OSRT-lite in ``workdir`` on ``data`` and return ``(model, history)``.

    ``data``: ``images (N, V, h, w, 3)`` in [0, 1] with ``origins`` and ``directions`` of the same
    shape (``SceneDataset.arrays()``). ``steps`` overrides ``config.steps``. A ``workdir`` holding
    a checkpoint of the same configuration resumes from it (bitwise equal to an uninterrupted
    run on CPU); one of another configuration is a ``ValueError`` naming the differing fields.
    ``hooks`` go to the trainer (e.g. ``StopAt(n)``).

    ``history``: per logged step ``"step"``, ``"loss"``, ``"grad_norm"``, ``"lr"`` (numpy arrays,
    the whole run including steps before a resume), plus ``"restored_step"`` and
    ``"stopped_at"`` (int or None) and ``"seconds"`` (this call's training time).
    """
    config = Stage1Config() if config is None else config
    if not isinstance(config, Stage1Config):
        raise ValueError(
            f"train_encoder: config must be a Stage1Config, got {type(config).__name__}"
        )
    steps = config.steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"train_encoder: steps must be an int >= 0, got {steps!r}")
    n = _check_arrays("train_encoder", data, config.input_views + config.target_views)[0]
    out = Path(workdir)
    loader = RayBatchLoader(
        data,
        config.batch_size,
        input_views=config.input_views,
        target_views=config.target_views,
        rays_per_scene=config.rays_per_scene,
        view_sampling=config.view_sampling,
        seed=config.seed,
    )
    model = OSRTLite(config.encoder, rngs=nnx.Rngs(config.model_seed))
    recipe = {"stage1": {**config.to_dict(), "steps": None}, "n_scenes": n}
    trainer = Trainer(
        model,
        ray_mse_loss,
        config.train_config(out, steps, progress),
        loader,
        optimizers={"model": OptimizerSpec(ema_decay=None)},
        hooks=hooks,
        recipe=recipe,
    )
    meta = {
        "preset": config.preset,
        "encoder": config.encoder.to_dict(),
        "stage1": config.to_dict(),
        "n_scenes": n,
        "resolution": int(np.shape(data["images"])[2]),
    }
    atomic_write(out / "encoder.json", json.dumps(meta, indent=2))
    t0 = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - t0
    history = _history(out)
    history.update(
        restored_step=trainer.restored_step, stopped_at=trainer.stopped_at, seconds=seconds
    )
    return trainer.model(), history


def _history(out: Path) -> dict[str, Any]:
    records = read_metrics(out / "metrics.jsonl")
    keys = ("step", "loss", "grad_norm", "lr")
    return {k: np.asarray([r[k] for r in records if k in r], np.float64) for k in keys}


def load_encoder(workdir: str | Path) -> tuple[OSRTLite, dict[str, Any]]:
    """``(model, meta)`` of a stage-1 run directory (its latest checkpoint).

    ``meta``: ``"preset"``, ``"encoder"`` (the :class:`EncoderConfig` as a dict), ``"config"``
    (the :class:`EncoderConfig` itself), ``"step"``, ``"stage1"`` (the training configuration)
    and ``"workdir"``. A directory without a checkpoint is a ``ValueError`` naming it.
    """
    out = Path(workdir)
    latest = None
    if (out / "checkpoints").exists() or out.exists():
        ckpts = RunCheckpoints(out, read_only=True)
        try:
            latest = ckpts.latest_step()
        finally:
            ckpts.close()
    if latest is None:
        raise ValueError(
            f"load_encoder: workdir must hold a stage-1 checkpoint, got none in {str(out)!r}"
        )

    def build(description: Mapping[str, Any]) -> OSRTLite:
        if description.get("type") != "OSRTLite":
            raise ValueError(
                f"load_encoder: the checkpoint in {str(out)!r} must hold an OSRTLite, got "
                f"{description.get('type')!r}"
            )
        return OSRTLite(EncoderConfig.from_dict(description["config"]), rngs=nnx.Rngs(0))

    model, _, saved = Trainer.restore(out, latest, model_fn=build)
    cfg = model.config
    stage1 = (saved.get("recipe") or {}).get("stage1")
    meta = {
        "preset": cfg.preset,
        "encoder": cfg.to_dict(),
        "config": cfg,
        "step": int(latest),
        "stage1": stage1,
        "workdir": str(out),
    }
    return model, meta


@functools.partial(jax.jit, static_argnums=0)
def _render_program(graphdef, state, im, o, d, to, td):
    m = nnx.merge(graphdef, state)
    return m.render(m.encode(im, o, d), to, td)


def render_views(
    model: OSRTLite,
    arrays: Mapping[str, Any],
    input_views: Sequence[int] = range(5),
    target_views: Sequence[int] = range(5, 10),
    *,
    batch_size: int = 16,
    return_weights: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """OSRT-lite's reconstructions of ``target_views`` from ``input_views``: ``(N, V_t, h, w,
    3)`` numpy (and the slot weights ``(N, V_t, h, w, S)`` with ``return_weights``)."""
    inp, tgt = [int(i) for i in input_views], [int(i) for i in target_views]
    n, v, h, w = _check_arrays("render_views", arrays, 1)
    for name, idx in (("input_views", inp), ("target_views", tgt)):
        if not idx or min(idx) < 0 or max(idx) >= v:
            raise ValueError(
                f"render_views: {name} must be non-empty view indices in [0, {v}), got {idx}"
            )
    graphdef, state = nnx.split(model)
    rgbs, weights = [], []
    for s in range(0, n, batch_size):
        m = min(batch_size, n - s)
        # the last chunk is padded to batch_size: one compiled program per shape, kept across calls
        im, o, d = (
            pad_rows(np.asarray(arrays[k][s : s + m], np.float32), batch_size) for k in _VIEW_KEYS
        )
        rgb, wt = _render_program(
            graphdef, state, im[:, inp], o[:, inp], d[:, inp], o[:, tgt], d[:, tgt]
        )
        rgbs.append(np.asarray(rgb)[:m])
        if return_weights:
            weights.append(np.asarray(wt)[:m])
    rgb = np.concatenate(rgbs)
    return (rgb, np.concatenate(weights)) if return_weights else rgb


def _psnr_views(pred: np.ndarray, target: np.ndarray) -> float:
    mse = np.mean(np.square(pred.astype(np.float64) - target.astype(np.float64)), axis=(-3, -2, -1))
    return float(np.mean(-10.0 * np.log10(np.maximum(mse, 1e-12))))


def novel_view_psnr(
    model: OSRTLite,
    arrays: Mapping[str, Any],
    input_views: Sequence[int] = range(5),
    target_views: Sequence[int] = range(5, 10),
    *,
    batch_size: int = 16,
) -> float:
    """Mean over scenes and target views of the per-view PSNR (dB, images in [0, 1]) of
    OSRT-lite's reconstructions of ``target_views`` from ``input_views``."""
    pred = render_views(model, arrays, input_views, target_views, batch_size=batch_size)
    target = np.asarray(arrays["images"])[:, [int(i) for i in target_views]]
    return _psnr_views(pred, target)
