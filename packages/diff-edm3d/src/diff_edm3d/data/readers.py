"""Reading molecules from multi-frame ``.xyz`` and ``.sdf`` files (the latter via RDKit).

Readers return :class:`RawMolecule` records (symbols, positions, comment) and know nothing of
element sets or :class:`~diff_edm3d.data.molecules.MoleculeSet`, which builds on them; the writers
in :mod:`diff_edm3d.data.io` sit above both (they may compute stability flags).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from diff_edm3d.elements import canonical_symbol

__all__ = ["RawMolecule", "rdkit_chem", "read_molecules", "read_sdf", "read_xyz"]


class RawMolecule(NamedTuple):
    """A molecule as read from a file: element symbols, positions [M,3] (Å, float64), comment."""

    symbols: tuple[str, ...]
    positions: np.ndarray
    comment: str


def _parse_float(token: str, path: Path, line_no: int) -> float:
    try:
        return float(token.replace("*^", "e"))
    except ValueError:
        raise ValueError(
            f"read_xyz: coordinates must be numbers, got {token!r} at line {line_no} of file {path}"
        ) from None


def read_xyz(path: str | os.PathLike) -> list[RawMolecule]:
    """Read every frame of a (multi-frame) XYZ file.

    A frame is a count line M, a comment line, and M lines ``Sym x y z`` (extra columns ignored).
    Symbols are case-normalised (``"cl"`` -> ``"Cl"``), atomic numbers may replace symbols, and
    Mathematica's ``*^`` exponent (as in the raw QM9 files) is accepted. Unknown symbols are kept
    as written; :meth:`MoleculeSet.from_files` rejects them against its element set.

    Raises:
        ValueError: a malformed frame, naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_xyz: path must be an existing file, got {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"read_xyz: file {path} must be UTF-8 text in XYZ format, got undecodable bytes at "
            f"byte {exc.start} (a binary file?)"
        ) from None
    except OSError as exc:
        raise ValueError(f"read_xyz: file {path} cannot be read ({exc.strerror})") from None
    out: list[RawMolecule] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        head = lines[i].split()
        try:
            m = int(head[0])
        except ValueError:
            raise ValueError(
                f"read_xyz: each frame must start with an atom count, got {lines[i]!r} at line "
                f"{i + 1} of file {path}"
            ) from None
        if m < 0 or (m > 0 and i + 1 + m > len(lines) - 1):
            raise ValueError(
                f"read_xyz: a frame of {m} atoms must be followed by a comment and {m} atom lines, "
                f"got a truncated frame at line {i + 1} of file {path}"
            )
        comment = lines[i + 1] if i + 1 < len(lines) else ""
        symbols, coords = [], []
        for j in range(i + 2, i + 2 + m):
            parts = lines[j].split()
            if len(parts) < 4:
                raise ValueError(
                    f"read_xyz: atom lines must read 'Sym x y z', got {lines[j]!r} at line {j + 1} "
                    f"of file {path}"
                )
            symbols.append(canonical_symbol(parts[0]) or parts[0])
            coords.append([_parse_float(t, path, j + 1) for t in parts[1:4]])
        out.append(
            RawMolecule(
                tuple(symbols), np.asarray(coords, dtype=np.float64).reshape(-1, 3), comment
            )
        )
        i += 2 + m
    return out


def rdkit_chem():
    """RDKit's ``Chem`` module with its logging silenced; a clear ImportError without the extra."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            'RDKit is required for .sdf files and chemistry metrics: pip install "diff-edm3d[chem]"'
        ) from e
    RDLogger.DisableLog("rdApp.*")
    return Chem


def read_sdf(path: str | os.PathLike) -> list[RawMolecule]:
    """Read every record of an SD file with RDKit, keeping all atoms (hydrogens included).

    Uses ``SDMolSupplier(removeHs=False, sanitize=False)`` and the first conformer of each record.

    Raises:
        ValueError: an unreadable record, or one without 3D coordinates (naming file and record).
    """
    chem = rdkit_chem()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_sdf: path must be an existing file, got {path}")
    supplier = chem.SDMolSupplier(str(path), removeHs=False, sanitize=False)
    out: list[RawMolecule] = []
    for r, mol in enumerate(supplier):
        if mol is None:
            raise ValueError(
                f"read_sdf: records must be valid MOL blocks, got an unreadable record {r} in file "
                f"{path}"
            )
        if mol.GetNumConformers() == 0 or not mol.GetConformer().Is3D():
            raise ValueError(
                f"read_sdf: records must have 3D coordinates, got a 2D-only record {r} in file "
                f"{path}"
            )
        symbols = tuple(a.GetSymbol() for a in mol.GetAtoms())
        positions = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64).reshape(-1, 3)
        name = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
        out.append(RawMolecule(symbols, positions, name))
    return out


def read_molecules(path: str | os.PathLike) -> list[RawMolecule]:
    """Read ``.xyz`` or ``.sdf``/``.sd``/``.mol`` by suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".xyz":
        return read_xyz(path)
    if suffix in (".sdf", ".sd", ".mol"):
        return read_sdf(path)
    raise ValueError(f"read_molecules: path must end in .xyz, .sdf, .sd or .mol, got {path}")
