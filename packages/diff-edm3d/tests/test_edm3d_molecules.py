"""MoleculeSet: ragged storage, validation (spec section 11), subsets, centring, H removal, .npz."""

import numpy as np
import pytest

from diff_edm3d.data.molecules import MoleculeSet, as_molecule_set
from diff_edm3d.elements import QM9_NO_H, QM9_WITH_H, ElementSet


def _random_set(n_mol=7, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 12, size=n_mol)
    a = int(n.sum())
    return MoleculeSet(
        rng.normal(size=(a, 3)).astype(dtype),
        rng.integers(0, 5, size=a),
        n,
        QM9_WITH_H,
        ids=np.arange(100, 100 + n_mol),
        properties={"alpha": rng.normal(size=n_mol)},
        smiles=[f"S{i}" for i in range(n_mol)],
    )


def test_layout_and_access():
    ms = _random_set()
    assert ms.offsets[0] == 0 and ms.offsets[-1] == ms.n_total_atoms == len(ms.positions)
    for i in range(len(ms)):
        pos, types = ms[i]
        lo, hi = ms.offsets[i], ms.offsets[i + 1]
        np.testing.assert_array_equal(pos, ms.positions[lo:hi])
        np.testing.assert_array_equal(types, ms.types[lo:hi])
    mi = ms.molecule_index()
    assert np.array_equal(np.bincount(mi), ms.n_atoms)
    assert ms.locate(int(ms.offsets[3]) + 0) == (3, 0)
    assert sum(ms.element_counts().values()) == ms.n_total_atoms


def test_subset_gathers_exactly():
    ms = _random_set(20, seed=1)
    idx = np.array([5, 0, 19, 5, 7])
    sub = ms.subset(idx)
    assert sub.ids.tolist() == (100 + idx).tolist()
    for k, i in enumerate(idx):
        np.testing.assert_array_equal(sub[k].positions, ms[int(i)].positions)
        np.testing.assert_array_equal(sub[k].types, ms[int(i)].types)
        assert sub.properties["alpha"][k] == ms.properties["alpha"][i]
        assert sub.smiles[k] == f"S{i}"
    mask = np.zeros(20, bool)
    mask[[2, 3]] = True
    assert ms.subset(mask).ids.tolist() == [102, 103]
    assert ms[2:4].ids.tolist() == [102, 103]
    assert ms.select_ids([107, 101]).ids.tolist() == [107, 101]
    with pytest.raises(ValueError, match="ids must be present"):
        ms.select_ids([5])


def test_centred_is_float64_centroid():
    ms = _random_set(6, seed=2, dtype=np.float32)
    c = ms.centred()
    assert c.positions.dtype == np.float32
    for i in range(len(ms)):
        p = ms[i].positions.astype(np.float64)
        np.testing.assert_array_equal(c[i].positions, (p - p.mean(0)).astype(np.float32))
    c64 = _random_set(6, seed=2).centred()
    sums = np.add.reduceat(c64.positions, c64.offsets[:-1])
    assert np.abs(sums).max() < 1e-13


def test_remove_hydrogens_recentres_and_reindexes():
    # H2O2-like: O, O, H, H and CH4: C, H, H, H, H
    pos = np.array(
        [[0, 0, 0], [1.4, 0, 0], [-0.3, 0.9, 0], [1.7, 0.9, 0.1],
         [5, 5, 5], [6, 5, 5], [5, 6, 5], [5, 5, 6], [4, 4, 4]], dtype=np.float64
    )  # fmt: skip
    types = QM9_WITH_H.encode(["O", "O", "H", "H", "C", "H", "H", "H", "H"])
    ms = MoleculeSet(pos, types, [4, 5], QM9_WITH_H)
    noh = ms.remove_hydrogens()
    assert noh.elements == QM9_NO_H
    assert noh.n_atoms.tolist() == [2, 1]
    assert noh.elements.decode(noh.types) == ["O", "O", "C"]
    np.testing.assert_allclose(noh[0].positions, [[-0.7, 0, 0], [0.7, 0, 0]], atol=1e-15)
    np.testing.assert_array_equal(noh[1].positions, np.zeros((1, 3)))  # M = 1: exactly zero


