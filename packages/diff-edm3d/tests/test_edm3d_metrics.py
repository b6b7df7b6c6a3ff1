"""Bond lookup, stability and RDKit metrics: hand-built geometries and golden QM9 numbers.

Spec 13.1 #13 (hand-built geometries) and #14 (the first 1,000 QM9 molecules by Index).
"""

import itertools

import numpy as np
import pytest

from diff_edm3d.data.molecules import MoleculeSet
from diff_edm3d.elements import GEOM_WITH_H, QM9_WITH_H
from diff_edm3d.metrics import (
    bond_order,
    bond_orders,
    chem_metrics,
    molecule_metrics,
    molecule_smiles,
    pairwise_distances_pm,
    plausibility,
    reference_smiles,
    stability,
    wilson_interval,
)
from diff_edm3d.metrics.bonds import BOND_LENGTHS_SINGLE, BondMargins


def _pair(a, b, d):
    types = QM9_WITH_H.encode([a, b])
    return bond_orders(np.array([[0.0, 0.0, 0.0], [d, 0.0, 0.0]]), types, QM9_WITH_H)[0, 1]


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_cc_thresholds(precision):
    cc = QM9_WITH_H.encode(["C", "C"])

    def order(d):
        pos = np.array([[0.0, 0.0, 0.0], [d, 0.0, 0.0]])
        return int(bond_orders(pos, cc, QM9_WITH_H, precision)[0, 1])

    assert (order(1.635), order(1.645)) == (1, 0)  # single threshold 154 + 10 = 164 pm, strict
    assert (order(1.385), order(1.225)) == (2, 3)  # 134 + 5 = 139, 120 + 3 = 123
    assert (order(1.390), order(1.230)) == (1, 2)  # exactly at a threshold: strict comparisons
    assert order(1.64) == 0


def test_vectorised_lookup_equals_scalar_rule():
    rng = np.random.default_rng(0)
    symbols = GEOM_WITH_H.symbols
    for a, b in itertools.product(symbols, symbols):
        d = rng.uniform(0.9, 2.8, size=12)
        if (a, b) in BOND_LENGTHS_SINGLE:
            d = np.concatenate([d, [(BOND_LENGTHS_SINGLE[(a, b)] + 10) / 100]])
        for dist in d:
            types = GEOM_WITH_H.encode([a, b])
            pos = np.array([[0.0, 0.0, 0.0], [0.0, float(dist), 0.0]])
            assert int(bond_orders(pos, types, GEOM_WITH_H)[0, 1]) == bond_order(a, b, dist)
    assert bond_order("Hg", "C", 1.0) == 0  # no table entry: order 0 (official GEOM path)
    assert bond_order("C", "C", 1.7, BondMargins(single=20)) == 1


def test_float32_distances_match_official_scalar_loop(qm9_head):
    for i in (0, 17, 500, 999):
        pos, _ = qm9_head[i]
        p = pos.astype(np.float32)
        d = pairwise_distances_pm(p, "float32")
        for a, b in itertools.combinations(range(len(p)), 2):
            official = np.float32(100) * np.sqrt(np.sum((p[a] - p[b]) ** 2))  # qm9/analyze.py
            assert d[a, b] == official


@pytest.mark.smoke
def test_known_molecules_stable(qm9_head):
    for index, symbols in ((1, "CHHHH"), (4, "CCHH"), (6, "COHH")):
        sub = qm9_head.select_ids([index])
        assert "".join(sub.symbols(0)) == symbols
        r = stability(sub)
        assert r.molecule_stable.tolist() == [True]
    acetylene = qm9_head.select_ids([4])
    assert bond_orders(acetylene[0].positions, acetylene[0].types, QM9_WITH_H)[0, 1] == 3
    formaldehyde = qm9_head.select_ids([6])
    assert bond_orders(formaldehyde[0].positions, formaldehyde[0].types, QM9_WITH_H)[0, 1] == 2


def test_moved_hydrogen(qm9_head):
    methane = qm9_head.select_ids([1])
    pos = methane.positions.copy()
    direction = pos[1] - pos[0]
    pos[1] = pos[1] + 2.0 * direction / np.linalg.norm(direction)
    r = stability(MoleculeSet(pos, methane.types, [5]))
    assert r.molecule_stable.tolist() == [False]
    assert r.atom_stable.tolist() == [False, False, True, True, True]  # the C and the moved H
    assert r.valences.tolist() == [3, 0, 1, 1, 1]
    assert r.n_stable_atoms == 3


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_golden_first_1000(qm9_head, precision):
    r = stability(qm9_head, precision=precision)
    assert (r.n_stable_molecules, r.n_stable_atoms, r.n_total_atoms) == (935, 12133, 12319)
    unstable = qm9_head.ids[~r.molecule_stable]
    assert unstable[:10].tolist() == [23, 24, 25, 115, 116, 166, 214, 215, 216, 217]
    assert r.stable_atoms_per_molecule().sum() == 12133
    d = r.to_dict()
    assert d["molecule_stability"] == 0.935
    lo, hi = d["molecule_stability_wilson95"]
    assert lo < 0.935 < hi


