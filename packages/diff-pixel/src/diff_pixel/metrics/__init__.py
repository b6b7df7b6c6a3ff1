"""Offline metrics with honest names: digits class accuracy and digits feature distance (DFD),
the validation ELBO in bits per dimension, and PFD-rand (a Fréchet distance of a fixed random
conv net's features of photo crops)."""

from diff_pixel.metrics.digits import (
    class_accuracy,
    dfd_baselines,
    digits_feature_distance,
    evaluate_digits_model,
)
from diff_pixel.metrics.digits_classifier import (
    DigitsClassifier,
    DigitsCNN,
    train_digits_classifier,
)
from diff_pixel.metrics.elbo import elbo_bpd
from diff_pixel.metrics.photo_features import (
    FEATURE_DIM,
    photo_feature_distance,
    random_conv_features,
)

__all__ = [
    "FEATURE_DIM",
    "DigitsCNN",
    "DigitsClassifier",
    "class_accuracy",
    "dfd_baselines",
    "digits_feature_distance",
    "elbo_bpd",
    "evaluate_digits_model",
    "photo_feature_distance",
    "random_conv_features",
    "train_digits_classifier",
]
