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
checkpoint under the final name. ``trainer_state.json`` records the SHA-256 and size of every
other file; loading verifies them, so a truncated or garbled file is reported as a
`CheckpointError` (a ``ValueError``) that names the checkpoint, what is wrong with it and the
other checkpoints of the run, instead of loading garbage.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "CHECKPOINT_FILES",
    "CheckpointError",
    "available_checkpoints",
    "build_edm",
    "describe_edm",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_state",
    "read_trainer_state",
    "save_checkpoint",
    "trainer_state_problem",
]

CHECKPOINT_FILES = ("model.safetensors", "ema.safetensors", "optimizer.pt", "trainer_state.json")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read (truncated, garbled or missing files).

    ``str(exc)`` is one line: the checkpoint, the reason, and the other checkpoints of the same
    run with the argument that loads each (``step=N``); `message` formats it for a command line
    (``--step N``).

    Attributes:
        path: the unreadable checkpoint directory.
        reason: what is wrong with it.
        available: ``(name, step)`` of the run's other checkpoints, newest first (step ``"best"``
            for ``best/``).
        hint: an optional last sentence (what to do).
    """

    def __init__(
        self,
        func: str,
        path: Path,
        reason: str,
        available: list[tuple[str, int | str]],
        hint: str = "",
    ) -> None:
        self.func = func
        self.path = Path(path)
        self.reason = reason
        self.available = available
        self.hint = hint
        super().__init__(self.message(f"{func}: ", "step="))

    def message(self, prefix: str = "", flag: str = "step=") -> str:
        """The one-line message, ``flag`` naming how to select another checkpoint."""
        if self.available:
            others = ", ".join(f"{name} ({flag}{step})" for name, step in self.available)
        else:
            others = "none"
        text = f"{prefix}checkpoint {self.path} is unreadable ({self.reason}); available: {others}"
        return f"{text}; {self.hint}" if self.hint else text


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _step_of(path: Path) -> int | str:
    return "best" if path.name == "best" else int(path.name[5:])


def available_checkpoints(run_dir: str | os.PathLike, exclude: Path | None = None) -> list[Path]:
    """The checkpoints of a run, newest first, ``best/`` last (``exclude`` left out)."""
    run_dir = Path(run_dir)
    found = list(reversed(list_checkpoints(run_dir)))
    if (run_dir / "best" / "trainer_state.json").is_file():
        found.append(run_dir / "best")
    if exclude is not None:
        found = [p for p in found if p.resolve() != Path(exclude).resolve()]
    return found


def _error(func: str, path: Path, reason: str, hint: str = "") -> CheckpointError:
    others = available_checkpoints(path.parent, exclude=path)
    return CheckpointError(func, path, reason, [(p.name, _step_of(p)) for p in others], hint)


def _verify_file(checkpoint: Path, name: str, state: dict[str, Any], func: str) -> Path:
    """The path of ``name`` in a checkpoint after checking it exists and matches the size and
    SHA-256 recorded in ``trainer_state.json`` (checkpoints written before 0.2.0 record none)."""
    f = Path(checkpoint) / name
    if not f.is_file():
        raise _error(func, Path(checkpoint), f"{name} is missing")
    files = state.get("files")
    record = files.get(name) if isinstance(files, dict) else None
    if isinstance(record, dict):
        size = f.stat().st_size
        if size != record.get("bytes"):
            raise _error(
                func,
                Path(checkpoint),
                f"{name} has {size} bytes, {record.get('bytes')} were written: truncated or "
                "changed",
            )
        if _sha256(f) != record.get("sha256"):
            raise _error(
                func, Path(checkpoint), f"{name} does not match its recorded SHA-256: garbled"
            )
    return f


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

    if not isinstance(description, dict):
        raise ValueError(
            f"build_edm: description must be a dict (describe_edm's output), got "
            f"{type(description).__name__}"
        )
    try:
        dyn = description["dynamics"]
        if not isinstance(dyn, dict):
            raise TypeError(f"dynamics must be an object, got {type(dyn).__name__}")
        edm_config = EDMConfig.from_dict(description["edm_config"])
        name = dyn["name"]
        if not isinstance(name, str) or name not in DYNAMICS:
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
        names = description.get("property_names")
        if names is not None and not (
            isinstance(names, list) and all(isinstance(n, str) for n in names)
        ):
            raise TypeError(f"property_names must be a list of str or null, got {names!r:.80}")
        return EDM(
            dynamics,
            edm_config,
            None if ac is None else AtomCountDistribution.from_dict(ac),
            None if pd is None else PropertyGivenSize.from_dict(pd),
            property_normaliser=None if pn is None else PropertyNormaliser.from_dict(pn),
            property_names=names,
        )
    except (KeyError, TypeError, AttributeError, OverflowError, ValueError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(
            f"build_edm: description must be a valid model description, got {what}"
        ) from exc


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
        state["files"] = {
            f.name: {"bytes": f.stat().st_size, "sha256": _sha256(f)}
            for f in sorted(tmp.iterdir())
            if f.name in CHECKPOINT_FILES
        }
        (tmp / "trainer_state.json").write_text(_json_dump(state), encoding="utf-8")
        # mkdtemp makes the folder 0700 and safetensors its files 0600: apply the umask instead
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
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


def _resolve(path: str | os.PathLike, func: str, step: int | str | None = None) -> Path:
    path = Path(path)
    if step is not None:
        name = "best" if step == "best" else f"ckpt_{int(step):08d}"
        target = path / name
        if (target / "trainer_state.json").is_file():
            return target
        others = ", ".join(f"{p.name} (step={_step_of(p)})" for p in available_checkpoints(path))
        raise FileNotFoundError(
            f"{func}: step must name a checkpoint of the run {path}, got {step!r} (no {target}); "
            f"available: {others or 'none'}"
        )
    if (path / "trainer_state.json").is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    raise FileNotFoundError(
        f"{func}: path must be a checkpoint directory (with trainer_state.json) or a run directory "
        f"with ckpt_* checkpoints, got {path}"
    )


def read_trainer_state(path: str | os.PathLike, step: int | str | None = None) -> dict[str, Any]:
    """The parsed ``trainer_state.json`` of a checkpoint (`CheckpointError` when corrupted)."""
    path = _resolve(path, "read_trainer_state", step)
    f = path / "trainer_state.json"
    try:
        state = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _error(
            "read_trainer_state", path, f"trainer_state.json is not valid JSON: {exc}"
        ) from exc
    if not isinstance(state, dict):
        raise _error(
            "read_trainer_state",
            path,
            f"trainer_state.json must hold an object, got {type(state).__name__}",
        )
    problem = trainer_state_problem(state)
    if problem:
        raise _error("read_trainer_state", path, f"trainer_state.json: {problem}")
    return state


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def trainer_state_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with a parsed ``trainer_state.json`` (None when its schema holds).

    Checked when present: ``step`` an int >= 0; ``epoch`` an int >= 0; ``clip_queue`` a list of
    finite numbers; ``loader`` an object whose ``epoch`` and ``position`` are ints >= 0;
    ``config``, ``model`` and ``versions`` objects; ``files`` an object of ``{"bytes": int >= 0,
    "sha256": 64 hex digits}``; ``best_val_nll`` a number or null.
    """
    for key in ("step", "epoch"):
        if key in state and not (_is_int(state[key]) and state[key] >= 0):
            return f"{key} must be an int >= 0, got {state[key]!r:.80}"
    if "clip_queue" in state:
        q = state["clip_queue"]
        if not isinstance(q, list) or not all(_is_number(v) and math.isfinite(v) for v in q):
            return f"clip_queue must be a list of finite numbers, got {q!r:.80}"
    if "loader" in state:
        loader = state["loader"]
        if not isinstance(loader, dict):
            return f"loader must be an object, got {type(loader).__name__}"
        for key in ("epoch", "position"):
            if not (_is_int(loader.get(key)) and loader[key] >= 0):
                return f"loader.{key} must be an int >= 0, got {loader.get(key)!r:.80}"
    for key in ("config", "model", "versions"):
        if key in state and not isinstance(state[key], dict):
            return f"{key} must be an object, got {type(state[key]).__name__}"
    if "files" in state:
        files = state["files"]
        if not isinstance(files, dict):
            return f"files must be an object, got {type(files).__name__}"
        for name, rec in files.items():
            ok = (
                isinstance(rec, dict)
                and _is_int(rec.get("bytes"))
                and rec["bytes"] >= 0
                and isinstance(rec.get("sha256"), str)
                and len(rec["sha256"]) == 64
            )
            if not ok:
                return (
                    f"files[{name!r}] must be {{'bytes': int, 'sha256': 64 hex digits}}, got "
                    f"{rec!r:.80}"
                )
    best = state.get("best_val_nll")
    if best is not None and not _is_number(best):
        return f"best_val_nll must be a number or null, got {best!r:.80}"
    return None


