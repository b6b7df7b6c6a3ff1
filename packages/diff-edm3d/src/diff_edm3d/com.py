"""The centre-of-mass-free Gaussian of EDM and its protocol noise source.

Positions of a molecule with M atoms live in the linear subspace
U = {x in R^{M x 3} : sum_i x_i = 0} of dimension d_x = 3 (M - 1) (Hoogeboom et al., EDM,
arXiv:2203.17003, section 3.2; the "mean" is the unweighted centroid, as in the official code). The
isotropic Gaussian on U is

    log N_U(x | mu, sigma^2) = -(d_x / 2) log(2 pi sigma^2) - |x - mu|^2 / (2 sigma^2),  x, mu in U,

and its KL to N_U(0, 1) is d_x log(1/sigma) + (d_x sigma^2 + |mu|^2)/2 - d_x/2. Sampling draws a
standard normal for every real atom and subtracts the per-molecule mean (the orthogonal projection
P = I - 11^T/M onto U, applied per coordinate).

`ComFreeNoise` follows diff-protocol's noise-source convention: ``noise(i)`` is a pure function of
(seed, i), shaped like the state [V, 3 + F] (or [B, N, 3 + F] padded).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .batch import Graph, PackedBatch, PaddedBatch

__all__ = [
    "ComFreeNoise",
    "com_free_kl",
    "com_free_log_density",
    "derive_torch_seed",
    "remove_mean",
    "segment_sum",
    "subspace_dim",
]


def segment_sum(values: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Sum rows of `values` [V, ...] into `num_segments` segments by `index` [V]."""
    out = values.new_zeros((num_segments,) + tuple(values.shape[1:]))
    return out.index_add_(0, index, values)


def _graph_of(graph: Any) -> Graph:
    if isinstance(graph, Graph):
        return graph
    if isinstance(graph, PackedBatch):
        return graph.graph
    raise TypeError(f"graph must be a Graph, PackedBatch or [B, N, 1] node mask, got {type(graph)}")


def remove_mean(x: Tensor, graph: Graph | PackedBatch | Tensor) -> Tensor:
    """Subtract the per-molecule mean of the real atoms: the projection onto U.

    Args:
        x: packed [V, 3] (with `graph` a `Graph`/`PackedBatch`) or padded [B, N, 3] (with `graph`
            the node mask [B, N, 1]; padded rows stay zero).
    """
    if x.dim() == 3:
        node_mask = graph
        if not isinstance(node_mask, Tensor):
            raise TypeError("remove_mean: graph must be the node mask for a padded x")
        n = node_mask.sum(1, keepdim=True)
        mean = (x * node_mask).sum(1, keepdim=True) / n.clamp(min=1)
        return (x - mean) * node_mask
    g = _graph_of(graph)
    mean = segment_sum(x, g.batch, g.num_molecules) / g.n_atoms[:, None].to(x.dtype)
    return x - mean.index_select(0, g.batch)


def subspace_dim(n_atoms: Tensor) -> Tensor:
    """d_x = 3 (M - 1) per molecule."""
    return 3 * (n_atoms - 1)


def _per_molecule_sq(x: Tensor, graph: Graph | PackedBatch | Tensor) -> tuple[Tensor, Tensor]:
    if x.dim() == 3:
        node_mask = graph
        return (x.square() * node_mask).sum((1, 2)), node_mask[..., 0].sum(1).round().long()
    g = _graph_of(graph)
    return segment_sum(x.square().sum(-1), g.batch, g.num_molecules), g.n_atoms


def com_free_log_density(
    x: Tensor, mu: Tensor, sigma: float | Tensor, graph: Graph | PackedBatch | Tensor
) -> Tensor:
    r"""Per-molecule log N_U(x | mu, sigma^2) on the CoM-free subspace (nats), shape [B].

    ``-(d_x/2) log(2 pi sigma^2) - |x - mu|^2 / (2 sigma^2)``, d_x = 3(M - 1). Both `x` and `mu`
    must lie in U; `sigma` is a scalar or one value per molecule [B]. For M = 1 the space is 0-dim
    and the log-density is exactly 0.
    """
    sq, n_atoms = _per_molecule_sq(x - mu, graph)
    d = subspace_dim(n_atoms).to(x.dtype)
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return -0.5 * d * torch.log(2 * math.pi * sigma.square()) - sq / (2 * sigma.square())


def com_free_kl(mu: Tensor, sigma: float | Tensor, graph: Graph | PackedBatch | Tensor) -> Tensor:
    r"""Per-molecule KL( N_U(mu, sigma^2) || N_U(0, 1) ), shape [B].

    ``d_x log(1/sigma) + (d_x sigma^2 + |mu|^2)/2 - d_x/2`` with d_x = 3(M - 1).
    """
    sq, n_atoms = _per_molecule_sq(mu, graph)
    d = subspace_dim(n_atoms).to(mu.dtype)
    sigma = torch.as_tensor(sigma, dtype=mu.dtype, device=mu.device)
    return -d * torch.log(sigma) + 0.5 * (d * sigma.square() + sq) - 0.5 * d


def derive_torch_seed(*path: int) -> int:
    """First 63 bits of ``np.random.SeedSequence(path).generate_state(2, np.uint64)``."""
    state = np.random.SeedSequence([int(p) for p in path]).generate_state(2, np.uint64)
    return int(state[0]) & ((1 << 63) - 1)


