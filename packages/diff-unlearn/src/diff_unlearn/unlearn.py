"""The one unlearning loop: any :class:`~diff_unlearn.methods.UnlearnMethod` on diff-pixel's
trainer.

θ starts as a copy of θ₀; the original model θ₀ travels as the trainer's ``aux`` (a jit
argument: frozen, no optimiser state, no EMA, no weight decay, never checkpointed — it is the
pretraining run's). The trainable variables are the method's filter; the optimiser is Adam
(lr 2e−4 constant, β 0.9/0.999, no clipping, no weight decay, no EMA: our defaults). Step k draws
one forget and one retain batch from :class:`~diff_unlearn.data.UnlearnData` (a pure function of
``(seed, k)``) and uses the key ``fold_in(key(seed), k)``; checkpoints, Ctrl-C and resume are the
trainer's, bitwise on CPU. The trainer logs the forget and retain losses; given a classifier,
:class:`ForgetEfficacyHook` adds the forget efficacy every ``efficacy_every`` steps (spec §4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flax import nnx

from diff_pixel import DigitsClassifier, LossCurveHook, OptimizerSpec, Phase, TrainConfig, Trainer
from diff_pixel.sid.recipes import Recipe
from diff_pixel.train.hooks import Hook
from diff_protocol import NonFiniteError
from diff_unlearn.data import UnlearnData, UnlearnTask
from diff_unlearn.losses import LossSetup
from diff_unlearn.methods import METHODS, UnlearnMethod
from diff_unlearn.metrics import forget_efficacy
from diff_unlearn.models import check_conditioning, copy_model
from diff_unlearn.sampling import SamplingSpec, same_noise_samples

__all__ = [
    "ForgetEfficacyHook",
    "UnlearnConfig",
    "loss_setup",
    "make_method",
    "unlearn",
    "unlearn_trainer",
]


@dataclass(frozen=True)
class UnlearnConfig:
    """Shared defaults of every method (our defaults for the digits task on CPU)."""

    steps: int = 600
    forget_batch: int = 128
    retain_batch: int = 128
    lr: float = 2e-4
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 20
    #: forget efficacy every this many steps when a classifier is given (0: never)
    efficacy_every: int = 100
    #: same-noise samples per forgotten class for it (DDIM-25, guidance 2, noise seed 0)
    efficacy_samples: int = 20


class ForgetEfficacyHook(Hook):
    """Logs the forget efficacy of the model being unlearned every ``every`` steps.

    ``n`` same-noise samples per forgotten class (DDIM, ``steps`` steps, guidance ``guidance``,
    noise seed ``seed``: the same noise at every logged step, so the curve shows the model
    change, not resampling) are classified; ``{"step", "forget_acc", "forget_prob"}`` is
    appended to the run's ``metrics.jsonl`` (:func:`~diff_unlearn.metrics.forget_efficacy`;
    lower is more forgotten) and printed in one line.
    """

    def __init__(
        self,
        forget_classes: tuple[int, ...],
        classifier: DigitsClassifier,
        schedule: Any,
        *,
        every: int = 100,
        n: int = 20,
        steps: int = 25,
        guidance: float = 2.0,
        seed: int = 0,
        verbose: bool = True,
        prompts: Any = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"ForgetEfficacyHook: every must be an int >= 1, got {every!r}")
        if not isinstance(classifier, DigitsClassifier):
            raise TypeError(
                "ForgetEfficacyHook: classifier must be a diff_pixel DigitsClassifier, got "
                f"{type(classifier).__name__}"
            )
        self.forget_classes = tuple(int(c) for c in forget_classes)
        # what the classifier should see: the condition ids, or the prompts' classes
        self.targets = (
            self.forget_classes
            if prompts is None
            else tuple(prompts.classes[c] for c in self.forget_classes)
        )
        self.classifier, self.every, self.verbose = classifier, every, verbose
        self.spec = SamplingSpec(
            schedule,
            n_per_cond=n,
            seed=seed,
            steps=steps,
            guidance=guidance,
            func="ForgetEfficacyHook",
            prompts=prompts,
        )

    def measure(self, model: nnx.Module) -> dict[str, float]:
        samples = same_noise_samples(model, self.forget_classes, self.spec)
        return forget_efficacy(samples, self.targets, self.classifier)

    def on_step(self, trainer: Any, step: int, metrics: Mapping[str, Any]) -> None:
        if step % self.every:
            return
        eff = self.measure(trainer.model())
        trainer.metrics_log.write({"step": step, **eff})
        if self.verbose and trainer.is_main:
            from tqdm.auto import tqdm

            tqdm.write(
                f"step {step}: forget efficacy {eff['forget_acc']:.3f} classified as the "
                f"forgotten class(es), mean probability {eff['forget_prob']:.3f} (lower: more "
                "forgotten)"
            )


def loss_setup(task: UnlearnTask, recipe: Recipe) -> LossSetup:
    """The :class:`~diff_unlearn.losses.LossSetup` of ``task`` for a model trained with
    ``recipe``."""
    return LossSetup(recipe, task.retain_classes, task.num_classes, task.prompts)


def make_method(name: str, setup: LossSetup, **hparams: Any) -> UnlearnMethod:
    """The method ``name`` of :data:`~diff_unlearn.methods.METHODS` with ``hparams`` (only the
    ones it takes; ``None`` values are dropped)."""
    if name not in METHODS:
        raise ValueError(f"make_method: method must be one of {sorted(METHODS)}, got {name!r}")
    import inspect

    factory = METHODS[name]
    accepted = set(inspect.signature(factory).parameters) - {"setup"}
    unknown = {k for k, v in hparams.items() if v is not None} - accepted
    if unknown:
        raise ValueError(
            f"make_method: {name} takes {sorted(accepted)}, got other hyperparameters "
            f"{sorted(unknown)}"
        )
    return factory(setup, **{k: v for k, v in hparams.items() if v is not None})


def unlearn_trainer(
    original: nnx.Module,
    method: UnlearnMethod,
    task: UnlearnTask,
    recipe: Recipe,
    out_dir: str | Path,
    config: UnlearnConfig = UnlearnConfig(),
    *,
    progress: bool = True,
    hooks: tuple = (),
    on_nonfinite: str = "raise",
    classifier: DigitsClassifier | None = None,
) -> Trainer:
    """The :class:`~diff_pixel.Trainer` of one unlearning run (resumes from ``out_dir``).

    With a ``classifier`` and ``config.efficacy_every > 0`` a :class:`ForgetEfficacyHook` logs
    the forget efficacy on ``config.efficacy_samples`` samples per forgotten class."""
    if not isinstance(method, UnlearnMethod):
        raise TypeError(f"unlearn: method must be an UnlearnMethod, got {type(method).__name__}")
    if not isinstance(config, UnlearnConfig):
        raise TypeError(f"unlearn: config must be an UnlearnConfig, got {type(config).__name__}")
    if not isinstance(original, nnx.Module):
        raise TypeError(f"unlearn: original must be an nnx.Module, got {type(original).__name__}")
    check_conditioning("unlearn", original, task)
    setup = loss_setup(task, recipe)
    model = copy_model(original)
    train_config = TrainConfig(
        steps=config.steps,
        batch_size=config.forget_batch + config.retain_batch,
        lr=config.lr,
        warmup_steps=0,
        lr_decay="constant",
        b1=0.9,
        b2=0.999,
        weight_decay=0.0,
        grad_clip=0.0,
        seed=config.seed,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        on_nonfinite=on_nonfinite,
        out_dir=str(out_dir),
        progress=progress,
    )
    extra: Any = {}
    if method.init is not None:
        # computed from θ₀ and a fixed data stream, so a resumed run recomputes the same value
        # (the trainer then restores the checkpointed one)
        extra = method.init(model, original, task, setup, config.seed, config.forget_batch)
    data = UnlearnData(task, config.forget_batch, config.retain_batch, seed=config.seed)
    if classifier is not None and config.efficacy_every > 0:
        hooks = (
            ForgetEfficacyHook(
                task.forget_classes,
                classifier,
                recipe.schedule(),
                every=config.efficacy_every,
                n=config.efficacy_samples,
                verbose=progress,
                prompts=task.prompts,
            ),
            *hooks,
        )
    return Trainer(
        model,
        None,
        train_config,
        data,
        optimizers={"model": OptimizerSpec(wrt=method.trainable, ema_decay=None)},
        phases=[Phase(method.loss, ("model",), name=method.name, updates_extra=True)],
        extra=extra,
        aux={"original": copy_model(original)},
        hooks=(LossCurveHook(), *hooks),
        recipe=recipe,
    )


def unlearn(
    original: nnx.Module,
    method: UnlearnMethod,
    task: UnlearnTask,
    recipe: Recipe,
    out_dir: str | Path,
    config: UnlearnConfig = UnlearnConfig(),
    *,
    progress: bool = True,
    hooks: tuple = (),
    on_nonfinite: str = "raise",
    classifier: DigitsClassifier | None = None,
) -> nnx.Module:
    """Unlearn ``task``'s forget classes from ``original`` with ``method``; returns θ.

    A non-finite loss (e.g. a runaway ``neg_grad``) raises
    :class:`diff_protocol.NonFiniteError` naming the step and the method, with the last finite
    checkpoint; ``on_nonfinite="skip"`` discards such steps instead.

    Example:
      >>> theta = unlearn(
      ...     theta0, make_method("distill", loss_setup(task, recipe)), task, recipe, "runs/distill"
      ... )  # doctest: +SKIP
    """
    trainer = unlearn_trainer(
        original,
        method,
        task,
        recipe,
        out_dir,
        config,
        progress=progress,
        hooks=hooks,
        on_nonfinite=on_nonfinite,
        classifier=classifier,
    )
    try:
        trainer.run()
    except FloatingPointError as err:
        raise NonFiniteError(
            f"unlearn: loss is not finite at step {trainer.step_count} (method "
            f"{method.name}); {err}"
        ) from None
    return trainer.model()