def _load_tensors(
    checkpoint: Path, name: str, state: dict[str, Any], func: str
) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    f = _verify_file(checkpoint, f"{name}.safetensors", state, func)
    try:
        tensors = load_file(str(f))
    except Exception as exc:  # safetensors raises its own error types
        raise _error(func, checkpoint, f"{f.name} is not a valid safetensors file: {exc}") from exc
    bad = sorted(k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all())
    if bad:
        raise _error(func, checkpoint, f"{f.name} holds non-finite values in {bad[:3]}")
    return tensors


def load_state(module: nn.Module, state: dict[str, torch.Tensor], func: str = "load_state") -> None:
    """`load_state_dict` that reports every missing, unexpected and mis-shaped key."""
    if not isinstance(state, dict):
        raise TypeError(f"{func}: state must be a dict of tensors, got {type(state).__name__}")
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise TypeError(
            f"{func}: checkpoint values must be tensors, got others for {not_tensors[:5]}"
        )
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
    dtypes = sorted(
        f"{k}: {state[k].dtype} for {own[k].dtype}"
        for k in own
        if own[k].is_floating_point() != state[k].is_floating_point()
        or (not own[k].is_floating_point() and own[k].dtype != state[k].dtype)
    )
    if dtypes:
        raise TypeError(
            f"{func}: checkpoint tensors must have the model's dtypes (floating where the model "
            f"is floating; never converted from integers), got {dtypes[:5]}"
        )
    bad = sorted(
        k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())
    )
    if bad:
        raise ValueError(
            f"{func}: checkpoint tensors must be finite, got NaN or inf in {bad[:5]}"
            f"{f' and {len(bad) - 5} more' if len(bad) > 5 else ''}"
        )
    module.load_state_dict(state)