def test_validation_errors_name_molecule_and_atom():
    pos = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"n_atoms must be >= 1.*molecule 1"):
        MoleculeSet(pos, np.zeros(5, int), [5, 0])
    with pytest.raises(ValueError, match=r"n_atoms must be <= max_atoms=4, got M=5 in molecule 0"):
        MoleculeSet(pos, np.zeros(5, int), [5], ElementSet(("H", "C"), 4))
    bad = pos.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"positions must be finite.*molecule 1, atom 1"):
        MoleculeSet(bad, np.zeros(5, int), [2, 3])
    with pytest.raises(ValueError, match=r"types must index.*got 7 at molecule 0, atom 4"):
        MoleculeSet(pos, [0, 0, 0, 0, 7], [5])
    with pytest.raises(ValueError, match="n_atoms must sum"):
        MoleculeSet(pos, np.zeros(5, int), [2, 2])
    with pytest.raises(TypeError, match="types must be integer"):
        MoleculeSet(pos, np.zeros(5), [5])
    with pytest.raises(ValueError, match=r"properties\['mu'\] must have length 1"):
        MoleculeSet(pos, np.zeros(5, int), [5], properties={"mu": [1.0, 2.0]})


def test_npz_roundtrip_exact(tmp_path):
    ms = _random_set(9, seed=3, dtype=np.float32)
    ms.meta["drift_events"] = 2
    path = ms.save_npz(tmp_path / "set.npz")
    back = MoleculeSet.load_npz(path)
    assert back.positions.dtype == np.float32
    np.testing.assert_array_equal(back.positions, ms.positions)
    np.testing.assert_array_equal(back.types, ms.types)
    np.testing.assert_array_equal(back.n_atoms, ms.n_atoms)
    np.testing.assert_array_equal(back.ids, ms.ids)
    np.testing.assert_array_equal(back.properties["alpha"], ms.properties["alpha"])
    assert back.smiles.tolist() == ms.smiles.tolist()
    assert back.meta == {"drift_events": 2} and back.elements == QM9_WITH_H
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="path must not exist"):
        _random_set(2).save_npz(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["set.npz"]  # no temporary left behind


def test_concatenate_and_from_molecules():
    a, b = _random_set(3, seed=4), _random_set(4, seed=5)
    c = MoleculeSet.concatenate([a, b])
    assert len(c) == 7 and c.ids.tolist() == a.ids.tolist() + b.ids.tolist()
    np.testing.assert_array_equal(c[5].positions, b[2].positions)
    d = MoleculeSet.from_molecules([(m.positions, m.types) for m in c])
    np.testing.assert_array_equal(d.positions, c.positions)


def test_as_molecule_set_from_batches():
    """Packed and padded batches (duck-typed as diff_edm3d.batch defines them) convert exactly."""
    ms = _random_set(4, seed=6)
    k = len(ms.elements)
    onehot = np.eye(k)[ms.types] * 0.25

    class Packed:
        x, h_cat, n_atoms = ms.positions, onehot, ms.n_atoms

    n_max = int(ms.n_atoms.max())
    x = np.zeros((len(ms), n_max, 3))
    h = np.zeros((len(ms), n_max, k))
    mask = np.zeros((len(ms), n_max, 1))
    for i, (p, t) in enumerate(ms):
        x[i, : len(t)], h[i, : len(t)], mask[i, : len(t)] = p, np.eye(k)[t], 1

    class Padded:
        pass

    padded = Padded()
    padded.x, padded.h_cat, padded.node_mask = x, h, mask
    for batch in (Packed(), padded):
        got = as_molecule_set(batch)
        np.testing.assert_array_equal(got.positions, ms.positions)
        np.testing.assert_array_equal(got.types, ms.types)
    with pytest.raises(TypeError, match="molecules must be a MoleculeSet"):
        as_molecule_set(3.0)
