"""Packed and padded batches: edges, conversions, collate and bad input (spec 5, 11)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from diff_edm3d import (
    QM9_WITH_H,
    MoleculeSet,
    PaddedBatch,
    collate,
    fully_connected_edges,
    graph_from_n_atoms,
    to_packed,
    to_padded,
)


def _brute_edges(sizes):
    out, off = [], 0
    for m in sizes:
        out += [(off + i, off + j) for i in range(m) for j in range(m) if i != j]
        off += m
    return out


def test_edges_are_all_ordered_pairs_source_major():
    sizes = [1, 2, 5, 3, 1, 29]
    e = fully_connected_edges(sizes)
    assert [tuple(p) for p in e.T.tolist()] == _brute_edges(sizes)
    assert e.shape[1] == sum(m * (m - 1) for m in sizes)
    assert fully_connected_edges(tuple(sizes)) is e  # cached by the size tuple
    assert fully_connected_edges([1]).shape == (2, 0)
    g = graph_from_n_atoms([3, 1, 2])
    assert g.batch.tolist() == [0, 0, 0, 1, 2, 2] and g.ptr.tolist() == [0, 3, 4, 6]


def _molecules():
    rng = np.random.default_rng(0)
    n = np.array([3, 1, 5, 2])
    return MoleculeSet(rng.normal(size=(11, 3)), rng.integers(0, 5, 11), n, QM9_WITH_H)


def test_collate_and_round_trips():
    ms = _molecules()
    packed = collate(ms, dtype=torch.float64)
    assert packed.x.shape == (11, 3) and packed.h_cat.shape == (11, 5)
    z = np.asarray(QM9_WITH_H.atomic_numbers)[ms.types]
    assert torch.equal(packed.h_int[:, 0], torch.as_tensor(z, dtype=torch.float64))
    assert torch.equal(packed.h_cat.argmax(-1), torch.as_tensor(ms.types).long())
    padded = collate(ms, layout="padded", dtype=torch.float64)
    assert padded.x.shape == (4, 5, 3)
    m = padded.node_mask[..., 0]
    assert m.sum(1).tolist() == [3, 1, 5, 2]
    assert torch.all(padded.x[m == 0] == 0) and torch.all(padded.h_cat[m == 0] == 0)
    eye = torch.eye(5, dtype=torch.float64)
    assert torch.equal(padded.edge_mask, m[:, :, None] * m[:, None, :] * (1 - eye))
    back = to_packed(padded)
    for f in ("x", "h_cat", "h_int", "batch", "ptr", "n_atoms", "edge_index"):
        assert torch.equal(getattr(back, f), getattr(packed, f)), f
    assert torch.equal(to_padded(packed, n_max=7).x[:, :5], padded.x)
    assert collate(ms, include_charges=False).h_int.shape == (11, 0)


def test_bad_padded_batches():
    padded = collate(_molecules(), layout="padded", dtype=torch.float64)
    mask = padded.node_mask.clone()
    mask[2, 1, 0] = 0.5
    with pytest.raises(
        ValueError, match=r"node_mask must be 0 or 1, got 0.5 in molecule 2, atom 1"
    ):
        to_packed(padded.with_(node_mask=mask))
    x = padded.x.clone()
    x[1, 3, 0] = 1.0  # molecule 1 has one atom: row 3 is padding
    with pytest.raises(
        ValueError, match=r"padded rows of x must be exactly zero.*molecule 1, atom 3"
    ):
        to_packed(padded.with_(x=x))
    gap = padded.node_mask.clone()
    gap[0, 0, 0] = 0
    with pytest.raises(ValueError, match="real atoms first"):
        to_packed(padded.with_(node_mask=gap))
    assert isinstance(padded, PaddedBatch)


def test_collate_rejects_bad_molecules():
    ms = _molecules()
    pos = ms.positions.copy()
    pos[9, 2] = np.nan  # molecule 2 spans atoms 4..8, molecule 3 atoms 9..10
    # MoleculeSet itself refuses NaN; collate also checks duck-typed sets
    bad = SimpleNamespace(positions=pos, types=ms.types, n_atoms=ms.n_atoms, elements=ms.elements)
    with pytest.raises(ValueError, match=r"positions must be finite.*molecule 3, atom 0"):
        collate(bad)
    with pytest.raises(ValueError, match="molecule 2 must have at most max_atoms = 4"):
        collate(ms, max_atoms=4)
    with pytest.raises(ValueError, match="layout"):
        collate(ms, layout="ragged")
    with pytest.raises(ValueError, match="context must have one row per molecule"):
        collate(ms, context=np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"n_atoms must be >= 1.*molecule 1"):
        graph_from_n_atoms([2, 0])
