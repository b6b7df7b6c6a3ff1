"""SiD and SiD2 on the diff-pixel platform: recipes, their weighted loss, run presets, the CLI.

SiD: Hoogeboom, Heek, Salimans, *simple diffusion*, arXiv 2301.11093. SiD2: Hoogeboom et al.,
*Simpler Diffusion (SiD2)*, arXiv 2410.19324. The backbones, trainer, sampling and data are the
platform's (:mod:`diff_pixel`); this subpackage chooses and assembles them.
"""

from diff_pixel.sid.loss import LOSS_BINS, diffusion_loss, recipe_loss
from diff_pixel.sid.recipes import (
    RUN_PRESETS,
    Recipe,
    RunPreset,
    SiD2Recipe,
    SiD2Variant,
    SiDRecipe,
    recipe_from_dict,
    sid2_bias,
)

__all__ = [
    "LOSS_BINS",
    "RUN_PRESETS",
    "Recipe",
    "RunPreset",
    "SiD2Recipe",
    "SiD2Variant",
    "SiDRecipe",
    "diffusion_loss",
    "recipe_from_dict",
    "recipe_loss",
    "sid2_bias",
]
