"""Training and sampling recipes: SiD2 (default) and SiD.

The schedules and weightings come from diff-core; a recipe only chooses them and their parameters.

SiD2 (Hoogeboom et al., arXiv 2410.19324): interpolated shifted cosine schedule
:math:`\\lambda(t) = \\lambda_{cos}(t) + 2t \\ln(32/d)` (the cosine truncated to ±15
before shifting; the noisy end is shifted as for a 32×32 image, the clean end not at all),
sigmoid weighting :math:`w(\\lambda) = \\mathrm{sigmoid}(b - \\lambda)` (Kingma & Gao,
arXiv 2303.00848) with a resolution-dependent bias b, v-prediction, label dropout for
classifier-free guidance.

SiD (Hoogeboom, Heek, Salimans, arXiv 2301.11093): shifted cosine
:math:`\\lambda_{cos}(t) + 2\\ln(64/d)` and the implied weighting of the plain ε-MSE, v-prediction.

Values marked "our default" are not confirmed by the papers: the interpolation references 32 → d
and the ±15 clip before shifting; the sigmoid bias for resolutions other than 128/256/512
(b = 2 ln(128/d)); optimiser, learning rate, warm-up, batch, EMA and label-dropout values; the
guidance weight and interval (the EDM2-S interval of arXiv 2404.07724 mapped to λ).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from diff_core import schedules as core_schedules
from diff_core import weighting as core_weighting

__all__ = [
    "RUN_PRESETS",
    "Recipe",
    "RunPreset",
    "SiD2Recipe",
    "SiD2Variant",
    "SiDRecipe",
    "recipe_from_dict",
    "sid2_bias",
]

_EDM2_S_INTERVAL = (-2.13, 2.55)


def sid2_bias(resolution: int) -> float:
    """Sigmoid bias b of SiD2: 0 / −1 / −3 at 128 / 256 / 512; otherwise 2 ln(128/d) (our
    default; the paper's value for other resolutions is not confirmed)."""
    table = {128: 0.0, 256: -1.0, 512: -3.0}
    return table.get(resolution, 2.0 * math.log(128.0 / resolution))


def _enc(v: Any) -> Any:
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, tuple):
        return [_enc(x) for x in v]
    return v


def _dec(v: Any) -> Any:
    if v in ("inf", "-inf"):
        return float(v)
    if isinstance(v, list):
        return tuple(_dec(x) for x in v)
    return v


def _shifted_cosine(recipe: Any) -> core_schedules.ShiftedCosineSchedule:
    """SiD's shifted cosine λ_cos(t) + 2 ln(reference_resolution/d) for a recipe with those
    fields (SiD's, and a :class:`SiD2Variant` that swaps it in)."""
    return core_schedules.ShiftedCosineSchedule(
        recipe.resolution,
        reference_resolution=recipe.reference_resolution,
        logsnr_min=recipe.logsnr_min,
        logsnr_max=recipe.logsnr_max,
        clip=recipe.clip,
    )


