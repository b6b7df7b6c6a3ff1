"""Shared session fixtures of the diff-dorsal tests.

``dorsal_scenes``: the learning checks' data (spec §9): 1000 train and 64 test scenes at 32² with
the default scene and camera configurations (inputs = views 0–4, targets = views 5–9), rendered
once per session (≈ 20 s on 2 cores). Used only by slow tests.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def dorsal_scenes() -> dict[str, dict]:
    from diff_dorsal.cameras import CameraConfig
    from diff_dorsal.scenes import SceneConfig, SceneDataset

    sc, cc = SceneConfig(), CameraConfig()
    train = SceneDataset(sc, cc, split="train", size=1000, seed=0).arrays(progress=False)
    test = SceneDataset(sc, cc, split="test", size=64, seed=0).arrays(progress=False)
    return {"train": train, "test": test, "scene_config": sc, "camera_config": cc}
