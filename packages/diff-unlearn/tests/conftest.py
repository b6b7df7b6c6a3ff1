"""Shared fixtures: a micro class-conditional backbone (fast compiles), the digits task, its
recipe and loss setup, and a randomly initialised digits CNN (for metric identities only; a
random network's distance is never reported under a trained metric's name)."""

from __future__ import annotations

import pytest
from flax import nnx

from diff_pixel import DigitsClassifier
from diff_pixel.metrics.digits_classifier import DigitsCNN
from diff_unlearn import PretrainConfig, digits_task, loss_setup
from diff_unlearn.models import pretrain_recipe
from diff_unlearn.testing import micro_config
from diff_unlearn.testing import micro_model as _micro_model

#: One transformer block on the 8×8 pixels, 16 channels: compiles in seconds.
MICRO = micro_config(num_classes=10)


def micro_model(seed: int = 0, scale: float = 0.05) -> nnx.Module:
    """The micro backbone with its zero-initialised layers moved off zero (so conditioning acts)."""
    return _micro_model(seed, scale, num_classes=10)


@pytest.fixture(scope="session")
def micro():
    """``micro(seed)``: a perturbed micro backbone; ``micro.config`` its configuration."""
    micro_model.config = MICRO
    return micro_model


@pytest.fixture(scope="session")
def task():
    return digits_task((3,))


@pytest.fixture(scope="session")
def recipe(task):
    return pretrain_recipe(task, PretrainConfig())


@pytest.fixture(scope="session")
def setup(task, recipe):
    return loss_setup(task, recipe)


@pytest.fixture(scope="session")
def theta0():
    return micro_model(0)


@pytest.fixture(scope="session")
def random_cnn():
    return DigitsClassifier(DigitsCNN(nnx.Rngs(0)), 0.0, {"note": "random weights, tests only"})
