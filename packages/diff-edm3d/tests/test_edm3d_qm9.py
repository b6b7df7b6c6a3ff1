"""QM9 from qm9pack (fast checks): parsing, the official split, the cache, bad CSV input.

Spec 13.1 #15 (split, Index column only) and #16 (property pipeline, first 1,000 rows); the
full-data check numbers are in test_edm3d_qm9_full.py (slow).
"""

import importlib.metadata
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import diff_edm3d.data.qm9 as qm9
from diff_edm3d.data.qm9 import (
    default_cache_dir,
    load_qm9,
    official_halves,
    official_split,
    qm9_check_numbers,
    qm9pack_data_dir,
    read_qm9pack,
    read_qm9pack_ids,
    split_check_numbers,
)
from diff_edm3d.elements import QM9_NO_H, QM9_WITH_H

SPLIT_CHECK = {
    "train": ([133161, 70467, 8226, 26624, 20504], 6_687_686_303, 100_000),
    "valid": ([70434, 125892, 29477, 74427, 11907], 1_182_449_014, 17_748),
    "test": ([117980, 92051, 68086, 72921, 105219], 874_554_425, 13_083),
    "second_half": ([114342, 63637, 8525, 124478, 26596], 3_341_128_165, 50_000),
    "first_half": ([101107, 106967, 26753, 102422, 123941], 3_346_558_138, 50_000),
}


@pytest.fixture(scope="module")
def head():
    return read_qm9pack(nrows=1000)


def test_qm9pack_located_without_import(head):
    folder = qm9pack_data_dir()
    assert all((folder / f).is_file() for f in qm9.QM9PACK_FILES)
    assert "qm9pack" not in sys.modules


def test_imports_load_no_extra():
    """``import diff_edm3d`` (and its data/metrics modules) loads no optional extra and no JAX."""
    code = (
        "import sys, diff_edm3d, diff_edm3d.data, diff_edm3d.metrics, diff_edm3d.sizes\n"
        "extras = ('pandas', 'rdkit', 'qm9pack', 'e3nn', 'matplotlib', 'jax')\n"
        "print(sorted(m for m in extras if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_qm9pack_names_the_extra(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ImportError, match=r'pip install "diff-edm3d\[qm9\]"'):
        qm9pack_data_dir()


@pytest.mark.smoke
def test_head_parse(head):
    assert len(head) == 1000 and head.elements == QM9_WITH_H
    assert head.ids.tolist()[:3] == [1, 2, 3] and np.all(np.diff(head.ids) > 0)
    checks = qm9_check_numbers(head)
    assert checks["atoms"] == 12319
    assert checks["index1_sum_sq_norm"] == pytest.approx(4.769416, abs=5e-7)
    assert head.symbols(0) == ["C", "H", "H", "H", "H"] and head.smiles[0] == "C"
    sums = np.add.reduceat(head.positions, head.offsets[:-1])
    assert np.abs(sums).max() < 1e-12  # centred on the unweighted centroid
    # Index 1, atom 0 from the CSV: [-0.0126981359, 1.0858041578, 0.0080009958] minus the centroid
    raw = np.array(
        [[-0.0126981359, 1.0858041578, 0.0080009958], [0.002150416, -0.0060313176, 0.0019761204],
         [1.0117308433, 1.4637511618, 0.0002765748], [-0.540815069, 1.4475266138, -0.8766437152],
         [-0.5238136345, 1.4379326443, 0.9063972942]]
    )  # fmt: skip
    np.testing.assert_allclose(head[0].positions, raw - raw.mean(0), rtol=0, atol=1e-15)


def test_property_pipeline(head):
    """Units and thermo subtraction against hand-computed values (Index 1 methane, 2 ammonia)."""
    p = {k: v[:2] for k, v in head.properties.items()}
    np.testing.assert_allclose(p["alpha"], [13.21, 9.46], rtol=1e-15)
    np.testing.assert_allclose(p["mu"], [0.0, 1.6256], rtol=1e-15)
    np.testing.assert_allclose(p["homo"], [-0.3877 * 27.2114, -0.257 * 27.2114], rtol=1e-14)
    np.testing.assert_allclose(p["lumo"], [0.1171 * 27.2114, 0.0829 * 27.2114], rtol=1e-14)
    np.testing.assert_allclose(p["gap"], [0.5048 * 27.2114, 0.3399 * 27.2114], rtol=1e-14)
    np.testing.assert_allclose(p["Cv"], [6.469 - 5 * 2.981, 6.316 - 4 * 2.981], rtol=1e-13)
    assert p["Cv"][0] == pytest.approx(-8.436, abs=1e-12)


def test_without_hydrogens(head):
    noh = read_qm9pack(nrows=1000, remove_h=True)
    assert noh.elements == QM9_NO_H and noh.ids.tolist() == head.ids.tolist()
    counts = head.element_counts()
    assert noh.element_counts() == {s: counts[s] for s in QM9_NO_H.symbols}
    assert noh.n_atoms.max() <= 9 and noh.n_atoms[0] == 1
    np.testing.assert_array_equal(noh[0].positions, np.zeros((1, 3)))  # methane: one C at 0
    sums = np.add.reduceat(noh.positions, noh.offsets[:-1])
    assert np.abs(sums).max() < 1e-12
    # Cv still subtracts 2.981 per atom of the full molecule (hydrogens included)
    assert noh.properties["Cv"][0] == pytest.approx(-8.436, abs=1e-12)


def test_official_split_check_numbers():
    ids = read_qm9pack_ids()
    assert len(ids) == 130_831 and ids[0] == 1 and ids[-1] == 133_885
    state = np.random.get_state()  # noqa: NPY002 - checks that the global state is untouched
    checks = split_check_numbers(ids)
    after = np.random.get_state()  # noqa: NPY002
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]
    for name, (first, total, n) in SPLIT_CHECK.items():
        assert checks[name] == {"n": n, "first_five": first, "id_sum": total}, name
    s = official_split(ids)
    assert len(np.unique(np.concatenate([s["train"], s["valid"], s["test"]]))) == 130_831
    h = official_halves(s["train"][::-1])  # input order does not matter: the ids are sorted first
    assert h["second_half"][:5].tolist() == SPLIT_CHECK["second_half"][0]
    with pytest.raises(ValueError, match="ids must hold all 130831"):
        official_split(ids[:-1])
    with pytest.raises(ValueError, match="train_ids must hold 100000"):
        official_halves(s["train"][:10])
    with pytest.raises(ValueError, match="split must be None or one of"):
        load_qm9(split="training")


