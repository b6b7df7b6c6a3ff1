"""Molecule data: the ragged `MoleculeSet`, QM9 from qm9pack, properties, file I/O and the loader.

Importing this package imports neither pandas nor RDKit; they are loaded by the functions that
need them.
"""

from diff_edm3d.data.io import RawMolecule, read_molecules, read_sdf, read_xyz, write_sdf, write_xyz
from diff_edm3d.data.loader import MoleculeLoader
from diff_edm3d.data.molecules import Molecule, MoleculeSet, as_molecule_set
from diff_edm3d.data.properties import (
    PROPERTIES,
    PROPERTY_NAMES,
    PropertyNormaliser,
    check_property,
    convert_properties,
)
from diff_edm3d.data.qm9 import (
    default_cache_dir,
    load_qm9,
    official_halves,
    official_split,
    prepare_qm9,
    qm9_check_numbers,
    qm9_train_smiles,
    read_qm9pack,
    read_qm9pack_ids,
    split_check_numbers,
)

__all__ = [
    "PROPERTIES",
    "PROPERTY_NAMES",
    "Molecule",
    "MoleculeLoader",
    "MoleculeSet",
    "PropertyNormaliser",
    "RawMolecule",
    "as_molecule_set",
    "check_property",
    "convert_properties",
    "default_cache_dir",
    "load_qm9",
    "official_halves",
    "official_split",
    "prepare_qm9",
    "qm9_check_numbers",
    "qm9_train_smiles",
    "read_molecules",
    "read_qm9pack",
    "read_qm9pack_ids",
    "read_sdf",
    "read_xyz",
    "split_check_numbers",
    "write_sdf",
    "write_xyz",
]
