"""XYZ / SDF reading and writing (spec 4.5) and the file-level bad-input errors (section 11)."""

import json

import numpy as np
import pytest

from diff_edm3d.data.io import read_molecules, read_sdf, read_xyz, write_sdf, write_xyz
from diff_edm3d.data.molecules import MoleculeSet
from diff_edm3d.elements import QM9_WITH_H, ElementSet
from diff_edm3d.metrics.bonds import bond_orders

# Methane, ethylene and CO2-like geometries (Å); formaldehyde is QM9 Index 6.
METHANE = (
    ["C", "H", "H", "H", "H"],
    [[0.0, 0.0, 0.0], [0.629, 0.629, 0.629], [-0.629, -0.629, 0.629],
     [-0.629, 0.629, -0.629], [0.629, -0.629, -0.629]],
)  # fmt: skip
ETHYLENE = (
    ["C", "C", "H", "H", "H", "H"],
    [[0.0, 0.0, 0.667], [0.0, 0.0, -0.667], [0.0, 0.923, 1.238], [0.0, -0.923, 1.238],
     [0.0, 0.923, -1.238], [0.0, -0.923, -1.238]],
)  # fmt: skip


def _set(dtype=np.float32, seed=0, n=6):
    rng = np.random.default_rng(seed)
    mols = []
    for _ in range(n):
        m = int(rng.integers(1, 10))
        mols.append(((rng.normal(size=(m, 3)) * 3).astype(dtype), rng.integers(0, 5, m)))
    return MoleculeSet.from_molecules(mols, QM9_WITH_H)


def test_xyz_roundtrip_float32_exact(tmp_path):
    ms = _set()
    path = write_xyz(ms, tmp_path / "s.xyz", stable=np.arange(len(ms)) % 2 == 0)
    raw = read_xyz(path)
    assert len(raw) == len(ms)
    for i, r in enumerate(raw):
        assert json.loads(r.comment) == {
            "index": i,
            "n_atoms": int(ms.n_atoms[i]),
            "stable": i % 2 == 0,
        }
        np.testing.assert_array_equal(r.positions.astype(np.float32), ms[i].positions)
        assert list(r.symbols) == ms.symbols(i)
    back = MoleculeSet.from_files(path, centre=False)
    np.testing.assert_array_equal(back.positions.astype(np.float32), ms.positions)
    np.testing.assert_array_equal(back.types, ms.types)


def test_xyz_computes_stability_flags(tmp_path):
    ms = MoleculeSet.from_molecules(
        [(np.array(METHANE[1]), QM9_WITH_H.encode(METHANE[0])),
         (np.array(METHANE[1]) * 2.0, QM9_WITH_H.encode(METHANE[0]))]
    )  # fmt: skip
    raw = read_xyz(write_xyz(ms, tmp_path / "m.xyz"))
    assert [json.loads(r.comment)["stable"] for r in raw] == [True, False]


def test_xyz_reader_tolerances(tmp_path):
    path = tmp_path / "odd.xyz"
    path.write_text(
        "3\ncomment one\ncl 0.0 0.0 0.0 extra columns\n6 1.5*^0 0 0\nh 2.5E-1 1 1\n\n1\n\nO 1 2 3\n"
    )
    raw = read_xyz(path)
    assert [r.symbols for r in raw] == [("Cl", "C", "H"), ("O",)]
    np.testing.assert_array_equal(raw[0].positions, [[0, 0, 0], [1.5, 0, 0], [0.25, 1, 1]])
    assert raw[1].comment == "" and raw[1].positions.tolist() == [[1.0, 2.0, 3.0]]


def test_xyz_malformed_frames(tmp_path):
    p = tmp_path / "bad.xyz"
    p.write_text("x\n")
    with pytest.raises(ValueError, match="must start with an atom count"):
        read_xyz(p)
    p.write_text("3\nc\nC 0 0 0\n")
    with pytest.raises(ValueError, match="truncated frame"):
        read_xyz(p)
    p.write_text("1\nc\nC 0 zero 0\n")
    with pytest.raises(ValueError, match=r"coordinates must be numbers.*line 3"):
        read_xyz(p)


