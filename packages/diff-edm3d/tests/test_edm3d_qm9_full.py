"""Golden numbers on all of QM9 (slow; spec 13.2 #20, #21, #22).

The cache is built from qm9pack in a temporary directory once per module (about 10 s of parsing),
so these tests also exercise the full cache path.
"""

import numpy as np
import pytest

from diff_edm3d.data.properties import PropertyNormaliser
from diff_edm3d.data.qm9 import load_qm9, qm9_check_numbers, qm9_train_smiles
from diff_edm3d.metrics import chem_metrics, stability
from diff_edm3d.sizes import AtomCountDistribution

pytestmark = pytest.mark.slow

SPLIT_ATOMS = {  # H, C, N, O, F per set (spec 4.2)
    "train": (923_537, 635_559, 101_476, 140_202, 2_323),
    "valid": (164_102, 113_248, 17_725, 24_774, 381),
    "test": (120_847, 83_118, 13_297, 18_289, 332),
    "second_half": (461_622, 317_604, 50_852, 70_033, 1_164),
    "first_half": (461_915, 317_955, 50_624, 70_169, 1_159),
}
SPLIT_IDS = {  # size, sum of ids
    "train": (100_000, 6_687_686_303),
    "valid": (17_748, 1_182_449_014),
    "test": (13_083, 874_554_425),
    "second_half": (50_000, 3_341_128_165),
    "first_half": (50_000, 3_346_558_138),
}
TRAIN_HISTOGRAM = {
    3: 1, 4: 4, 5: 5, 6: 9, 7: 16, 8: 49, 9: 124, 10: 362, 11: 807, 12: 1689, 13: 3060, 14: 5136,
    15: 7796, 16: 10644, 17: 13025, 18: 13364, 19: 13832, 20: 9482, 21: 9970, 22: 3393, 23: 4848,
    24: 539, 25: 1506, 26: 48, 27: 266, 29: 25,
}  # fmt: skip
NO_H_TRAIN_HISTOGRAM = {1: 2, 2: 5, 3: 7, 4: 25, 5: 91, 6: 475, 7: 2404, 8: 13625, 9: 83366}
VALID_MEAN_MAD = {
    "alpha": (75.3734, 6.2728),
    "gap": (6.86318, 1.06190),
    "homo": (-6.53859, 0.43958),
    "lumo": (0.32458, 1.03377),
    "mu": (2.67509, 1.17573),
    "Cv": (-22.1666, 4.88855),
}
STABILITY = {  # stable molecules, stable atoms, atoms (spec 13.2 #21)
    "all": (124_650, 2_344_065, 2_359_210),
    "train": (95_293, 1_791_571, 1_803_097),
    "valid": (16_900, 318_158, 320_230),
    "test": (12_457, 234_336, 235_883),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("qm9_cache")


@pytest.fixture(scope="module")
def qm9_all(cache):
    return load_qm9(cache_dir=cache, progress=False)


def test_full_data_check_numbers(qm9_all, cache):
    c = qm9_check_numbers(qm9_all)
    assert c["molecules"] == 130_831 and c["atoms"] == 2_359_210
    assert c["atoms_by_element"] == {
        "H": 1_208_486,
        "C": 831_925,
        "N": 132_498,
        "O": 183_265,
        "F": 3_036,
    }
    assert (c["min_atoms"], c["max_atoms"]) == (3, 29)
    assert c["sum_sq_norm"] == pytest.approx(13_825_826.81, abs=0.005)
    assert c["index1_sum_sq_norm"] == pytest.approx(4.769416, abs=5e-7)
    assert (
        round(c["max_centroid_distance"], 3) == 7.404 and c["max_centroid_distance_id"] == 116_821
    )
    assert np.array_equal(qm9_all.ids, np.sort(qm9_all.ids)) and qm9_all.ids[-1] == 133_885
    for split, atoms in SPLIT_ATOMS.items():
        s = load_qm9(split=split, cache_dir=cache, progress=False)
        assert tuple(s.element_counts().values()) == atoms, split
        assert (len(s), int(s.ids.sum())) == SPLIT_IDS[split], split
        assert np.all(np.diff(s.ids) > 0)  # ascending id order, like the official files
    train = load_qm9(split="train", cache_dir=cache, progress=False)
    p = AtomCountDistribution.from_molecules(train)
    assert p.histogram() == TRAIN_HISTOGRAM
    assert p.entropy() == pytest.approx(2.475701, abs=5e-7)
    assert -p.log_prob(np.array([19]))[0] == pytest.approx(1.978185, abs=5e-7)


def test_full_data_without_hydrogens(cache):
    noh = load_qm9(remove_h=True, cache_dir=cache, progress=False)
    c = qm9_check_numbers(noh)
    assert (c["molecules"], c["atoms"], c["min_atoms"], c["max_atoms"]) == (
        130_831,
        1_150_724,
        1,
        9,
    )
    assert c["sum_sq_norm"] == pytest.approx(4_514_675.84, abs=0.005)
    train = load_qm9(remove_h=True, split="train", cache_dir=cache, progress=False)
    assert AtomCountDistribution.from_molecules(train).histogram() == NO_H_TRAIN_HISTOGRAM
    single = noh.subset(noh.n_atoms == 1)
    assert len(single) > 0 and np.all(single.positions == 0.0)


def test_valid_split_property_normaliser(cache):
    valid = load_qm9(split="valid", cache_dir=cache, progress=False)
    n = PropertyNormaliser.fit(valid)
    for name, (mean, mad) in VALID_MEAN_MAD.items():
        assert n.mean[name] == pytest.approx(mean, rel=1e-4), name
        assert n.mad[name] == pytest.approx(mad, rel=1e-4), name


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_stability_golden_numbers(qm9_all, cache, precision):
    r = stability(qm9_all, precision=precision)
    assert (r.n_stable_molecules, r.n_stable_atoms, r.n_total_atoms) == STABILITY["all"]
    assert (
        round(100 * r.molecule_stability, 2) == 95.28 and round(100 * r.atom_stability, 2) == 99.36
    )
    atom_stable_per_mol = r.stable_atoms_per_molecule()
    index = {int(i): k for k, i in enumerate(qm9_all.ids)}
    for split in ("train", "valid"):
        ids = load_qm9(split=split, cache_dir=cache, progress=False).ids
        rows = np.array([index[int(i)] for i in ids])
        got = (
            int(r.molecule_stable[rows].sum()),
            int(atom_stable_per_mol[rows].sum()),
            int(qm9_all.n_atoms[rows].sum()),
        )
        assert got == STABILITY[split], split
    test = stability(load_qm9(split="test", cache_dir=cache, progress=False), precision=precision)
    assert (test.n_stable_molecules, test.n_stable_atoms, test.n_total_atoms) == STABILITY["test"]
    assert round(100 * test.molecule_stability, 4) == 95.2152
    assert round(100 * test.atom_stability, 4) == 99.3442


def test_rdkit_test_split(cache):
    test = load_qm9(split="test", cache_dir=cache, progress=False)
    reference = qm9_train_smiles(cache_dir=cache, progress=False)
    assert len(reference) == 97_625
    assert (cache / "qm9_train_smiles_v1.npz").is_file()
    c = chem_metrics(test, train_smiles=reference)
    assert (c.n_generated, c.n_valid, c.n_unique, c.n_novel) == (13_083, 12_787, 12_787, 12_775)
    assert round(100 * c.validity, 4) == 97.7375
    assert round(100 * c.novelty, 3) == 99.906
    np.testing.assert_array_equal(qm9_train_smiles(cache_dir=cache, progress=False), reference)
