"""Batches of molecules: the packed layout (default), the padded layout, and conversions.

A batch of B molecules with M_b atoms each is stored either

* **packed** (`PackedBatch`): all V = sum_b M_b real atoms in one array, with the molecule index
  `batch` [V] (contiguous, sorted), offsets `ptr` [B+1] and the fully connected ordered edge list
  `edge_index` [2, E], E = sum_b M_b (M_b - 1), in source-major order; or
* **padded** (`PaddedBatch`): arrays [B, N, ...] with N = max_b M_b (or a fixed N), a node mask
  [B, N, 1] and the edge mask [B, N, N] = outer(node_mask) without the diagonal, as in the official
  code (ehoogeboom/e3_diffusion_for_molecules). Padded rows are exactly zero.

Every public function of the package accepts both; the network computes in packed form.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Graph",
    "PackedBatch",
    "PaddedBatch",
    "collate",
    "fully_connected_edges",
    "check_graph",
    "graph_from_n_atoms",
    "to_packed",
    "to_padded",
]


class Graph(NamedTuple):
    """The index data of a packed batch (no features).

    Attributes:
        batch: [V] molecule index of every atom, contiguous and sorted.
        ptr: [B+1] atom offsets, ``ptr[b]:ptr[b+1]`` are molecule b's atoms.
        n_atoms: [B] atom counts M_b.
        edge_index: [2, E] ordered pairs (i, j), i != j, inside each molecule, source-major.
    """

    batch: Tensor
    ptr: Tensor
    n_atoms: Tensor
    edge_index: Tensor

    @property
    def num_molecules(self) -> int:
        return int(self.n_atoms.shape[0])

    @property
    def num_atoms(self) -> int:
        return int(self.batch.shape[0])

    def to(self, device: torch.device | str) -> Graph:
        return Graph(*(t.to(device) for t in self))


@dataclass(frozen=True)
class PackedBatch:
    """Molecules stored atom by atom (see the module docstring).

    Attributes:
        x: [V, 3] positions (Å).
        h_cat: [V, K] one-hot atom types.
        h_int: [V, 1] atomic numbers Z (the paper's "charges"), or [V, 0] without them.
        batch, ptr, n_atoms, edge_index: see `Graph`.
        context: [B, C] per-molecule conditioning values, or None.
    """

    x: Tensor
    h_cat: Tensor
    h_int: Tensor
    batch: Tensor
    ptr: Tensor
    n_atoms: Tensor
    edge_index: Tensor
    context: Tensor | None = None

    @property
    def graph(self) -> Graph:
        return Graph(self.batch, self.ptr, self.n_atoms, self.edge_index)

    @property
    def num_molecules(self) -> int:
        return int(self.n_atoms.shape[0])

    @property
    def num_atoms(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_types(self) -> int:
        return int(self.h_cat.shape[-1])

    @property
    def dtype(self) -> torch.dtype:
        return self.x.dtype

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> PackedBatch:
        """Move to a device and/or cast the float fields to `dtype` (index fields stay int64)."""

        def f(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            return t.to(device=device, dtype=dtype)

        def i(t: Tensor) -> Tensor:
            return t.to(device=device)

        return PackedBatch(
            x=f(self.x),
            h_cat=f(self.h_cat),
            h_int=f(self.h_int),
            batch=i(self.batch),
            ptr=i(self.ptr),
            n_atoms=i(self.n_atoms),
            edge_index=i(self.edge_index),
            context=f(self.context),
        )

    def with_(self, **changes: Any) -> PackedBatch:
        """A copy with some fields replaced."""
        return replace(self, **changes)


@dataclass(frozen=True)
class PaddedBatch:
    """Molecules padded to N atoms, as in the official code.

    Attributes:
        x: [B, N, 3]; h_cat: [B, N, K]; h_int: [B, N, 1] or [B, N, 0].
        node_mask: [B, N, 1], exactly 0 or 1, real atoms first.
        edge_mask: [B, N, N], outer(node_mask) with the diagonal removed.
        context: [B, C] or None.
    """

    x: Tensor
    h_cat: Tensor
    h_int: Tensor
    node_mask: Tensor
    edge_mask: Tensor
    context: Tensor | None = None

    @property
    def n_atoms(self) -> Tensor:
        return self.node_mask[..., 0].sum(1).round().long()

    @property
    def num_molecules(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_types(self) -> int:
        return int(self.h_cat.shape[-1])

    @property
    def dtype(self) -> torch.dtype:
        return self.x.dtype

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> PaddedBatch:
        def f(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype)

        return PaddedBatch(
            x=f(self.x),
            h_cat=f(self.h_cat),
            h_int=f(self.h_int),
            node_mask=f(self.node_mask),
            edge_mask=f(self.edge_mask),
            context=f(self.context),
        )

    def with_(self, **changes: Any) -> PaddedBatch:
        return replace(self, **changes)


# ----------------------------------------------------------------------------------------------
# Edges


@functools.lru_cache(maxsize=512)
def _edges_cached(sizes: tuple[int, ...]) -> Tensor:
    n = torch.tensor(sizes, dtype=torch.int64)
    ptr = torch.zeros(len(sizes) + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(n, 0)
    n_edges = n * (n - 1)
    total = int(n_edges.sum())
    if total == 0:
        return torch.zeros(2, 0, dtype=torch.int64)
    mol = torch.repeat_interleave(torch.arange(len(sizes)), n_edges)
    eptr = torch.zeros(len(sizes) + 1, dtype=torch.int64)
    eptr[1:] = torch.cumsum(n_edges, 0)
    local = torch.arange(total) - eptr[mol]
    deg = n[mol] - 1  # >= 1 for every edge
    i = torch.div(local, deg, rounding_mode="floor")
    k = local - i * deg
    j = k + (k >= i).to(torch.int64)
    base = ptr[mol]
    edge_index = torch.stack([base + i, base + j])
    edge_index.requires_grad_(False)
    return edge_index


def fully_connected_edges(
    n_atoms: Tensor | np.ndarray | list[int] | tuple[int, ...], device: torch.device | str = "cpu"
) -> Tensor:
    """All ordered pairs (i, j), i != j, inside each molecule, source-major: [2, E].

    Built with vectorised torch ops in O(E) and cached by the tuple of sizes.

    Example:
        >>> fully_connected_edges([2, 3]).tolist()
        [[0, 1, 2, 2, 3, 3, 4, 4], [1, 0, 3, 4, 2, 4, 2, 3]]
    """
    sizes = _as_sizes(n_atoms, "fully_connected_edges")
    return _edges_cached(sizes).to(device)


def _as_sizes(n_atoms: Any, func: str) -> tuple[int, ...]:
    if isinstance(n_atoms, Tensor):
        arr = n_atoms.detach().cpu().numpy()
    else:
        arr = np.asarray(n_atoms)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{func}: n_atoms must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    bad = np.flatnonzero(arr < 1)
    if bad.size:
        raise ValueError(
            f"{func}: n_atoms must be >= 1 for every molecule, got molecule {int(bad[0])} "
            f"with {int(arr[bad[0]])} atoms"
        )
    return tuple(int(v) for v in arr)


def graph_from_n_atoms(
    n_atoms: Tensor | np.ndarray | list[int], device: torch.device | str = "cpu"
) -> Graph:
    """The packed `Graph` of molecules with the given atom counts."""
    sizes = _as_sizes(n_atoms, "graph_from_n_atoms")
    n = torch.tensor(sizes, dtype=torch.int64, device=device)
    ptr = torch.zeros(len(sizes) + 1, dtype=torch.int64, device=device)
    ptr[1:] = torch.cumsum(n, 0)
    batch = torch.repeat_interleave(torch.arange(len(sizes), device=device), n)
    return Graph(batch, ptr, n, fully_connected_edges(sizes, device))


def check_graph(graph: Any, n_rows: int | None, func: str, name: str = "graph") -> Graph:
    """Check that a packed `Graph` is self-consistent and has `n_rows` atoms; return it.

    ``batch`` must be ``repeat_interleave(arange(B), n_atoms)``, ``ptr`` the cumulative sum of
    ``n_atoms`` from 0, every count >= 1 and ``edge_index`` the fully connected pairs of those
    sizes (`fully_connected_edges`). O(V + E) host work: call once per public call, never per step.

    Raises:
        TypeError: a field that is not an integer tensor.
        ValueError: naming the field (``{name}.batch``, ...) and what differs, or the row count
            (``x must have one row per atom``) when `n_rows` disagrees with the graph.
    """
    if isinstance(graph, PackedBatch):
        graph = graph.graph
    if not isinstance(graph, Graph):
        raise TypeError(
            f"{func}: {name} must be a Graph or PackedBatch, got {type(graph).__name__}"
        )
    for field, t in zip(Graph._fields, graph):
        if not isinstance(t, Tensor) or t.dtype.is_floating_point or t.dtype.is_complex:
            got = f"{t.dtype} tensor" if isinstance(t, Tensor) else type(t).__name__
            raise TypeError(f"{func}: {name}.{field} must be an integer tensor, got {got}")
        if t.dtype == torch.bool:
            raise TypeError(f"{func}: {name}.{field} must be an integer tensor, got torch.bool")
    batch, ptr, n_atoms, edge_index = graph
    if n_atoms.dim() != 1 or n_atoms.shape[0] < 1:
        raise ValueError(
            f"{func}: {name}.n_atoms must have shape [B] with B >= 1, got {tuple(n_atoms.shape)}"
        )
    b = n_atoms.shape[0]
    if batch.dim() != 1:
        raise ValueError(f"{func}: {name}.batch must have shape [V], got {tuple(batch.shape)}")
    if ptr.shape != (b + 1,):
        raise ValueError(
            f"{func}: {name}.ptr must have shape [B + 1] = [{b + 1}], got {tuple(ptr.shape)}"
        )
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(
            f"{func}: {name}.edge_index must have shape [2, E], got {tuple(edge_index.shape)}"
        )
    n_cpu = n_atoms.detach().cpu().to(torch.int64)
    if bool((n_cpu < 1).any()):
        m = int(torch.nonzero(n_cpu < 1)[0])
        raise ValueError(
            f"{func}: {name}.n_atoms must be >= 1 for every molecule, got {int(n_cpu[m])} for "
            f"molecule {m}"
        )
    total = int(n_cpu.sum())
    if batch.shape[0] != total:
        raise ValueError(
            f"{func}: {name}.n_atoms must sum to the length of {name}.batch ({batch.shape[0]}), "
            f"got sum {total} ({n_cpu.tolist()[:10]}{' ...' if b > 10 else ''})"
        )
    if n_rows is not None and n_rows != total:
        raise ValueError(
            f"{func}: x must have one row per atom of {name} ({total} atoms in {b} molecules), "
            f"got {n_rows} rows"
        )
    want_ptr = torch.zeros(b + 1, dtype=torch.int64)
    want_ptr[1:] = torch.cumsum(n_cpu, 0)
    got_ptr = ptr.detach().cpu().to(torch.int64)
    if not torch.equal(got_ptr, want_ptr):
        sizes = torch.diff(got_ptr).tolist()
        raise ValueError(
            f"{func}: {name}.n_atoms must match the molecule sizes of {name}.ptr "
            f"(ptr = [0, cumsum(n_atoms)]), got n_atoms {n_cpu.tolist()[:10]} and ptr "
            f"{got_ptr.tolist()[:11]} (sizes {sizes[:10]})"
        )
    want_batch = torch.repeat_interleave(torch.arange(b), n_cpu)
    got_batch = batch.detach().cpu().to(torch.int64)
    if not torch.equal(got_batch, want_batch):
        a = int(torch.nonzero(got_batch != want_batch)[0])
        raise ValueError(
            f"{func}: {name}.batch must list each atom's molecule (contiguous, sorted, matching "
            f"{name}.n_atoms), got {int(got_batch[a])} at atom {a} where {int(want_batch[a])} is "
            "expected"
        )
    want_edges = _edges_cached(tuple(n_cpu.tolist()))
    if edge_index.shape != want_edges.shape or not torch.equal(
        edge_index.detach().cpu().to(torch.int64), want_edges
    ):
        raise ValueError(
            f"{func}: {name}.edge_index must be the fully connected pairs of n_atoms "
            f"({want_edges.shape[1]} edges, fully_connected_edges), got shape "
            f"{tuple(edge_index.shape)} with different pairs"
        )
    return graph


_DTYPE_NAMES = {
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "double": torch.float64,
}


def as_float_dtype(dtype: Any, func: str, name: str = "dtype") -> torch.dtype:
    """A floating torch dtype from a ``torch.dtype`` or its name (``"float32"``,
    ``"torch.float64"``); anything else is a TypeError naming the argument."""
    if isinstance(dtype, str):
        key = dtype.removeprefix("torch.")
        if key not in _DTYPE_NAMES:
            raise TypeError(
                f"{func}: {name} must be a floating torch dtype or one of "
                f"{sorted(_DTYPE_NAMES)}, got {dtype!r}"
            )
        return _DTYPE_NAMES[key]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"{func}: {name} must be a floating torch dtype (e.g. torch.float32) or its name, got "
            f"{dtype!r} ({type(dtype).__name__})"
        )
    return dtype


# ----------------------------------------------------------------------------------------------
# Conversions


def to_padded(batch: PackedBatch | PaddedBatch, n_max: int | None = None) -> PaddedBatch:
    """Convert a packed batch to the padded layout (padded rows exactly zero)."""
    if isinstance(batch, PaddedBatch):
        if n_max is None or n_max == batch.x.shape[1]:
            return batch
        return to_padded(to_packed(batch), n_max)
    if not isinstance(batch, PackedBatch):
        raise TypeError(f"to_padded: batch must be a PackedBatch or PaddedBatch, got {type(batch)}")
    n_atoms = batch.n_atoms
    b = batch.num_molecules
    n = int(n_atoms.max()) if n_max is None else int(n_max)
    if n < int(n_atoms.max()):
        raise ValueError(f"to_padded: n_max must be >= the largest molecule, got {n}")
    pos = torch.arange(batch.num_atoms, device=batch.device) - batch.ptr.index_select(
        0, batch.batch
    )

    def pad(t: Tensor) -> Tensor:
        out = t.new_zeros((b, n, t.shape[-1]))
        out[batch.batch, pos] = t
        return out

    node_mask = pad(torch.ones_like(batch.x[:, :1]))
    eye = torch.eye(n, dtype=node_mask.dtype, device=node_mask.device)
    edge_mask = node_mask * node_mask.transpose(1, 2) * (1 - eye)
    return PaddedBatch(
        x=pad(batch.x),
        h_cat=pad(batch.h_cat),
        h_int=pad(batch.h_int),
        node_mask=node_mask,
        edge_mask=edge_mask,
        context=batch.context,
    )


def padded_positions(batch: Tensor, ptr: Tensor) -> Tensor:
    """Row index of every packed atom inside its molecule."""
    return torch.arange(batch.shape[0], device=batch.device) - ptr.index_select(0, batch)


def check_node_mask(node_mask: Tensor, func: str = "to_packed") -> Tensor:
    """Validate a [B, N, 1] node mask (0/1, real atoms first) and return n_atoms [B]."""
    if node_mask.dim() != 3 or node_mask.shape[-1] != 1:
        raise ValueError(
            f"{func}: node_mask must have shape [B, N, 1], got {tuple(node_mask.shape)}"
        )
    m = node_mask[..., 0]
    bad = (m != 0) & (m != 1)
    if bool(bad.any()):
        b, a = (int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(
            f"{func}: node_mask must be 0 or 1, got {float(m[b, a])} in molecule {b}, atom {a}"
        )
    n_atoms = m.sum(1).round().long()
    expected = (torch.arange(m.shape[1], device=m.device)[None] < n_atoms[:, None]).to(m.dtype)
    if not torch.equal(expected, m):
        b = int(torch.nonzero((expected != m).any(1))[0])
        raise ValueError(f"{func}: node_mask must list real atoms first, got molecule {b}")
    return n_atoms


def unpad(t: Tensor, node_mask: Tensor, func: str = "to_packed", name: str = "x") -> Tensor:
    """Gather the real rows of a padded [B, N, C] tensor; padded rows must be exactly zero."""
    m = node_mask[..., 0] > 0.5
    padded_rows = t[~m]
    if padded_rows.numel() and bool((padded_rows != 0).any()):
        idx = torch.nonzero((t != 0).any(-1) & ~m)[0]
        raise ValueError(
            f"{func}: padded rows of {name} must be exactly zero, got a non-zero row in "
            f"molecule {int(idx[0])}, atom {int(idx[1])}"
        )
    return t[m]


def to_packed(batch: PaddedBatch | PackedBatch) -> PackedBatch:
    """Convert a padded batch to the packed layout (validating the mask and padded rows)."""
    if isinstance(batch, PackedBatch):
        return batch
    if not isinstance(batch, PaddedBatch):
        raise TypeError(f"to_packed: batch must be a PackedBatch or PaddedBatch, got {type(batch)}")
    n_atoms = check_node_mask(batch.node_mask)
    if bool((n_atoms < 1).any()):
        b = int(torch.nonzero(n_atoms < 1)[0])
        raise ValueError(f"to_packed: every molecule must have >= 1 atom, got molecule {b} empty")
    graph = graph_from_n_atoms(n_atoms.cpu(), device=batch.device)
    return PackedBatch(
        x=unpad(batch.x, batch.node_mask, name="x"),
        h_cat=unpad(batch.h_cat, batch.node_mask, name="h_cat"),
        h_int=unpad(batch.h_int, batch.node_mask, name="h_int"),
        batch=graph.batch,
        ptr=graph.ptr,
        n_atoms=graph.n_atoms,
        edge_index=graph.edge_index,
        context=batch.context,
    )


# ----------------------------------------------------------------------------------------------
# Collate


def collate(
    molecules: Any,
    layout: str = "packed",
    dtype: torch.dtype | str = torch.float32,
    *,
    include_charges: bool = True,
    context: Tensor | np.ndarray | None = None,
    device: torch.device | str = "cpu",
    max_atoms: int | None = None,
) -> PackedBatch | PaddedBatch:
    """Build a batch from a `MoleculeSet` (ragged positions/types plus its `ElementSet`).

    Args:
        molecules: object with ``positions`` [A, 3], ``types`` [A] (indices into
            ``molecules.elements``), ``n_atoms`` [S] and ``elements`` (an `ElementSet`).
        layout: ``"packed"`` (default) or ``"padded"``.
        dtype: float dtype of the features: a floating ``torch.dtype`` or its name
            (``"float32"``, ``"torch.float64"``, ...); anything else is a ``TypeError``.
        include_charges: add the atomic-number column ``h_int`` [V, 1] (else [V, 0]).
        context: optional [S, C] per-molecule conditioning values (normalised).
        device: target device.
        max_atoms: reject molecules with more atoms (default: ``elements.max_atoms``).

    Raises:
        ValueError: naming the molecule (and atom) for non-finite coordinates, type indices outside
            the element set, empty molecules or molecules above ``max_atoms``.
    """
    func = "collate"
    if layout not in ("packed", "padded"):
        raise ValueError(f"{func}: layout must be 'packed' or 'padded', got {layout!r}")
    dtype = as_float_dtype(dtype, func)
    if isinstance(molecules, (list, tuple)) and len(molecules) == 0:
        raise ValueError(
            f"{func}: molecules must hold at least one molecule, got an empty "
            f"{type(molecules).__name__}"
        )
    for attr in ("positions", "types", "n_atoms", "elements"):
        if not hasattr(molecules, attr):
            raise TypeError(f"{func}: molecules must be a MoleculeSet, got {type(molecules)}")
    elements = molecules.elements
    positions = np.asarray(molecules.positions, dtype=np.float64)
    types = np.asarray(molecules.types).astype(np.int64)
    n_atoms = np.asarray(molecules.n_atoms).astype(np.int64)
    if n_atoms.size == 0:
        raise ValueError(
            f"{func}: molecules must hold at least one molecule, got an empty "
            f"{type(molecules).__name__} (0 molecules; e.g. subset() of an empty selection)"
        )
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"{func}: positions must have shape [A, 3], got {positions.shape}")
    if max_atoms is not None and (
        isinstance(max_atoms, bool) or not isinstance(max_atoms, (int, np.integer)) or max_atoms < 1
    ):
        raise ValueError(f"{func}: max_atoms must be a positive int or None, got {max_atoms!r}")
    limit = int(max_atoms if max_atoms is not None else elements.max_atoms)
    check_atoms(n_atoms, limit, func)
    offsets = np.zeros(n_atoms.size + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(n_atoms)
    if offsets[-1] != positions.shape[0] or types.shape != (positions.shape[0],):
        raise ValueError(
            f"{func}: positions/types must hold sum(n_atoms) = {offsets[-1]} atoms, got "
            f"{positions.shape[0]} positions and {types.shape[0]} types"
        )
    check_finite_positions(positions, offsets, func)
    k = len(elements.symbols)
    bad = np.flatnonzero((types < 0) | (types >= k))
    if bad.size:
        a = int(bad[0])
        mol = int(np.searchsorted(offsets, a, side="right") - 1)
        raise ValueError(
            f"{func}: types must index the element set {tuple(elements.symbols)}, got type "
            f"{int(types[a])} in molecule {mol}, atom {a - offsets[mol]}"
        )
    z = np.asarray(elements.atomic_numbers, dtype=np.float64)[types]
    graph = graph_from_n_atoms(n_atoms, device=device)
    t_types = torch.as_tensor(types, device=device)
    h_cat = torch.nn.functional.one_hot(t_types, k).to(dtype)
    h_int = torch.as_tensor(z, dtype=dtype, device=device)[:, None]
    if not include_charges:
        h_int = h_int[:, :0]
    ctx = None
    if context is not None:
        ctx = torch.as_tensor(np.asarray(context), dtype=dtype, device=device)
        if ctx.dim() == 1:
            ctx = ctx[:, None]
        if ctx.dim() != 2 or ctx.shape[0] != n_atoms.size:
            raise ValueError(
                f"{func}: context must have one row per molecule ({n_atoms.size}), shape [S] or "
                f"[S, C], got {tuple(ctx.shape)}"
            )
        if not bool(torch.isfinite(ctx).all()):
            raise ValueError(f"{func}: context must be finite, got NaN or inf")
    packed = PackedBatch(
        x=torch.as_tensor(positions, dtype=dtype, device=device),
        h_cat=h_cat,
        h_int=h_int,
        batch=graph.batch,
        ptr=graph.ptr,
        n_atoms=graph.n_atoms,
        edge_index=graph.edge_index,
        context=ctx,
    )
    return packed if layout == "packed" else to_padded(packed)


def check_atoms(n_atoms: np.ndarray, max_atoms: int, func: str) -> None:
    """Reject empty molecules and molecules above the supported size."""
    empty = np.flatnonzero(n_atoms < 1)
    if empty.size:
        raise ValueError(f"{func}: molecule {int(empty[0])} must have >= 1 atom, got 0")
    big = np.flatnonzero(n_atoms > max_atoms)
    if big.size:
        b = int(big[0])
        raise ValueError(
            f"{func}: molecule {b} must have at most max_atoms = {max_atoms} atoms, got "
            f"{int(n_atoms[b])}"
        )


def check_finite_positions(positions: np.ndarray, offsets: np.ndarray, func: str) -> None:
    """Raise naming the first molecule and atom with a non-finite coordinate."""
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        a = int(bad[0])
        mol = int(np.searchsorted(offsets, a, side="right") - 1)
        raise ValueError(
            f"{func}: positions must be finite, got {positions[a].tolist()} in molecule {mol}, "
            f"atom {a - int(offsets[mol])}"
        )