def test_from_files_errors_name_file_molecule_atom(tmp_path):
    p = tmp_path / "mols.xyz"
    p.write_text("1\n\nC 0 0 0\n2\n\nC 0 0 0\nCl 1.7 0 0\n")
    with pytest.raises(ValueError) as e:
        MoleculeSet.from_files(p)
    msg = str(e.value)
    for part in ("'Cl'", str(p), "molecule 1", "atom 1", "('H', 'C', 'N', 'O', 'F')"):
        assert part in msg, msg
    p.write_text("1\n\nC 0 0 0\n3\n\nC 0 0 0\nC 1.5 0 0\nC 3 0 0\n")
    with pytest.raises(ValueError, match=r"max_atoms=2 atoms, got M=3 in molecule 1"):
        MoleculeSet.from_files(p, max_atoms=2)
    p.write_text("2\n\nC 0 0 0\nO nan 0 0\n")
    with pytest.raises(ValueError, match=r"positions must be finite.*molecule 0, atom 1"):
        MoleculeSet.from_files(p)
    p.write_text("0\n\n")
    with pytest.raises(ValueError, match=r"n_atoms must be >= 1.*molecule 0"):
        MoleculeSet.from_files(p)
    with pytest.raises(ValueError, match="must end in .xyz"):
        read_molecules(tmp_path / "x.pdb")


def test_from_files_centres_and_accepts_other_elements(tmp_path):
    p = tmp_path / "hcl.xyz"
    p.write_text("2\n\nH 0 0 0\nCl 1.27 0 0\n")
    es = ElementSet(("H", "Cl"), 10)
    ms = MoleculeSet.from_files(p, elements=es)
    np.testing.assert_allclose(ms.positions, [[-0.635, 0, 0], [0.635, 0, 0]], atol=1e-15)
    assert ms.types.tolist() == [0, 1]


@pytest.mark.smoke
def test_sdf_roundtrip_bonds_and_validity_flag(tmp_path):
    bad = (
        np.array(METHANE[1]) * 0.2,
        QM9_WITH_H.encode(METHANE[0]),
    )  # C with 4 H at 0.2 Å: H-H bonds
    ms = MoleculeSet.from_molecules(
        [(np.array(METHANE[1]), QM9_WITH_H.encode(METHANE[0])),
         (np.array(ETHYLENE[1]), QM9_WITH_H.encode(ETHYLENE[0])), bad]
    )  # fmt: skip
    path = write_sdf(ms, tmp_path / "s.sdf")
    raw = read_sdf(path)
    assert len(raw) == 3
    for i, r in enumerate(raw):
        assert list(r.symbols) == ms.symbols(i)
        np.testing.assert_allclose(r.positions, ms[i].positions, atol=1e-4 + 1e-12)
    from rdkit import Chem

    supplier = Chem.SDMolSupplier(str(path), removeHs=False, sanitize=False)
    mols = list(supplier)
    assert [m.GetProp("edm3d_valid") for m in mols] == ["1", "1", "0"]
    for i, mol in enumerate(mols):
        orders = bond_orders(ms[i].positions, ms[i].types, QM9_WITH_H)
        got = np.zeros_like(orders)
        for b in mol.GetBonds():
            a, c = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            got[a, c] = got[c, a] = int(b.GetBondTypeAsDouble())
        np.testing.assert_array_equal(got, orders)
    assert int(bond_orders(ms[1].positions, ms[1].types, QM9_WITH_H)[0, 1]) == 2  # C=C
    back = MoleculeSet.from_files(path, centre=False)
    np.testing.assert_array_equal(back.types, ms.types)


def test_sdf_2d_record_rejected(tmp_path):
    from rdkit import Chem

    mol = Chem.MolFromSmiles("CO")
    from rdkit.Chem import AllChem

    AllChem.Compute2DCoords(mol)
    p = tmp_path / "flat.sdf"
    p.write_text(Chem.MolToMolBlock(mol) + "$$$$\n")
    with pytest.raises(ValueError, match=r"3D coordinates, got a 2D-only record 0"):
        read_sdf(p)


def test_writers_never_overwrite_silently(tmp_path):
    ms = _set(n=2)
    target = tmp_path / "keep.xyz"
    target.write_text("user data\n")
    with pytest.raises(FileExistsError, match="path must not exist"):
        write_xyz(ms, target, stable=[True, True])
    with pytest.raises(FileExistsError):
        write_sdf(ms, target)
    assert target.read_text() == "user data\n"
    write_xyz(ms, target, stable=[True, True], overwrite=True)
    assert len(read_xyz(target)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.xyz"]
