"""Reading and writing molecules as multi-frame ``.xyz`` and ``.sdf`` (via RDKit).

Every writer is atomic (a temporary file in the target directory, then ``os.replace``) and
refuses to replace an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import numpy as np

from diff_edm3d.elements import canonical_symbol

if TYPE_CHECKING:
    from diff_edm3d.data.molecules import MoleculeSet

__all__ = [
    "RawMolecule",
    "atomic_write",
    "read_molecules",
    "read_sdf",
    "read_xyz",
    "write_sdf",
    "write_xyz",
]


class RawMolecule(NamedTuple):
    """A molecule as read from a file: element symbols, positions [M,3] (Å, float64), comment."""

    symbols: tuple[str, ...]
    positions: np.ndarray
    comment: str


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[IO[Any]], object],
    *,
    overwrite: bool = False,
    binary: bool = True,
    caller: str = "atomic_write",
) -> Path:
    """Write a file atomically: ``write(f)`` fills a temporary file that then replaces ``path``.

    Args:
        path: the destination; its parent directory is created if needed.
        write: a callable receiving the open temporary file.
        overwrite: allow replacing an existing file.
        binary: open the temporary file in binary (default) or text mode.
        caller: the function name used in error messages.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false; nothing is written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{caller}: path must not exist (pass overwrite=True to replace it), got existing "
            f"{path}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(
            fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})
        ) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


# --------------------------------------------------------------------------------------------------
# XYZ


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
    lines = path.read_text(encoding="utf-8").splitlines()
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
        from diff_edm3d.metrics.stability import stability

        stable = stability(molecules).molecule_stable
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


# --------------------------------------------------------------------------------------------------
# SDF (RDKit)


def _rdkit():
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
    chem = _rdkit()
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
    chem = _rdkit()
    from diff_edm3d.metrics.chem import build_rdkit_molecule

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


def read_molecules(path: str | os.PathLike) -> list[RawMolecule]:
    """Read ``.xyz`` or ``.sdf``/``.sd``/``.mol`` by suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".xyz":
        return read_xyz(path)
    if suffix in (".sdf", ".sd", ".mol"):
        return read_sdf(path)
    raise ValueError(f"read_molecules: path must end in .xyz, .sdf, .sd or .mol, got {path}")
