"""Describing models as JSON-able dicts and rebuilding them through the plugin registry.

A model class registered under the ``diff.models`` entry-point group (diff-pixel registers
``residual_uvit``, ``uvit``, ``mlp_denoiser``, ``predicts`` and ``consistency_output``) has

- ``registry_name`` (a ClassVar str, its entry-point name),
- ``to_config(self) -> dict`` (JSON-able, no weights) and
- ``from_config(cls, config, *, seed=0) -> instance`` (fresh weights from ``seed``).

``describe(model)`` is ``{"type": registry_name, "config": model.to_config()}``; a wrapper's config
nests the description of the network it wraps. ``from_description`` loads the class with
``diff_protocol.registry.load("diff.models", type)``, so a model of another package is rebuilt
without diff-pixel knowing it. Embedders (:mod:`diff_pixel.models.embedders`) are described the
same way and loaded from the ``diff.embedders`` group. Checkpoints store the description and
restore the weights over a model rebuilt from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flax import nnx

from diff_protocol import registry as _registry
from diff_protocol.errors import RegistryError

__all__ = [
    "EMBEDDER_GROUP",
    "MODEL_GROUP",
    "describe",
    "describe_embedder",
    "embedder_from_description",
    "from_description",
    "model_class",
]

MODEL_GROUP = "diff.models"
EMBEDDER_GROUP = "diff.embedders"
# diff-pixel 0.1 stored the class name as the type; these load as their registered names.
_LEGACY_NAMES = {"ResidualUViT": "residual_uvit", "UViT": "uvit", "MLPDenoiser": "mlp_denoiser"}


def _describe(obj: Any, func: str, what: str) -> dict[str, Any]:
    name = getattr(type(obj), "registry_name", None)
    if not isinstance(name, str) or not name or not callable(getattr(obj, "to_config", None)):
        raise TypeError(
            f"{func}: {what} must have a registry_name and to_config() (a registered class), got "
            f"{type(obj).__name__}"
        )
    config = obj.to_config()
    if not isinstance(config, Mapping):
        raise TypeError(
            f"{func}: {type(obj).__name__}.to_config() must return a dict, got "
            f"{type(config).__name__}"
        )
    return {"type": name, "config": dict(config)}


def describe(model: nnx.Module) -> dict[str, Any]:
    """``{"type": registry_name, "config": model.to_config()}`` (JSON-able)."""
    return _describe(model, "describe", "model")


def describe_embedder(embedder: nnx.Module) -> dict[str, Any]:
    """``{"type": registry_name, "config": embedder.to_config()}`` (JSON-able)."""
    return _describe(embedder, "describe_embedder", "embedder")


def _load(group: str, name: Any, func: str) -> type:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{func}: description['type'] must be a non-empty str, got {name!r}")
    if group == MODEL_GROUP:
        name = _LEGACY_NAMES.get(name, name)
    try:
        cls = _registry.load(group, name)
    except RegistryError as exc:
        names = ", ".join(sorted(_registry.available(group))) or "(none installed)"
        raise ValueError(
            f"{func}: description['type'] must be a name registered under {group} ({names}), "
            f"got {name!r}"
        ) from exc
    if not isinstance(cls, type) or not callable(getattr(cls, "from_config", None)):
        raise ValueError(
            f"{func}: description['type'] must name a class with from_config, got {name!r} "
            f"({cls!r} registered under {group})"
        )
    return cls


def _split(description: Any, func: str) -> tuple[Any, dict[str, Any]]:
    if not isinstance(description, Mapping) or "type" not in description:
        raise ValueError(
            f"{func}: description must be a dict {{'type': name, 'config': dict}}, got "
            f"{description!r}"
        )
    config = description.get("config") or {}
    if not isinstance(config, Mapping):
        raise ValueError(
            f"{func}: description['config'] must be a dict, got {type(config).__name__}"
        )
    return description["type"], dict(config)


def model_class(name: str) -> type:
    """The model class registered under ``diff.models`` as ``name``; ``ValueError`` listing the
    available names when unknown."""
    return _load(MODEL_GROUP, name, "model_class")


def from_description(description: Mapping[str, Any], *, seed: int = 0) -> nnx.Module:
    """Rebuild a model from :func:`describe`'s dict (fresh weights from ``seed``)."""
    name, config = _split(description, "from_description")
    return _load(MODEL_GROUP, name, "from_description").from_config(config, seed=seed)


def embedder_from_description(description: Mapping[str, Any], *, rngs: nnx.Rngs) -> nnx.Module:
    """Rebuild an embedder from :func:`describe_embedder`'s dict (weights from ``rngs``)."""
    name, config = _split(description, "embedder_from_description")
    cls = _load(EMBEDDER_GROUP, name, "embedder_from_description")
    return cls.from_config(config, rngs=rngs)
