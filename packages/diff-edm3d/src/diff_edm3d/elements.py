"""Element sets: which chemical elements a dataset or model uses, in which order.

An atom's *type* is its index into the dataset's :class:`ElementSet`. The EDM paper (Hoogeboom et
al., arXiv:2203.17003) uses ``("H", "C", "N", "O", "F")`` for QM9 with hydrogens and
``("C", "N", "O", "F")`` without; the integer feature it calls the "charge" is the atomic
number Z, which :attr:`ElementSet.atomic_numbers` provides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ElementSet",
    "GEOM_WITH_H",
    "PERIODIC_TABLE",
    "QM9_NO_H",
    "QM9_WITH_H",
    "canonical_symbol",
    "element_set",
]

#: Element symbols by atomic number: ``PERIODIC_TABLE[Z - 1]``.
PERIODIC_TABLE: tuple[str, ...] = (
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl",
    "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As",
    "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In",
    "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb",
    "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl",
    "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk",
    "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh",
    "Fl", "Mc", "Lv", "Ts", "Og",
)  # fmt: skip

_ATOMIC_NUMBER = {symbol: z for z, symbol in enumerate(PERIODIC_TABLE, start=1)}


def canonical_symbol(token: str | int) -> str | None:
    """Return the canonical element symbol for ``token``, or ``None`` if it names no element.

    Symbols are case-normalised (``"cl"`` and ``"CL"`` become ``"Cl"``) and atomic numbers are
    accepted in place of symbols (``6`` or ``"6"`` become ``"C"``).
    """
    if isinstance(token, (int, np.integer)) and not isinstance(token, bool):
        z = int(token)
        return PERIODIC_TABLE[z - 1] if 1 <= z <= len(PERIODIC_TABLE) else None
    if not isinstance(token, str):
        return None
    text = token.strip()
    if text.isdigit():
        return canonical_symbol(int(text))
    text = text[:1].upper() + text[1:].lower()
    return text if text in _ATOMIC_NUMBER else None


@dataclass(frozen=True)
class ElementSet:
    """An ordered set of elements plus the largest molecule a model built on it supports.

    Args:
        symbols: element symbols in type-index order, e.g. ``("H", "C", "N", "O", "F")``.
        max_atoms: the largest number of atoms per molecule (29 for QM9 with H, 9 without).
        name: a label used in file metadata and messages.

    Example:
        >>> QM9_WITH_H.index("N"), QM9_WITH_H.atomic_numbers
        (2, (1, 6, 7, 8, 9))
    """

    symbols: tuple[str, ...]
    max_atoms: int
    name: str = "custom"

    def __post_init__(self) -> None:
        symbols = tuple(self.symbols) if not isinstance(self.symbols, str) else None
        if not symbols:
            raise ValueError(
                f"ElementSet: symbols must be a non-empty sequence of element symbols, "
                f"got {self.symbols!r}"
            )
        canonical = []
        for symbol in symbols:
            c = canonical_symbol(symbol) if isinstance(symbol, str) else None
            if c is None or c != symbol:
                raise ValueError(
                    f"ElementSet: symbols must be canonical element symbols such as 'C' or 'Cl', "
                    f"got {symbol!r}"
                )
            canonical.append(c)
        if len(set(canonical)) != len(canonical):
            raise ValueError(f"ElementSet: symbols must be distinct, got {symbols!r}")
        if (
            not isinstance(self.max_atoms, (int, np.integer))
            or isinstance(self.max_atoms, bool)
            or self.max_atoms < 1
        ):
            raise ValueError(
                f"ElementSet: max_atoms must be a positive integer, got {self.max_atoms!r}"
            )
        object.__setattr__(self, "symbols", tuple(canonical))
        object.__setattr__(self, "max_atoms", int(self.max_atoms))

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def n_types(self) -> int:
        """K, the number of atom types (the width of the one-hot feature)."""
        return len(self.symbols)

    @property
    def atomic_numbers(self) -> tuple[int, ...]:
        """Z of each type, in type order (the paper's integer "charge" feature)."""
        return tuple(_ATOMIC_NUMBER[s] for s in self.symbols)

    @property
    def type_dtype(self) -> np.dtype:
        """The smallest signed integer dtype that holds every type index."""
        return np.dtype(np.int8) if len(self.symbols) <= 127 else np.dtype(np.int16)

    def index(self, symbol: str | int) -> int:
        """Type index of ``symbol`` (case-insensitive; an atomic number is accepted too)."""
        canonical = canonical_symbol(symbol)
        if canonical is None or canonical not in self.symbols:
            raise ValueError(
                f"ElementSet.index: symbol must be one of {self.symbols}, got {symbol!r}"
            )
        return self.symbols.index(canonical)

    def encode(
        self,
        symbols: Iterable[str | int],
        *,
        source: str | None = None,
        molecule: int | None = None,
    ) -> np.ndarray:
        """Map element symbols (or atomic numbers) to type indices.

        Raises:
            ValueError: for a symbol outside the set. The message names the source (file), the
                molecule index, the atom index, the symbol and the allowed symbols.
        """
        lookup = {s: i for i, s in enumerate(self.symbols)}
        out = []
        for atom, token in enumerate(symbols):
            canonical = canonical_symbol(token)
            if canonical is None or canonical not in lookup:
                where = []
                if source is not None:
                    where.append(f"file {source}")
                if molecule is not None:
                    where.append(f"molecule {molecule}")
                where.append(f"atom {atom}")
                raise ValueError(
                    f"ElementSet.encode: symbols must be elements of {self.name} "
                    f"{self.symbols}, got {token!r} ({', '.join(where)})"
                )
            out.append(lookup[canonical])
        return np.asarray(out, dtype=self.type_dtype)

    def decode(self, types: Iterable[int] | np.ndarray) -> list[str]:
        """Map type indices back to element symbols."""
        out = []
        for t in np.asarray(types).reshape(-1).tolist():
            if not 0 <= t < len(self.symbols):
                raise ValueError(
                    f"ElementSet.decode: types must lie in [0, {len(self.symbols) - 1}], got {t}"
                )
            out.append(self.symbols[t])
        return out

    def without(
        self, symbol: str, max_atoms: int | None = None, name: str | None = None
    ) -> ElementSet:
        """This set with ``symbol`` removed (used to drop hydrogens)."""
        keep = tuple(s for s in self.symbols if s != symbol)
        return ElementSet(
            keep,
            max_atoms=self.max_atoms if max_atoms is None else max_atoms,
            name=name or f"{self.name}_no_{symbol}",
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; inverse of :meth:`from_dict`."""
        return {"name": self.name, "symbols": list(self.symbols), "max_atoms": self.max_atoms}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ElementSet:
        """Rebuild an element set written by :meth:`to_dict`."""
        if not isinstance(d, Mapping) or "symbols" not in d or "max_atoms" not in d:
            raise ValueError(
                f"ElementSet.from_dict: d must be a mapping with keys 'symbols' and 'max_atoms', "
                f"got {d!r}"
            )
        symbols, max_atoms, name = d["symbols"], d["max_atoms"], d.get("name", "custom")
        if not isinstance(symbols, (list, tuple)) or not isinstance(name, str):
            raise ValueError(
                f"ElementSet.from_dict: d['symbols'] must be a list of symbols and d['name'] a "
                f"str, got {symbols!r:.60} and {name!r:.60}"
            )
        return cls(tuple(symbols), max_atoms, name)


def _known(name: str) -> ElementSet:
    return {"qm9_with_h": QM9_WITH_H, "qm9_no_h": QM9_NO_H, "geom_with_h": GEOM_WITH_H}[name]


#: QM9 with hydrogens: K = 5, up to 29 atoms (Ramakrishnan et al. 2014; EDM's ``qm9`` config).
QM9_WITH_H = ElementSet(("H", "C", "N", "O", "F"), max_atoms=29, name="qm9_with_h")
#: QM9 heavy atoms only: K = 4, up to 9 atoms.
QM9_NO_H = ElementSet(("C", "N", "O", "F"), max_atoms=9, name="qm9_no_h")
#: GEOM-Drugs' element list in the official code's order (for user files; the data is out of scope).
GEOM_WITH_H = ElementSet(
    ("H", "B", "C", "N", "O", "F", "Al", "Si", "P", "S", "Cl", "As", "Br", "I", "Hg", "Bi"),
    max_atoms=181,
    name="geom_with_h",
)


def element_set(spec: ElementSet | str | Sequence[str], max_atoms: int | None = None) -> ElementSet:
    """Coerce a name (``"qm9_with_h"``), a symbol list or an ElementSet to an ElementSet."""
    if isinstance(spec, ElementSet):
        return spec
    if isinstance(spec, str):
        try:
            return _known(spec)
        except KeyError:
            raise ValueError(
                f"element_set: spec must be one of 'qm9_with_h', 'qm9_no_h', 'geom_with_h' or a "
                f"symbol list, got {spec!r}"
            ) from None
    return ElementSet(tuple(spec), max_atoms=max_atoms if max_atoms is not None else 29)
