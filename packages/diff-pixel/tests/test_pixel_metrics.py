"""The digits classifier and the honest digits metrics (spec check 18)."""

from __future__ import annotations

import numpy as np
import pytest

from diff_pixel.data import digits
from diff_pixel.metrics import (
    DigitsClassifier,
    class_accuracy,
    dfd_baselines,
    digits_feature_distance,
    train_digits_classifier,
)


@pytest.fixture(scope="module")
def classifier():
    return train_digits_classifier(image_size=16, seed=0)


def test_classifier_accuracy_and_dfd_levels(classifier):
    # spec: test accuracy >= 0.98 (measured 0.992); floor <= 8 (measured 4.9); noise >= 20 x floor
    assert classifier.test_accuracy >= 0.98
    test = digits(16, "test")
    assert class_accuracy(test.images, test.labels, classifier) == pytest.approx(
        classifier.test_accuracy
    )
    levels = dfd_baselines(classifier)
    assert levels["dfd_floor"] <= 8.0
    assert levels["dfd_noise"] >= 20.0 * levels["dfd_floor"]
    # a set against itself is at distance 0; a class-collapsed set is far from the test digits
    assert digits_feature_distance(test.images, classifier) == pytest.approx(0.0, abs=1e-4)
    ones = digits(16).images[digits(16).labels == 1][:100]
    assert digits_feature_distance(ones, classifier) > 5 * levels["dfd_floor"]
    # wrong labels give the complementary accuracy
    shifted = (test.labels + 1) % 10
    assert class_accuracy(test.images, shifted, classifier) <= 1 - classifier.test_accuracy + 1e-9


def test_classifier_resizes_other_resolutions(classifier):
    x8 = digits(8, "test")
    acc8 = class_accuracy(x8.images, x8.labels, classifier)
    assert acc8 >= 0.9  # 8×8 digits resized (bilinear) to the classifier's 16×16


def test_save_load_roundtrip(classifier, tmp_path):
    path = classifier.save(tmp_path / "clf.npz")
    loaded = DigitsClassifier.load(path)
    x = digits(16, "test").images[:50]
    np.testing.assert_array_equal(loaded.features(x), classifier.features(x))
    assert loaded.test_accuracy == classifier.test_accuracy
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(
        ValueError, match="DigitsClassifier.load: path must hold a digits classifier"
    ):
        DigitsClassifier.load(tmp_path / "other.npz")


def test_metric_bad_input(classifier):
    x = digits(16, "test").images[:4]
    with pytest.raises(ValueError, match="class_accuracy: labels must be an int array of shape"):
        class_accuracy(x, np.zeros(3, int), classifier)
    with pytest.raises(ValueError, match=r"class_accuracy: labels must lie in \[0, 9\]"):
        class_accuracy(x, np.array([0, 1, 2, 10]), classifier)
    with pytest.raises(TypeError, match="classifier must be a DigitsClassifier"):
        digits_feature_distance(x, object())
    with pytest.raises(ValueError, match="finite"):
        class_accuracy(np.full((1, 16, 16, 1), np.nan), np.zeros(1, int), classifier)
