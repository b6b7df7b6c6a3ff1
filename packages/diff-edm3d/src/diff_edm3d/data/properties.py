"""QM9 properties in the units EDM conditions on, and their mean/MAD normalisation.

Conversions follow the official code (ehoogeboom/e3_diffusion_for_molecules, ``qm9/data/prepare``):
energies in Hartree are multiplied by 27.2114 (the official factor, not CODATA) to give eV, and the
heat capacity has QM9's atomic reference ("thermo") term removed: 2.981 cal/(mol K) per atom,
counting every atom including hydrogens. Tables report gap/HOMO/LUMO errors in meV.

Normalisation (EDM, arXiv:2203.17003, section 5.3 / official ``compute_mean_mad``):

.. math:: c' = (c - \\mu) / \\mathrm{MAD}, \\qquad \\mathrm{MAD} = \\frac{1}{N}\\sum_i |c_i - \\mu|.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CV_THERMO_PER_ATOM",
    "HARTREE_TO_EV",
    "PROPERTIES",
    "PROPERTY_NAMES",
    "PropertyNormaliser",
    "PropertySpec",
    "check_property",
    "convert_properties",
]

#: Hartree -> eV as used by the official code.
HARTREE_TO_EV = 27.2114
#: QM9's atomic reference heat capacity, cal/(mol K) per atom (all elements).
CV_THERMO_PER_ATOM = 2.981


@dataclass(frozen=True)
class PropertySpec:
    """One conditioning property: its qm9pack column and the conversion to EDM units.

    ``value = raw * factor - thermo_per_atom * M_all``; ``report_scale`` converts the unit to the
    one tables report (1000 for eV -> meV).
    """

    name: str
    column: str
    factor: float
    thermo_per_atom: float
    unit: str
    report_unit: str
    report_scale: float = 1.0


PROPERTIES: dict[str, PropertySpec] = {
    "alpha": PropertySpec("alpha", "Polarizability_bohr3", 1.0, 0.0, "Bohr^3", "Bohr^3"),
    "gap": PropertySpec("gap", "HOMO_LUMO_gap_au", HARTREE_TO_EV, 0.0, "eV", "meV", 1000.0),
    "homo": PropertySpec("homo", "HOMO_au", HARTREE_TO_EV, 0.0, "eV", "meV", 1000.0),
    "lumo": PropertySpec("lumo", "LUMO_au", HARTREE_TO_EV, 0.0, "eV", "meV", 1000.0),
    "mu": PropertySpec("mu", "Dipole_debye", 1.0, 0.0, "D", "D"),
    "Cv": PropertySpec(
        "Cv", "Heatcapacity_Cv_cal_mol_K", 1.0, CV_THERMO_PER_ATOM, "cal/(mol K)", "cal/(mol K)"
    ),
}
PROPERTY_NAMES: tuple[str, ...] = tuple(PROPERTIES)
RAW_COLUMNS: tuple[str, ...] = tuple(p.column for p in PROPERTIES.values())


def check_property(name: str) -> PropertySpec:
    """The spec of property ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in PROPERTIES:
        raise ValueError(f"check_property: property must be one of {PROPERTY_NAMES}, got {name!r}")
    return PROPERTIES[name]


def convert_properties(
    raw: Mapping[str, np.ndarray], n_atoms_all: np.ndarray
) -> dict[str, np.ndarray]:
    """EDM-unit properties from raw qm9pack columns.

    Args:
        raw: column name -> float64 [S] in qm9pack units (keys as in :data:`RAW_COLUMNS`).
        n_atoms_all: [S] atom counts including hydrogens (for the Cv thermo term).

    Returns:
        property name -> float64 [S].
    """
    m_all = np.asarray(n_atoms_all, dtype=np.float64)
    out = {}
    for name, spec in PROPERTIES.items():
        if spec.column not in raw:
            raise ValueError(
                f"convert_properties: raw must contain the column {spec.column!r}, got "
                f"{sorted(raw)}"
            )
        value = np.asarray(raw[spec.column], dtype=np.float64) * spec.factor
        if spec.thermo_per_atom:
            value = value - spec.thermo_per_atom * m_all
        out[name] = value
    return out


def _as_columns(values: Any, names: Sequence[str], func: str) -> np.ndarray:
    arr = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values)
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 1 and len(names) == 1:
        return arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise ValueError(
            f"{func}: values must have shape [S] for one property or [S, {len(names)}] for "
            f"{tuple(names)}, got {arr.shape}"
        )
    return arr


