r"""Output parameterisations: wrappers that give any network a declared prediction.

A backbone returns its raw output F; a wrapper around any network
``net(z, logsnr, cond=None, *, dropout_key=None)`` declares ``prediction`` ∈ {"eps", "v", "x"}
(what diff-protocol's ``to_x_eps`` converts from) and may transform F:

- :class:`Predicts` declares F itself as ε, v or x (e.g. an ε-prediction U-ViT:
  ``Predicts(build_model("tiny-16"), "eps")``); the backbones alone predict v.
- :class:`ConsistencyOutput` is the consistency-model output (Song et al., arXiv 2303.01469)
  :math:`\hat x = c_\text{skip}(\lambda)\, z + c_\text{out}(\lambda)\, F(z, \lambda)` with
  prediction "x", the coefficients a serialisable :class:`ConsistencyCoefficients` (default
  :class:`EDMCoefficients`).

Wrappers are models of the registry (``registry_name``, ``to_config``, ``from_config``): their
config nests the description of the wrapped network, so ``from_description(describe(w))`` rebuilds
the whole stack; coefficient families are stored as ``{"kind": name, **parameters}``.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from diff_pixel.models.registry import describe, from_description
from diff_protocol import PREDICTIONS

__all__ = [
    "ConsistencyCoefficients",
    "ConsistencyOutput",
    "EDMCoefficients",
    "Parameterization",
    "Predicts",
]


class _AbstractModuleMeta(type(nnx.Module), abc.ABCMeta):
    """NNX's module metaclass with abstract-method enforcement."""


class Parameterization(nnx.Module, metaclass=_AbstractModuleMeta):
    """Base class of output wrappers: holds ``net``, declares ``prediction``, describes itself
    with the nested description of ``net``."""

    registry_name: ClassVar[str] = ""
    prediction: str = "v"

    def __init__(self, net: nnx.Module) -> None:
        if not isinstance(net, nnx.Module) or not callable(net):
            raise TypeError(
                f"{type(self).__name__}: net must be a callable nnx.Module with the denoiser "
                f"signature net(z, logsnr, cond, *, dropout_key), got {type(net).__name__}"
            )
        self.net = net

    @abc.abstractmethod
    def __call__(
        self,
        z: jax.Array,
        logsnr: jax.Array | float,
        cond: Any = None,
        *,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        """The ``prediction`` for ``z`` at ``logsnr``."""

    def _own_config(self) -> dict[str, Any]:
        return {}

    def to_config(self) -> dict[str, Any]:
        """``{"net": describe(net), **parameters}``."""
        return {"net": describe(self.net), **self._own_config()}

    @classmethod
    def _from_parts(cls, net: nnx.Module, config: dict[str, Any]) -> Parameterization:
        return cls(net, **config)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, seed: int = 0) -> Parameterization:
        """Inverse of :meth:`to_config`: the wrapped network is rebuilt from its description."""
        if not isinstance(config, Mapping) or "net" not in config:
            raise ValueError(
                f"{cls.__name__}.from_config: config must be a dict with a 'net' description, got "
                f"{config!r}"
            )
        rest = dict(config)
        net = from_description(rest.pop("net"), seed=seed)
        return cls._from_parts(net, rest)