# --------------------------------------------------------------------------------------------------
# cache


@pytest.fixture
def small_qm9(monkeypatch):
    """Make the cache machinery run on the first 300 rows, counting parses."""
    calls = []
    real = qm9._parse_qm9pack

    def parse(data_dir, nrows, progress):
        calls.append(1)
        return real(data_dir, 300, progress)

    monkeypatch.setattr(qm9, "_parse_qm9pack", parse)
    monkeypatch.setattr(qm9, "QM9_N_MOLECULES", 300)
    return calls


def test_cache_written_atomically_and_reused(tmp_path, small_qm9):
    a = load_qm9(cache_dir=tmp_path, progress=False)
    assert len(small_qm9) == 1 and len(a) == 300
    path = tmp_path / "qm9_withH_v1.npz"
    with np.load(path) as z:
        assert {k: str(z[k].dtype) for k in ("ids", "n_atoms", "offsets", "positions", "types")} == {
            "ids": "int32", "n_atoms": "int16", "offsets": "int64", "positions": "float64",
            "types": "int8",
        }  # fmt: skip
        assert z["smiles"].dtype.kind == "U" and z["Polarizability_bohr3"].dtype == np.float64
        meta = json.loads(str(z["meta"]))
    assert meta["with_h"] is True and meta["elements"] == list(QM9_WITH_H.symbols)
    assert meta["qm9pack_version"] == importlib.metadata.version("qm9pack")
    b = load_qm9(cache_dir=tmp_path, progress=False)
    assert len(small_qm9) == 1  # served from the cache
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.properties["Cv"], b.properties["Cv"])
    noh = load_qm9(remove_h=True, cache_dir=tmp_path, progress=False)
    assert len(small_qm9) == 1 and (tmp_path / "qm9_noH_v1.npz").is_file()
    assert noh.properties["Cv"][0] == pytest.approx(-8.436, abs=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qm9_noH_v1.npz", "qm9_withH_v1.npz"]


def test_cache_rebuilt_on_mismatch_or_damage(tmp_path, small_qm9, monkeypatch):
    load_qm9(cache_dir=tmp_path, progress=False)
    path = tmp_path / "qm9_withH_v1.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["qm9pack_version"] = "0.0.1"
    arrays["meta"] = np.asarray(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    load_qm9(cache_dir=tmp_path, progress=False)
    assert len(small_qm9) == 2  # stale metadata: rebuilt
    path.write_bytes(path.read_bytes()[:1000])
    ms = load_qm9(cache_dir=tmp_path, progress=False)
    assert len(small_qm9) == 3 and len(ms) == 300  # truncated file: rebuilt
    monkeypatch.setenv("DIFF_EDM3D_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    load_qm9(progress=False)
    assert len(small_qm9) == 3


# --------------------------------------------------------------------------------------------------
# bad CSV input


def _fake_qm9pack(folder, rows):
    cols = ["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang", "Dipole_debye",
            "Polarizability_bohr3", "HOMO_au", "LUMO_au", "HOMO_LUMO_gap_au",
            "Heatcapacity_Cv_cal_mol_K"]  # fmt: skip
    for k, name in enumerate(qm9.QM9PACK_FILES):
        part = rows[k :: len(qm9.QM9PACK_FILES)]
        pd.DataFrame(part, columns=cols).to_csv(folder / name, index=False)


def _row(index, elements, xyz, n=None):
    n = len(elements) if n is None else n
    xyz_text = "[" + ",".join("[" + ",".join(c) + "]" for c in xyz) + "]"
    elem_text = "[" + ",".join(f"'{e}'" for e in elements) + "]"
    return [index, "C", n, elem_text, xyz_text, 0.0, 1.0, -0.3, 0.1, 0.4, 6.0]


def test_bad_csv_rows_name_file_and_index(tmp_path):
    good = [_row(1, ["C", "O"], [["0.", "0", "0"], ["1.2E0", "0", "0"]])]
    good += [_row(2, ["H", "F"], [["0", "0", "0"], ["0.92", "0", "0"]])]
    good += [_row(3, ["N"], [["0", "0", "2.1997E-6"]])]
    _fake_qm9pack(tmp_path, good)
    ms = read_qm9pack(data_dir=tmp_path)
    assert ms.ids.tolist() == [1, 2, 3] and ms.n_atoms.tolist() == [2, 2, 1]
    np.testing.assert_allclose(ms[0].positions, [[-0.6, 0, 0], [0.6, 0, 0]], atol=1e-15)
    cases = [
        (
            _row(3, ["Cl"], [["0", "0", "0"]]),
            r"element symbols must be in.*'Cl'.*qm9_part3.csv, Index 3",
        ),
        (_row(3, ["C"], [["nan", "0", "0"]]), r"coordinates must be finite.*Index 3"),
        (_row(3, ["C", "H"], [["0", "0", "0"]]), r"must agree, got 2, 2 and 1.*Index 3"),
        (_row(3, ["C"], [["0", "x", "0"]]), r"XYZ_Ang must hold numbers.*Index 3"),
    ]
    for row, pattern in cases:
        _fake_qm9pack(tmp_path, good[:2] + [row])
        with pytest.raises(ValueError, match=pattern):
            read_qm9pack(data_dir=tmp_path)
    _fake_qm9pack(tmp_path, [good[1], good[0], good[2]])
    with pytest.raises(ValueError, match="Index must be strictly ascending"):
        read_qm9pack(data_dir=tmp_path)
    with pytest.raises(ValueError, match="nrows must be a positive integer"):
        read_qm9pack(nrows=0)


def test_prepare_report(tmp_path, small_qm9, monkeypatch):
    """`prepare` builds the cache and reports the check numbers (run here on 300 rows)."""
    monkeypatch.setattr(qm9, "N_TRAIN", 150)
    report = qm9.prepare_qm9(cache_dir=tmp_path, progress=False)
    assert report["data"]["molecules"] == 300 and report["with_h"] is True
    assert report["splits"]["test"]["n"] == 30 and report["splits"]["second_half"]["n"] == 75
    assert sum(report["train_histogram"].values()) == 150
    assert report["data"]["index1_sum_sq_norm"] == pytest.approx(4.769416, abs=5e-7)
    json.dumps(report)  # JSON-able for the CLI
    assert (tmp_path / "qm9_withH_v1.npz").is_file()
