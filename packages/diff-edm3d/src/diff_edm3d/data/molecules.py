"""`MoleculeSet`: a ragged collection of 3D molecules held as host numpy arrays.

All atoms of all molecules are stored back to back: ``positions`` [A,3] and ``types`` [A], with
molecule b occupying rows ``offsets[b]:offsets[b+1]``. Per-molecule arrays (``n_atoms``, ``ids``,
``properties``, ``smiles``) have length S. Types index the set's :class:`~diff_edm3d.ElementSet`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from diff_edm3d.data.atomic import atomic_write
from diff_edm3d.data.readers import read_molecules
from diff_edm3d.elements import QM9_NO_H, QM9_WITH_H, ElementSet

__all__ = ["Molecule", "MoleculeSet", "as_molecule_set", "to_numpy"]

_NPZ_FORMAT = 1


class Molecule(NamedTuple):
    """One molecule: positions [M,3] (Å) and type indices [M]."""

    positions: np.ndarray
    types: np.ndarray


def to_numpy(a: Any) -> np.ndarray:
    """Convert a numpy array, torch tensor or sequence to a numpy array (host copy for tensors)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _offsets(n_atoms: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(n_atoms) + 1, dtype=np.int64)
    np.cumsum(n_atoms, out=offsets[1:])
    return offsets


