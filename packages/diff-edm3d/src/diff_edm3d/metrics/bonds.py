"""Bond orders from interatomic distances: EDM's lookup table, bit for bit.

The tables and the margins are those of the official code (ehoogeboom/e3_diffusion_for_molecules,
``qm9/bond_analyze.py``; lengths in pm from wiredchemist.com and chemistry-reference.com). For an
unordered pair of elements (a, b) at distance d (pm):

.. math::

    \\text{order}(a, b, d) = \\begin{cases}
      0 & \\text{no single entry, or } d \\ge L_1 + m_1 \\\\
      3 & d < L_2 + m_2 \\text{ and } d < L_3 + m_3 \\\\
      2 & d < L_2 + m_2 \\\\
      1 & \\text{otherwise}
    \\end{cases}

with margins (m_1, m_2, m_3) = (10, 5, 3) and strict comparisons; a missing double (triple) entry
never matches. Pairs outside the table get order 0, as in the official GEOM path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from diff_edm3d.elements import ElementSet

__all__ = [
    "ALLOWED_VALENCES",
    "BOND_LENGTHS_DOUBLE",
    "BOND_LENGTHS_SINGLE",
    "BOND_LENGTHS_TRIPLE",
    "BondMargins",
    "BondTable",
    "bond_order",
    "bond_orders",
    "bond_table",
    "pairwise_distances_pm",
]

Precision = Literal["float32", "float64"]


def _symmetric(rows: Mapping[str, Mapping[str, int]]) -> dict[tuple[str, str], int]:
    table: dict[tuple[str, str], int] = {}
    for a, row in rows.items():
        for b, length in row.items():
            for key in ((a, b), (b, a)):
                if table.setdefault(key, length) != length:  # pragma: no cover - data check
                    raise AssertionError(f"asymmetric bond table entry {key}")
    return table


#: Typical single-bond lengths L1 in pm, keyed by ordered pair (both orders present).
BOND_LENGTHS_SINGLE: dict[tuple[str, str], int] = _symmetric({
    "H": {"H": 74, "C": 109, "N": 101, "O": 96, "F": 92, "B": 119, "Si": 148, "P": 144,
          "As": 152, "S": 134, "Cl": 127, "Br": 141, "I": 161},
    "C": {"C": 154, "N": 147, "O": 143, "F": 135, "Si": 185, "P": 184, "S": 182, "Cl": 177,
          "Br": 194, "I": 214},
    "N": {"N": 145, "O": 140, "F": 136, "Cl": 175, "Br": 214, "S": 168, "I": 222, "P": 177},
    "O": {"O": 148, "F": 142, "Br": 172, "S": 151, "P": 163, "Si": 163, "Cl": 164, "I": 194},
    "F": {"F": 142, "S": 158, "Si": 160, "Cl": 166, "Br": 178, "P": 156, "I": 187},
    "B": {"Cl": 175},
    "Si": {"Si": 233, "S": 200, "Cl": 202, "Br": 215, "I": 243},
    "Cl": {"Cl": 199, "P": 203, "S": 207, "Br": 214},
    "S": {"S": 204, "Br": 225, "P": 210, "I": 234},
    "Br": {"Br": 228, "P": 222},
    "P": {"P": 221},
    "I": {"I": 266},
})  # fmt: skip

#: Typical double-bond lengths L2 in pm.
BOND_LENGTHS_DOUBLE: dict[tuple[str, str], int] = _symmetric({
    "C": {"C": 134, "N": 129, "O": 120, "S": 160},
    "N": {"N": 125, "O": 121},
    "O": {"O": 121, "P": 150},
    "P": {"S": 186},
})  # fmt: skip

#: Typical triple-bond lengths L3 in pm.
BOND_LENGTHS_TRIPLE: dict[tuple[str, str], int] = _symmetric({
    "C": {"C": 120, "N": 116, "O": 113},
    "N": {"N": 110},
})  # fmt: skip

#: Valences an atom must have to count as stable (EDM's ``allowed_bonds``).
ALLOWED_VALENCES: dict[str, tuple[int, ...]] = {
    "H": (1,), "C": (4,), "N": (3,), "O": (2,), "F": (1,), "B": (3,), "Al": (3,), "Si": (4,),
    "P": (3, 5), "S": (4,), "Cl": (1,), "As": (3,), "Br": (1,), "I": (1,), "Hg": (1, 2),
    "Bi": (3, 5),
}  # fmt: skip


@dataclass(frozen=True)
class BondMargins:
    """Margins (pm) added to the typical lengths: single, double, triple (official: 10, 5, 3)."""

    single: float = 10.0
    double: float = 5.0
    triple: float = 3.0


DEFAULT_MARGINS = BondMargins()


def bond_order(a: str, b: str, distance: float, margins: BondMargins = DEFAULT_MARGINS) -> int:
    """Bond order (0-3) of elements ``a`` and ``b`` at ``distance`` Å (scalar reference)."""
    d = 100.0 * float(distance)
    l1 = BOND_LENGTHS_SINGLE.get((a, b))
    if l1 is None or not d < l1 + margins.single:
        return 0
    l2 = BOND_LENGTHS_DOUBLE.get((a, b))
    if l2 is None or not d < l2 + margins.double:
        return 1
    l3 = BOND_LENGTHS_TRIPLE.get((a, b))
    if l3 is None or not d < l3 + margins.triple:
        return 2
    return 3


@dataclass(frozen=True)
class BondTable:
    """Per-type-pair thresholds (pm, margins included) and allowed valences for one ElementSet.

    ``single``/``double``/``triple`` are [K,K]; a missing entry is ``-inf`` so ``d < thr`` is never
    true. ``allowed`` is [K, V+1] boolean: ``allowed[k, v]`` iff valence v is stable for type k.
    """

    single: np.ndarray
    double: np.ndarray
    triple: np.ndarray
    allowed: np.ndarray


@lru_cache(maxsize=32)
def bond_table(elements: ElementSet, margins: BondMargins = DEFAULT_MARGINS) -> BondTable:
    """The threshold matrices for ``elements`` (cached)."""
    k = len(elements)
    tables = []
    for lengths, margin in (
        (BOND_LENGTHS_SINGLE, margins.single),
        (BOND_LENGTHS_DOUBLE, margins.double),
        (BOND_LENGTHS_TRIPLE, margins.triple),
    ):
        thr = np.full((k, k), -np.inf)
        for i, a in enumerate(elements.symbols):
            for j, b in enumerate(elements.symbols):
                if (a, b) in lengths:
                    thr[i, j] = lengths[(a, b)] + margin
        thr.setflags(write=False)
        tables.append(thr)
    max_valence = 3 * max(elements.max_atoms - 1, 1)
    top = max(max(max(v) for v in ALLOWED_VALENCES.values()), max_valence)
    allowed = np.zeros((k, top + 1), dtype=bool)
    for i, s in enumerate(elements.symbols):
        for v in ALLOWED_VALENCES.get(s, ()):
            allowed[i, v] = True
    allowed.setflags(write=False)
    return BondTable(*tables, allowed)


def pairwise_distances_pm(positions: np.ndarray, precision: Precision = "float64") -> np.ndarray:
    """Distances in pm between all atom pairs of each molecule: [..., M, 3] -> [..., M, M].

    ``precision="float32"`` reproduces the official pipeline bit for bit: the difference, squares,
    sum over x, y, z (in that order), square root and the product with 100 all in float32.
    """
    dtype = np.float32 if precision == "float32" else np.float64
    if precision not in ("float32", "float64"):
        raise ValueError(
            f"pairwise_distances_pm: precision must be 'float32' or 'float64', got {precision!r}"
        )
    x = np.asarray(positions).astype(dtype, copy=False)
    diff = x[..., :, None, :] - x[..., None, :, :]
    sq = diff * diff
    d2 = (sq[..., 0] + sq[..., 1]) + sq[..., 2]
    return dtype(100) * np.sqrt(d2)


def bond_orders(
    positions: np.ndarray,
    types: np.ndarray,
    elements: ElementSet,
    precision: Precision = "float64",
    margins: BondMargins = DEFAULT_MARGINS,
) -> np.ndarray:
    """Bond-order matrices from positions (Å) and type indices.

    Args:
        positions: [..., M, 3].
        types: [..., M] indices into ``elements``.
        elements: the element set.
        precision: distance arithmetic, ``"float64"`` (default) or ``"float32"`` (official).
        margins: the three margins in pm.

    Returns:
        int8 [..., M, M], symmetric with a zero diagonal.
    """
    table = bond_table(elements, margins)
    t = np.asarray(types).astype(np.intp)
    d = pairwise_distances_pm(positions, precision)
    ti, tj = t[..., :, None], t[..., None, :]
    # Thresholds are integers plus integer margins, exactly representable in float32.
    thr1 = table.single[ti, tj].astype(d.dtype)
    thr2 = table.double[ti, tj].astype(d.dtype)
    thr3 = table.triple[ti, tj].astype(d.dtype)
    single = d < thr1
    order = single.astype(np.int8) * (
        1 + (d < thr2).astype(np.int8) * (1 + (d < thr3).astype(np.int8))
    )
    m = order.shape[-1]
    order[..., np.arange(m), np.arange(m)] = 0
    return order
