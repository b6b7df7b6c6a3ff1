"""Checking a requested torch device before any work, with a message that says what exists."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["resolve_device"]


def _available() -> str:
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return ", ".join(found)


def resolve_device(device: Any, func: str | None, arg: str = "device") -> torch.device:
    """``torch.device(device)`` after checking that this machine has it.

    Raises:
        ValueError: naming ``arg``, the devices available and the one asked for (an unknown
            name, CUDA without a CUDA build or GPU, an index beyond the GPUs present); the
            message starts with ``func`` when given.
    """
    pre = f"{func}: " if func else ""
    try:
        dev = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{pre}{arg} must be a torch device such as cpu or cuda:0 (available here: "
            f"{_available()}), got {device!r}"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                f"this torch ({torch.__version__}) is a CPU-only build"
                if torch.version.cuda is None
                else "no GPU is visible"
            )
            use = f"{arg} cpu" if arg.startswith("--") else "'cpu'"
            raise ValueError(
                f"{pre}{arg} must be available on this machine ({_available()}), got "
                f"{device!r}: {why}; use {use}"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{pre}{arg} must be one of {_available()}, got {device!r}")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(
                f"{pre}{arg} must be available on this machine ({_available()}), got {device!r}"
            )
    elif dev.type != "cpu":
        raise ValueError(f"{pre}{arg} must be one of {_available()}, got {device!r}")
    return dev
