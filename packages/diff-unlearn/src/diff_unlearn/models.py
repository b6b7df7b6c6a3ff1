"""Conditional models for unlearning: a diff-pixel backbone, its pretraining and loading.

The model is any diff-pixel backbone with a condition embedder: class labels
(``UViTConfig.num_classes``; the null label of classifier-free guidance is ``num_classes``) or a
vector such as a prompt embedding (``UViTConfig.vector_dim``, with a learned null vector). It
predicts v; every loss here converts to ε with diff-protocol's ``to_x_eps``.

:func:`pretrain` trains the *original* model θ₀ with diff-pixel's trainer and the SiD2 loss
(``diff_pixel.sid``); :func:`load_run` reads any run of this package (pretraining or
unlearning) back as ``(model, recipe)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_pixel import Loader, LossCurveHook, TrainConfig, Trainer, build_model
from diff_pixel.sid import SiD2Recipe, diffusion_loss, recipe_loss
from diff_pixel.sid.recipes import Recipe, recipe_from_dict
from diff_unlearn.data import PromptTable, UnlearnTask

__all__ = [
    "PROMPT_BANK_FILE",
    "PretrainConfig",
    "PromptLoss",
    "build_conditional",
    "check_conditioning",
    "copy_model",
    "load_prompt_table",
    "load_run",
    "pretrain",
    "pretrain_recipe",
    "save_prompt_table",
]

#: The copy of the prompt bank a prompt-conditioned run keeps in its folder.
PROMPT_BANK_FILE = "prompt_bank.npz"


@dataclass(frozen=True)
class PromptLoss:
    """Pretraining loss of a prompt-conditioned model: diff-pixel's SiD2 ``diffusion_loss`` with
    the batch's condition ids (``label``) replaced by their prompt embeddings (``vector``), so
    the backbone's vector embedder sees them and label dropout uses its learned null vector."""

    recipe: Recipe
    prompts: PromptTable

    def __call__(self, model, batch, key, aux=None):
        rest = {k: v for k, v in batch.items() if k != "label"}
        rest["vector"] = self.prompts.cond(batch["label"]).vector
        return diffusion_loss(model, rest, key, self.recipe, aux)

    @property
    def __name__(self) -> str:
        return f"prompt_diffusion_loss[{self.recipe.name}@{self.recipe.resolution}]"


def check_conditioning(func: str, model: nnx.Module, task: UnlearnTask) -> None:
    """``ValueError`` when ``model``'s conditioning does not fit ``task`` (class count, or the
    prompt embedding width of a prompt task)."""
    cfg = model.config
    if task.prompts is not None:
        if not getattr(cfg, "vector_dim", 0):
            raise ValueError(
                f"{func}: the model must be prompt-conditioned (vector_dim > 0) for a prompt task, "
                f"got a class-conditional model with {cfg.num_classes} classes"
            )
        if cfg.vector_dim != task.prompts.width:
            raise ValueError(
                f"ConditionalDenoiser: embedding width must be {cfg.vector_dim}, got "
                f"{task.prompts.width}"
            )
    elif getattr(cfg, "num_classes", 0) != task.num_classes:
        raise ValueError(
            f"{func}: the model must be a {task.num_classes}-class model, got "
            f"{getattr(cfg, 'num_classes', 0)} classes"
        )


def copy_model(model: nnx.Module) -> nnx.Module:
    """A copy of ``model`` with its own buffers (the trainer donates its state, so a model it
    trains must not share arrays with one that is read elsewhere)."""
    graphdef, state = nnx.split(model)
    return nnx.merge(graphdef, jax.tree.map(lambda a: jnp.array(a, copy=True), state))


def build_conditional(
    preset: str = "tiny-8",
    *,
    num_classes: int = 0,
    embed_dim: int = 0,
    seed: int = 0,
    **overrides: Any,
) -> nnx.Module:
    """A diff-pixel backbone conditioned on class labels (``num_classes``) or on a vector such as
    a prompt embedding (``embed_dim``); exactly one of them is positive.

    Example:
      >>> model = build_conditional("tiny-8", num_classes=10)
      >>> model.config.num_classes
      10
    """
    for name, v in (("num_classes", num_classes), ("embed_dim", embed_dim)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"build_conditional: {name} must be a non-negative int, got {v!r}")
    if (num_classes > 0) == (embed_dim > 0):
        raise ValueError(
            "build_conditional: exactly one of num_classes and embed_dim must be positive, got "
            f"num_classes={num_classes}, embed_dim={embed_dim}"
        )
    return build_model(
        preset, seed=seed, num_classes=num_classes, vector_dim=embed_dim, **overrides
    )


