"""Entry-point plugin registry for schedules, samplers, models and conditioning embedders.

Distributions declare plugins in their ``pyproject.toml``::

    [project.entry-points."diff.samplers"]
    ddim = "diff_core.samplers.ddim:ddim"

:func:`available` lists names from installed metadata only (``importlib.metadata``) and imports
nothing, so listing never pulls in a framework. :func:`load` imports lazily and caches. A bare name
provided by two distributions is ambiguous: it is listed as ``"<dist>:<name>"`` for both and loading
the bare name raises :class:`RegistryError` naming both; load ``"<dist>:<name>"`` instead.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .errors import RegistryError

__all__ = ["GROUPS", "available", "load", "load_sampler", "refresh", "register"]

GROUPS = ("diff.schedules", "diff.samplers", "diff.models", "diff.embedders")

_RUNTIME = "<runtime>"
# group -> name -> list of (provider, "module:attr")
_scanned: dict[str, dict[str, list[tuple[str, str]]]] = {}
# group -> name -> (provider, obj)
_runtime: dict[str, dict[str, tuple[str, Any]]] = {}
_cache: dict[tuple[str, str, str], Any] = {}


def _check_group(func: str, group: str) -> None:
    if not isinstance(group, str) or not group:
        raise ValueError(f"{func}: group must be a non-empty str, got {group!r}")


def _scan(group: str) -> dict[str, list[tuple[str, str]]]:
    if group not in _scanned:
        found: dict[str, list[tuple[str, str]]] = {}
        seen: set[tuple[str, str, str]] = set()
        for ep in entry_points(group=group):
            dist = ep.dist.name if getattr(ep, "dist", None) is not None else "<unknown>"
            key = (dist, ep.name, ep.value)
            if key in seen:  # the same distribution found twice on sys.path
                continue
            seen.add(key)
            found.setdefault(ep.name, []).append((dist, ep.value))
        _scanned[group] = found
    return _scanned[group]


def refresh() -> None:
    """Forget scanned metadata and loaded objects (after installing a distribution at run time)."""
    _scanned.clear()
    _cache.clear()


def _target(obj: Any) -> str:
    """``"module:qualname"`` of a runtime-registered object."""
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


def _providers(group: str) -> dict[str, list[tuple[str, str]]]:
    merged = {name: list(v) for name, v in _scan(group).items()}
    for name, (provider, obj) in _runtime.get(group, {}).items():
        merged[name] = [(provider, _target(obj))]  # overwrite=True replaced any other provider
    return merged


def available(group: str) -> dict[str, str]:
    """Names registered under ``group`` mapped to ``"module:attr"``; imports nothing.

    A name provided by several distributions appears once per provider as ``"<dist>:<name>"``.
    """
    _check_group("available", group)
    out: dict[str, str] = {}
    for name, provs in sorted(_providers(group).items()):
        if len(provs) == 1:
            out[name] = provs[0][1]
        else:
            for dist, target in provs:
                out[f"{dist}:{name}"] = target
    return out


def providers(group: str, name: str) -> list[str]:
    """Distributions providing ``name`` in ``group``."""
    return [dist for dist, _ in _providers(group).get(name, [])]


def _import_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def load(group: str, name: str) -> Any:
    """Import and return the object registered as ``name`` (or ``"<dist>:<name>"``) in ``group``."""
    _check_group("load", group)
    if not isinstance(name, str) or not name:
        raise ValueError(f"load: name must be a non-empty str, got {name!r}")
    runtime = _runtime.get(group, {})
    if name in runtime:
        return runtime[name][1]
    provs = _scan(group)
    dist_filter = None
    bare = name
    if name not in provs and ":" in name:
        dist_filter, bare = name.split(":", 1)
    entries = provs.get(bare, [])
    if dist_filter is not None:
        entries = [e for e in entries if e[0] == dist_filter]
    if not entries:
        names = ", ".join(sorted(available(group))) or "(none installed)"
        raise RegistryError(f"load: no {group} plugin named {name!r}; available: {names}")
    if len(entries) > 1:
        dists = " and ".join(sorted(e[0] for e in entries))
        raise RegistryError(
            f"load: {group} name {bare!r} is provided by {dists}; "
            f"load it as '<dist>:{bare}' to choose one"
        )
    dist, target = entries[0]
    key = (group, dist, bare)
    if key not in _cache:
        _cache[key] = _import_target(target)
    return _cache[key]


def load_sampler(name: str, **kwargs: Any) -> Any:
    """Load the sampler factory ``name`` from ``diff.samplers`` and call it with ``kwargs``."""
    return load("diff.samplers", name)(**kwargs)


def register(group: str, name: str, obj: Any, overwrite: bool = False) -> None:
    """Register a process-local plugin (not persisted; no entry point needed).

    Registering a name that an installed distribution or an earlier runtime registration already
    provides raises :class:`RegistryError` naming both providers unless ``overwrite=True``.
    """
    _check_group("register", group)
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"register: name must be a non-empty str without ':', got {name!r}")
    existing = _providers(group).get(name, [])
    if existing and not overwrite:
        firsts = " and ".join(f"{dist} ({target})" for dist, target in existing)
        raise RegistryError(
            f"register: {group} name {name!r} is already provided by {firsts}; "
            f"a second provider ({_RUNTIME} {_target(obj)}) needs overwrite=True"
        )
    _runtime.setdefault(group, {})[name] = (_RUNTIME, obj)