def load_checkpoint(
    path: str | os.PathLike,
    weights: str = "ema",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    step: int | str | None = None,
) -> Any:
    """Rebuild the `EDM` of a checkpoint and load its EMA (default) or raw weights.

    Args:
        path: a checkpoint directory, or a run directory (its newest ``ckpt_*``).
        weights: ``"ema"`` or ``"model"``.
        device, dtype: where to put the model.
        step: with a run directory, the checkpoint of that step (``ckpt_{step:08d}``) or
            ``"best"`` instead of the newest.

    Raises:
        CheckpointError: (a ``ValueError``) a truncated, garbled or missing file; the message
            names the checkpoint and the run's other checkpoints.
        ValueError: tensors that do not match the described model (the message lists the
            differing keys).
        FileNotFoundError: no checkpoint at ``path`` (or no ``step`` there).
    """
    from .devices import resolve_device

    if weights not in ("ema", "model"):
        raise ValueError(f"load_checkpoint: weights must be 'ema' or 'model', got {weights!r}")
    device = resolve_device(device, "load_checkpoint")
    path = _resolve(path, "load_checkpoint", step)
    state = read_trainer_state(path)
    if "model" not in state:
        raise _error("load_checkpoint", path, "trainer_state.json does not describe the model")
    try:
        edm = build_edm(state["model"])
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise _error("load_checkpoint", path, f"trainer_state.json: {exc}") from exc
    tensors = _load_tensors(path, weights, state, "load_checkpoint")
    try:
        load_state(edm, tensors, "load_checkpoint")
    except (ValueError, TypeError) as exc:
        raise _error(
            "load_checkpoint", path, f"{weights}.safetensors: {str(exc).split(': ', 1)[-1]}"
        ) from exc
    edm = edm.to(device)
    if dtype is not None:
        edm = edm.to(dtype)
    edm.eval()
    edm.checkpoint_path = str(path)
    edm.trainer_state = state
    return edm


def load_optimizer_state(
    path: str | os.PathLike, state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``optimizer.pt`` loaded with ``weights_only=True`` (`CheckpointError` when corrupted)."""
    path = Path(path)
    f = _verify_file(path, "optimizer.pt", state or {}, "load_optimizer_state")
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _error(
            "load_optimizer_state", path, f"optimizer.pt is not a torch state dict: {exc}"
        ) from exc


def load_tensors(
    path: str | os.PathLike, name: str, state: dict[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """``{name}.safetensors`` of a checkpoint directory, verified against ``state`` (its
    ``trainer_state.json``) when given."""
    return _load_tensors(Path(path), name, state or {}, "load_tensors")
