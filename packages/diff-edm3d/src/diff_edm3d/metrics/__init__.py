"""Molecule metrics, bit-compatible with the official EDM code: bond orders, stability, RDKit."""

from __future__ import annotations

from typing import Any

from diff_edm3d.metrics.bonds import (
    ALLOWED_VALENCES,
    BondMargins,
    bond_order,
    bond_orders,
    pairwise_distances_pm,
)
from diff_edm3d.metrics.chem import (
    ChemResult,
    build_rdkit_molecule,
    chem_metrics,
    molecule_smiles,
    reference_smiles,
)
from diff_edm3d.metrics.plausibility import PlausibilityResult, plausibility
from diff_edm3d.metrics.stability import StabilityResult, atom_valences, stability, wilson_interval

__all__ = [
    "ALLOWED_VALENCES",
    "BondMargins",
    "ChemResult",
    "PlausibilityResult",
    "StabilityResult",
    "atom_valences",
    "bond_order",
    "bond_orders",
    "build_rdkit_molecule",
    "chem_metrics",
    "molecule_metrics",
    "molecule_smiles",
    "pairwise_distances_pm",
    "plausibility",
    "reference_smiles",
    "stability",
    "wilson_interval",
]


def molecule_metrics(
    molecules: Any,
    elements: Any = None,
    train_smiles: Any = None,
    precision: str = "float64",
) -> dict[str, Any]:
    """Stability, plausibility and, when RDKit is installed, validity/uniqueness/novelty as one
    JSON-able dict (keys ``stability``, ``plausibility``, ``rdkit``).

    The ``rdkit`` key is ``None`` when RDKit is missing (``pip install "diff-edm3d[chem]"``).
    """
    result: dict[str, Any] = {
        "stability": stability(molecules, elements, precision).to_dict(),
        "plausibility": plausibility(molecules, elements, precision=precision).to_dict(),
    }
    try:
        import rdkit  # noqa: F401
    except ImportError:
        result["rdkit"] = None
        return result
    result["rdkit"] = chem_metrics(molecules, elements, train_smiles, precision).to_dict()
    return result
