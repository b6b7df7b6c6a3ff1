"""diff-pixel: pixel-space diffusion, SiD (arXiv 2301.11093) and SiD2 (arXiv 2410.19324).

The JAX platform of the diff-* monorepo: layers (:mod:`diff_pixel.nn`), U-ViT backbones
(:mod:`diff_pixel.models`), recipes and loss, the jitted sampler, the reusable trainer
(:mod:`diff_pixel.train`), deterministic data (:mod:`diff_pixel.data`) and honest offline metrics
(:mod:`diff_pixel.metrics`). The names below are the public API (spec §12); submodules hold the
rest.
"""

from diff_pixel.data import Loader, digits, image_folder, photos
from diff_pixel.images import save_grid
from diff_pixel.losses import (
    diffusion_loss,
    example_keys,
    noise_batch,
    recipe_loss,
    stratified_times,
)
from diff_pixel.metrics import (
    DigitsClassifier,
    class_accuracy,
    digits_feature_distance,
    train_digits_classifier,
)
from diff_pixel.models import (
    PRESETS,
    Cond,
    MLPDenoiser,
    ResidualUViT,
    UViT,
    UViTConfig,
    as_denoiser,
    build_model,
    count_macs,
    fit_to_denoiser,
    split_denoiser,
    xla_macs,
)
from diff_pixel.recipes import SiD2Recipe, SiDRecipe
from diff_pixel.sampling import sample, sample_to_npz
from diff_pixel.train import TrainConfig, Trainer, TrainState, data_mesh, make_train_step

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "Cond",
    "DigitsClassifier",
    "Loader",
    "MLPDenoiser",
    "ResidualUViT",
    "SiD2Recipe",
    "SiDRecipe",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "UViT",
    "UViTConfig",
    "__version__",
    "as_denoiser",
    "build_model",
    "class_accuracy",
    "count_macs",
    "data_mesh",
    "diffusion_loss",
    "digits",
    "digits_feature_distance",
    "example_keys",
    "fit_to_denoiser",
    "image_folder",
    "make_train_step",
    "noise_batch",
    "photos",
    "recipe_loss",
    "sample",
    "sample_to_npz",
    "save_grid",
    "split_denoiser",
    "stratified_times",
    "train_digits_classifier",
    "xla_macs",
]
