"""Offline metrics with honest names: digits class accuracy and digits feature distance (DFD)."""

from diff_pixel.metrics.digits import class_accuracy, dfd_baselines, digits_feature_distance
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
    "train_digits_classifier",
]