class ComFreeNoise:
    """Protocol noise source for molecule states: CoM-free positions, standard normal features.

    ``noise(i)`` returns a tensor shaped like the state ([V, 3 + F] packed, [B, N, 3 + F] padded):
    the x part projected onto U per molecule, padded rows exactly zero, the h part N(0, 1). Draw i
    uses a ``torch.Generator`` on the state's device seeded with `derive_torch_seed(seed, i)`, so
    draws are pure in (seed, i) and order-independent. With ``per_molecule=True`` molecule b's draw
    depends only on (seed, molecule_offset + b, i), so sampling a molecule alone equals sampling it
    inside any batch; these per-molecule draws are made with CPU generators and moved to the
    state's device in one transfer.

    Index convention (diff-protocol): draw 0 is the initial state z_T, step k receives draw k + 1,
    and EDM's final decode of an N-step grid uses draw N + 1.

    Args:
        template: a `PackedBatch`/`PaddedBatch` (its feature width F = K + include_charges and
            layout are used) or a `Graph` together with ``n_features``.
        seed: non-negative integer seed.
        per_molecule: seed every molecule separately.
        n_features: F, required with a `Graph` template.
        dtype, device: override the template's.
        molecule_offset: global index of the batch's first molecule (``per_molecule`` only).
    """

    def __init__(
        self,
        template: PackedBatch | PaddedBatch | Graph,
        seed: int,
        per_molecule: bool = False,
        *,
        n_features: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        molecule_offset: int = 0,
    ) -> None:
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
            raise TypeError(f"ComFreeNoise: seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self.per_molecule = bool(per_molecule)
        self.molecule_offset = int(molecule_offset)
        self.node_mask: Tensor | None = None
        if isinstance(template, PaddedBatch):
            n_atoms = template.n_atoms.cpu()
            self.node_mask = template.node_mask
            f = template.h_cat.shape[-1] + template.h_int.shape[-1]
            dtype = dtype or template.dtype
            device = device or template.device
            self.graph = None
        elif isinstance(template, PackedBatch):
            self.graph = template.graph
            n_atoms = template.n_atoms.cpu()
            f = template.h_cat.shape[-1] + template.h_int.shape[-1]
            dtype = dtype or template.dtype
            device = device or template.device
        elif isinstance(template, Graph):
            if n_features is None:
                raise TypeError("ComFreeNoise: n_features must be given with a Graph template")
            self.graph = template
            n_atoms = template.n_atoms.cpu()
            f = int(n_features)
            dtype = dtype or torch.float32
            device = device or template.batch.device
        else:
            raise TypeError(
                f"ComFreeNoise: template must be a PackedBatch, PaddedBatch or Graph, got "
                f"{type(template)}"
            )
        if n_features is not None and int(n_features) != f:
            raise ValueError(f"ComFreeNoise: n_features must be {f} for this template")
        self.n_atoms = n_atoms.to(torch.int64)
        self.n_features = int(f)
        self.dtype = dtype
        self.device = torch.device(device)
        if self.node_mask is not None:
            b, n = self.node_mask.shape[:2]
            self.shape: tuple[int, ...] = (b, n, 3 + self.n_features)
        else:
            self.shape = (int(self.n_atoms.sum()), 3 + self.n_features)
        self._sizes = [int(v) for v in self.n_atoms]

    def _randn(self, shape: tuple[int, ...], *path: int, device: Any = None) -> Tensor:
        device = self.device if device is None else device
        gen = torch.Generator(device=device)
        gen.manual_seed(derive_torch_seed(*path))
        return torch.randn(shape, generator=gen, dtype=self.dtype, device=device)

    def __call__(self, i: int) -> Tensor:
        i = int(i)
        if i < 0:
            raise ValueError(f"ComFreeNoise: i must be >= 0, got {i}")
        d = 3 + self.n_features
        if self.per_molecule:
            # one small draw per molecule, made on the CPU (one transfer instead of B kernel
            # launches per step on a GPU; also makes these draws device-independent)
            parts = [
                self._randn((m, d), self.seed, self.molecule_offset + b, i, device="cpu")
                for b, m in enumerate(self._sizes)
            ]
            packed = torch.cat(parts, 0).to(self.device)
        elif self.node_mask is None:
            packed = self._randn((int(sum(self._sizes)), d), self.seed, i)
        else:
            eps = self._randn(self.shape, self.seed, i) * self.node_mask
            x = remove_mean(eps[..., :3], self.node_mask)
            return torch.cat([x, eps[..., 3:]], -1)
        if self.node_mask is not None:
            # per-molecule draws placed into padded rows
            b, n = self.shape[:2]
            out = packed.new_zeros(self.shape)
            ptr = np.concatenate([[0], np.cumsum(self._sizes)])
            for j in range(b):
                out[j, : self._sizes[j]] = packed[ptr[j] : ptr[j + 1]]
            x = remove_mean(out[..., :3], self.node_mask)
            return torch.cat([x, out[..., 3:]], -1)
        graph = self.graph
        if graph.batch.device != self.device:
            graph = graph.to(self.device)
            self.graph = graph
        x = remove_mean(packed[:, :3], graph)
        return torch.cat([x, packed[:, 3:]], -1)

    def __repr__(self) -> str:
        return (
            f"ComFreeNoise(shape={self.shape}, seed={self.seed}, per_molecule={self.per_molecule})"
        )
