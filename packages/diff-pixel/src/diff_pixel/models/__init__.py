"""diff_pixel.models: the U-ViT backbones, their conditioning embedders and presets, output
parameterisations, the model registry, the cost model and denoiser adapters."""

from diff_pixel.models.backbone import Backbone
from diff_pixel.models.compat import upgrade_v01_paths
from diff_pixel.models.cond import Cond
from diff_pixel.models.config import UViTConfig
from diff_pixel.models.cost import count_macs, lowered_cost, xla_macs
from diff_pixel.models.denoiser import NNXDenoiser, as_denoiser, split_denoiser
from diff_pixel.models.embedders import (
    Contribution,
    EmbedContext,
    Embedder,
    LabelEmbedder,
    SpatialEmbedder,
    TokenEmbedder,
    VectorEmbedder,
)
from diff_pixel.models.mlp_denoiser import MLPDenoiser
from diff_pixel.models.parameterization import (
    ConsistencyCoefficients,
    ConsistencyOutput,
    EDMCoefficients,
    Parameterization,
    Predicts,
)
from diff_pixel.models.presets import PRESETS, abstract_model, build_model, preset_config
from diff_pixel.models.registry import describe, from_description, model_class
from diff_pixel.models.residual_uvit import ResidualUViT
from diff_pixel.models.uvit import UViT

__all__ = [
    "PRESETS",
    "Backbone",
    "Cond",
    "ConsistencyCoefficients",
    "ConsistencyOutput",
    "Contribution",
    "EDMCoefficients",
    "EmbedContext",
    "Embedder",
    "LabelEmbedder",
    "MLPDenoiser",
    "NNXDenoiser",
    "Parameterization",
    "Predicts",
    "ResidualUViT",
    "SpatialEmbedder",
    "TokenEmbedder",
    "UViT",
    "UViTConfig",
    "VectorEmbedder",
    "abstract_model",
    "as_denoiser",
    "build_model",
    "count_macs",
    "lowered_cost",
    "describe",
    "from_description",
    "model_class",
    "preset_config",
    "split_denoiser",
    "upgrade_v01_paths",
    "xla_macs",
]