class Predicts(Parameterization):
    """Declare the network's raw output F as the prediction of ``prediction`` ∈ {"eps", "v", "x"};
    the output is F unchanged."""

    registry_name: ClassVar[str] = "predicts"

    def __init__(self, net: nnx.Module, prediction: str) -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(
                f"Predicts: prediction must be one of {PREDICTIONS}, got {prediction!r}"
            )
        super().__init__(net)
        self.prediction = prediction

    def __call__(
        self,
        z: jax.Array,
        logsnr: jax.Array | float,
        cond: Any = None,
        *,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        return self.net(z, logsnr, cond, dropout_key=dropout_key)

    def _own_config(self) -> dict[str, Any]:
        return {"prediction": self.prediction}


_COEFFICIENT_KINDS: dict[str, type[ConsistencyCoefficients]] = {}


@dataclass(frozen=True)
class ConsistencyCoefficients(abc.ABC):
    """A family of consistency-model coefficients ``(c_skip(λ), c_out(λ))``.

    Subclass it as a frozen dataclass with a ``kind`` ClassVar and JSON-able fields and implement
    :meth:`__call__`; defining the subclass registers the kind, so ``{"kind": ..., **fields}``
    restores it (the defining module must be imported first, e.g. by the package that uses it).
    """

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind", "")
        if kind:
            known = _COEFFICIENT_KINDS.get(kind)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise ValueError(
                    f"ConsistencyCoefficients: kind must be unique, got {kind!r} for "
                    f"{cls.__qualname__} (already {known.__qualname__})"
                )
            _COEFFICIENT_KINDS[kind] = cls

    @abc.abstractmethod
    def __call__(self, logsnr: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(c_skip, c_out)`` at ``logsnr`` (float32, broadcast like ``logsnr``)."""

    def to_config(self) -> dict[str, Any]:
        """``{"kind": kind, **fields}``."""
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @staticmethod
    def from_config(config: Mapping[str, Any]) -> ConsistencyCoefficients:
        """Inverse of :meth:`to_config`; an unknown kind is a ``ValueError`` listing the known."""
        if not isinstance(config, Mapping) or "kind" not in config:
            raise ValueError(
                "ConsistencyCoefficients.from_config: config must be a dict with a 'kind', got "
                f"{config!r}"
            )
        fields = dict(config)
        kind = fields.pop("kind")
        if kind not in _COEFFICIENT_KINDS:
            raise ValueError(
                "ConsistencyCoefficients.from_config: kind must be one of "
                f"{sorted(_COEFFICIENT_KINDS)}, got {kind!r}"
            )
        return _COEFFICIENT_KINDS[kind](**fields)


@dataclass(frozen=True)
class EDMCoefficients(ConsistencyCoefficients):
    r"""The σ_data choice of consistency models (arXiv 2303.01469, after EDM, arXiv 2206.00364),
    in log-SNR with EDM's noise level :math:`\sigma = e^{-\lambda/2}` (σ of the variance-exploding
    view z/α):

    .. math::
        d = \max(\sigma - \sigma_\text{min}, 0), \quad
        c_\text{skip} = \frac{\sigma_d^2}{d^2 + \sigma_d^2}, \quad
        c_\text{out} = \frac{\sigma_d\, d}{\sqrt{\sigma^2 + \sigma_d^2}},

    with :math:`\sigma_\text{min} = e^{-\lambda_\text{max}/2}` (0 when ``logsnr_max`` is None).

    Boundary: with ``logsnr_max`` set, c_skip = 1 and c_out = 0 exactly at (and above) λ =
    ``logsnr_max``, so the output is z there (the boundary condition f(z, λ_max) = z). With
    ``logsnr_max=None`` (σ_min = 0, EDM's own c_skip = σ_d²/(σ² + σ_d²),
    c_out = σ σ_d/√(σ² + σ_d²)) the output reduces to the identity only as λ → +∞ (exactly at
    λ = +inf).
    """

    kind: ClassVar[str] = "edm"
    sigma_data: float = 0.5
    logsnr_max: float | None = None

    def __post_init__(self) -> None:
        sd = self.sigma_data
        if not (isinstance(sd, (int, float)) and not isinstance(sd, bool) and sd > 0):
            raise ValueError(f"EDMCoefficients: sigma_data must be a positive number, got {sd!r}")
        lm = self.logsnr_max
        if lm is not None and not (isinstance(lm, (int, float)) and math.isfinite(lm)):
            raise ValueError(
                f"EDMCoefficients: logsnr_max must be None or a finite number, got {lm!r}"
            )

    def __call__(self, logsnr: jax.Array) -> tuple[jax.Array, jax.Array]:
        lam = jnp.asarray(logsnr, jnp.float32)
        sigma = jnp.exp(-0.5 * lam)
        sd2 = jnp.float32(self.sigma_data) ** 2
        if self.logsnr_max is None:
            d = sigma
        else:
            sigma_min = jnp.exp(-0.5 * jnp.float32(self.logsnr_max))
            d = jnp.maximum(sigma - sigma_min, 0.0)
        c_skip = sd2 / (d * d + sd2)
        # σ_d·d/√(σ² + σ_d²), written so that σ = +inf (λ = −inf) gives σ_d, not nan.
        ratio = jnp.where(jnp.isinf(sigma), 1.0, d / jnp.sqrt(sigma * sigma + sd2))
        c_out = jnp.float32(self.sigma_data) * ratio
        return c_skip, c_out


class ConsistencyOutput(Parameterization):
    r"""Consistency-model output (arXiv 2303.01469) with prediction "x":
    :math:`\hat x = c_\text{skip}(\lambda)\, z + c_\text{out}(\lambda)\, F(z, \lambda, c)`.

    ``coefficients`` is a :class:`ConsistencyCoefficients` (default :class:`EDMCoefficients`: see
    there which choice is exactly the identity at the boundary). λ of shape (B,) or (B, F)
    broadcasts over the remaining axes of z; computed in float32.
    """

    registry_name: ClassVar[str] = "consistency_output"
    prediction = "x"

    def __init__(
        self, net: nnx.Module, coefficients: ConsistencyCoefficients | None = None
    ) -> None:
        super().__init__(net)
        coefficients = EDMCoefficients() if coefficients is None else coefficients
        if not isinstance(coefficients, ConsistencyCoefficients):
            raise TypeError(
                "ConsistencyOutput: coefficients must be a ConsistencyCoefficients, got "
                f"{type(coefficients).__name__}"
            )
        self.coefficients = coefficients

    def __call__(
        self,
        z: jax.Array,
        logsnr: jax.Array | float,
        cond: Any = None,
        *,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        f = self.net(z, logsnr, cond, dropout_key=dropout_key)
        z32 = jnp.asarray(z, jnp.float32)
        lam = jnp.asarray(logsnr, jnp.float32)
        if lam.ndim > z32.ndim or tuple(lam.shape) != tuple(z32.shape[: lam.ndim]):
            raise ValueError(
                "ConsistencyOutput: logsnr must be a scalar or of shape "
                f"{tuple(z32.shape[:1])} or z's leading axes, got {tuple(lam.shape)}"
            )
        lam = lam.reshape(lam.shape + (1,) * (z32.ndim - lam.ndim))
        c_skip, c_out = self.coefficients(lam)
        return c_skip * z32 + c_out * jnp.asarray(f, jnp.float32)

    def _own_config(self) -> dict[str, Any]:
        return {"coefficients": self.coefficients.to_config()}

    @classmethod
    def _from_parts(cls, net: nnx.Module, config: dict[str, Any]) -> Parameterization:
        coefficients = config.pop("coefficients", None)
        if config:
            raise ValueError(
                f"ConsistencyOutput.from_config: config keys must be 'net' and 'coefficients', "
                f"got unknown {sorted(config)}"
            )
        coeffs = None if coefficients is None else ConsistencyCoefficients.from_config(coefficients)
        return cls(net, coeffs)
