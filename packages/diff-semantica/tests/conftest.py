"""Shared fixtures: the digits splits as grouped images, PCA-24 fitted on the training split,
and diff-pixel's digits classifier at 8×8 (trained once per session)."""

from __future__ import annotations

import pytest

from diff_semantica import PCAEncoder, digits_groups


@pytest.fixture(scope="session")
def train():
    return digits_groups("train")


@pytest.fixture(scope="session")
def test_digits():
    return digits_groups("test")


@pytest.fixture(scope="session")
def pca(train):
    return PCAEncoder.fit(train.images, 24)


@pytest.fixture(scope="session")
def classifier():
    from diff_pixel import train_digits_classifier

    clf = train_digits_classifier(8)  # the calibration's classifier (default epochs)
    assert clf.test_accuracy >= 0.95, clf.test_accuracy
    return clf
