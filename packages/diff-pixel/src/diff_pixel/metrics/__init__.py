"""Offline metrics with honest names: digits class accuracy and digits feature distance (DFD)."""

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

__all__ = [
    "DigitsCNN",
    "DigitsClassifier",
    "class_accuracy",
    "dfd_baselines",
    "digits_feature_distance",
    "evaluate_digits_model",
    "train_digits_classifier",
]
