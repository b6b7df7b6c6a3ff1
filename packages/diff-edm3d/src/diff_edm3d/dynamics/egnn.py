"""The EGNN dynamics of EDM, as in the paper's runs (official code:
ehoogeboom/e3_diffusion_for_molecules, ``egnn/egnn_new.py`` and ``egnn/models.py``; EGNN: Satorras
et al., arXiv:2102.09844).

With node features h^0 = [h_scaled, t, c'] and positions x^0 = x, each of the L equivariant blocks
computes, over the ordered edges (i, j), j != i, of each molecule:

    d_ij = |x_i - x_j|^2,   u_ij = (x_i - x_j) / (sqrt(d_ij + 1e-8) + norm_constant),
    a_ij = [d_ij, d0_ij]                                   (d0 from the input positions)
    m_ij = SiLU(L2 SiLU(L1 [h_i, h_j, a_ij])),   g_ij = sigmoid(w . m_ij + b)
    h_i <- h_i + L4 SiLU(L3 [h_i, sum_j g_ij m_ij / normalization_factor])
    x_i <- x_i + sum_j u_ij tanh(phi_x([h_i, h_j, a_ij])) coords_range / normalization_factor

(the coordinate update uses the updated h, and coords_range = 15 in every block, as the official
code does). Output: eps_x = x^L - x^0 minus its per-molecule mean, eps_h = (W_out h^L)[:, :F].

The default *packed, fused* implementation evaluates the first Linear of ``edge_mlp`` and
``coord_mlp`` on the concatenation [h_i, h_j, a_ij] as (W_s h)[i] + (W_t h)[j] + W_a a_ij + b, an
exact algebraic identity that costs V nf^2 instead of E 2nf nf per layer and never builds the
E x (2nf + 2) concatenation; the weights stay in one ``nn.Linear`` so state dicts are unchanged.
``layout="dense"`` runs the official padded B N^2 computation with masks (the test and benchmark
reference; `diff_edm3d.testing.DenseEGNNReference`).

Module names equal the official code's (``embedding``, ``embedding_out``,
``e_block_{l}.gcl_0.{edge_mlp,node_mlp,att_mlp}``, ``e_block_{l}.gcl_equiv.coord_mlp``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..batch import Graph
from .base import Dynamics, register_dynamics

__all__ = ["EGNNConfig", "EGNNDynamics", "egnn_parameter_count"]


@dataclass(frozen=True)
class EGNNConfig:
    """EGNN hyper-parameters; the defaults are the paper's QM9 runs (official ``--nf 256
    --n_layers 9 --attention True --tanh True --coords_range 15 --norm_constant 1
    --normalization_factor 1 --inv_sublayers 1``)."""

    nf: int = 256
    n_layers: int = 9
    inv_sublayers: int = 1
    attention: bool = True
    tanh: bool = True
    coords_range: float = 15.0
    norm_constant: float = 1.0
    normalization_factor: float = 1.0
    aggregation: str = "sum"
    sin_embedding: bool = False
    act: str = "silu"
    condition_time: bool = True
    layout: str = "packed"
    nan_policy: str = "raise"

    def __post_init__(self) -> None:
        func = "EGNNConfig"
        for name in ("nf", "n_layers", "inv_sublayers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{func}: {name} must be a positive int, got {v!r}")
        if self.aggregation != "sum":
            raise ValueError(f"{func}: aggregation must be 'sum', got {self.aggregation!r}")
        if self.act != "silu":
            raise ValueError(f"{func}: act must be 'silu', got {self.act!r}")
        if self.layout not in ("packed", "dense"):
            raise ValueError(f"{func}: layout must be 'packed' or 'dense', got {self.layout!r}")
        if self.nan_policy not in ("raise", "zero"):
            raise ValueError(
                f"{func}: nan_policy must be 'raise' or 'zero', got {self.nan_policy!r}"
            )
        if not self.normalization_factor > 0:
            raise ValueError(
                f"{func}: normalization_factor must be > 0, got {self.normalization_factor}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EGNNConfig:
        if not isinstance(d, dict):
            raise TypeError(f"EGNNConfig.from_dict: d must be a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TypeError(f"EGNNConfig.from_dict: unknown keys {unknown}")
        return cls(**d)


def egnn_parameter_count(nf: int, n_layers: int, in_nf: int, inv_sublayers: int = 1) -> int:
    """P = L (inv (6 nf^2 + 8 nf + 1) + 3 nf^2 + 4 nf) + 2 in_nf nf + nf + in_nf (edge features 2).

    With one sublayer: L (9 nf^2 + 12 nf + 1) + 2 in_nf nf + nf + in_nf.
    """
    gcl = (2 * nf + 2) * nf + nf + nf * nf + nf + 2 * nf * nf + nf + nf * nf + nf + nf + 1
    equiv = (2 * nf + 2) * nf + nf + nf * nf + nf + nf
    return n_layers * (inv_sublayers * gcl + equiv) + 2 * in_nf * nf + nf + in_nf


class SinusoidsEmbedding(nn.Module):
    """Official ``SinusoidsEmbeddingNew``: sin/cos of sqrt(d) at geometric frequencies."""

    def __init__(self, max_res: float = 15.0, min_res: float = 15.0 / 2000.0, div_factor: int = 4):
        super().__init__()
        n = int(math.log(max_res / min_res, div_factor)) + 1
        freq = 2 * math.pi * div_factor ** torch.arange(n, dtype=torch.float64) / max_res
        self.register_buffer("frequencies", freq, persistent=False)
        self.dim = 2 * n

    def forward(self, d: Tensor) -> Tensor:
        r = torch.sqrt(d + 1e-8)
        emb = r * self.frequencies.to(d.dtype)[None, :]
        return torch.cat([emb.sin(), emb.cos()], -1).detach()


class GCL(nn.Module):
    """Invariant feature sublayer (official ``GCL``): edge MLP, sigmoid gate, residual node MLP."""

    def __init__(self, nf: int, edge_feat_nf: int, attention: bool) -> None:
        super().__init__()
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * nf + edge_feat_nf, nf), nn.SiLU(), nn.Linear(nf, nf), nn.SiLU()
        )
        self.node_mlp = nn.Sequential(nn.Linear(2 * nf, nf), nn.SiLU(), nn.Linear(nf, nf))
        self.attention = attention
        if attention:
            self.att_mlp = nn.Sequential(nn.Linear(nf, 1), nn.Sigmoid())


class EquivariantUpdate(nn.Module):
    """Coordinate update (official ``EquivariantUpdate``); last layer Xavier-uniform, gain 0.001."""

    def __init__(self, nf: int, edge_feat_nf: int) -> None:
        super().__init__()
        last = nn.Linear(nf, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.coord_mlp = nn.Sequential(
            nn.Linear(2 * nf + edge_feat_nf, nf), nn.SiLU(), nn.Linear(nf, nf), nn.SiLU(), last
        )


class EquivariantBlock(nn.Module):
    def __init__(self, nf: int, edge_feat_nf: int, inv_sublayers: int, attention: bool) -> None:
        super().__init__()
        self.inv_sublayers = inv_sublayers
        for i in range(inv_sublayers):
            self.add_module(f"gcl_{i}", GCL(nf, edge_feat_nf, attention))
        self.gcl_equiv = EquivariantUpdate(nf, edge_feat_nf)

    def gcls(self) -> list[GCL]:
        return [getattr(self, f"gcl_{i}") for i in range(self.inv_sublayers)]


def _fused_first_layer(lin: nn.Linear, h: Tensor, src: Tensor, dst: Tensor, a: Tensor) -> Tensor:
    """Linear([h_src, h_dst, a]) computed as (W_s h)[src] + (W_t h)[dst] + W_a a + b.

    The weight stays one ``nn.Linear`` [out, 2 nf + n_a]; it is sliced by column, so the state
    dict is the official one.
    """
    nf = h.shape[1]
    w = lin.weight
    out_dim = w.shape[0]
    # one matmul for both node projections: rows [W_s; W_t]
    p = F.linear(h, torch.cat([w[:, :nf], w[:, nf : 2 * nf]], 0))
    pre = p[:, :out_dim].index_select(0, src) + p[:, out_dim:].index_select(0, dst)
    return torch.addmm(pre, a, w[:, 2 * nf :].t()).add_(lin.bias)


class EGNNDynamics(Dynamics):
    """EDM's EGNN dynamics (see the module docstring).

    Args:
        config: `EGNNConfig` (defaults: the paper's nf 256, 9 layers).
        elements: the dataset's `ElementSet` (K atom types).
        include_charges: whether h carries the atomic-number column (F = K + 1) or not (F = K).
        context_dim: C, the number of conditioning columns (0 for unconditional models).

    Example:
        >>> from diff_edm3d import EGNNConfig, EGNNDynamics, QM9_WITH_H
        >>> net = EGNNDynamics(EGNNConfig(nf=64, n_layers=4), QM9_WITH_H)
        >>> sum(p.numel() for p in net.parameters())
        151499
    """

    #: Without autograd (sampling), run the packed layout with two reused [E, nf] buffers
    #: (`_forward_packed_inference`, bitwise the same output). False runs the autograd layout
    #: under ``no_grad`` too: the baseline of ``benchmarks/cpu_sample.py --figure issue16``.
    inference_buffers: bool = True

    def __init__(
        self,
        config: EGNNConfig | None = None,
        elements: Any = None,
        include_charges: bool = True,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        config = config or EGNNConfig()
        if not isinstance(config, EGNNConfig):
            raise TypeError(f"EGNNDynamics: config must be an EGNNConfig, got {type(config)}")
        if elements is None:
            from ..elements import QM9_WITH_H

            elements = QM9_WITH_H
        if not isinstance(context_dim, int) or context_dim < 0:
            raise ValueError(f"EGNNDynamics: context_dim must be an int >= 0, got {context_dim!r}")
        self.config = config
        self.elements = elements
        self.n_types = len(elements.symbols)
        self.include_charges = bool(include_charges)
        self.n_features = self.n_types + int(self.include_charges)
        self.context_dim = context_dim
        self.nan_policy = config.nan_policy
        self.nan_resets = 0
        self.in_nf = self.n_features + int(config.condition_time) + context_dim
        nf = config.nf
        if config.sin_embedding:
            self.sin_embedding: SinusoidsEmbedding | None = SinusoidsEmbedding()
            edge_feat_nf = 2 * self.sin_embedding.dim
        else:
            self.sin_embedding = None
            edge_feat_nf = 2
        self.embedding = nn.Linear(self.in_nf, nf)
        self.embedding_out = nn.Linear(nf, self.in_nf)
        for i in range(config.n_layers):
            self.add_module(
                f"e_block_{i}",
                EquivariantBlock(nf, edge_feat_nf, config.inv_sublayers, config.attention),
            )

    def blocks(self) -> list[EquivariantBlock]:
        return [getattr(self, f"e_block_{i}") for i in range(self.config.n_layers)]

    def extra_config(self) -> dict[str, Any]:
        return {
            "name": "egnn",
            "config": self.config.to_dict(),
            "include_charges": self.include_charges,
            "context_dim": self.context_dim,
        }

    def _node_input(self, h: Tensor, t_atom: Tensor, context_atom: Tensor | None) -> Tensor:
        parts = [h]
        if self.config.condition_time:
            parts.append(t_atom[:, None])
        if context_atom is not None:
            parts.append(context_atom)
        return torch.cat(parts, -1)

    def _edge_features(self, d: Tensor, d0: Tensor) -> Tensor:
        if self.sin_embedding is not None:
            return torch.cat([self.sin_embedding(d), self.sin_embedding(d0)], -1)
        return torch.cat([d, d0], -1)

    # ------------------------------------------------------------------------------------------
    # packed, fused (default)

    def forward_packed(
        self, x: Tensor, h: Tensor, t: Tensor, graph: Graph, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if self.config.layout == "dense":
            return self._forward_dense_from_packed(x, h, t, graph, context)
        if self.inference_buffers and not torch.is_grad_enabled():
            return self._forward_packed_inference(x, h, t, graph, context)
        cfg = self.config
        src, dst = graph.edge_index[0], graph.edge_index[1]
        v = x.shape[0]
        ctx = None if context is None else context.index_select(0, graph.batch)
        hh = self.embedding(self._node_input(h, t.index_select(0, graph.batch), ctx))
        diff0 = x.index_select(0, src) - x.index_select(0, dst)
        d0 = diff0.square().sum(-1, keepdim=True)
        xx = x
        norm_factor = cfg.normalization_factor
        for block in self.blocks():
            if xx is x:
                diff, d = diff0, d0
            else:
                diff = xx.index_select(0, src) - xx.index_select(0, dst)
                d = diff.square().sum(-1, keepdim=True)
            u = diff / (torch.sqrt(d + 1e-8) + cfg.norm_constant)
            a = self._edge_features(d, d0)
            for gcl in block.gcls():
                em = gcl.edge_mlp
                m = F.silu(_fused_first_layer(em[0], hh, src, dst, a))
                m = F.silu(em[2](m))
                if gcl.attention:
                    m = m * gcl.att_mlp(m)
                agg = hh.new_zeros((v, hh.shape[1])).index_add_(0, src, m)
                if norm_factor != 1.0:
                    agg = agg / norm_factor
                hh = hh + gcl.node_mlp(torch.cat([hh, agg], -1))
            cm = block.gcl_equiv.coord_mlp
            c = F.silu(_fused_first_layer(cm[0], hh, src, dst, a))
            c = cm[4](F.silu(cm[2](c)))
            if cfg.tanh:
                trans = u * (torch.tanh(c) * cfg.coords_range)
            else:
                trans = u * c
            agg_x = xx.new_zeros(xx.shape).index_add_(0, src, trans)
            if norm_factor != 1.0:
                agg_x = agg_x / norm_factor
            xx = xx + agg_x
        h_out = self.embedding_out(hh)
        return self.finish(xx - x, h_out[:, : self.n_features], graph)

    def _forward_packed_inference(
        self, x: Tensor, h: Tensor, t: Tensor, graph: Graph, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """`forward_packed` without autograd (sampling): the same operations in the same order,
        so bitwise the same output, but every [E, nf] intermediate is written into two buffers
        allocated once per call (``out=`` and in-place ops) instead of ~10 fresh ones per layer.

        On CPU each fresh [E, nf] tensor is a new mmap (above glibc's mmap threshold for a QM9
        batch) whose page faults cost about as much as the elementwise op that fills it.
        """
        cfg = self.config
        src, dst = graph.edge_index[0], graph.edge_index[1]
        v = x.shape[0]
        nf = cfg.nf
        ctx = None if context is None else context.index_select(0, graph.batch)
        hh = self.embedding(self._node_input(h, t.index_select(0, graph.batch), ctx))
        diff0 = x.index_select(0, src) - x.index_select(0, dst)
        d0 = diff0.square().sum(-1, keepdim=True)
        e = src.shape[0]
        buf_a = hh.new_empty((e, nf))
        buf_b = hh.new_empty((e, nf))

        def first_layer(lin: nn.Linear, a: Tensor) -> Tensor:
            # _fused_first_layer into buf_a (gather of dst in buf_b, free until the next layer)
            w = lin.weight
            out_dim = w.shape[0]
            p = F.linear(hh, torch.cat([w[:, :nf], w[:, nf : 2 * nf]], 0))
            torch.index_select(p[:, :out_dim], 0, src, out=buf_a)
            torch.index_select(p[:, out_dim:], 0, dst, out=buf_b)
            buf_a.add_(buf_b)
            return buf_a.addmm_(a, w[:, 2 * nf :].t()).add_(lin.bias)

        xx = x
        norm_factor = cfg.normalization_factor
        for block in self.blocks():
            if xx is x:
                diff, d = diff0, d0
            else:
                diff = xx.index_select(0, src) - xx.index_select(0, dst)
                d = diff.square().sum(-1, keepdim=True)
            u = diff / (torch.sqrt(d + 1e-8) + cfg.norm_constant)
            a = self._edge_features(d, d0)
            for gcl in block.gcls():
                em = gcl.edge_mlp
                m = F.silu(first_layer(em[0], a), inplace=True)
                m = F.silu(torch.addmm(em[2].bias, m, em[2].weight.t(), out=buf_b), inplace=True)
                if gcl.attention:
                    m = m.mul_(gcl.att_mlp(m))
                agg = hh.new_zeros((v, hh.shape[1])).index_add_(0, src, m)
                if norm_factor != 1.0:
                    agg = agg / norm_factor
                hh = hh + gcl.node_mlp(torch.cat([hh, agg], -1))
            cm = block.gcl_equiv.coord_mlp
            c = F.silu(first_layer(cm[0], a), inplace=True)
            c = F.silu(torch.addmm(cm[2].bias, c, cm[2].weight.t(), out=buf_b), inplace=True)
            c = cm[4](c)
            if cfg.tanh:
                trans = u * (torch.tanh(c) * cfg.coords_range)
            else:
                trans = u * c
            agg_x = xx.new_zeros(xx.shape).index_add_(0, src, trans)
            if norm_factor != 1.0:
                agg_x = agg_x / norm_factor
            xx = xx + agg_x
        h_out = self.embedding_out(hh)
        return self.finish(xx - x, h_out[:, : self.n_features], graph)

    # ------------------------------------------------------------------------------------------
    # dense reference (the official computation over all B N^2 pairs with masks)

    def _forward_dense_from_packed(
        self, x: Tensor, h: Tensor, t: Tensor, graph: Graph, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        b = graph.num_molecules
        n = int(graph.n_atoms.max())
        pos = torch.arange(x.shape[0], device=x.device) - graph.ptr.index_select(0, graph.batch)
        node_mask = x.new_zeros((b, n, 1))
        node_mask[graph.batch, pos] = 1.0
        xp = x.new_zeros((b, n, 3))
        xp[graph.batch, pos] = x
        hp = h.new_zeros((b, n, h.shape[1]))
        hp[graph.batch, pos] = h
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        edge_mask = node_mask * node_mask.transpose(1, 2) * (1 - eye)
        vel, h_final = self.forward_dense(xp, hp, t, node_mask, edge_mask, context)
        m = node_mask[..., 0] > 0.5
        return self.finish(vel[m], h_final[m], graph)

    def forward_dense(
        self,
        x: Tensor,
        h: Tensor,
        t: Tensor,
        node_mask: Tensor,
        edge_mask: Tensor,
        context: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """The official ``EGNN_dynamics_QM9._forward`` on padded [B, N, ...] tensors.

        Returns the raw (vel, h_final) in padded layout, before the CoM projection.
        """
        cfg = self.config
        bs, n = x.shape[:2]
        dev = x.device
        rows = torch.arange(n, device=dev).repeat_interleave(n)
        cols = torch.arange(n, device=dev).repeat(n)
        offs = (torch.arange(bs, device=dev) * n).repeat_interleave(n * n)
        row = rows.repeat(bs) + offs
        col = cols.repeat(bs) + offs
        nmask = node_mask.reshape(bs * n, 1)
        emask = edge_mask.reshape(bs * n * n, 1)
        xx = x.reshape(bs * n, 3) * nmask
        hh = h.reshape(bs * n, -1) * nmask
        parts = [hh]
        if cfg.condition_time:
            parts.append(t.reshape(bs, 1).repeat(1, n).reshape(bs * n, 1))
        if context is not None:
            parts.append((context[:, None, :] * node_mask).reshape(bs * n, -1))
        h0 = torch.cat(parts, 1)
        x_in = xx
        diff0 = xx.index_select(0, row) - xx.index_select(0, col)
        d0 = diff0.square().sum(1, keepdim=True)
        hcur = self.embedding(h0)
        nf_ = cfg.normalization_factor
        for block in self.blocks():
            diff = xx.index_select(0, row) - xx.index_select(0, col)
            d = diff.square().sum(1, keepdim=True)
            u = diff / (torch.sqrt(d + 1e-8) + cfg.norm_constant)
            a = self._edge_features(d, d0)
            for gcl in block.gcls():
                inp = torch.cat([hcur.index_select(0, row), hcur.index_select(0, col), a], 1)
                mij = gcl.edge_mlp(inp)
                out = mij * gcl.att_mlp(mij) if gcl.attention else mij
                out = out * emask
                agg = hcur.new_zeros(hcur.shape).index_add_(0, row, out) / nf_
                hcur = (hcur + gcl.node_mlp(torch.cat([hcur, agg], 1))) * nmask
            inp = torch.cat([hcur.index_select(0, row), hcur.index_select(0, col), a], 1)
            c = block.gcl_equiv.coord_mlp(inp)
            trans = u * torch.tanh(c) * cfg.coords_range if cfg.tanh else u * c
            trans = trans * emask
            xx = (xx + xx.new_zeros(xx.shape).index_add_(0, row, trans) / nf_) * nmask
            hcur = hcur * nmask
        h_final = self.embedding_out(hcur) * nmask
        vel = (xx - x_in) * nmask
        return vel.reshape(bs, n, 3), h_final[:, : self.n_features].reshape(bs, n, -1)


register_dynamics("egnn", EGNNDynamics)