@dataclass(frozen=True)
class Recipe(abc.ABC):
    """Fields shared by the recipes (frozen, hashable, JSON round-trip)."""

    name: ClassVar[str] = ""

    resolution: int
    logsnr_min: float = -15.0
    logsnr_max: float = 15.0
    clip: Literal["shift_after", "fixed_range"] = "shift_after"
    prediction: Literal["v"] = "v"
    p_uncond: float = 0.1
    multiscale: bool = False
    # optimiser (our default; not confirmed)
    lr: float = 1e-4
    warmup_steps: int = 1000
    b1: float = 0.9
    b2: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    ema_warmup: bool = True
    batch_size: int = 512
    # sampling
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    sampler_steps: int = 512
    gamma: float = 0.0
    clip_x: bool = True
    guidance: float = 2.0
    guidance_interval: tuple[float, float] = _EDM2_S_INTERVAL
    grid_guidance: float = 2.0
    grid_interval: tuple[float, float] = _EDM2_S_INTERVAL

    def __post_init__(self) -> None:
        for f in ("guidance_interval", "grid_interval"):
            v = getattr(self, f)
            if isinstance(v, list):
                object.__setattr__(self, f, tuple(float(x) for x in v))
        self._validate()

    def _fail(self, field: str, expected: str, got: Any) -> ValueError:
        return ValueError(f"{type(self).__name__}: {field} must be {expected}, got {got!r}")

    def _validate(self) -> None:
        if not isinstance(self.resolution, int) or self.resolution <= 0:
            raise self._fail("resolution", "a positive int", self.resolution)
        if not self.logsnr_min < self.logsnr_max:
            raise self._fail("logsnr_min", f"< logsnr_max={self.logsnr_max}", self.logsnr_min)
        if self.prediction != "v":
            raise self._fail("prediction", "'v'", self.prediction)
        if not 0.0 <= self.p_uncond < 1.0:
            raise self._fail("p_uncond", "in [0, 1)", self.p_uncond)
        if self.sampler not in ("ddpm", "ddim"):
            raise self._fail("sampler", "'ddpm' or 'ddim'", self.sampler)
        if not isinstance(self.sampler_steps, int) or self.sampler_steps < 1:
            raise self._fail("sampler_steps", "a positive int", self.sampler_steps)
        if not 0.0 <= self.gamma <= 1.0:
            raise self._fail("gamma", "in [0, 1]", self.gamma)
        for f in ("guidance_interval", "grid_interval"):
            lo, hi = getattr(self, f)
            if not lo < hi:
                raise self._fail(f, "(lo, hi) with lo < hi", getattr(self, f))
        if self.multiscale and self.resolution < 32:
            raise self._fail("multiscale", "False for resolutions below 32", self.multiscale)
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise self._fail("batch_size", "a positive int", self.batch_size)

    # ---------------------------------------------------------------- the diff-core pieces
    @abc.abstractmethod
    def schedule(self) -> Any:
        """The training schedule (a diff-core schedule object)."""

    @abc.abstractmethod
    def weighting(self) -> core_weighting.Weighting:
        """The loss weighting (a diff-core ``Weighting``)."""

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with ``"name"`` (±inf written as the strings "inf"/"-inf")."""
        out = {"name": self.name}
        for f in dataclasses.fields(self):
            out[f.name] = _enc(getattr(self, f.name))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    def replace(self, **changes: Any) -> Recipe:
        """A validated copy with ``changes`` applied (unknown fields are a ``ValueError``)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.replace: fields must be recipe fields, got {unknown}"
            )
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SiD2Recipe(Recipe):
    """SiD2 (arXiv 2410.19324): interpolated shifted cosine, sigmoid(b − λ) weighting, v-prediction.

    Example:
      >>> import numpy as np
      >>> r = SiD2Recipe.for_resolution(512)
      >>> r.bias
      -3.0
      >>> [round(float(v), 2) for v in r.schedule().logsnr(np.array([0.0, 0.5, 1.0]))]
      [15.0, -2.77, -20.55]
    """

    name: ClassVar[str] = "sid2"
    resolution_lo: int = 32
    bias: float = 0.0

    @classmethod
    def for_resolution(cls, d: int, **overrides: Any) -> SiD2Recipe:
        """The recipe for d×d images: b from :func:`sid2_bias`, schedule interpolated 32 → d."""
        if not isinstance(d, int) or isinstance(d, bool) or d <= 0:
            raise ValueError(f"SiD2Recipe.for_resolution: d must be a positive int, got {d!r}")
        return cls(resolution=d, **{"bias": sid2_bias(d), **overrides})

    def schedule(self) -> core_schedules.InterpolatedCosineSchedule:
        return core_schedules.InterpolatedCosineSchedule(
            self.resolution,
            resolution_lo=self.resolution_lo,
            logsnr_min=self.logsnr_min,
            logsnr_max=self.logsnr_max,
            clip=self.clip,
        )

    def weighting(self) -> core_weighting.Weighting:
        return core_weighting.sigmoid(self.bias)


@dataclass(frozen=True)
class SiDRecipe(Recipe):
    """SiD (arXiv 2301.11093): shifted cosine with reference 64, plain ε-MSE, v-prediction."""

    name: ClassVar[str] = "sid"
    reference_resolution: int = 64
    sampler_steps: int = 1000

    @classmethod
    def for_resolution(cls, d: int, **overrides: Any) -> SiDRecipe:
        """The recipe for d×d images: λ_cos(t) + 2 ln(64/d)."""
        if not isinstance(d, int) or isinstance(d, bool) or d <= 0:
            raise ValueError(f"SiDRecipe.for_resolution: d must be a positive int, got {d!r}")
        return cls(resolution=d, **overrides)

    def schedule(self) -> core_schedules.ShiftedCosineSchedule:
        return _shifted_cosine(self)

    def weighting(self) -> core_weighting.Weighting:
        # w(λ) = −dt/dλ: each term ½·(−dλ/dt)·w·‖ε − ε̂‖² is the plain ε-MSE.
        return core_weighting.eps_mse()


#: The schedules and weightings a :class:`SiD2Variant` can swap in.
VARIANT_SCHEDULES = ("interpolated_cosine", "shifted_cosine", "cosine")
VARIANT_WEIGHTINGS = ("sigmoid", "eps_mse", "v_mse", "elbo")


