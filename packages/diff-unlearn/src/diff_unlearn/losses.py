r"""The unlearning losses: forgetting terms and retaining terms, on one weighted ε-error.

Every term is the model's training loss form (Kingma & Gao, arXiv 2303.00848; the SiD2 recipe of
the original model: its schedule λ(t) and weighting W(λ)),

.. math::
    \ell(\theta) = \mathbb{E}_{t, \epsilon}\; \tfrac12 W(\lambda_t)\,
        \lVert \hat\epsilon_\theta(z_t, \lambda_t, c) - \epsilon^\star \rVert^2,
    \qquad z_t = \alpha_t x + \sigma_t \epsilon,

computed by diff-core's ``diffusion_loss`` in ε space, with a target ε* that is the data noise ε
(``retain_data``, ``neg_grad``) or a stop-gradient prediction of the frozen original θ₀ or of θ
itself (remapping, distillation, ESD). Models predict v; ε̂ = σ z + α v̂ (diff-protocol
``to_x_eps``). Networks run without dropout here, so θ = θ₀ gives exactly θ₀'s outputs.

Randomness per example (diff-pixel's convention): example j of a batch part draws t, ε and its
random target condition from ``example_keys(fold_in(key, part), index)[j]`` (streams 0, 1, 3), with
``part`` 0 for the forget batch and 1 for the retain batch, so a loss value depends only on
``(key, index)``, never on the batch split.

Each loss returns ``(scalar, metrics)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_core import grids, guided
from diff_core import losses as core_losses
from diff_core import sample as core_sample
from diff_core import samplers as core_samplers
from diff_pixel import Cond, as_denoiser, drop_mask, example_keys, noise_batch, stratified_times
from diff_pixel.sid.recipes import Recipe
from diff_protocol import jax_normal, to_x_eps

__all__ = [
    "ESD_SOURCES",
    "FORGET",
    "RETAIN_SOURCES",
    "RETAIN",
    "KeyedNoise",
    "LossSetup",
    "Noised",
    "forget_esd",
    "forget_random_label",
    "forget_remap",
    "model_trajectory_inputs",
    "neg_grad",
    "noised",
    "remap_targets",
    "retain_data",
    "retain_distill",
    "teacher_bank",
    "teacher_inputs",
]

#: The ``part`` numbers of the forget and retain halves of a batch (key streams).
FORGET, RETAIN = 0, 1

_TARGETS = ("random_other", "null")

#: Where ``forget_esd`` takes z_t: noised forget data, or θ's own partial sampling trajectories.
ESD_SOURCES = ("data", "model")

#: Key streams of an example's key (``example_keys``) used here besides t (0), ε (1) and the
#: remapping target (3): ESD's stopping step and ESD's trajectory noise.
_STOP_STREAM, _TRAJECTORY_STREAM = 5, 6
#: Key stream of a retain example's pick from the teacher bank (``source="teacher_samples"``).
_TEACHER_STREAM = 7

#: Where ``retain_distill``'s x comes from: retain data, or the original model's own samples.
RETAIN_SOURCES = ("data", "teacher_samples")
#: Offset of the teacher bank's noise seed from the unlearning seed (keeps it apart from the
#: evaluation seeds 0, 1, …).
TEACHER_SEED_OFFSET = 10_000


@dataclass(frozen=True)
class LossSetup:
    """What every loss needs besides the networks (hashable: part of the compiled step's key).

    Attributes:
      recipe: the original model's diffusion recipe (schedule λ(t), weighting W, p_uncond).
      retain: the retain condition ids (class labels or prompt ids), the pool of remapping
        targets.
      num_classes: number of condition ids (the null label is ``num_classes``).
      prompts: for a prompt task, the :class:`~diff_unlearn.data.PromptTable` turning condition
        ids into ``Cond(vector=embedding)``; None: ids are class labels.
    """

    recipe: Recipe
    retain: tuple[int, ...]
    num_classes: int
    prompts: Any = None

    def cond(self, ids: Any) -> Cond:
        """The model condition of condition ids (B,): class labels, or prompt embeddings."""
        if self.prompts is not None:
            return self.prompts.cond(ids)
        return Cond(label=jnp.asarray(ids, jnp.int32))

    def __post_init__(self) -> None:
        if not isinstance(self.recipe, Recipe):
            raise TypeError(
                "LossSetup: recipe must be a diff_pixel.sid Recipe, got "
                f"{type(self.recipe).__name__}"
            )
        object.__setattr__(self, "retain", tuple(int(c) for c in self.retain))
        if not self.retain:
            raise ValueError("LossSetup: retain must hold at least one class, got ()")
        if any(c < 0 or c >= self.num_classes for c in self.retain):
            raise ValueError(
                f"LossSetup: retain classes must be in [0, {self.num_classes - 1}], "
                f"got {self.retain}"
            )


class Noised(NamedTuple):
    """The noisy inputs of one batch part: ``z = α x + σ ε`` at stratified times."""

    keys: jax.Array
    z: jax.Array
    logsnr: jax.Array
    dlogsnr_dt: jax.Array
    eps: jax.Array


def noised(setup: LossSetup, x: jax.Array, index: jax.Array, key: jax.Array, part: int) -> Noised:
    """Per-example keys, stratified t, ε and ``(z, λ, dλ/dt)`` for batch part ``part``."""
    x = jnp.asarray(x, jnp.float32)
    keys = example_keys(jax.random.fold_in(key, part), jnp.asarray(index))
    t = stratified_times(keys)
    eps = noise_batch(keys, x.shape)
    z, lam, dlam = core_losses.training_inputs(setup.recipe.schedule(), x, t, eps)
    return Noised(keys, z, lam, dlam, eps)


def _out(model: Any, z: jax.Array, lam: jax.Array, cond: Cond) -> jax.Array:
    return model(z, lam, cond, dropout_key=None).astype(jnp.float32)


def _eps(model: Any, n: Noised, cond: Cond) -> jax.Array:
    """ε̂ of ``model`` at the noisy inputs ``n`` under ``cond``."""
    out = _out(model, n.z, n.logsnr, cond)
    return to_x_eps(out, n.z, n.logsnr, getattr(model, "prediction", "v"))[1]


def _error(setup: LossSetup, model: Any, out: jax.Array, n: Noised, eps_target: jax.Array):
    """Per-example ½ W(λ) mean‖ε̂(out) − ε*‖² (diff-core ``diffusion_loss``, ε space)."""
    return core_losses.diffusion_loss(
        out,
        n.z,  # x is unused in ε space when z is given: the target is eps_target
        eps_target,
        n.logsnr,
        n.dlogsnr_dt,
        prediction=getattr(model, "prediction", "v"),
        weighting=setup.recipe.weighting(),
        space="eps",
        z=n.z,
    )


def _both(cond: Cond) -> Cond:
    """``cond`` followed by its null: the 2B batch of a conditional and an unconditional pass."""
    return cond.concat(cond.null())


def _twice(n: Noised) -> Noised:
    cat = lambda a: jnp.concatenate([a, a], axis=0)  # noqa: E731
    return Noised(n.keys, cat(n.z), cat(n.logsnr), cat(n.dlogsnr_dt), cat(n.eps))


def remap_targets(setup: LossSetup, keys: jax.Array, labels: jax.Array, target: Any) -> Cond:
    """The remapping condition c′ per example.

    ``"random_other"``: a retain class drawn uniformly per example (stream 3 of its key), never a
    forgotten class; an int: that class for every example; ``"null"``: the null condition.
    """
    b = labels.shape[0]
    if target == "null":
        return setup.cond(labels).null()
    if isinstance(target, int) and not isinstance(target, bool):
        return setup.cond(jnp.full((b,), target, jnp.int32))
    pool = jnp.asarray(setup.retain, jnp.int32)
    pick = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 3), (), 0, pool.shape[0]))(
        keys
    )
    return setup.cond(pool[pick])


def check_target(func: str, target: Any, num_classes: int) -> Any:
    if target in _TARGETS:
        return target
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < num_classes:
        return target
    raise ValueError(
        f"{func}: target must be 'random_other', 'null' or a class in [0, {num_classes - 1}], "
        f"got {target!r}"
    )


def forget_remap(
    setup: LossSetup,
    model: Any,
    original: Any,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    target: Any = "random_other",
    part: int = FORGET,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``½W ‖ε_θ(z_t, c_f) − sg[ε_θ₀(z_t, c′)]‖²`` on forget data: the forgotten condition is
    remapped onto what the original model does under c′ (:func:`remap_targets`)."""
    n = noised(setup, batch["x"], batch["index"], key, part)
    c_new = remap_targets(setup, n.keys, batch["label"], target)
    eps_star = jax.lax.stop_gradient(_eps(original, n, c_new))
    ell = _error(setup, model, _out(model, n.z, n.logsnr, setup.cond(batch["label"])), n, eps_star)
    return jnp.mean(ell), {}


def forget_random_label(
    setup: LossSetup,
    model: Any,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    part: int = FORGET,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SalUn's forgetting term: ``½W ‖ε_θ(z_t, c_f) − sg[ε_θ(z_t, c′)]‖²`` with c′ ≠ c_f drawn
    uniformly over the other classes, the target taken from the *current* model."""
    n = noised(setup, batch["x"], batch["index"], key, part)
    labels = jnp.asarray(batch["label"], jnp.int32)
    r = jax.vmap(
        lambda k: jax.random.randint(jax.random.fold_in(k, 3), (), 0, setup.num_classes - 1)
    )(n.keys)
    other = r + (r >= labels).astype(jnp.int32)  # uniform over {0..K−1} without c_f
    eps_star = jax.lax.stop_gradient(_eps(model, n, setup.cond(other)))
    ell = _error(setup, model, _out(model, n.z, n.logsnr, setup.cond(labels)), n, eps_star)
    return jnp.mean(ell), {}


def esd_target(setup: LossSetup, original: Any, n: Noised, labels: jax.Array, eta: float):
    """ESD's target ``ε* = ε_θ₀(z, ∅) − η (ε_θ₀(z, c_f) − ε_θ₀(z, ∅))``: diff-core's
    ``guided(θ₀, scale=−η, null_cond=Cond.null, batch=False)`` at c_f, converted to ε."""
    g = guided(as_denoiser(original), -float(eta), null_cond=Cond.null, batch=False)
    out = g(n.z, n.logsnr, setup.cond(labels)).astype(jnp.float32)
    return to_x_eps(out, n.z, n.logsnr, g.prediction)[1]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class KeyedNoise:
    """A noise source for diff-core's driver with one key per example: draw ``i`` of example j
    is ``normal(fold_in(keys[j], i), shape[1:])`` (draw 0 the initial state, draw k + 1 step
    k's noise), so an example's trajectory depends on its own key only, never on the batch."""

    keys: jax.Array
    shape: tuple[int, ...] = field(default=(), metadata={"static": True})

    @property
    def dtype(self) -> Any:
        return jnp.float32

    def __call__(self, i: Any) -> jax.Array:
        i = jnp.asarray(i, jnp.uint32)
        return jax.vmap(lambda k: jax_normal(jax.random.fold_in(k, i), self.shape[1:]))(self.keys)


def model_trajectory_inputs(
    setup: LossSetup,
    model: Any,
    cond: Cond,
    keys: jax.Array,
    shape: tuple[int, ...],
    steps: int,
    guidance: float,
) -> Noised:
    """ESD's inputs from the model's own partial trajectories (``source="model"``).

    Example j samples with ``model`` (parameters under stop-gradient) under ``cond`` through
    diff-core's driver: DDIM (η = 0) on the uniform-t grid ``t_k = 1 − k/steps``, classifier-free
    guidance ``guidance`` with the null condition, x̂ clipped to [−1, 1], noise
    ``KeyedNoise(fold_in(keys, 6))``; it stops after ``k_j`` steps, ``k_j`` uniform in
    ``{0, …, steps − 1}`` (stream 5 of its key), and its state z at ``t_{k_j}`` is the input
    (``k_j = 0``: the initial noise at t = 1). Every example runs the whole grid
    (``return_trajectory``) and keeps its own stop, so the cost is ``steps`` guided evaluations
    per training step. (ESD draws one stop per iteration and evaluates at a random DDPM time
    inside the stopped interval; we use the grid time itself: our reading.)

    Returns a :class:`Noised` with ``eps`` set to zeros (there is no data noise here).
    """
    graphdef, state = nnx.split(model)
    frozen = nnx.merge(graphdef, jax.lax.stop_gradient(state))
    denoiser = as_denoiser(frozen)
    if guidance != 1.0:
        denoiser = guided(denoiser, float(guidance), null_cond=Cond.null)
    schedule = setup.recipe.schedule()
    grid = grids.uniform_t(schedule, steps)
    noise = KeyedNoise(
        jax.vmap(lambda k: jax.random.fold_in(k, _TRAJECTORY_STREAM))(keys), tuple(shape)
    )
    result = core_sample(
        denoiser,
        core_samplers.ddim(0.0),
        grid,
        noise,
        cond=cond,
        final="denoise",
        x_clip=1.0,
        return_trajectory=True,
        check_finite=False,
    )
    traj = jnp.stack(result.trajectory[:steps])  # z at t_0 = 1, …, t_{steps−1}
    stop = jax.vmap(
        lambda k: jax.random.randint(jax.random.fold_in(k, _STOP_STREAM), (), 0, steps)
    )(keys)
    z = jax.lax.stop_gradient(traj[stop, jnp.arange(shape[0])]).astype(jnp.float32)
    t = jnp.asarray(grid.t[:steps], jnp.float32)[stop]
    return Noised(keys, z, schedule.logsnr(t), schedule.dlogsnr_dt(t), jnp.zeros_like(z))


def check_esd_source(func: str, source: Any, steps: Any, guidance: Any) -> None:
    if source not in ESD_SOURCES:
        raise ValueError(f"{func}: source must be one of {ESD_SOURCES}, got {source!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{func}: sample_steps must be an int >= 1, got {steps!r}")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)):
        raise ValueError(f"{func}: sample_guidance must be a number, got {guidance!r}")


def forget_esd(
    setup: LossSetup,
    model: Any,
    original: Any,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    eta: float = 1.0,
    part: int = FORGET,
    source: str = "data",
    sample_steps: int = 25,
    sample_guidance: float = 3.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ESD (Gandikota et al., arXiv 2303.07345): ``½W ‖ε_θ(z_t, c_f) − sg[ε*]‖²`` with ε* the
    original model's negatively guided prediction (:func:`esd_target`).

    z_t comes from noised forget data (``source="data"``, our default) or, as in ESD's code,
    from θ's own partial trajectories under c_f (``source="model"``,
    :func:`model_trajectory_inputs`: DDIM on ``sample_steps`` uniform-t steps with guidance
    ``sample_guidance``, stopped at a random step; ESD's code uses 50 DDIM steps and guidance 3,
    our defaults 25 and 3). With ``source="model"`` the forget images are not used.
    """
    check_esd_source("forget_esd", source, sample_steps, sample_guidance)
    labels = jnp.asarray(batch["label"], jnp.int32)
    if source == "data":
        n = noised(setup, batch["x"], batch["index"], key, part)
    else:
        keys = example_keys(jax.random.fold_in(key, part), jnp.asarray(batch["index"]))
        shape = tuple(batch["x"].shape)
        n = model_trajectory_inputs(
            setup, model, setup.cond(labels), keys, shape, sample_steps, float(sample_guidance)
        )
    eps_star = jax.lax.stop_gradient(esd_target(setup, original, n, labels, eta))
    ell = _error(setup, model, _out(model, n.z, n.logsnr, setup.cond(labels)), n, eps_star)
    return jnp.mean(ell), {}


def _data_loss(
    setup: LossSetup,
    model: Any,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    part: int,
    p_uncond: float,
) -> jax.Array:
    n = noised(setup, batch["x"], batch["index"], key, part)
    cond = setup.cond(batch["label"])
    if p_uncond > 0:
        cond = cond.replace(drop=drop_mask(n.keys, p_uncond))
    return jnp.mean(_error(setup, model, _out(model, n.z, n.logsnr, cond), n, n.eps))


def retain_data(
    setup: LossSetup,
    model: Any,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    part: int = RETAIN,
    p_uncond: float | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``l_diff(θ; D_r)``: the training loss on retain data, with the original training's label
    dropout (``p_uncond``, default the recipe's) so the null condition keeps being trained."""
    p = setup.recipe.p_uncond if p_uncond is None else float(p_uncond)
    return _data_loss(setup, model, batch, key, part, p), {}


def neg_grad(
    setup: LossSetup,
    model: Any,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    part: int = FORGET,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``−l_diff(θ; D_f)``: gradient ascent on the forget data (the collapse reference)."""
    return -_data_loss(setup, model, batch, key, part, 0.0), {}


def retain_distill(
    setup: LossSetup,
    model: Any,
    original: Any,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    include_null: bool = True,
    part: int = RETAIN,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``½W ‖ε_θ(z_t, c) − sg[ε_θ₀(z_t, c)]‖²`` on retain conditions, plus the same term with
    c = ∅ on the same z_t when ``include_null`` (keeps the guidance direction of θ₀)."""
    n = noised(setup, batch["x"], batch["index"], key, part)
    cond = setup.cond(batch["label"])
    if include_null:
        n, cond = _twice(n), _both(cond)
    eps_star = jax.lax.stop_gradient(_eps(original, n, cond))
    ell = _error(setup, model, _out(model, n.z, n.logsnr, cond), n, eps_star)
    b = batch["x"].shape[0]
    if include_null:
        loss = jnp.mean(ell[:b] + ell[b:])
        return loss, {"distill_cond": jnp.mean(ell[:b]), "distill_null": jnp.mean(ell[b:])}
    return jnp.mean(ell), {}


def teacher_bank(
    setup: LossSetup,
    original: Any,
    *,
    n_per_class: int = 128,
    seed: int = 0,
    steps: int = 25,
    guidance: float = 1.0,
) -> np.ndarray:
    """θ₀'s own samples of every retain class, ``(len(setup.retain), n_per_class, H, W, C)``:
    the retain images of data-free distillation (``source="teacher_samples"``).

    Drawn once with :func:`~diff_unlearn.sampling.same_noise_samples` (DDIM, ``steps``
    uniform-t steps, guidance ``guidance``; our defaults 25 and 1, i.e. θ₀'s conditional
    distribution without guidance) with the noise seed ``TEACHER_SEED_OFFSET + seed``.
    """
    from diff_unlearn.sampling import SamplingSpec, same_noise_samples

    spec = SamplingSpec(
        setup.recipe.schedule(),
        n_per_cond=n_per_class,
        seed=TEACHER_SEED_OFFSET + int(seed),
        sampler="ddim",
        steps=steps,
        guidance=guidance,
        func="teacher_bank",
        prompts=setup.prompts,
    )
    return same_noise_samples(original, setup.retain, spec)


def teacher_inputs(
    setup: LossSetup,
    bank: jax.Array,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    part: int = RETAIN,
) -> dict[str, jax.Array]:
    """``batch`` with its images replaced by teacher samples of the same classes: example j
    takes ``bank[row(label_j), u_j]`` with ``u_j`` uniform over the bank's samples (stream 7 of
    its key). Only the labels and indices of ``batch`` are read, never its images."""
    labels = jnp.asarray(batch["label"], jnp.int32)
    rows = jnp.full((setup.num_classes,), -1, jnp.int32)
    rows = rows.at[jnp.asarray(setup.retain)].set(jnp.arange(len(setup.retain), dtype=jnp.int32))
    keys = example_keys(jax.random.fold_in(key, part), jnp.asarray(batch["index"]))
    n = bank.shape[1]
    pick = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, _TEACHER_STREAM), (), 0, n))(
        keys
    )
    x = jnp.asarray(bank)[rows[labels], pick]
    return {**batch, "x": x}
