"""Same-noise samples: the original and the unlearned model driven by identical noise.

Sample j of condition c uses diff-pixel's per-example noise source
(:class:`diff_pixel.ExampleNoise`) with the key ``fold_in(key(seed), c)`` and example number j:
every draw — the initial state and, for DDPM, each step's noise — is
``normal(fold_in(fold_in(fold_in(key(seed), c), j), d))``. So the noise of a (condition, sample)
pair never depends on which other conditions are evaluated, on the batch size or on the model,
and two models with equal parameters go through the same compiled sampling loop (diff-core's
driver, parameters traced) to bitwise equal samples. Guidance is diff-core's ``guided`` with the
condition's null (``Cond.null``), applied on the whole grid; the grid is uniform in t
(``uniform_t``) and the last step returns x̂.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_pixel import Cond, sample

__all__ = ["SamplingSpec", "fingerprint", "same_noise_samples"]

_SAMPLERS = ("ddim", "ddpm")


def _positive(func: str, name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{func}: {name} must be >= 1, got {v!r}")
    return int(v)


def check_conds(func: str, conds: Any, num_classes: int | None) -> tuple[int, ...]:
    """Condition ids (class labels), validated against ``num_classes``."""
    if isinstance(conds, (int, np.integer)) and not isinstance(conds, bool):
        conds = (conds,)
    try:
        ids = tuple(int(c) for c in conds)
    except (TypeError, ValueError):
        raise ValueError(f"{func}: conds must be a sequence of class ids, got {conds!r}") from None
    if not ids:
        raise ValueError(f"{func}: conds must hold at least one class, got ()")
    if num_classes is not None and any(c < 0 or c >= num_classes for c in ids):
        raise ValueError(f"{func}: conds must be classes in [0, {num_classes - 1}], got {ids}")
    return ids


def fingerprint(model: nnx.Module) -> str:
    """SHA-256 of a model's architecture description and every variable's bytes."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    h.update(repr(config.to_dict() if hasattr(config, "to_dict") else type(model)).encode())
    for path, v in nnx.to_flat_state(nnx.state(model)):
        a = np.asarray(v.get_value() if hasattr(v, "get_value") else v)
        h.update("/".join(map(str, path)).encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class SamplingSpec:
    """How same-noise samples are drawn (everything except the model and the conditions)."""

    def __init__(
        self,
        schedule: Any,
        *,
        n_per_cond: int = 100,
        seed: int = 0,
        sampler: str = "ddim",
        steps: int = 50,
        guidance: float = 2.0,
        batch: int = 256,
        func: str = "same_noise_samples",
        prompts: Any = None,
    ) -> None:
        self.n_per_cond = _positive(func, "n_per_cond", n_per_cond)
        self.steps = _positive(func, "steps", steps)
        self.batch = _positive(func, "batch", batch)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"{func}: seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        if sampler not in _SAMPLERS:
            raise ValueError(f"{func}: sampler must be one of {_SAMPLERS}, got {sampler!r}")
        self.sampler = sampler
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)):
            raise ValueError(f"{func}: guidance must be a number, got {guidance!r}")
        self.guidance = float(guidance)
        if not callable(getattr(schedule, "logsnr", None)):
            raise TypeError(f"{func}: schedule must be a diff-core schedule, got {schedule!r}")
        self.schedule = schedule
        if prompts is not None and not callable(getattr(prompts, "cond", None)):
            raise TypeError(
                f"{func}: prompts must be a diff_unlearn PromptTable or None, got "
                f"{type(prompts).__name__}"
            )
        #: condition ids → prompt embeddings (a PromptTable), or None for class labels
        self.prompts = prompts

    def cond(self, ids: Any) -> Cond:
        """The model condition of condition ids: class labels, or prompt embeddings."""
        if self.prompts is not None:
            return self.prompts.cond(ids)
        return Cond(label=jnp.asarray(ids, jnp.int32))

    def key(self) -> tuple:
        sched = getattr(schedule := self.schedule, "to_dict", None)
        return (
            repr(sched() if sched else schedule),
            self.n_per_cond,
            self.seed,
            self.sampler,
            self.steps,
            self.guidance,
            self.batch,
            None if self.prompts is None else self.prompts.digest,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "n_per_cond": self.n_per_cond,
            "seed": self.seed,
            "sampler": self.sampler,
            "steps": self.steps,
            "guidance": self.guidance,
        }


def _image_shape(model: nnx.Module) -> tuple[int, int, int]:
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "height"):
        raise TypeError(
            "same_noise_samples: model must be a diff-pixel backbone with a config, got "
            f"{type(model).__name__}"
        )
    return (cfg.height, cfg.width, cfg.in_channels)


def same_noise_samples(model: nnx.Module, conds: Sequence[int], spec: SamplingSpec) -> np.ndarray:
    """Samples ``(len(conds), n_per_cond, H, W, C)`` of a conditional diff-pixel model (class
    labels, or prompt ids when ``spec.prompts`` is set).

    Condition c's samples come from ``spec.batch``-sized calls of :func:`diff_pixel.sample` with
    the key ``fold_in(key(seed), c)`` and ``first_index`` the chunk's first sample number (the
    last chunk is drawn full and cut), so they are the same whatever else is evaluated.
    """
    if spec.prompts is not None:
        ids = check_conds("same_noise_samples", conds, len(spec.prompts))
    else:
        ids = check_conds(
            "same_noise_samples", conds, getattr(model.config, "num_classes", None) or None
        )
    shape = _image_shape(model)
    n, b = spec.n_per_cond, min(spec.batch, spec.n_per_cond)
    base = jax.random.key(spec.seed)
    out = np.empty((len(ids), n, *shape), np.float32)
    for i, c in enumerate(ids):
        key = jax.random.fold_in(base, c)
        for j0 in range(0, n, b):
            x = sample(
                model,
                shape=(b, *shape),
                key=key,
                schedule=spec.schedule,
                steps=spec.steps,
                sampler=spec.sampler,
                cond=spec.cond(jnp.full((b,), c, jnp.int32)),
                guidance=spec.guidance,
                first_index=j0,
            )
            m = min(b, n - j0)
            out[i, j0 : j0 + m] = np.asarray(x)[:m]
    return out


class _Cache:
    """A small LRU of the original model's samples (so many methods are compared against one
    set)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.items: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def get(self, model: nnx.Module, conds: tuple[int, ...], spec: SamplingSpec) -> np.ndarray:
        key = (fingerprint(model), conds, spec.key())
        hit = self.items.get(key)
        if hit is None:
            hit = same_noise_samples(model, conds, spec)
            hit.setflags(write=False)
            self.items[key] = hit
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        else:
            self.items.move_to_end(key)
        return hit


#: Samples of original models, keyed by (model fingerprint, conditions, sampling settings).
ORIGINAL_CACHE = _Cache()
