"""SceneFeatureNet and its metrics: exact identities on an untrained net (fast) and check 12 of
the diff-dorsal spec on a net trained here (slow)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from flax import nnx
from scipy.ndimage import gaussian_filter

from diff_dorsal.features import (
    FeatureNetConfig,
    SceneFeatureNet,
    feature_distance,
    feature_targets,
    frechet_feature_distance,
    load_feature_net,
    pooled_features,
    save_feature_net,
    train_feature_net,
)


@pytest.fixture(scope="module")
def untrained() -> SceneFeatureNet:
    return SceneFeatureNet(FeatureNetConfig(), rngs=nnx.Rngs(3))


def _images(seed: int, shape=(2, 3, 32, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


@pytest.mark.smoke
def test_distance_identity_and_symmetry(untrained) -> None:
    x, y = _images(0), _images(1)
    assert feature_distance(untrained, x, x) == 0.0
    per = feature_distance(untrained, x, y, per_image=True)
    assert per.shape == (2, 3)
    assert np.all(per > 0)
    np.testing.assert_array_equal(per, feature_distance(untrained, y, x, per_image=True))
    # mean over images of the per-image values; each at most 4 (two unit vectors: |a - b|^2 <= 4)
    assert feature_distance(untrained, x, y) == pytest.approx(per.mean(), rel=1e-12)
    assert np.all(per <= 4.0)
    # chunking does not change the value (padding of the last chunk is dropped)
    assert feature_distance(untrained, x, y, chunk=4) == pytest.approx(
        feature_distance(untrained, x, y), rel=1e-6
    )


def test_frechet_and_persistence(untrained, tmp_path) -> None:
    a, b = _images(2, (40, 32, 32, 3)), _images(3, (30, 32, 32, 3))
    f = pooled_features(untrained, a)
    assert f.shape == (40, 128)
    d_ab = frechet_feature_distance(untrained, a, b)
    assert d_ab == pytest.approx(frechet_feature_distance(untrained, b, a), rel=1e-9)
    assert abs(frechet_feature_distance(untrained, a, a)) < 1e-8
    path = save_feature_net(untrained, tmp_path)
    assert path.name == "feature_net.npz"
    loaded = load_feature_net(tmp_path)
    x, y = _images(4), _images(5)
    assert feature_distance(loaded, x, y) == feature_distance(untrained, x, y)
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="load_feature_net: path must be a file written by"):
        load_feature_net(tmp_path / "broken.npz")


def test_targets_exact() -> None:
    images = np.zeros((1, 2, 8, 8, 3), np.float32)
    inst = np.full((1, 2, 8, 8), -1, np.int32)
    inst[0, 0, :4, :4] = 1  # object 0: 16 px (top-left block)
    inst[0, 0, 4:, 4:6] = 3  # object 2: 8 px
    inst[0, 0, 6:, :] = 0  # floor over the bottom rows (covers part of object 2)
    colours = np.array([[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]]], np.float32)
    t = feature_targets({"images": images, "instance": inst, "colours": colours})
    assert t["count"].tolist() == [2, 0]
    np.testing.assert_array_equal(t["colour"][0], colours[0, 0])
    assert t["has_object"].tolist() == [True, False]
    np.testing.assert_array_equal(t["occupancy"][0], [[1.0, 0.0], [0.0, 4 / 16]])
    np.testing.assert_array_equal(t["occupancy"][1], 0.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda n: feature_distance(n, np.zeros((2, 32, 32, 1)), np.zeros((2, 32, 32, 1))),
            "feature_distance: a must be images shaped (..., h, w, 3)",
        ),
        (
            lambda n: feature_distance(n, np.zeros((2, 30, 30, 3)), np.zeros((2, 30, 30, 3))),
            "height and width are multiples of 8",
        ),
        (
            lambda n: feature_distance(n, np.zeros((2, 32, 32, 3)), np.zeros((3, 32, 32, 3))),
            "feature_distance: b must be shaped like a (2, 32, 32, 3)",
        ),
        (
            lambda n: feature_distance("net", np.zeros((2, 32, 32, 3)), np.zeros((2, 32, 32, 3))),
            "feature_distance: net must be a SceneFeatureNet, got str",
        ),
        (
            lambda n: frechet_feature_distance(
                n, np.zeros((1, 32, 32, 3)), np.zeros((4, 32, 32, 3))
            ),
            "frechet_feature_distance: set_a must be at least 2 images",
        ),
        (lambda n: FeatureNetConfig(channels=(8, 8)), "FeatureNetConfig: channels must be four"),
    ],
)
def test_bad_input(untrained, call, message) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        call(untrained)
    assert message in str(info.value)


# ------------------------------------------------------------------------------------ check 12


@pytest.mark.slow
def test_trained_feature_net_check12(dorsal_scenes, tmp_path) -> None:
    from diff_dorsal.scenes import cameras_from_item, render, scene_from_item
    from diff_dorsal.stage1 import Stage1Config, render_views, train_encoder

    train, test = dorsal_scenes["train"], dorsal_scenes["test"]
    t0 = time.perf_counter()
    net, history = train_feature_net(
        train, FeatureNetConfig(steps=1000, batch=32), progress=False, path=tmp_path
    )
    seconds = time.perf_counter() - t0
    first, last = np.mean(history["loss"][:20]), np.mean(history["loss"][-50:])
    print(
        f"feature net: {seconds:.0f} s, loss {first:.3f} -> {last:.3f}, count accuracy "
        f"{history['count_accuracy']:.3f}, colour rmse {history['colour_rmse']:.3f}, "
        f"occupancy mae {history['occupancy_mae']:.3f}"
    )
    assert last < 0.6 * first
    assert history["count_accuracy"] > 0.6
    net = load_feature_net(tmp_path)  # saved with the run

    targets = test["images"][:, 5:10]  # (64, 5, 32, 32, 3)
    assert feature_distance(net, targets, targets) == 0.0
    blur = [
        feature_distance(net, targets, gaussian_filter(targets, (0, 0, s, s, 0)))
        for s in (0.5, 1.0, 2.0)
    ]
    print("distance vs blur sigma 0.5, 1, 2:", np.round(blur, 4))
    assert blur[0] < blur[1] < blur[2]

    wins, margins = 0, []
    sc = dorsal_scenes["scene_config"]
    for i in range(64):
        item = {k: v[i] for k, v in test.items()}
        scene = scene_from_item(item)
        cams = cameras_from_item(item).take(np.arange(5, 10))
        inst = item["instance"][5:10]
        visible = [(inst == j + 1).sum() for j in range(scene.n_objects)]
        j = int(np.argmax(visible))
        removed = render(scene, cams, drop=(j,), shadows=sc.shadows, ambient=sc.ambient).rgb
        x = item["images"][5:10]
        d_remove = feature_distance(net, x, removed)
        d_bright = max(
            feature_distance(net, x, np.clip(1.02 * x, 0, 1)),
            feature_distance(net, x, 0.98 * x),
        )
        wins += d_remove > d_bright
        margins.append(d_remove / max(d_bright, 1e-12))
    print(f"object removal beats a 2% brightness change on {wins}/64 scenes")
    assert wins >= 0.9 * 64

    enc, _ = train_encoder(
        train,
        Stage1Config(steps=100, view_sampling="fixed", checkpoint_every=0),
        tmp_path / "stage1",
        progress=False,
    )
    recon = render_views(enc, test)
    half = targets.shape[0] // 2
    fd_halves = frechet_feature_distance(net, targets[:half], targets[half:])
    fd_recon = frechet_feature_distance(net, targets, recon)
    print(f"Frechet scene-feature distance: halves {fd_halves:.4f}, vs OSRT-lite {fd_recon:.4f}")
    assert fd_halves < fd_recon
