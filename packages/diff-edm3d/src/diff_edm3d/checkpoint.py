"""Checkpoints: weights as safetensors, optimizer state via ``torch.save`` read back with
``weights_only=True``, everything else as JSON. Nothing here unpickles arbitrary objects.

A checkpoint is a directory ``ckpt_{step:08d}/`` (or ``best/``) holding

| file | contents |
|---|---|
| ``model.safetensors``, ``ema.safetensors`` | the EDM's weights (the dynamics' state dict) |
| ``optimizer.pt`` | the optimizer's state dict |
| ``trainer_state.json`` | step, epoch, loader position, clip queue (exact floats), config, |
| | versions, and ``model``: what rebuilds the `EDM` (dynamics, EDMConfig, p(M), p(c given M)) |

It is written under a temporary name and renamed, so a crash never leaves a half-written
checkpoint under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "CHECKPOINT_FILES",
    "build_edm",
    "describe_edm",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_state",
    "read_trainer_state",
    "save_checkpoint",
]

CHECKPOINT_FILES = ("model.safetensors", "ema.safetensors", "optimizer.pt", "trainer_state.json")


def _versions() -> dict[str, str]:
    import numpy as np

    from . import __version__

    return {"diff_edm3d": __version__, "torch": torch.__version__, "numpy": np.__version__}


def describe_edm(edm: Any) -> dict[str, Any]:
    """JSON-able description from which `build_edm` rebuilds the model (without weights)."""
    return {
        "dynamics": edm.dynamics.extra_config(),
        "edm_config": edm.config.to_dict(),
        "atom_counts": None if edm.atom_counts is None else edm.atom_counts.to_dict(),
        "property_dist": None if edm.property_dist is None else edm.property_dist.to_dict(),
        "property_normaliser": None
        if edm.property_normaliser is None
        else edm.property_normaliser.to_dict(),
        "property_names": edm.property_names,
    }


def build_edm(description: dict[str, Any]) -> Any:
    """Rebuild an `EDM` (random weights) from `describe_edm`'s output."""
    from .data.properties import PropertyNormaliser
    from .diffusion import EDM, EDMConfig
    from .dynamics import DYNAMICS, E3nnConfig, EGNNConfig
    from .sizes import AtomCountDistribution, PropertyGivenSize

    try:
        dyn = description["dynamics"]
        edm_config = EDMConfig.from_dict(description["edm_config"])
        name = dyn["name"]
        if name not in DYNAMICS:
            raise ValueError(f"build_edm: dynamics must be one of {sorted(DYNAMICS)}, got {name!r}")
        config_cls = {"egnn": EGNNConfig, "e3nn": E3nnConfig}[name]
        dynamics = DYNAMICS[name](
            config_cls.from_dict(dyn["config"]),
            edm_config.elements,
            include_charges=dyn["include_charges"],
            context_dim=dyn["context_dim"],
        )
        ac = description.get("atom_counts")
        pd = description.get("property_dist")
        pn = description.get("property_normaliser")
    except (KeyError, TypeError) as exc:
        raise ValueError(
            f"build_edm: description must be a valid model description, got {exc!r}"
        ) from exc
    return EDM(
        dynamics,
        edm_config,
        None if ac is None else AtomCountDistribution.from_dict(ac),
        None if pd is None else PropertyGivenSize.from_dict(pd),
        property_normaliser=None if pn is None else PropertyNormaliser.from_dict(pn),
        property_names=description.get("property_names"),
    )