@dataclass(frozen=True)
class PropertyNormaliser:
    """Mean/MAD normalisation of conditioning properties.

    Args:
        mean: property name -> mean.
        mad: property name -> mean absolute deviation about the mean (must be > 0).

    Example:
        >>> n = PropertyNormaliser.fit({"alpha": np.array([1.0, 3.0])})
        >>> n.mean["alpha"], n.mad["alpha"]
        (2.0, 1.0)
    """

    mean: Mapping[str, float]
    mad: Mapping[str, float]

    def __post_init__(self) -> None:
        for key in ("mean", "mad"):
            table = getattr(self, key)
            if not isinstance(table, Mapping):
                raise TypeError(
                    f"PropertyNormaliser: {key} must be a mapping name -> number, got "
                    f"{type(table).__name__}"
                )
            for k, v in table.items():
                if (
                    not isinstance(k, str)
                    or isinstance(v, bool)
                    or not isinstance(v, (int, float, np.integer, np.floating))
                    or not np.isfinite(v)
                ):
                    raise ValueError(
                        f"PropertyNormaliser: {key} must map names to finite numbers, got "
                        f"{k!r}: {v!r:.40}"
                    )
        if set(self.mean) != set(self.mad):
            raise ValueError(
                f"PropertyNormaliser: mean and mad must have the same keys, got "
                f"{sorted(self.mean)} "
                f"and {sorted(self.mad)}"
            )
        for k, v in self.mad.items():
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"PropertyNormaliser: mad[{k!r}] must be finite and > 0, got {v}")
        object.__setattr__(self, "mean", {k: float(v) for k, v in self.mean.items()})
        object.__setattr__(self, "mad", {k: float(v) for k, v in self.mad.items()})

    @classmethod
    def fit(cls, source: Any, names: Sequence[str] | None = None) -> PropertyNormaliser:
        """Fit mean and MAD on a :class:`MoleculeSet`'s properties or a ``{name: values}`` mapping.

        The official conditional runs fit on the validation split.
        """
        props = getattr(source, "properties", source)
        if not isinstance(props, Mapping):
            raise TypeError(
                f"PropertyNormaliser.fit: source must be a MoleculeSet or a mapping, got "
                f"{type(source).__name__}"
            )
        names = list(props) if names is None else list(names)
        mean, mad = {}, {}
        for name in names:
            if name not in props:
                raise ValueError(
                    f"PropertyNormaliser.fit: names must be available properties {sorted(props)}, "
                    f"got {name!r}"
                )
            v = np.asarray(props[name], dtype=np.float64)
            mu = float(v.mean())
            mean[name] = mu
            mad[name] = float(np.abs(v - mu).mean())
        return cls(mean, mad)

    def _names(self, names: str | Sequence[str], func: str) -> list[str]:
        names = [names] if isinstance(names, str) else list(names)
        for n in names:
            if n not in self.mean:
                raise ValueError(
                    f"{func}: names must be fitted properties {sorted(self.mean)}, got {n!r}"
                )
        return names

    def normalise(self, values: Any, names: str | Sequence[str]) -> np.ndarray:
        """c' = (c - mean)/MAD. ``values`` is [S] for one name or [S, P] for P names."""
        names = self._names(names, "PropertyNormaliser.normalise")
        arr = _as_columns(values, names, "PropertyNormaliser.normalise")
        mu = np.array([self.mean[n] for n in names])
        mad = np.array([self.mad[n] for n in names])
        out = (arr - mu) / mad
        return out[:, 0] if np.ndim(values) == 1 else out

    def denormalise(self, values: Any, names: str | Sequence[str]) -> np.ndarray:
        """c = c'·MAD + mean (inverse of :meth:`normalise`)."""
        names = self._names(names, "PropertyNormaliser.denormalise")
        arr = _as_columns(values, names, "PropertyNormaliser.denormalise")
        mu = np.array([self.mean[n] for n in names])
        mad = np.array([self.mad[n] for n in names])
        out = arr * mad + mu
        return out[:, 0] if np.ndim(values) == 1 else out

    def to_dict(self) -> dict[str, Any]:
        return {"mean": dict(self.mean), "mad": dict(self.mad)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PropertyNormaliser:
        if not isinstance(d, Mapping) or "mean" not in d or "mad" not in d:
            raise ValueError(
                f"PropertyNormaliser.from_dict: d must have keys 'mean' and 'mad', got {d!r}"
            )
        return cls(d["mean"], d["mad"])