@dataclass(frozen=True)
class SiD2Variant(SiD2Recipe):
    """SiD2 with its schedule or loss weighting swapped for another: what an ablation trains.

    ``schedule_kind``: ``"interpolated_cosine"`` (SiD2's, the default), ``"shifted_cosine"``
    (SiD's λ_cos(t) + 2 ln(reference_resolution/d)) or ``"cosine"`` (no shift, arXiv 2102.09672).
    ``weighting_kind``: ``"sigmoid"`` (SiD2's sigmoid(b − λ), the default), ``"eps_mse"`` (SiD's
    implied weighting, the plain ε-MSE), ``"v_mse"`` (the plain v-MSE of arXiv 2202.00512) or
    ``"elbo"`` (−dλ/dt, the continuous-time ELBO of arXiv 2107.00630). Everything else is
    :class:`SiD2Recipe`'s; with both defaults the schedule and weighting equal SiD2's.

    Example:
      >>> r = SiD2Variant.for_resolution(16, weighting_kind="v_mse")
      >>> r.weighting().name, r.schedule().name == SiD2Recipe.for_resolution(16).schedule().name
      ('v_mse', True)
    """

    name: ClassVar[str] = "sid2-variant"
    schedule_kind: Literal["interpolated_cosine", "shifted_cosine", "cosine"] = (
        "interpolated_cosine"
    )
    weighting_kind: Literal["sigmoid", "eps_mse", "v_mse", "elbo"] = "sigmoid"
    reference_resolution: int = 64

    def _validate(self) -> None:
        super()._validate()
        if self.schedule_kind not in VARIANT_SCHEDULES:
            raise self._fail("schedule_kind", f"one of {VARIANT_SCHEDULES}", self.schedule_kind)
        if self.weighting_kind not in VARIANT_WEIGHTINGS:
            raise self._fail("weighting_kind", f"one of {VARIANT_WEIGHTINGS}", self.weighting_kind)
        if (
            isinstance(self.reference_resolution, bool)
            or not isinstance(self.reference_resolution, int)
            or self.reference_resolution <= 0
        ):
            raise self._fail("reference_resolution", "a positive int", self.reference_resolution)

    def schedule(self) -> Any:
        if self.schedule_kind == "interpolated_cosine":
            return super().schedule()
        if self.schedule_kind == "shifted_cosine":
            return _shifted_cosine(self)
        return core_schedules.CosineSchedule(self.logsnr_min, self.logsnr_max)

    def weighting(self) -> core_weighting.Weighting:
        if self.weighting_kind == "sigmoid":
            return super().weighting()
        return {
            "eps_mse": core_weighting.eps_mse,
            "v_mse": core_weighting.v_mse,
            "elbo": core_weighting.elbo,
        }[self.weighting_kind]()


_RECIPES: dict[str, type[Recipe]] = {
    "sid2": SiD2Recipe,
    "sid": SiDRecipe,
    "sid2-variant": SiD2Variant,
}


def recipe_from_dict(d: dict[str, Any]) -> Recipe:
    """Inverse of :meth:`Recipe.to_dict`; unknown names or keys are errors naming them."""
    d = dict(d)
    name = d.pop("name", None)
    if name not in _RECIPES:
        raise ValueError(f"recipe_from_dict: name must be one of {sorted(_RECIPES)}, got {name!r}")
    cls = _RECIPES[name]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise TypeError(
            f"recipe_from_dict: keys must be {cls.__name__} fields, got unknown {unknown}"
        )
    return cls(**{k: _dec(v) for k, v in d.items()})


@dataclass(frozen=True)
class RunPreset:
    """A CPU run preset: model, data, steps, and recipe overrides of the training scale only."""

    model: str
    data: str
    image_size: int
    steps: int
    overrides: tuple[tuple[str, Any], ...]

    def recipe(self, kind: Literal["sid2", "sid", "sid2-variant"] = "sid2") -> Recipe:
        """The recipe of ``kind`` for this preset's resolution with its overrides."""
        if kind not in _RECIPES:
            raise ValueError(
                f"RunPreset.recipe: kind must be one of {sorted(_RECIPES)}, got {kind!r}"
            )
        return _RECIPES[kind].for_resolution(self.image_size, **dict(self.overrides))


#: CPU run presets (spec §6.1): ``digits`` trains ``tiny-16`` class-conditionally on digits;
#: ``photos`` trains the unconditional ``tiny-rgb-32`` on 32×32 photo crops (our default).
RUN_PRESETS: dict[str, RunPreset] = {
    "digits": RunPreset(
        model="tiny-16",
        data="digits",
        image_size=16,
        steps=1500,
        overrides=(
            ("batch_size", 128),
            ("lr", 2e-3),
            ("warmup_steps", 100),
            ("ema_decay", 0.999),
            ("sampler_steps", 32),
            ("guidance", 1.0),
            ("grid_guidance", 2.0),
            ("grid_interval", (-3.0, 5.0)),
        ),
    ),
    "photos": RunPreset(
        model="tiny-rgb-32",
        data="photos",
        image_size=32,
        steps=2000,
        overrides=(
            ("batch_size", 64),
            ("lr", 1e-3),
            ("warmup_steps", 100),
            ("ema_decay", 0.999),
            ("p_uncond", 0.0),
            ("sampler_steps", 64),
            ("guidance", 1.0),
            ("grid_guidance", 1.0),
            ("grid_interval", (-math.inf, math.inf)),
        ),
    ),
}