def _json_dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_checkpoint(
    directory: str | os.PathLike,
    model: nn.Module,
    *,
    ema: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    trainer_state: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint directory atomically (temporary directory, then rename).

    Args:
        directory: the final directory, e.g. ``run/ckpt_00000600``.
        model: the EDM (its state dict is the dynamics' weights).
        ema: the EMA copy (written as ``ema.safetensors``; the model's weights when None).
        optimizer: written as ``optimizer.pt`` when given.
        trainer_state: JSON-able dict (step, clip queue, config, ...); ``model`` (the EDM
            description) and ``versions`` are added.
        overwrite: replace an existing directory (used for ``best/``); otherwise an existing
            directory is an error and nothing is written.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(
            f"save_checkpoint: directory must not exist (pass overwrite=True), got {directory}"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        save_file(_contiguous(model.state_dict()), str(tmp / "model.safetensors"))
        save_file(
            _contiguous((ema if ema is not None else model).state_dict()),
            str(tmp / "ema.safetensors"),
        )
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        state = dict(trainer_state or {})
        state["model"] = describe_edm(model)
        state["versions"] = _versions()
        (tmp / "trainer_state.json").write_text(_json_dump(state), encoding="utf-8")
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """``ckpt_*`` directories of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.glob("ckpt_*") if p.is_dir() and p.name[5:].isdigit())


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def _resolve(path: str | os.PathLike, func: str) -> Path:
    path = Path(path)
    if (path / "trainer_state.json").is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    raise FileNotFoundError(
        f"{func}: path must be a checkpoint directory (with trainer_state.json) or a run directory "
        f"with ckpt_* checkpoints, got {path}"
    )


def read_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``trainer_state.json`` of a checkpoint (ValueError when corrupted)."""
    path = _resolve(path, "read_trainer_state")
    f = path / "trainer_state.json"
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"read_trainer_state: {f} must be valid JSON, got a corrupted file ({exc})"
        ) from exc


def _load_tensors(f: Path, func: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not f.is_file():
        raise FileNotFoundError(f"{func}: checkpoint file must exist, got missing {f}")
    try:
        return load_file(str(f))
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(
            f"{func}: {f} must be a valid safetensors file, got a corrupted file ({exc})"
        ) from exc


def load_state(module: nn.Module, state: dict[str, torch.Tensor], func: str = "load_state") -> None:
    """`load_state_dict` that reports every missing, unexpected and mis-shaped key."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or shapes:
        raise ValueError(
            f"{func}: checkpoint tensors must match the model, got missing keys {missing}, "
            f"unexpected keys {unexpected}, shape mismatches {shapes}"
        )
    module.load_state_dict(state)


def load_checkpoint(
    path: str | os.PathLike,
    weights: str = "ema",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> Any:
    """Rebuild the `EDM` of a checkpoint and load its EMA (default) or raw weights.

    Args:
        path: a checkpoint directory, or a run directory (its newest ``ckpt_*``).
        weights: ``"ema"`` or ``"model"``.
        device, dtype: where to put the model.

    Raises:
        ValueError: corrupted files, or tensors that do not match the described model (the
            message lists the differing keys).
    """
    if weights not in ("ema", "model"):
        raise ValueError(f"load_checkpoint: weights must be 'ema' or 'model', got {weights!r}")
    path = _resolve(path, "load_checkpoint")
    state = read_trainer_state(path)
    if "model" not in state:
        raise ValueError(f"load_checkpoint: {path}/trainer_state.json must describe the model")
    edm = build_edm(state["model"])
    tensors = _load_tensors(path / f"{weights}.safetensors", "load_checkpoint")
    load_state(edm, tensors, "load_checkpoint")
    edm = edm.to(device)
    if dtype is not None:
        edm = edm.to(dtype)
    edm.eval()
    edm.checkpoint_path = str(path)
    edm.trainer_state = state
    return edm


def load_optimizer_state(path: str | os.PathLike) -> dict[str, Any]:
    """``optimizer.pt`` loaded with ``weights_only=True`` (ValueError when corrupted)."""
    f = Path(path) / "optimizer.pt"
    if not f.is_file():
        raise FileNotFoundError(
            f"load_optimizer_state: checkpoint file must exist, got missing {f}"
        )
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"load_optimizer_state: {f} must be a torch state dict, got a corrupted file ({exc})"
        ) from exc


def load_tensors(path: str | os.PathLike, name: str) -> dict[str, torch.Tensor]:
    """``{name}.safetensors`` of a checkpoint directory."""
    return _load_tensors(Path(path) / f"{name}.safetensors", "load_tensors")
