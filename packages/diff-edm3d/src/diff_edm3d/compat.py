"""Loading the official code's state dicts (weights only).

The official ``EnVariationalDiffusion`` (ehoogeboom/e3_diffusion_for_molecules) stores the EGNN
under ``dynamics.egnn.``, the noise schedule as the parameter ``gamma.gamma`` (float32, gamma_k =
-logsnr_k on the T + 1 knots) and a dummy ``buffer``. Our `EGNNDynamics` uses the same module
names and ``Sequential`` indices, so conversion only strips (or adds) the prefix. The official
``.npy`` checkpoints (``generative_model_ema.npy``) are ``torch.save``d state dicts; they are read
with ``weights_only=True`` and never unpickled otherwise.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .checkpoint import load_state

__all__ = [
    "OFFICIAL_PREFIX",
    "from_official_state_dict",
    "load_official_checkpoint",
    "to_official_state_dict",
]

OFFICIAL_PREFIX = "dynamics.egnn."
_OFFICIAL_EXTRA = ("gamma.gamma", "buffer")


def from_official_state_dict(
    state_dict: dict[str, torch.Tensor], edm: Any = None, gamma_tol: float = 1e-6
) -> dict[str, torch.Tensor]:
    """Convert an official state dict to our dynamics' keys (and load it into `edm` if given).

    Args:
        state_dict: the official ``EnVariationalDiffusion`` state dict.
        edm: optional `EDM` with an `EGNNDynamics`; its dynamics receive the weights, and the
            official gamma table is checked against ours (max abs difference <= `gamma_tol`).

    Returns:
        The converted state dict (keys of `EGNNDynamics`).

    Raises:
        ValueError: unknown keys, a gamma table that disagrees, or tensors whose keys or shapes
            differ from the model (the message lists them).
    """
    if not isinstance(state_dict, dict):
        raise TypeError(
            f"from_official_state_dict: state_dict must be a dict, got {type(state_dict)}"
        )
    out: dict[str, torch.Tensor] = {}
    foreign = []
    for key, value in state_dict.items():
        if key.startswith(OFFICIAL_PREFIX):
            out[key[len(OFFICIAL_PREFIX) :]] = value
        elif key not in _OFFICIAL_EXTRA:
            foreign.append(key)
    if foreign:
        raise ValueError(
            f"from_official_state_dict: state_dict must hold only '{OFFICIAL_PREFIX}*', "
            f"'gamma.gamma' and 'buffer' keys, got unexpected keys {sorted(foreign)[:20]}"
        )
    if edm is not None:
        from .diffusion import EDM
        from .dynamics.egnn import EGNNDynamics

        if not isinstance(edm, EDM) or not isinstance(edm.dynamics, EGNNDynamics):
            raise TypeError(
                "from_official_state_dict: edm must be None or an EDM with EGNNDynamics, got "
                f"{type(edm).__name__}"
            )
        if "gamma.gamma" in state_dict:
            theirs = state_dict["gamma.gamma"]
            if not isinstance(theirs, torch.Tensor) or not theirs.is_floating_point():
                raise TypeError(
                    "from_official_state_dict: gamma.gamma must be a floating tensor, got "
                    f"{getattr(theirs, 'dtype', type(theirs).__name__)}"
                )
            theirs = theirs.detach().to(torch.float64).cpu()
            ours = edm.schedule.gamma_table
            if theirs.shape != ours.shape:
                raise ValueError(
                    f"from_official_state_dict: gamma.gamma must have shape {tuple(ours.shape)}, "
                    f"got {tuple(theirs.shape)}"
                )
            diff = float((theirs - ours).abs().max())
            if not diff <= gamma_tol:  # NaN included
                raise ValueError(
                    f"from_official_state_dict: gamma.gamma must match our schedule within "
                    f"{gamma_tol:g}, got max abs difference {diff:.3g}"
                )
        p = next(edm.dynamics.parameters())
        bad = sorted(k for k, v in out.items() if not isinstance(v, torch.Tensor))
        if bad:
            raise TypeError(
                f"from_official_state_dict: state_dict values must be tensors, got others for "
                f"{bad[:5]}"
            )
        ints = sorted(k for k, v in out.items() if not v.is_floating_point())
        if ints:
            raise TypeError(
                f"from_official_state_dict: state_dict tensors must be floating (never converted "
                f"from integers), got {[f'{k}: {out[k].dtype}' for k in ints[:5]]}"
            )
        converted = {k: v.to(device=p.device, dtype=p.dtype) for k, v in out.items()}
        load_state(edm.dynamics, converted, "from_official_state_dict")
    return out


def to_official_state_dict(edm: Any) -> dict[str, torch.Tensor]:
    """Our EDM's weights under the official key names (with ``gamma.gamma`` and ``buffer``)."""
    out = {OFFICIAL_PREFIX + k: v.detach().clone() for k, v in edm.dynamics.state_dict().items()}
    out["gamma.gamma"] = edm.schedule.gamma_table.to(torch.float32).clone()
    out["buffer"] = torch.zeros(1)
    return out


def load_official_checkpoint(path: str | os.PathLike, edm: Any) -> Any:
    """Load an official ``generative_model*.npy`` (a ``torch.save``d state dict) into `edm`
    with ``weights_only=True``; returns `edm`.

    Raises:
        TypeError: `edm` is not an `EDM` with an `EGNNDynamics` (``None`` included: there would
            be nothing to load into).
        ValueError: naming the file, when it is unreadable or its tensors do not fit `edm`
            (keys, shapes, dtypes, non-finite values, gamma table).
    """
    from .diffusion import EDM
    from .dynamics.egnn import EGNNDynamics

    if not isinstance(edm, EDM) or not isinstance(edm.dynamics, EGNNDynamics):
        raise TypeError(
            "load_official_checkpoint: edm must be an EDM with EGNNDynamics to load the weights "
            f"into, got {type(edm).__name__}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"load_official_checkpoint: path must be an existing file, got {os.fspath(path)}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"load_official_checkpoint: {path} must be a torch state dict loadable with "
            f"weights_only=True, got an unreadable file ({exc})"
        ) from exc
    try:
        from_official_state_dict(state, edm)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"load_official_checkpoint: file {path}: {exc}") from exc
    return edm
