"""Shared fixtures: random-initialised codecs (the bitstream and coding properties hold for any
weights) and a 64×64 stream from a real photo."""

from __future__ import annotations

import numpy as np
import pytest

from diff_compress import Compressor
from diff_compress.testing import random_compressor as make_compressor


@pytest.fixture(scope="session")
def tiny() -> Compressor:
    return make_compressor("tiny", 0)


@pytest.fixture(scope="session")
def photo64() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[100:164, 180:244])


@pytest.fixture(scope="session")
def stream64(tiny, photo64) -> bytes:
    return tiny.compress(photo64, seed=7)