def test_golden_rdkit_first_1000(qm9_head):
    c = chem_metrics(qm9_head)
    assert (c.n_valid, c.n_unique, c.n_generated) == (951, 951, 1000)
    assert c.novelty is None and c.valid_and_unique == 0.951
    # every molecule is in its own reference, so nothing is novel; dropping one makes it novel
    ref = reference_smiles(qm9_head)
    assert len(ref) == 951
    assert chem_metrics(qm9_head, train_smiles=ref).n_novel == 0
    assert chem_metrics(qm9_head, train_smiles=ref[1:]).n_novel == 1
    methane = qm9_head.select_ids([1])
    assert (
        molecule_smiles(methane[0].positions, methane[0].types, QM9_WITH_H) == "[H]C([H])([H])[H]"
    )


def test_invalid_and_fragmented_molecules(qm9_head):
    methane = qm9_head.select_ids([1])
    pos, types = methane[0]
    # two methanes 10 Å apart: valid; the largest fragment is one methane
    two = MoleculeSet(np.concatenate([pos, pos + 10.0]), np.concatenate([types, types]), [10])
    c = chem_metrics(two)
    assert c.smiles == ["[H]C([H])([H])[H]"]
    # squeezed methane: H-H bonds give H valence 4 -> sanitisation fails
    squeezed = MoleculeSet(pos * 0.2, types, [5])
    c = chem_metrics(squeezed)
    assert (c.n_valid, c.smiles, c.uniqueness) == (0, [None], 0.0)


def test_wilson_interval_closed_forms():
    z2 = 1.959963984540054**2
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(z2 / (10 + z2), rel=1e-14)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + z2), rel=1e-14)
    lo, hi = wilson_interval(50, 100)
    assert (lo + hi) / 2 == pytest.approx(0.5, abs=1e-15)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_metrics_accept_batches_and_report(qm9_head):
    sub = qm9_head[:40]
    k = len(QM9_WITH_H)

    class Packed:
        x, h_cat, n_atoms = sub.positions, np.eye(k)[sub.types], sub.n_atoms

    a, b = stability(sub), stability(Packed())
    np.testing.assert_array_equal(a.atom_stable, b.atom_stable)
    report = molecule_metrics(sub)
    assert report["stability"]["n_stable_molecules"] == a.n_stable_molecules
    assert report["rdkit"]["n_generated"] == 40
    with pytest.raises(ValueError, match="precision must be"):
        stability(sub, precision="float16")


def test_scattered_atoms_are_valid_for_rdkit_but_not_plausible():
    """The issue's case: 19 unbonded N atoms at +-2000 Å. RDKit's official validity counts them
    (each N becomes NH3, the largest fragment is kept); plausibility does not."""
    n = QM9_WITH_H.encode(["N"])[0]
    pos = np.array([[2000.0 * (-1) ** i, 3.0 * i, -1.5 * i] for i in range(19)])
    far = MoleculeSet(pos, np.full(19, n), [19])
    assert chem_metrics(far).validity == 1.0
    assert stability(far).molecule_stability == 0.0
    r = plausibility(far)
    assert r.plausible.tolist() == [False] and r.plausible_fraction == 0.0
    assert r.exploded.tolist() == [True] and r.n_fragments.tolist() == [19]
    assert not r.all_bonded[0]
    d = molecule_metrics(far)["plausibility"]
    assert (d["n_plausible"], d["n_exploded"], d["plausible"]) == (0, 1, 0.0)
    assert d["max_radius_angstrom"] > 2000


def test_plausibility_on_constructed_molecules(qm9_head):
    methane = qm9_head.select_ids([1])
    pos, types = methane[0]
    cases = {
        "methane": (pos, types),
        "two methanes 10 Å apart": (np.concatenate([pos, pos + 10.0]), np.tile(types, 2)),
        "an H moved 2 Å out": (pos + np.r_[[0.0] * 3, 2 * (pos[1] - pos[0]) / 1.09, [0.0] * 9]
                               .reshape(5, 3), types),
        "two atoms 0.3 Å apart": (np.array([[0.0, 0, 0], [0.3, 0, 0]]), types[:2]),
        "a lone atom": (pos[:1], types[:1]),
        "methane 40 Å from a methane": (np.concatenate([pos, pos + 40.0]), np.tile(types, 2)),
    }  # fmt: skip
    r = plausibility(list(cases.values()))
    got = dict(zip(cases, r.plausible.tolist()))
    assert got == {
        "methane": True,
        "two methanes 10 Å apart": False,
        "an H moved 2 Å out": False,
        "two atoms 0.3 Å apart": False,
        "a lone atom": False,
        "methane 40 Å from a methane": False,
    }
    assert r.n_fragments.tolist() == [1, 2, 2, 1, 1, 2]
    assert r.too_close.tolist() == [False, False, False, True, False, False]
    # 40 Å apart puts every atom about 34.6 Å from the centroid: beyond the 30 Å bound
    assert r.exploded.tolist() == [False] * 5 + [True]
    with pytest.raises(ValueError, match="min_distance"):
        plausibility(list(cases.values()), min_distance=-1)


def test_plausibility_golden_first_1000(qm9_head):
    r = plausibility(qm9_head)
    assert r.n_plausible == 999
    assert qm9_head.ids[~r.plausible].tolist() == [271]  # splits into two fragments
    assert r.min_distance.min() > 0.95 and r.radius.max() < 5.0
    # every stable molecule is one connected, plausible molecule
    assert not np.any(stability(qm9_head).molecule_stable & ~r.plausible)
    # batched by size and chunked: the same as molecule by molecule
    one = [plausibility(qm9_head[i : i + 1]).plausible[0] for i in range(0, 1000, 97)]
    assert one == r.plausible[::97].tolist()
