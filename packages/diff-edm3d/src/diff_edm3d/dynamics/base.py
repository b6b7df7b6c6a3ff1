"""The `Dynamics` interface shared by the EGNN and e3nn backbones, and the registry.

A dynamics network phi maps the scaled noisy state (x, h) of a batch of molecules and their times
t to the predicted noise (eps_x, eps_h) (EDM, arXiv:2203.17003, eq. 11):

    forward(x [V, 3], h [V, F], t [B], graph, context [B, C] | None) -> (eps_x [V, 3], eps_h [V, F])

Contract: eps_x is CoM-free per molecule, E(3)-equivariant in x (rotations and reflections,
invariant to translations); eps_h is invariant; both are equivariant to within-molecule
permutations; each molecule's output depends only on that molecule. Padded inputs ([B, N, ...]
with the node mask or a `PaddedBatch` as `graph`) are converted to the packed layout at the
boundary and back.
"""

from __future__ import annotations

import abc
import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..batch import (
    Graph,
    PackedBatch,
    PaddedBatch,
    check_graph,
    check_node_mask,
    graph_from_n_atoms,
    unpad,
)
from ..com import remove_mean

__all__ = ["DYNAMICS", "Dynamics", "register_dynamics"]


class Dynamics(nn.Module, abc.ABC):
    """Base class: validates inputs, converts padded inputs, and checks the outputs.

    Subclasses implement ``forward_packed(x, h, t, graph, context)`` and set ``n_features`` (F),
    ``context_dim`` (C) and ``include_charges``.
    """

    n_features: int
    context_dim: int
    include_charges: bool
    n_types: int

    @abc.abstractmethod
    def forward_packed(
        self, x: Tensor, h: Tensor, t: Tensor, graph: Graph, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """(eps_x, eps_h) on the packed graph; implemented by every backbone."""

    def forward(
        self,
        x: Tensor,
        h: Tensor,
        t: Tensor | float,
        graph: Graph | PackedBatch | PaddedBatch | Tensor,
        context: Tensor | None = None,
        *,
        check: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """(eps_x, eps_h) for packed ([V, 3], [V, F]) or padded ([B, N, 3], [B, N, F]) inputs.

        Validated once per call (``ValueError``/``TypeError`` naming the argument): x and h
        floating, of the network's dtype and shaped as above; t finite in [0, 1], a scalar or one
        value per molecule; a packed graph self-consistent (`check_graph`) with one atom per row
        of x; context as `check_context`. ``check=False`` skips the value checks (t range, graph
        consistency), for callers that built the graph and the times themselves and checked
        them once (`EDM` does, so no sampling step pays for them).
        """
        name = type(self).__name__
        if not isinstance(x, Tensor) or not isinstance(h, Tensor):
            bad, val = ("x", x) if not isinstance(x, Tensor) else ("h", h)
            raise TypeError(f"{name}: {bad} must be a torch.Tensor, got {type(val).__name__}")
        if check:
            self._check_dtypes(x, h, name)
        if x.dim() == 3:
            node_mask = graph.node_mask if isinstance(graph, PaddedBatch) else graph
            if not isinstance(node_mask, Tensor):
                raise TypeError(
                    f"{name}: graph must be a PaddedBatch or node mask for padded x, got "
                    f"{type(graph)}"
                )
            n_atoms = check_node_mask(node_mask, name)
            g = graph_from_n_atoms(n_atoms.cpu(), device=x.device)
            xp = unpad(x, node_mask, name, "x")
            hp = unpad(h, node_mask, name, "h")
            ex, eh = self.forward(xp, hp, t, g, context, check=check)
            m = node_mask[..., 0] > 0.5
            out_x = x.new_zeros(x.shape)
            out_h = h.new_zeros(h.shape[:2] + (eh.shape[-1],))
            out_x[m] = ex
            out_h[m] = eh
            return out_x, out_h
        if isinstance(graph, PackedBatch):
            graph = graph.graph
        if not isinstance(graph, Graph):
            raise TypeError(f"{name}: graph must be a Graph or PackedBatch, got {type(graph)}")
        if x.dim() != 2 or x.shape[-1] != 3:
            raise ValueError(f"{name}: x must have shape [V, 3], got {tuple(x.shape)}")
        if check:
            check_graph(graph, x.shape[0], name)
        elif graph.num_atoms != x.shape[0]:
            raise ValueError(
                f"{name}: x must have one row per atom of graph ({graph.num_atoms}), got "
                f"{x.shape[0]} rows"
            )
        if h.shape != (x.shape[0], self.n_features):
            raise ValueError(
                f"{name}: h must have shape [V, F] = [{x.shape[0]}, {self.n_features}], got "
                f"{tuple(h.shape)}"
            )
        b = graph.num_molecules
        if check:
            t = self._check_t(t, name)
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(b)
        t = t.reshape(-1)
        if t.shape[0] != b:
            raise ValueError(f"{name}: t must have one value per molecule ({b}), got {t.shape[0]}")
        context = self.check_context(context, b, x, check_finite=check)
        return self.forward_packed(x, h, t.to(x.dtype), graph, context)

    def _check_dtypes(self, x: Tensor, h: Tensor, name: str) -> None:
        if not x.dtype.is_floating_point:
            raise TypeError(f"{name}: x must be a floating tensor, got {x.dtype}")
        if h.dtype != x.dtype:
            raise TypeError(f"{name}: h must have x's dtype {x.dtype}, got {h.dtype}")
        param = next(self.parameters(), None)
        if param is not None and param.dtype != x.dtype:
            raise TypeError(
                f"{name}: x must have the network's dtype {param.dtype}, got {x.dtype} (convert "
                f"the inputs or the network with .to(dtype))"
            )

    @staticmethod
    def _check_t(t: Any, name: str) -> Tensor | float:
        """t must be real, finite and in [0, 1] (0 is data, 1 is noise)."""
        if isinstance(t, np.ndarray):
            t = torch.as_tensor(t)
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (numbers.Real, Tensor)):
            raise TypeError(
                f"{name}: t must be a float or a tensor of times in [0, 1], got {type(t).__name__}"
            )
        if isinstance(t, Tensor):
            if t.dtype == torch.bool or t.dtype.is_complex:
                raise TypeError(
                    f"{name}: t must be a real tensor of times in [0, 1], got {t.dtype}"
                )
            if t.numel() == 0:
                return t
            lo, hi = torch.aminmax(t.detach().reshape(-1).to(torch.float64))
            lo_v, hi_v = float(lo), float(hi)
            finite = bool(torch.isfinite(t).all()) if t.dtype.is_floating_point else True
        else:
            lo_v = hi_v = float(t)
            finite = math.isfinite(lo_v)
        if not finite or lo_v < 0.0 or hi_v > 1.0:
            shown = f"{lo_v:g}" if lo_v == hi_v else f"values in [{lo_v:g}, {hi_v:g}]"
            if not finite:
                shown = "NaN or inf"
            raise ValueError(f"{name}: t must lie in [0, 1] (0 data, 1 noise), got {shown}")
        return t

    def check_context(
        self, context: Tensor | None, b: int, like: Tensor, check_finite: bool = True
    ) -> Tensor | None:
        """The context as a [B, C] tensor of `like`'s dtype, or None for an unconditional model
        (``ValueError`` naming ``context`` for a wrong shape or, with `check_finite`, NaN/inf)."""
        name = type(self).__name__
        if context is not None and not isinstance(context, Tensor):
            if isinstance(context, (np.ndarray, list, tuple, numbers.Real)):
                context = torch.as_tensor(np.asarray(context, dtype=np.float64), device=like.device)
            else:
                raise TypeError(
                    f"{name}: context must be a tensor [B, C] or None, got {type(context).__name__}"
                )
        if self.context_dim == 0:
            if context is not None and context.numel() > 0:
                raise ValueError(
                    f"{name}: context must be None for an unconditional model (context_dim=0), "
                    f"got shape {tuple(context.shape)}"
                )
            return None
        if context is None:
            raise ValueError(
                f"{name}: context must be given with width {self.context_dim} for a conditional "
                f"model, got None"
            )
        context = context.to(like.dtype)
        if context.dim() == 1:
            context = context[:, None]
        if context.shape != (b, self.context_dim):
            raise ValueError(
                f"{name}: context must have shape [B, C] = [{b}, {self.context_dim}], got "
                f"{tuple(context.shape)}"
            )
        if check_finite and not bool(torch.isfinite(context).all()):
            raise ValueError(f"{name}: context must be finite, got NaN or inf")
        return context

    def finish(self, eps_x: Tensor, eps_h: Tensor, graph: Graph) -> tuple[Tensor, Tensor]:
        """Project eps_x onto U and apply the NaN policy."""
        eps_x = remove_mean(eps_x, graph)
        policy = getattr(self, "nan_policy", "raise")
        finite = torch.isfinite(eps_x).all(-1) & torch.isfinite(eps_h).all(-1)
        if not bool(finite.all()):
            if policy == "raise":
                bad = torch.unique(graph.batch[~finite]).tolist()
                shown = ", ".join(map(str, bad[:5]))
                more = f", ... ({len(bad)} in all)" if len(bad) > 5 else ""
                raise FloatingPointError(
                    f"{type(self).__name__}: non-finite network output for molecules "
                    f"[{shown}{more}]"
                )
            # the official code's silent reset (of the whole batch's position output)
            self.nan_resets += 1
            eps_x = torch.zeros_like(eps_x)
            eps_h = torch.nan_to_num(eps_h, nan=0.0, posinf=0.0, neginf=0.0)
        return eps_x, eps_h

    @abc.abstractmethod
    def extra_config(self) -> dict[str, Any]:
        """JSON-able description used by checkpoints."""


DYNAMICS: dict[str, type[Dynamics]] = {}


def register_dynamics(name: str, cls: type[Dynamics]) -> type[Dynamics]:
    """Register a backbone under `name` (``DYNAMICS`` and the ``diff.models`` group)."""
    DYNAMICS[name] = cls
    return cls
