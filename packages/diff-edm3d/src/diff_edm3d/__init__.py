"""diff-edm3d: E(3)-equivariant diffusion for 3D molecules (EDM; Hoogeboom, Satorras, Vignac,
Welling, ICML 2022, arXiv:2203.17003) in PyTorch, with the paper's EGNN dynamics, an e3nn
dynamics, the exact likelihood bound, QM9 from qm9pack and EDM's stability metrics.

Importing the package imports no optional extra (e3nn, pandas/qm9pack, RDKit, matplotlib) and
no JAX.
"""

from .batch import (
    Graph,
    PackedBatch,
    PaddedBatch,
    collate,
    fully_connected_edges,
    graph_from_n_atoms,
    to_packed,
    to_padded,
)
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .com import ComFreeNoise, com_free_kl, com_free_log_density, remove_mean
from .compat import from_official_state_dict, load_official_checkpoint, to_official_state_dict
from .conditional import (
    PropertyClassifier,
    build_context,
    evaluate_conditional,
    label_baselines,
    train_property_classifier,
)
from .data import (
    MoleculeLoader,
    MoleculeSet,
    PropertyNormaliser,
    load_qm9,
    official_halves,
    official_split,
    read_molecules,
    read_sdf,
    read_xyz,
    write_sdf,
    write_xyz,
)
from .diffusion import EDM, EDMConfig, EDMDenoiser, NLLTerms, sample_with
from .distributed import init_distributed, wrap_ddp
from .dynamics import (
    DYNAMICS,
    Dynamics,
    E3nnConfig,
    E3nnDynamics,
    EGNNConfig,
    EGNNDynamics,
    egnn_parameter_count,
)
from .elements import QM9_NO_H, QM9_WITH_H, ElementSet
from .metrics import (
    ChemResult,
    PlausibilityResult,
    StabilityResult,
    chem_metrics,
    molecule_metrics,
    plausibility,
    stability,
)
from .schedule import EDMSchedule
from .sizes import AtomCountDistribution, PropertyGivenSize
from .train import PRESETS, TrainConfig, Trainer, TrainingInterrupted, preset

__version__ = "0.2.1"

__all__ = [
    "DYNAMICS",
    "EDM",
    "PRESETS",
    "QM9_NO_H",
    "QM9_WITH_H",
    "AtomCountDistribution",
    "CheckpointError",
    "ChemResult",
    "ComFreeNoise",
    "Dynamics",
    "E3nnConfig",
    "E3nnDynamics",
    "EDMConfig",
    "EDMDenoiser",
    "EDMSchedule",
    "EGNNConfig",
    "EGNNDynamics",
    "ElementSet",
    "Graph",
    "MoleculeLoader",
    "MoleculeSet",
    "NLLTerms",
    "PackedBatch",
    "PaddedBatch",
    "PlausibilityResult",
    "PropertyClassifier",
    "PropertyGivenSize",
    "PropertyNormaliser",
    "StabilityResult",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "__version__",
    "build_context",
    "chem_metrics",
    "collate",
    "com_free_kl",
    "com_free_log_density",
    "egnn_parameter_count",
    "evaluate_conditional",
    "from_official_state_dict",
    "fully_connected_edges",
    "graph_from_n_atoms",
    "init_distributed",
    "label_baselines",
    "load_checkpoint",
    "load_official_checkpoint",
    "load_qm9",
    "molecule_metrics",
    "official_halves",
    "official_split",
    "plausibility",
    "preset",
    "read_molecules",
    "read_sdf",
    "read_xyz",
    "remove_mean",
    "sample_with",
    "save_checkpoint",
    "stability",
    "to_official_state_dict",
    "to_packed",
    "to_padded",
    "train_property_classifier",
    "write_sdf",
    "write_xyz",
    "wrap_ddp",
]
