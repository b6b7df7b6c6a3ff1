"""Dynamics backbones behind one interface (`Dynamics`): the paper's EGNN and an e3nn network."""

from .base import DYNAMICS, Dynamics, register_dynamics
from .e3nn import E3nnConfig, E3nnDynamics
from .egnn import EGNNConfig, EGNNDynamics, egnn_parameter_count

__all__ = [
    "DYNAMICS",
    "Dynamics",
    "E3nnConfig",
    "E3nnDynamics",
    "EGNNConfig",
    "EGNNDynamics",
    "egnn_parameter_count",
    "register_dynamics",
]
