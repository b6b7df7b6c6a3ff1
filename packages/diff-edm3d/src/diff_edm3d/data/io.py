"""Molecule files: writing ``.xyz`` and ``.sdf`` (via RDKit), plus the readers and the atomic
write they share, re-exported from :mod:`diff_edm3d.data.readers` and
:mod:`diff_edm3d.data.atomic`.

Every writer is atomic (a temporary file in the target directory, then ``os.replace``) and
refuses to replace an existing file unless ``overwrite=True``. This module sits above
:mod:`diff_edm3d.data.molecules` and :mod:`diff_edm3d.metrics` (``write_xyz`` computes
stability flags, ``write_sdf`` builds RDKit molecules with the metrics' bond orders); nothing
below imports it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np

from diff_edm3d.data.atomic import atomic_write
from diff_edm3d.data.molecules import MoleculeSet
from diff_edm3d.data.readers import RawMolecule, rdkit_chem, read_molecules, read_sdf, read_xyz
from diff_edm3d.metrics.chem import build_rdkit_molecule
from diff_edm3d.metrics.stability import stability as compute_stability

__all__ = [
    "RawMolecule",
    "atomic_write",
    "read_molecules",
    "read_sdf",
    "read_xyz",
    "write_sdf",
    "write_xyz",
]


def _format_coordinate(v: float, digits: int) -> str:
    return format(v, f".{digits}g")


def write_xyz(
    molecules: MoleculeSet,
    path: str | os.PathLike,
    stable: Sequence[bool] | np.ndarray | None = None,
    *,
    overwrite: bool = False,
    digits: int = 9,
) -> Path:
    """Write one XYZ frame per molecule.

    The comment line is JSON ``{"index": i, "n_atoms": M, "stable": bool}``. Coordinates carry
    ``digits`` significant digits (9 by default, so a float32 position survives the round trip
    exactly).

    Args:
        molecules: the set to write.
        path: the destination file.
        stable: per-molecule stability flags; computed with :func:`diff_edm3d.metrics.stability`
            when ``None``.
        overwrite: allow replacing an existing file.
        digits: significant digits per coordinate.
    """
    if stable is None:
        stable = compute_stability(molecules).molecule_stable
    stable = np.asarray(stable, dtype=bool).reshape(-1)
    if len(stable) != len(molecules):
        raise ValueError(
            f"write_xyz: stable must have one flag per molecule ({len(molecules)}), got "
            f"{len(stable)}"
        )
    symbols = molecules.elements.symbols

    def body(f: IO[str]) -> None:
        for i, (pos, types) in enumerate(molecules):
            comment = {"index": i, "n_atoms": len(types), "stable": bool(stable[i])}
            rows = [f"{len(types)}", json.dumps(comment)]
            for p, t in zip(pos.tolist(), types.tolist(), strict=True):
                xyz = " ".join(_format_coordinate(v, digits) for v in p)
                rows.append(f"{symbols[t]:<2s} {xyz}")
            f.write("\n".join(rows) + "\n")

    return atomic_write(path, body, overwrite=overwrite, binary=False, caller="write_xyz")


def write_sdf(
    molecules: MoleculeSet,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> Path:
    """Write molecules as an SD file with bonds from the EDM bond-order lookup.

    Each record is an RDKit molecule with one atom per generated atom, bonds of the orders from
    :func:`diff_edm3d.metrics.bonds.bond_orders`, and the positions as its conformer (4 decimals).
    A molecule that fails sanitisation is still written, unsanitised; the SD property
    ``edm3d_valid`` is 1 or 0.
    """
    chem = rdkit_chem()
    blocks = []
    for i, (pos, types) in enumerate(molecules):
        mol = build_rdkit_molecule(pos, types, molecules.elements)
        conf = chem.Conformer(len(types))
        for a, p in enumerate(np.asarray(pos, dtype=np.float64).tolist()):
            conf.SetAtomPosition(a, p)
        conf.Set3D(True)
        mol.AddConformer(conf, assignId=True)
        try:
            chem.SanitizeMol(mol)
            valid = True
        except ValueError:
            valid = False
            mol.UpdatePropertyCache(strict=False)
        mol.SetProp("_Name", str(i))
        block = chem.MolToMolBlock(mol, kekulize=valid)
        blocks.append(f"{block}>  <edm3d_valid>\n{int(valid)}\n\n$$$$\n")

    return atomic_write(
        path,
        lambda f: f.write("".join(blocks)),
        overwrite=overwrite,
        binary=False,
        caller="write_sdf",
    )
