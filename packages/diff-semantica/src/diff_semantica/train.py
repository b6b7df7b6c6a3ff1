"""Training a Semantica model on pairs with diff-pixel's trainer (the encoder frozen).

The trainer gets a :class:`SemanticaDenoiser` whose encoder weights are
:class:`diff_pixel.train.Frozen` (no gradient, optimiser state, weight decay or EMA copy: only
the backbone's ``nnx.Param`` variables train), :func:`~diff_semantica.model.semantica_loss`, and
a :class:`PairLoader` over the filtered pairs. Batch ``s`` of the loader is a pure function of
``(seed, s)``, so a killed run restarted with the same command ends bitwise equal to an
uninterrupted one on CPU (the trainer restores state, optimiser, step, key and loader position
from its Orbax checkpoint).

Our defaults for 8×8 digits: Adam (β2 0.99) at 1e-3 with 100 warm-up steps and a cosine decay,
global-norm clipping 1, EMA 0.999; 2e-4 for the 32×32 presets.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diff_pixel import TrainConfig, Trainer
from diff_pixel.train import Hook
from diff_protocol import derive_seed
from diff_protocol.io import atomic_write
from diff_semantica.data import GroupedImages
from diff_semantica.encoders import FrozenEncoder, save_encoder
from diff_semantica.filtering import FilterConfig, FilterReport, filter_pairs
from diff_semantica.model import (
    SemanticaConfig,
    SemanticaDenoiser,
    rebuild_denoiser,
    semantica_loss,
)
from diff_semantica.pairs import PairConfig, Pairs, pair_images, sample_pairs, save_pairs

__all__ = ["PairLoader", "RunConfig", "build_pairs", "load_run", "train_semantica"]


class PairLoader:
    """Batches of pairs for the trainer: ``{"x": x_b, "x_a": x_a, "index", "slot"}``.

    Batch ``s`` draws ``batch_size`` pairs uniformly (with replacement) from ``pairs`` with
    ``PCG64(derive_seed(seed, s))``; ``index`` numbers the examples globally (``s·B + j``), so
    every per-example random draw of the loss depends on (seed, s, j) only.
    """

    def __init__(self, pairs: Pairs, data: GroupedImages, batch_size: int, *, seed: int = 0):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"PairLoader: batch_size must be a positive int, got {batch_size!r}")
        if len(pairs) < 1:
            raise ValueError("PairLoader: pairs must hold at least one pair, got none")
        self.x_a, self.x_b = pair_images(pairs, data)
        self.n = len(pairs)
        self.batch_size = batch_size
        self.seed = int(seed)
        self.position = 0  # batches drawn

    def __iter__(self) -> PairLoader:
        return self

    def batch_at(self, s: int) -> dict[str, np.ndarray]:
        rng = np.random.Generator(np.random.PCG64(derive_seed(self.seed, int(s))))
        sel = rng.integers(0, self.n, self.batch_size)
        b = self.batch_size
        return {
            "x": self.x_b[sel],
            "x_a": self.x_a[sel],
            "index": np.arange(s * b, (s + 1) * b, dtype=np.int64),
            "slot": np.arange(b, dtype=np.int32),
        }

    def __next__(self) -> dict[str, np.ndarray]:
        out = self.batch_at(self.position)
        self.position += 1
        return out

    def state(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed, "n_pairs": self.n}

    def restore(self, state: Mapping[str, Any]) -> None:
        if int(state["seed"]) != self.seed or int(state.get("n_pairs", self.n)) != self.n:
            raise ValueError(
                f"PairLoader.restore: the checkpoint's pair stream (seed {state['seed']}, "
                f"{state.get('n_pairs')} pairs) differs from this one (seed {self.seed}, "
                f"{self.n} pairs)"
            )
        self.position = int(state["position"])

    def __repr__(self) -> str:
        return f"PairLoader(n_pairs={self.n}, batch_size={self.batch_size}, seed={self.seed})"


@dataclass(frozen=True)
class RunConfig:
    """How to train (our defaults for digits on 2 CPU cores)."""

    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def train_config(self, out_dir: str | Path, progress: bool = True) -> TrainConfig:
        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            lr_decay="cosine",
            ema_decay=self.ema_decay,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
            log_every=self.log_every,
            out_dir=str(out_dir),
            progress=progress,
        )


def build_pairs(
    data: GroupedImages,
    encoder: Any,
    pair_config: PairConfig,
    filter_config: FilterConfig | None,
    *,
    epoch: int = 0,
) -> tuple[Pairs, FilterReport | None, Pairs]:
    """Candidates of ``epoch`` and, with a filter, the kept ones: ``(kept, report, candidates)``."""
    cand = sample_pairs(data, pair_config, epoch)
    if filter_config is None:
        return cand, None, cand
    kept, report = filter_pairs(cand, data, filter_config, encoder)
    return kept, report, cand


def train_semantica(
    config: SemanticaConfig,
    data: GroupedImages,
    encoder: FrozenEncoder,
    pairs: Pairs | tuple[PairConfig, FilterConfig | None],
    out_dir: str | Path,
    run: RunConfig = RunConfig(),
    *,
    hooks: Sequence[Hook] = (),
    progress: bool = True,
    model_seed: int | None = None,
) -> Trainer:
    """Train (or resume) a :class:`SemanticaDenoiser` in ``out_dir`` and return the trainer.

    ``pairs``: ready pairs, or ``(PairConfig, FilterConfig | None)`` to build (and filter) them
    here; the pairs used are saved as ``out_dir/pairs.npz`` (with ``filter_report.json``), the
    encoder as ``out_dir/encoder/`` and the model configuration in the checkpoints. The model's
    EMA weights are :meth:`Trainer.ema_model`; :func:`load_run` reads a finished run.
    """
    if not isinstance(run, RunConfig):
        raise TypeError(f"train_semantica: run must be a RunConfig, got {type(run).__name__}")
    out = Path(out_dir)
    report = None
    if isinstance(pairs, tuple):
        pc, fc = pairs
        pairs, report, _ = build_pairs(data, encoder, pc, fc)
    if not isinstance(pairs, Pairs):
        raise TypeError(
            "train_semantica: pairs must be Pairs or (PairConfig, FilterConfig), got "
            f"{type(pairs).__name__}"
        )
    model = SemanticaDenoiser(config, encoder, seed=run.seed if model_seed is None else model_seed)
    loader = PairLoader(pairs, data, run.batch_size, seed=run.seed)
    trainer = Trainer(
        model,
        semantica_loss,
        run.train_config(out, progress),
        loader,
        hooks=hooks,
        recipe={"run": run.to_dict(), "n_pairs": len(pairs)},
    )
    if trainer.restored_step is None:
        save_pairs(pairs, out / "pairs.npz")
        if report is not None:
            report.save(out / "filter_report.json")
        try:
            save_encoder(encoder, out / "encoder")
        except TypeError:
            pass  # a CallableEncoder: the user keeps it
        atomic_write(out / "semantica.json", json.dumps(config.to_dict(), indent=2))
    trainer.run()
    return trainer


def load_run(out_dir: str | Path, encoder: FrozenEncoder | None = None, step: int | None = None):
    """``(model, ema_model, saved_config)`` of a run directory; ``encoder`` only for runs with a
    CallableEncoder."""
    return Trainer.restore(out_dir, step, model_fn=lambda d: rebuild_denoiser(d, encoder))