class MoleculeSet:
    """A ragged set of S molecules with A atoms in total.

    Args:
        positions: [A,3] positions in Å (float32 stays float32; anything else becomes float64).
        types: [A] integer type indices into ``elements``.
        n_atoms: [S] atom counts M_b >= 1, summing to A.
        elements: the element set the types index.
        ids: [S] integer identifiers (QM9: the 1-based gdb Index); default ``0..S-1``.
        properties: name -> [S] float values (QM9: in the units EDM conditions on).
        smiles: [S] strings or ``None``.
        meta: free-form JSON-able metadata (sampling statistics, provenance).
        max_atoms: the largest allowed M; default ``elements.max_atoms``.
        validate: check the section-11 rules (finite positions, 1 <= M <= max_atoms, valid types).

    Raises:
        ValueError: naming the molecule (and atom) that breaks a rule.
    """

    __slots__ = ("positions", "types", "n_atoms", "offsets", "elements", "ids", "properties",
                 "smiles", "meta")  # fmt: skip

    def __init__(
        self,
        positions: Any,
        types: Any,
        n_atoms: Any,
        elements: ElementSet = QM9_WITH_H,
        ids: Any = None,
        properties: Mapping[str, Any] | None = None,
        smiles: Sequence[str] | np.ndarray | None = None,
        meta: Mapping[str, Any] | None = None,
        *,
        max_atoms: int | None = None,
        validate: bool = True,
    ) -> None:
        if not isinstance(elements, ElementSet):
            raise TypeError(
                f"MoleculeSet: elements must be an ElementSet, got {type(elements).__name__}"
            )
        pos = to_numpy(positions)
        if pos.dtype.kind not in "iuf":
            raise TypeError(f"MoleculeSet: positions must be real numbers, got dtype {pos.dtype}")
        if pos.dtype != np.float32:
            pos = pos.astype(np.float64, copy=False)
        pos = pos.reshape(-1, 3) if pos.size == 0 else pos
        if pos.ndim != 2 or pos.shape[1] != 3:
            raise ValueError(f"MoleculeSet: positions must have shape [A, 3], got {pos.shape}")
        typ = to_numpy(types)
        if typ.size and not np.issubdtype(typ.dtype, np.integer):
            raise TypeError(
                f"MoleculeSet: types must be integer type indices, got dtype {typ.dtype}"
            )
        typ = (
            typ.reshape(-1).astype(elements.type_dtype, copy=False)
            if typ.size
            else np.zeros(0, elements.type_dtype)
        )
        n = to_numpy(n_atoms).reshape(-1)
        if n.size and not np.issubdtype(n.dtype, np.integer):
            raise TypeError(f"MoleculeSet: n_atoms must be integers, got dtype {n.dtype}")
        n = n.astype(np.int64, copy=False)
        self.positions = pos
        self.types = typ
        self.n_atoms = n
        self.offsets = _offsets(n)
        self.elements = elements
        s = len(n)
        self.ids = (
            np.arange(s, dtype=np.int64)
            if ids is None
            else to_numpy(ids).reshape(-1).astype(np.int64)
        )
        self.properties = {
            str(k): to_numpy(v).reshape(-1).astype(np.float64)
            for k, v in (properties or {}).items()
        }
        self.smiles = None if smiles is None else np.asarray(list(smiles), dtype=str)
        self.meta = dict(meta or {})
        self._check_shapes()
        if validate:
            self.validate(max_atoms=max_atoms)

    # ----------------------------------------------------------------------------------------------
    # validation

    def _check_shapes(self) -> None:
        s = len(self.n_atoms)
        if len(self.types) != len(self.positions):
            raise ValueError(
                f"MoleculeSet: types must have one entry per atom ({len(self.positions)}), "
                f"got {len(self.types)}"
            )
        if self.offsets[-1] != len(self.positions):
            raise ValueError(
                f"MoleculeSet: n_atoms must sum to the number of atoms {len(self.positions)}, "
                f"got {int(self.offsets[-1])}"
            )
        if len(self.ids) != s:
            raise ValueError(f"MoleculeSet: ids must have length {s}, got {len(self.ids)}")
        for name, v in self.properties.items():
            if len(v) != s:
                raise ValueError(
                    f"MoleculeSet: properties[{name!r}] must have length {s}, got {len(v)}"
                )
        if self.smiles is not None and len(self.smiles) != s:
            raise ValueError(f"MoleculeSet: smiles must have length {s}, got {len(self.smiles)}")

    def validate(self, max_atoms: int | None = None) -> None:
        """Check the section-11 rules; raise ``ValueError`` naming the first offending molecule."""
        limit = self.elements.max_atoms if max_atoms is None else int(max_atoms)
        n = self.n_atoms
        empty = np.flatnonzero(n < 1)
        if empty.size:
            raise ValueError(
                f"MoleculeSet: n_atoms must be >= 1 for every molecule, got {int(n[empty[0]])} "
                f"atoms in molecule {int(empty[0])}"
            )
        big = np.flatnonzero(n > limit)
        if big.size:
            b = int(big[0])
            raise ValueError(
                f"MoleculeSet: n_atoms must be <= max_atoms={limit}, got M={int(n[b])} in "
                f"molecule {b}"
            )
        bad_type = np.flatnonzero((self.types < 0) | (self.types >= len(self.elements)))
        if bad_type.size:
            b, a = self.locate(int(bad_type[0]))
            raise ValueError(
                f"MoleculeSet: types must index {self.elements.symbols} "
                f"(0..{len(self.elements) - 1}), "
                f"got {int(self.types[bad_type[0]])} at molecule {b}, atom {a}"
            )
        finite = np.isfinite(self.positions).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            b, a = self.locate(row)
            raise ValueError(
                f"MoleculeSet: positions must be finite, got {self.positions[row].tolist()} at "
                f"molecule {b}, atom {a}"
            )

    def locate(self, row: int) -> tuple[int, int]:
        """(molecule index, atom index within it) of global atom row ``row``."""
        b = int(np.searchsorted(self.offsets, row, side="right") - 1)
        return b, int(row - self.offsets[b])

    # ----------------------------------------------------------------------------------------------
    # access

    def __len__(self) -> int:
        return len(self.n_atoms)

    @property
    def n_total_atoms(self) -> int:
        """A, the number of atoms over all molecules."""
        return int(self.offsets[-1])

    def molecule(self, i: int) -> Molecule:
        """Positions and types of molecule ``i`` (views, not copies)."""
        s = len(self)
        if not -s <= i < s:
            raise IndexError(f"MoleculeSet.molecule: i must lie in [0, {s}), got {i}")
        i %= s
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return Molecule(self.positions[lo:hi], self.types[lo:hi])

    def __iter__(self) -> Iterator[Molecule]:
        for i in range(len(self)):
            yield self.molecule(i)

    def __getitem__(self, index: Any) -> Molecule | MoleculeSet:
        if isinstance(index, (int, np.integer)):
            return self.molecule(int(index))
        return self.subset(index)

    def molecule_index(self) -> np.ndarray:
        """[A] index of the molecule each atom belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.n_atoms)

    def symbols(self, i: int) -> list[str]:
        """Element symbols of molecule ``i``."""
        return self.elements.decode(self.molecule(i).types)

    def element_counts(self) -> dict[str, int]:
        """Number of atoms of each element over the whole set."""
        counts = np.bincount(self.types.astype(np.int64), minlength=len(self.elements))
        return {s: int(c) for s, c in zip(self.elements.symbols, counts, strict=True)}

    def __repr__(self) -> str:
        return (
            f"MoleculeSet({len(self)} molecules, {self.n_total_atoms} atoms, "
            f"elements={self.elements.symbols}, dtype={self.positions.dtype})"
        )

    # ----------------------------------------------------------------------------------------------
    # derived sets

    def _replace(self, **changes: Any) -> MoleculeSet:
        fields = {
            "positions": self.positions,
            "types": self.types,
            "n_atoms": self.n_atoms,
            "elements": self.elements,
            "ids": self.ids,
            "properties": self.properties,
            "smiles": self.smiles,
            "meta": self.meta,
        }
        fields.update(changes)
        return MoleculeSet(**fields, validate=False)

    def subset(self, index: Any) -> MoleculeSet:
        """The molecules selected by a slice, a boolean mask or an index array (in its order)."""
        idx = np.arange(len(self))[index] if isinstance(index, slice) else to_numpy(index)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(
                    f"MoleculeSet.subset: a boolean index must have shape ({len(self)},), got "
                    f"{idx.shape}"
                )
            idx = np.flatnonzero(idx)
        idx = idx.reshape(-1).astype(np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(
                f"MoleculeSet.subset: index must lie in [0, {len(self)}), got "
                f"{int(idx.min())}..{int(idx.max())}"
            )
        idx %= max(len(self), 1)
        counts = self.n_atoms[idx]
        new_offsets = _offsets(counts)
        rows = np.repeat(self.offsets[idx] - new_offsets[:-1], counts) + np.arange(
            new_offsets[-1], dtype=np.int64
        )
        return self._replace(
            positions=self.positions[rows],
            types=self.types[rows],
            n_atoms=counts,
            ids=self.ids[idx],
            properties={k: v[idx] for k, v in self.properties.items()},
            smiles=None if self.smiles is None else self.smiles[idx],
        )

    def select_ids(self, ids: Any) -> MoleculeSet:
        """The molecules with the given ids, in the order given."""
        want = to_numpy(ids).reshape(-1).astype(np.int64)
        order = np.argsort(self.ids, kind="stable")
        pos = np.searchsorted(self.ids[order], want)
        pos = np.clip(pos, 0, max(len(order) - 1, 0))
        found = len(order) > 0 and np.all(self.ids[order][pos] == want)
        if not found:
            missing = want[:1] if len(order) == 0 else want[self.ids[order][pos] != want][:5]
            raise ValueError(
                f"MoleculeSet.select_ids: ids must be present in the set, got missing "
                f"{missing.tolist()}"
            )
        return self.subset(order[pos])

    def centred(self) -> MoleculeSet:
        """Each molecule minus its unweighted centroid, computed in float64 (official choice)."""
        pos64 = self.positions.astype(np.float64)
        if len(self) == 0:
            return self._replace()
        sums = np.add.reduceat(pos64, self.offsets[:-1], axis=0)
        means = sums / self.n_atoms[:, None]
        centred = pos64 - np.repeat(means, self.n_atoms, axis=0)
        return self._replace(positions=centred.astype(self.positions.dtype, copy=False))

    def remove_hydrogens(self, elements: ElementSet | None = None) -> MoleculeSet:
        """Drop the H atoms, re-centre on the heavy atoms and re-index the types.

        Args:
            elements: the target element set; default ``QM9_NO_H`` for QM9_WITH_H, otherwise this
                set without ``"H"``.
        """
        if "H" not in self.elements.symbols:
            raise ValueError(
                f"MoleculeSet.remove_hydrogens: elements must contain 'H', got "
                f"{self.elements.symbols}"
            )
        if elements is None:
            elements = QM9_NO_H if self.elements == QM9_WITH_H else self.elements.without("H")
        h = self.elements.index("H")
        keep = self.types != h
        kept_per_molecule = (
            np.add.reduceat(keep.astype(np.int64), self.offsets[:-1])
            if len(self)
            else np.zeros(0, np.int64)
        )
        empty = np.flatnonzero(kept_per_molecule == 0)
        if empty.size:
            raise ValueError(
                f"MoleculeSet.remove_hydrogens: every molecule must keep a heavy atom, got none in "
                f"molecule {int(empty[0])}"
            )
        remap = np.full(len(self.elements), -1, dtype=np.int64)
        for i, s in enumerate(self.elements.symbols):
            if s != "H":
                remap[i] = elements.index(s)
        out = self._replace(
            positions=self.positions[keep],
            types=remap[self.types[keep].astype(np.int64)].astype(elements.type_dtype),
            n_atoms=kept_per_molecule,
            elements=elements,
        )
        return out.centred()

    @classmethod
    def concatenate(cls, sets: Sequence[MoleculeSet]) -> MoleculeSet:
        """Join sets sharing an element set; properties and SMILES are kept where all have them."""
        sets = list(sets)
        if not sets:
            raise ValueError("MoleculeSet.concatenate: sets must be non-empty, got []")
        elements = sets[0].elements
        for s in sets[1:]:
            if s.elements != elements:
                raise ValueError(
                    f"MoleculeSet.concatenate: sets must share one ElementSet, got "
                    f"{elements.symbols} and {s.elements.symbols}"
                )
        names = set(sets[0].properties).intersection(*(s.properties for s in sets[1:]))
        dtype = np.float32 if all(s.positions.dtype == np.float32 for s in sets) else np.float64
        return cls(
            np.concatenate([s.positions.astype(dtype) for s in sets]),
            np.concatenate([s.types for s in sets]),
            np.concatenate([s.n_atoms for s in sets]),
            elements,
            ids=np.concatenate([s.ids for s in sets]),
            properties={k: np.concatenate([s.properties[k] for s in sets]) for k in sorted(names)},
            smiles=None
            if any(s.smiles is None for s in sets)
            else np.concatenate([s.smiles for s in sets]),
            meta=sets[0].meta,
            validate=False,
        )

    @classmethod
    def from_molecules(
        cls,
        molecules: Sequence[tuple[Any, Any]],
        elements: ElementSet = QM9_WITH_H,
        **kwargs: Any,
    ) -> MoleculeSet:
        """Build a set from a sequence of ``(positions [M,3], types [M])`` pairs.

        Nothing is reshaped or truncated: positions must be [M, 3] real numbers and types [M]
        integers (integer arrays, or floats with integral values, converted explicitly);
        anything else is a ``ValueError``/``TypeError`` naming the molecule.
        """
        func = "MoleculeSet.from_molecules"
        if isinstance(molecules, (str, bytes)) or not isinstance(molecules, Sequence):
            raise TypeError(
                f"{func}: molecules must be a sequence of (positions [M, 3], types [M]) pairs, "
                f"got {type(molecules).__name__}"
            )
        pos, typ = [], []
        for i, item in enumerate(molecules):
            if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2:
                raise TypeError(
                    f"{func}: molecules[{i}] must be a (positions [M, 3], types [M]) pair, got "
                    f"{type(item).__name__}"
                )
            p, t = to_numpy(item[0]), to_numpy(item[1])
            if p.dtype.kind not in "iuf" or p.ndim != 2 or p.shape[1] != 3:
                raise ValueError(
                    f"{func}: positions of molecule {i} must be real numbers of shape [M, 3], "
                    f"got {p.dtype} {p.shape}"
                )
            if t.ndim != 1 or t.shape[0] != p.shape[0]:
                raise ValueError(
                    f"{func}: types of molecule {i} must have shape [M] = [{p.shape[0]}], got "
                    f"{t.shape}"
                )
            if t.size and t.dtype.kind == "f":
                if not (np.isfinite(t).all() and (t == np.round(t)).all()):
                    bad = t[~(np.isfinite(t) & (t == np.round(t)))][0]
                    raise ValueError(
                        f"{func}: types of molecule {i} must be integer type indices, got {bad!r}"
                    )
                t = t.astype(np.int64)
            elif t.size and t.dtype.kind not in "iu":
                raise TypeError(
                    f"{func}: types of molecule {i} must be integer type indices, got dtype "
                    f"{t.dtype}"
                )
            pos.append(p)
            typ.append(t)
        dtype = np.float32 if pos and all(p.dtype == np.float32 for p in pos) else np.float64
        return cls(
            np.concatenate(pos).astype(dtype) if pos else np.zeros((0, 3)),
            np.concatenate(typ).astype(np.int64) if typ else np.zeros(0, np.int64),
            np.array([len(p) for p in pos], dtype=np.int64),
            elements,
            **kwargs,
        )

    @classmethod
    def from_files(
        cls,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        elements: ElementSet = QM9_WITH_H,
        max_atoms: int | None = None,
        centre: bool = True,
    ) -> MoleculeSet:
        """Read users' molecules from ``.xyz`` and ``.sdf`` files, then validate (and centre) them.

        Args:
            paths: one path or a sequence of paths; the suffix selects the reader.
            elements: the element set the symbols must belong to.
            max_atoms: the largest allowed M; default ``elements.max_atoms``.
            centre: subtract each molecule's unweighted centroid (float64).

        Raises:
            ValueError: an unknown symbol (naming file, molecule, atom, symbol and the allowed
                symbols), a molecule above ``max_atoms`` or a non-finite coordinate.
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        limit = elements.max_atoms if max_atoms is None else int(max_atoms)
        pos, typ, n, ids = [], [], [], []
        for path in paths:
            for m, raw in enumerate(read_molecules(path)):
                types = elements.encode(raw.symbols, source=str(path), molecule=m)
                if len(types) > limit:
                    raise ValueError(
                        f"MoleculeSet.from_files: molecules must have at most max_atoms={limit} "
                        f"atoms, got M={len(types)} in molecule {m} of file {path}"
                    )
                finite = np.isfinite(raw.positions).all(axis=1)
                if not finite.all():
                    a = int(np.flatnonzero(~finite)[0])
                    raise ValueError(
                        f"MoleculeSet.from_files: positions must be finite, got "
                        f"{raw.positions[a].tolist()} in molecule {m}, atom {a} of file {path}"
                    )
                pos.append(raw.positions)
                typ.append(types)
                n.append(len(types))
                ids.append(len(ids))
        if not n:
            raise ValueError(
                f"MoleculeSet.from_files: paths must contain molecules, got none in {paths}"
            )
        out = cls(
            np.concatenate(pos),
            np.concatenate(typ),
            np.asarray(n, dtype=np.int64),
            elements,
            ids=np.asarray(ids),
            max_atoms=limit,
        )
        return out.centred() if centre else out

    # ----------------------------------------------------------------------------------------------
    # .npz

    def save_npz(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the set to an uncompressed ``.npz`` atomically (temporary file, then rename)."""
        meta = {
            "format": _NPZ_FORMAT,
            "elements": self.elements.to_dict(),
            "properties": sorted(self.properties),
            "meta": self.meta,
        }
        arrays = {
            "positions": self.positions,
            "types": self.types,
            "n_atoms": self.n_atoms,
            "ids": self.ids,
            "meta": np.asarray(json.dumps(meta)),
        }
        if self.smiles is not None:
            arrays["smiles"] = self.smiles
        for k, v in self.properties.items():
            arrays[f"property:{k}"] = v
        return atomic_write(path, lambda f: np.savez(f, **arrays), overwrite=overwrite)

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> MoleculeSet:
        """Read a set written by :meth:`save_npz`."""
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z or "positions" not in z:
                raise ValueError(
                    f"MoleculeSet.load_npz: path must be a file written by MoleculeSet.save_npz, "
                    "got "
                    f"{path} without 'meta'/'positions'"
                )
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != _NPZ_FORMAT:
                raise ValueError(
                    f"MoleculeSet.load_npz: format must be {_NPZ_FORMAT}, got "
                    f"{meta.get('format')!r}"
                )
            return cls(
                z["positions"],
                z["types"],
                z["n_atoms"],
                ElementSet.from_dict(meta["elements"]),
                ids=z["ids"],
                properties={k: z[f"property:{k}"] for k in meta["properties"]},
                smiles=z["smiles"] if "smiles" in z else None,
                meta=meta["meta"],
            )


def as_molecule_set(
    molecules: Any, elements: ElementSet | None = None, func: str = "as_molecule_set"
) -> MoleculeSet:
    """Coerce the inputs the metrics accept into a :class:`MoleculeSet`.

    Accepted: a ``MoleculeSet``; a packed batch (attributes ``x`` [V,3], ``h_cat`` [V,K] and
    ``n_atoms`` [B]); a padded batch (``x`` [B,N,3], ``h_cat`` [B,N,K], ``node_mask`` [B,N,1]);
    or a sequence of ``(positions, types)`` pairs. Batch types are ``argmax(h_cat)``. ``func``
    names the caller in error messages.
    """
    expected = (
        "a MoleculeSet, a packed/padded batch or a sequence of (positions [M, 3], types [M]) pairs"
    )
    if isinstance(molecules, MoleculeSet):
        if elements is not None and elements != molecules.elements:
            raise ValueError(
                f"{func}: elements must match the set's {molecules.elements.symbols}, got "
                f"{elements.symbols}"
            )
        return molecules
    elements = QM9_WITH_H if elements is None else elements
    if hasattr(molecules, "x") and hasattr(molecules, "h_cat"):
        x = to_numpy(molecules.x)
        h = to_numpy(molecules.h_cat)
        if getattr(molecules, "node_mask", None) is not None:
            mask = to_numpy(molecules.node_mask).reshape(x.shape[0], x.shape[1]) > 0.5
            n = mask.sum(axis=1).astype(np.int64)
            return MoleculeSet(x[mask], h[mask].argmax(-1), n, elements)
        n = to_numpy(molecules.n_atoms).reshape(-1).astype(np.int64)
        return MoleculeSet(x, h.argmax(-1), n, elements)
    if isinstance(molecules, Sequence) and not isinstance(molecules, (str, bytes)):
        for i, item in enumerate(molecules):
            ok = isinstance(item, Sequence) and not isinstance(item, (str, bytes))
            if not ok or len(item) != 2:
                raise TypeError(
                    f"{func}: molecules must be {expected}, got a {type(molecules).__name__} "
                    f"whose item {i} is {type(item).__name__} {item!r:.60}"
                )
        return MoleculeSet.from_molecules(molecules, elements)
    raise TypeError(f"{func}: molecules must be {expected}, got {type(molecules).__name__}")