@dataclass(frozen=True)
class PretrainConfig:
    """How the original model is trained (our defaults for 8×8 digits on 2 CPU cores).

    The SiD2 recipe for the image size (interpolated cosine schedule, sigmoid weighting,
    v-prediction, label dropout ``p_uncond``), AdamW with ``lr`` after ``warmup_steps`` and a
    cosine decay to 0, EMA ``ema_decay``; ``tiny-8`` is diff-pixel's 8×8 preset (0.31 M
    parameters).
    """

    preset: str = "tiny-8"
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 100
    ema_decay: float = 0.999
    p_uncond: float = 0.1
    seed: int = 0
    checkpoint_every: int = 500

    def replace(self, **changes: Any) -> PretrainConfig:
        return dataclasses.replace(self, **changes)


def pretrain_recipe(task: UnlearnTask, config: PretrainConfig) -> SiD2Recipe:
    """The SiD2 recipe of the original model for ``task``'s image size."""
    return SiD2Recipe.for_resolution(
        task.image_shape[0],
        batch_size=config.batch_size,
        lr=config.lr,
        warmup_steps=config.warmup_steps,
        ema_decay=config.ema_decay,
        p_uncond=config.p_uncond,
    )


def pretrain(
    task: UnlearnTask,
    out_dir: str | Path,
    config: PretrainConfig = PretrainConfig(),
    *,
    progress: bool = True,
    hooks: tuple = (),
) -> Trainer:
    """Train (or resume, or just reopen when finished) the original model in ``out_dir``.

    Returns the :class:`~diff_pixel.train.Trainer`; the original model θ₀ is its EMA model
    (:func:`load_run` reads it back). For a prompt task (:func:`~diff_unlearn.data.prompt_task`)
    the model is conditioned on the prompt embedding through diff-pixel's vector embedder
    (``vector_dim`` = the bank's width; its learned null vector is the dropped condition), and
    the bank is copied to ``out_dir/prompt_bank.npz`` (:func:`load_prompt_table`).
    """
    if not isinstance(config, PretrainConfig):
        raise TypeError(f"pretrain: config must be a PretrainConfig, got {type(config).__name__}")
    recipe = pretrain_recipe(task, config)
    if task.prompts is not None:
        model = build_conditional(config.preset, embed_dim=task.prompts.width, seed=config.seed)
        loss_fn: Any = PromptLoss(recipe, task.prompts)
        save_prompt_table(Path(out_dir), task.prompts)
    else:
        model = build_conditional(config.preset, num_classes=task.num_classes, seed=config.seed)
        loss_fn = recipe_loss(recipe)
    train_config = TrainConfig.from_recipe(
        recipe,
        steps=config.steps,
        lr_decay="cosine",
        seed=config.seed,
        out_dir=str(out_dir),
        checkpoint_every=config.checkpoint_every,
        progress=progress,
    )
    trainer = Trainer(
        model,
        loss_fn,
        train_config,
        Loader(task.train, config.batch_size, seed=config.seed),
        recipe=recipe,
        hooks=(LossCurveHook(), *hooks),
    )
    trainer.run()
    return trainer


def load_run(run_dir: str | Path, step: int | None = None) -> tuple[nnx.Module, Recipe, dict]:
    """``(model, recipe, config)`` of a run written by :func:`pretrain` or
    :func:`~diff_unlearn.unlearn`: the EMA weights where the run keeps an EMA (pretraining),
    else the raw weights (unlearning keeps none)."""
    path = Path(run_dir)
    if not (path / "checkpoints").is_dir():
        raise ValueError(f"load_run: run_dir must hold a run (checkpoints/), got {str(path)!r}")
    _, model, saved = Trainer.restore(path, step)
    if not saved.get("recipe"):
        raise ValueError(f"load_run: the run in {str(path)!r} stores no diffusion recipe")
    return model, recipe_from_dict(saved["recipe"]), saved


def save_prompt_table(run_dir: Path, prompts: PromptTable) -> Path:
    """Write ``prompts`` (strings, embeddings) to ``run_dir/prompt_bank.npz`` (atomic); a run
    folder that already holds a different bank is refused."""
    from diff_unlearn.text import load_prompt_bank, save_prompt_bank

    path = run_dir / PROMPT_BANK_FILE
    if path.is_file():
        old, emb, _ = load_prompt_bank(path)
        if old != list(prompts.prompts) or not np.array_equal(emb, prompts.embeddings):
            raise ValueError(
                f"pretrain: the prompt bank must be the one {str(run_dir)!r} was started with, got "
                "a different bank"
            )
        return path
    run_dir.mkdir(parents=True, exist_ok=True)
    return save_prompt_bank(path, prompts.prompts, prompts.embeddings, prompts.digest)


def load_prompt_table(run_dir: str | Path) -> tuple[list[str], np.ndarray] | None:
    """``(prompts, embeddings)`` of the bank a prompt-conditioned run keeps, or None for a
    class-conditional run."""
    from diff_unlearn.text import load_prompt_bank

    path = Path(run_dir) / PROMPT_BANK_FILE
    if not path.is_file():
        return None
    prompts, emb, _ = load_prompt_bank(path)
    return prompts, emb
