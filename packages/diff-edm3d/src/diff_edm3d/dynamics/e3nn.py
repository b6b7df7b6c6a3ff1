"""An e3nn dynamics behind the same interface as the EGNN (needs the ``e3nn`` extra).

The paper (arXiv:2203.17003) has no e3nn network; every hyper-parameter here is ours (our default;
the paper's value is not confirmed). It is built on e3nn's gate-points message passing
(``e3nn.nn.models.v2106.gate_points_message_passing.MessagePassing``, e3nn/e3nn 0.6.0) over the same
fully connected packed edge list as the EGNN (no radius graph):

* node input ``(F + 1 + C)x0e``: the scaled features, t and the context; node attribute
  ``1x0e`` = 1;
* edge attributes: the scalars ``[d_ij, d0_ij] / max_radius^2`` (``2x0e``; the scaling keeps them
  O(1), unscaled squared distances made the tensor products blow up) and the spherical harmonics
  Y^l(x_i - x_j), l <= lmax (``normalize=True, normalization="component"``);
* radial embedding: ``soft_one_hot_linspace(|x_i - x_j|, 0, max_radius, num_basis,
  basis="smooth_finite", cutoff=True) * sqrt(num_basis)`` into an MLP [num_basis, 100];
* hidden irreps: ``mul`` copies of every (l, parity), l <= lmax, gated; ``layers`` gated layers;
* output ``Fx0e + 1x1o``: the 0e block is eps_h, the 1o block minus its per-molecule mean is eps_x
  (e3nn orders l = 1 as x, y, z, so ``Irreps("1o").D_from_matrix(R) == R``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor

from ..batch import Graph
from .base import Dynamics, register_dynamics

__all__ = ["E3nnConfig", "E3nnDynamics"]


def _require_e3nn() -> Any:
    try:
        import e3nn  # noqa: F401
        from e3nn import o3
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('E3nnDynamics needs e3nn: pip install "diff-edm3d[e3nn]"') from exc
    return o3


@dataclass(frozen=True)
class E3nnConfig:
    """e3nn dynamics hyper-parameters (all ours; the paper has no e3nn model)."""

    mul: int = 32
    layers: int = 4
    lmax: int = 2
    max_radius: float = 16.0
    num_basis: int = 32
    num_neighbors: float = 17.0
    radial_hidden: int = 100
    nan_policy: str = "raise"

    def __post_init__(self) -> None:
        func = "E3nnConfig"
        for name in ("mul", "layers", "num_basis", "radial_hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{func}: {name} must be a positive int, got {v!r}")
        if not isinstance(self.lmax, int) or self.lmax < 1:
            raise ValueError(f"{func}: lmax must be an int >= 1, got {self.lmax!r}")
        if not self.max_radius > 0:
            raise ValueError(f"{func}: max_radius must be > 0, got {self.max_radius}")
        if self.nan_policy not in ("raise", "zero"):
            raise ValueError(
                f"{func}: nan_policy must be 'raise' or 'zero', got {self.nan_policy!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> E3nnConfig:
        if not isinstance(d, dict):
            raise TypeError(f"E3nnConfig.from_dict: d must be a dict, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"E3nnConfig.from_dict: unknown keys {unknown}")
        return cls(**d)


class E3nnDynamics(Dynamics):
    """E(3)-equivariant gate-points dynamics (see the module docstring).

    Args:
        config: `E3nnConfig`.
        elements: the dataset's `ElementSet`.
        include_charges: F = K + 1 with the atomic-number column, else K.
        context_dim: C conditioning columns.
    """

    def __init__(
        self,
        config: E3nnConfig | None = None,
        elements: Any = None,
        include_charges: bool = True,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        o3 = _require_e3nn()
        from e3nn.nn.models.v2106.gate_points_message_passing import MessagePassing

        config = config or E3nnConfig()
        if not isinstance(config, E3nnConfig):
            raise TypeError(f"E3nnDynamics: config must be an E3nnConfig, got {type(config)}")
        if elements is None:
            from ..elements import QM9_WITH_H

            elements = QM9_WITH_H
        if not isinstance(context_dim, int) or context_dim < 0:
            raise ValueError(f"E3nnDynamics: context_dim must be an int >= 0, got {context_dim!r}")
        self.config = config
        self.elements = elements
        self.n_types = len(elements.symbols)
        self.include_charges = bool(include_charges)
        self.n_features = self.n_types + int(self.include_charges)
        self.context_dim = context_dim
        self.nan_policy = config.nan_policy
        self.nan_resets = 0
        self.in_nf = self.n_features + 1 + context_dim
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.lmax)
        hidden = o3.Irreps(
            [(config.mul, (deg, p)) for deg in range(config.lmax + 1) for p in (1, -1)]
        )
        self.mp = MessagePassing(
            irreps_node_sequence=[o3.Irreps(f"{self.in_nf}x0e")]
            + [hidden] * config.layers
            + [o3.Irreps(f"{self.n_features}x0e + 1x1o")],
            irreps_node_attr="1x0e",
            irreps_edge_attr=o3.Irreps("2x0e") + self.irreps_sh,
            fc_neurons=[config.num_basis, config.radial_hidden],
            num_neighbors=config.num_neighbors,
        )

    def extra_config(self) -> dict[str, Any]:
        return {
            "name": "e3nn",
            "config": self.config.to_dict(),
            "include_charges": self.include_charges,
            "context_dim": self.context_dim,
        }

    def forward_packed(
        self, x: Tensor, h: Tensor, t: Tensor, graph: Graph, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        from e3nn import o3
        from e3nn.math import soft_one_hot_linspace

        cfg = self.config
        src, dst = graph.edge_index[0], graph.edge_index[1]
        parts = [h, t.index_select(0, graph.batch)[:, None]]
        if context is not None:
            parts.append(context.index_select(0, graph.batch))
        node_in = torch.cat(parts, -1)
        node_attr = x.new_ones((x.shape[0], 1))
        vec = x.index_select(0, src) - x.index_select(0, dst)
        d = vec.square().sum(-1, keepdim=True)
        # d0 is the input distance: the network sees only one x, so d0 = d here; both are
        # divided by max_radius^2 so the scalar edge attributes are O(1) like the harmonics
        sh = o3.spherical_harmonics(
            list(range(cfg.lmax + 1)), vec, normalize=True, normalization="component"
        )
        ds = d / cfg.max_radius**2
        edge_attr = torch.cat([ds, ds, sh], -1)
        length = torch.sqrt(d[:, 0])
        emb = soft_one_hot_linspace(
            length, 0.0, cfg.max_radius, cfg.num_basis, basis="smooth_finite", cutoff=True
        ).mul(math.sqrt(cfg.num_basis))
        out = self.mp(node_in, node_attr, src, dst, edge_attr, emb)
        eps_h = out[:, : self.n_features]
        eps_x = out[:, self.n_features : self.n_features + 3]
        return self.finish(eps_x, eps_h, graph)


register_dynamics("e3nn", E3nnDynamics)
