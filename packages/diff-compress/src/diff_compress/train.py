"""Training both stages on diff-pixel's trainer, and loading trained models.

Model directory: ``MODEL/codec/{checkpoints/, metrics.jsonl, config.json, coding_tables.npz}`` and
optionally ``MODEL/decoder/{checkpoints/, metrics.jsonl, config.json}``.

- Stage 1: the codec is the trainer's model; loss :func:`~diff_compress.codec.rd_loss`; Adam
  3e-4 with global-norm clipping 1.0 (our default). The coding tables are exported when the run
  completes.
- Stage 2: the trainer's model holds the decoder and the stage-1 codec; only the decoder is
  trainable (``nnx.PathContains("decoder")``), so the codec is frozen (no optimiser state, no EMA
  copy); ``x_mse`` comes from the frozen codec with hard rounding. Adam 2e-4, EMA 0.999 (CPU).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from diff_compress.codec import CodecConfig, CodingTables, MSECodec, export_coding_tables, rd_loss
from diff_compress.data import codec_source
from diff_compress.decoder import DiffusionDecoder, DiffusionDecoderConfig, decoder_loss
from diff_compress.files import save_json
from diff_pixel import Loader, TrainConfig, Trainer
from diff_pixel.train import Hook

__all__ = ["Stage2", "load_codec", "load_decoder", "train_codec", "train_decoder"]


def _codec_loss(model: MSECodec, batch: dict[str, jax.Array], key: jax.Array, aux: Any):
    x = (batch["x"] + 1.0) * 0.5
    return rd_loss(model, x, key)


def train_codec(
    config: CodecConfig,
    data: Any,
    out_dir: str | Path,
    steps: int,
    *,
    crop: int = 64,
    batch: int = 8,
    seed: int = 0,
    lr: float = 3e-4,
    checkpoint_every: int = 500,
    log_every: int = 25,
    hooks: Sequence[Hook] = (),
    progress: bool = True,
) -> Trainer:
    """Train the stage-1 codec into ``out_dir/codec`` (resuming if it holds checkpoints).

    ``data``: ``"offline"``, ``"digits"``, a folder path, or a diff-pixel ``Source``. When the run
    completes, ``config.json`` and ``coding_tables.npz`` are written next to the checkpoints.
    """
    if not isinstance(config, CodecConfig):
        raise TypeError(f"train_codec: config must be a CodecConfig, got {type(config).__name__}")
    source = codec_source(data, crop, config.in_channels) if isinstance(data, (str, Path)) else data
    out = Path(out_dir) / "codec"
    loader = Loader(source, batch, seed=seed)
    tc = TrainConfig(
        steps=steps,
        batch_size=batch,
        lr=lr,
        warmup_steps=0,
        b2=0.999,
        grad_clip=1.0,
        ema_decay=0.999,
        seed=seed,
        log_every=log_every,
        checkpoint_every=checkpoint_every,
        out_dir=str(out),
        progress=progress,
    )
    model = MSECodec(config, nnx.Rngs(seed))
    trainer = Trainer(
        model,
        _codec_loss,
        tc,
        loader,
        hooks=hooks,
        model_config={"codec": config.to_dict(), "crop": crop},
    )
    trainer.run()
    if trainer.stopped_at is None:
        codec = trainer.model()
        tables = export_coding_tables(codec)
        save_json(out / "config.json", config.to_dict())
        tables.save(out / "coding_tables.npz")
    return trainer


def _fingerprint_ok(codec: MSECodec, tables: CodingTables) -> bool:
    import hashlib

    from diff_compress.codec import _decoder_params_bytes

    h = hashlib.sha256()
    h.update(tables.table_bytes())
    h.update(json.dumps(codec.config.to_dict(), sort_keys=True).encode())
    h.update(_decoder_params_bytes(codec))
    return h.digest() == tables.fingerprint


def load_codec(model_dir: str | Path) -> tuple[MSECodec, CodingTables]:
    """``(codec, tables)`` of ``model_dir/codec``; the stored fingerprint must match the loaded
    parameters (a checkpoint and tables of different runs are refused)."""
    d = Path(model_dir) / "codec"
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise ValueError(
            "load_codec: model_dir must hold a trained codec (codec/config.json), "
            f"got {str(model_dir)!r}"
        )
    config = CodecConfig.from_dict(json.loads(cfg_path.read_text()))
    if (d / "params.npz").is_file() and not (d / "checkpoints").exists():
        import numpy as np

        from diff_pixel.train import restore_arrays

        model = MSECodec(config, nnx.Rngs(0))
        with np.load(d / "params.npz", allow_pickle=False) as f:
            flat = {tuple(k.split("/")): f[k] for k in f.files}
        restore_arrays(model, flat, "params.npz")
    else:
        model, _, _ = Trainer.restore(d, model_fn=lambda desc: MSECodec(config, nnx.Rngs(0)))
    tables = CodingTables.load(d / "coding_tables.npz")
    if not _fingerprint_ok(model, tables):
        raise ValueError(
            f"load_codec: coding_tables.npz in {d} does not belong to the checkpoint (fingerprint "
            f"{tables.fingerprint[:4].hex()} does not match the parameters)"
        )
    return model, tables


class Stage2(nnx.Module):
    """The stage-2 training model: the trainable ``decoder`` and the frozen ``codec``."""

    def __init__(self, decoder: DiffusionDecoder, codec: MSECodec) -> None:
        self.decoder = decoder
        self.codec = codec


def _decoder_loss(model: Stage2, batch: dict[str, jax.Array], key: jax.Array, aux: Any):
    x = (batch["x"] + 1.0) * 0.5
    x_mse = jnp.clip(jax.lax.stop_gradient(model.codec(x, train=False).x_hat), 0.0, 1.0)
    return decoder_loss(model.decoder, x, x_mse, key)


def train_decoder(
    decoder_config: DiffusionDecoderConfig,
    model_dir: str | Path,
    data: Any,
    steps: int,
    *,
    batch: int = 16,
    seed: int = 0,
    lr: float = 2e-4,
    ema_decay: float = 0.999,
    checkpoint_every: int = 500,
    log_every: int = 25,
    hooks: Sequence[Hook] = (),
    progress: bool = True,
) -> Trainer:
    """Train the diffusion decoder of the codec in ``model_dir`` into ``model_dir/decoder``."""
    codec, _ = load_codec(model_dir)
    crop = decoder_config.crop
    if crop % codec.config.pad_multiple:
        raise ValueError(
            f"train_decoder: crop must be a multiple of the codec's {codec.config.pad_multiple} "
            f"(the MSE reconstruction of a training crop is computed unpadded), got {crop}"
        )
    source = (
        codec_source(data, crop, codec.config.in_channels)
        if isinstance(data, (str, Path))
        else data
    )
    out = Path(model_dir) / "decoder"
    loader = Loader(source, batch, seed=seed)
    tc = TrainConfig(
        steps=steps,
        batch_size=batch,
        lr=lr,
        warmup_steps=0,
        b2=0.999,
        grad_clip=1.0,
        ema_decay=ema_decay,
        seed=seed,
        log_every=log_every,
        checkpoint_every=checkpoint_every,
        out_dir=str(out),
        progress=progress,
    )
    model = Stage2(DiffusionDecoder(decoder_config, seed=seed), codec)
    trainer = Trainer(
        model,
        _decoder_loss,
        tc,
        loader,
        trainable=nnx.All(nnx.Param, nnx.PathContains("decoder")),
        hooks=hooks,
        model_config={"decoder": decoder_config.to_dict(), "codec": codec.config.to_dict()},
    )
    trainer.run()
    if trainer.stopped_at is None:
        save_json(out / "config.json", decoder_config.to_dict())
    return trainer


def load_decoder(model_dir: str | Path) -> tuple[DiffusionDecoder, DiffusionDecoderConfig]:
    """The EMA decoder of ``model_dir/decoder`` and its config."""
    d = Path(model_dir) / "decoder"
    cfg = DiffusionDecoderConfig.from_dict(json.loads((d / "config.json").read_text()))
    codec_cfg = CodecConfig.from_dict(
        json.loads((Path(model_dir) / "codec" / "config.json").read_text())
    )

    def build(desc: Any) -> Stage2:
        return Stage2(DiffusionDecoder(cfg), MSECodec(codec_cfg, nnx.Rngs(0)))

    _, ema, _ = Trainer.restore(d, model_fn=build)
    return ema.decoder, cfg
