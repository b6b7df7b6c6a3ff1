"""diff-pixel: the JAX platform of the diff-* monorepo, and pixel-space diffusion (SiD, SiD2).

The top level is the platform other JAX packages build on: layers (:mod:`diff_pixel.nn`),
backbones, conditioning embedders and parameterisation wrappers (:mod:`diff_pixel.models`), the
trainer (:mod:`diff_pixel.train`), sampling through diff-core's driver
(:mod:`diff_pixel.sampling`), data loaders (:mod:`diff_pixel.data`), pictures
(:mod:`diff_pixel.images`) and honest offline metrics (:mod:`diff_pixel.metrics`). The SiD
(arXiv 2301.11093) / SiD2 (arXiv 2410.19324) application (recipes, their loss, run presets, the
command line) is the subpackage :mod:`diff_pixel.sid`; nothing here imports it.
"""

from diff_pixel.data import Loader, SampledData, digits, image_folder, photos
from diff_pixel.images import LossCurveHook, SampleGridHook, save_grid
from diff_pixel.losses import drop_mask, example_keys, noise_batch, stratified_times, uniform_times
from diff_pixel.metrics import (
    DigitsClassifier,
    class_accuracy,
    digits_feature_distance,
    elbo_bpd,
    photo_feature_distance,
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
    split_denoiser,
    xla_macs,
)
from diff_pixel.sampling import ExampleNoise, sample, sample_to_npz
from diff_pixel.train import (
    Frozen,
    Hook,
    OptimizerSpec,
    Phase,
    StopAt,
    TrainConfig,
    Trainer,
    TrainState,
    data_mesh,
    fit_to_denoiser,
    freeze,
    make_train_step,
)

__version__ = "0.2.2"

__all__ = [
    "PRESETS",
    "Cond",
    "DigitsClassifier",
    "ExampleNoise",
    "Frozen",
    "Hook",
    "Loader",
    "LossCurveHook",
    "MLPDenoiser",
    "OptimizerSpec",
    "Phase",
    "ResidualUViT",
    "SampleGridHook",
    "SampledData",
    "StopAt",
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
    "digits",
    "digits_feature_distance",
    "drop_mask",
    "elbo_bpd",
    "example_keys",
    "fit_to_denoiser",
    "freeze",
    "image_folder",
    "make_train_step",
    "noise_batch",
    "photo_feature_distance",
    "photos",
    "sample",
    "sample_to_npz",
    "save_grid",
    "split_denoiser",
    "stratified_times",
    "train_digits_classifier",
    "uniform_times",
    "xla_macs",
]
