"""diff_pixel.models: the U-ViT backbones, their presets, cost model and denoiser adapters."""

from diff_pixel.models.backbone import Backbone
from diff_pixel.models.cond import Cond
from diff_pixel.models.config import UViTConfig
from diff_pixel.models.cost import count_macs, xla_macs
from diff_pixel.models.denoiser import NNXDenoiser, as_denoiser, split_denoiser
from diff_pixel.models.fit import SampledData, fit_to_denoiser
from diff_pixel.models.mlp_denoiser import MLPDenoiser
from diff_pixel.models.presets import PRESETS, abstract_model, build_model, preset_config
from diff_pixel.models.residual_uvit import ResidualUViT
from diff_pixel.models.uvit import UViT

__all__ = [
    "PRESETS",
    "Backbone",
    "Cond",
    "MLPDenoiser",
    "NNXDenoiser",
    "ResidualUViT",
    "SampledData",
    "UViT",
    "UViTConfig",
    "abstract_model",
    "as_denoiser",
    "build_model",
    "count_macs",
    "fit_to_denoiser",
    "preset_config",
    "split_denoiser",
    "xla_macs",
]
