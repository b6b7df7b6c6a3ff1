"""Stage 1: the ray loader, exact resume (check 13, stage-1 part), loading with the preset, and
OSRT-lite learning novel views (check 8, slow)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from diff_dorsal.demo import quick_configs
from diff_dorsal.encoder import EncoderConfig
from diff_dorsal.stage1 import (
    RayBatchLoader,
    Stage1Config,
    load_encoder,
    novel_view_psnr,
    train_encoder,
)
from diff_pixel.train import StopAt

TINY = EncoderConfig(
    "lite",
    conv_channels=(8, 8),
    dim=16,
    n_layers=1,
    heads=2,
    mlp_ratio=2,
    num_slots=3,
    slot_dim=16,
    slot_iters=1,
    slot_mlp_hidden=16,
    decoder_dim=16,
    decoder_heads=2,
    decoder_hidden=(16, 16),
)
RUN = Stage1Config(
    encoder=TINY,
    steps=6,
    batch_size=2,
    rays_per_scene=32,
    input_views=2,
    target_views=2,
    lr=3e-3,
    warmup_steps=2,
    checkpoint_every=0,
)

# the resume check trains the demo's --quick stage-1 configuration on views of its shape (10 views
# at 32²), so its compiled train step is the one `diff-dorsal demo --quick` compiled (the
# persistent compilation cache hits when both run in one session: the slow tier)
QUICK = quick_configs(True)["stage1"]


def _arrays(n=5, v=5, res=8, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, v, res, res, 3)).astype(np.float32)
    return {
        "images": rng.random((n, v, res, res, 3), dtype=np.float32),
        "origins": np.repeat(rng.normal(size=(n, v, 1, 1, 3)), res, 2).repeat(res, 3) * 5,
        "directions": d / np.linalg.norm(d, axis=-1, keepdims=True),
    }


def _params(model):
    import jax
    from flax import nnx

    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {"/".join(map(str, p)): np.asarray(jax.device_get(v.get_value())) for p, v in flat}


def test_loader_draws_are_pure_functions_of_the_step():
    data = _arrays()
    a = RayBatchLoader(data, 3, input_views=2, target_views=3, rays_per_scene=40, seed=1)
    b = RayBatchLoader(data, 3, input_views=2, target_views=3, rays_per_scene=40, seed=1)
    for _ in range(2):
        next(a)
    b.restore(a.state())
    x, y = next(a), next(b)
    assert set(x) == {
        "images",
        "origins",
        "directions",
        "target_rgb",
        "target_origins",
        "target_directions",
        "index",
    }
    for k in x:
        np.testing.assert_array_equal(x[k], y[k])
    assert x["images"].shape == (3, 2, 8, 8, 3) and x["target_rgb"].shape == (3, 40, 3)
    # targets are pixels of the scene's views that are not inputs
    s = x["index"][0]
    tgt_pix = data["images"][s].reshape(-1, 3)
    found = [(tgt_pix == p).all(-1).any() for p in x["target_rgb"][0]]
    assert all(found)
    with pytest.raises(ValueError, match="rays_per_scene must be at most"):
        RayBatchLoader(data, 2, input_views=2, target_views=1, rays_per_scene=65)
    with pytest.raises(ValueError, match="at least 6 views per scene"):
        RayBatchLoader(data, 2, input_views=3, target_views=3)


def test_interrupted_stage1_resumes_bitwise(tmp_path, capsys):
    data = _arrays(n=8, v=10, res=32)  # 8 scenes: novel_view_psnr renders the demo's chunk
    n = QUICK.steps
    full, hist = train_encoder(data, QUICK, tmp_path / "full", progress=False)
    assert hist["step"].tolist() == list(range(1, n + 1))
    assert np.isfinite(hist["loss"]).all()
    half = n // 2
    part, ph = train_encoder(data, QUICK, tmp_path / "part", progress=False, hooks=[StopAt(half)])
    assert ph["stopped_at"] == half
    resumed, rh = train_encoder(data, QUICK, tmp_path / "part", progress=True)
    assert rh["restored_step"] == half
    assert f"resuming from step {half}" in capsys.readouterr().err
    a, b = _params(full), _params(resumed)
    assert set(a) == set(b) and len(a) > 10
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert rh["loss"].tolist() == hist["loss"].tolist()
    c = _params(part)
    assert any(a[k].tobytes() != c[k].tobytes() for k in a)
    # load_encoder gives the same weights and the preset
    loaded, meta = load_encoder(tmp_path / "full")
    assert meta["preset"] == "lite" and meta["step"] == n and meta["config"] == QUICK.encoder
    d = _params(loaded)
    assert all(a[k].tobytes() == d[k].tobytes() for k in a)
    # a run folder of another configuration is refused
    with pytest.raises(ValueError, match="differing fields"):
        train_encoder(data, QUICK.replace(lr=1e-3), tmp_path / "full", progress=False)
    psnr = novel_view_psnr(loaded, data)
    assert np.isfinite(psnr)


def test_stage1_bad_inputs(tmp_path):
    data = _arrays()
    with pytest.raises(ValueError, match="load_encoder: workdir must hold a stage-1 checkpoint"):
        load_encoder(tmp_path / "nothing")
    with pytest.raises(ValueError, match="missing"):
        train_encoder({"images": data["images"]}, RUN, tmp_path / "x", steps=1)
    with pytest.raises(ValueError, match=r"data\['images'\] must have shape \(N, V, h, w, 3\)"):
        train_encoder({**data, "images": data["images"][0]}, RUN, tmp_path / "x", steps=1)
    with pytest.raises(ValueError, match="view_sampling must be 'random' or 'fixed'"):
        Stage1Config(view_sampling="all")
    with pytest.raises(ValueError, match="encoder must be an EncoderConfig"):
        Stage1Config(encoder="lite")
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        train_encoder(data, RUN, tmp_path / "x", steps=-1)
    assert Stage1Config.from_dict(RUN.to_dict()) == RUN


# -- check 8 (slow): OSRT-lite learns novel views ---------------------------------------------


@pytest.fixture(scope="module")
def scenes_32():
    scenes = pytest.importorskip("diff_dorsal.scenes")
    from diff_dorsal.cameras import CameraConfig

    sc, cc = scenes.SceneConfig(), CameraConfig(resolution=32)
    train = scenes.SceneDataset(sc, cc, split="train", size=1000, seed=0).arrays(progress=False)
    test = scenes.SceneDataset(sc, cc, split="test", size=64, seed=0).arrays(progress=False)
    return train, test


def _psnr(pred, target):
    mse = np.mean((pred.astype(np.float64) - target) ** 2, axis=(-3, -2, -1))
    return float(np.mean(-10 * np.log10(mse)))


def _nearest_input_view_psnr(test):
    centres = test["origins"][:, :, 0, 0]  # camera centres (N, V, 3)
    out = []
    for t in range(5, 10):
        dist = np.linalg.norm(centres[:, :5] - centres[:, t : t + 1], axis=-1)
        near = np.argmin(dist, axis=1)
        out.append(test["images"][np.arange(len(near)), near])
    return _psnr(np.stack(out, 1), test["images"][:, 5:10])


@pytest.mark.slow
def test_osrt_lite_learns_novel_views(scenes_32, tmp_path):
    import jax.numpy as jnp
    from flax import nnx

    from diff_dorsal.osrt import OSRTLite

    train, test = scenes_32
    cfg = Stage1Config()  # lite, batch 8, 1024 rays, 5 + 5 random views, 400 steps
    untrained = novel_view_psnr(OSRTLite(cfg.encoder, rngs=nnx.Rngs(cfg.model_seed)), test)
    baseline = _nearest_input_view_psnr(test)
    t0 = time.perf_counter()
    model, hist = train_encoder(train, cfg, tmp_path / "stage1", steps=400, progress=False)
    seconds = time.perf_counter() - t0
    psnr = novel_view_psnr(model, test)
    first, last = float(np.mean(hist["loss"][:20])), float(np.mean(hist["loss"][-50:]))
    print(
        f"\ncheck 8: novel-view PSNR {psnr:.2f} dB (untrained {untrained:.2f}, nearest input "
        f"view {baseline:.2f}); loss first-20 {first:.4f} last-50 {last:.4f}; "
        f"{seconds:.0f} s ({seconds / 400:.2f} s/step)"
    )
    assert psnr >= 16.2
    assert psnr > 15.38 and psnr > baseline and psnr > untrained
    assert last <= 0.8 * first
    # the trained decoder stays slot-order invariant
    rng = np.random.default_rng(0)
    slots = model.encode(
        test["images"][:4, :5], test["origins"][:4, :5], test["directions"][:4, :5]
    )
    o, d = test["origins"][:4, 5].reshape(4, -1, 3), test["directions"][:4, 5].reshape(4, -1, 3)
    rgb, _ = model.decoder(slots, o, d)
    perm = rng.permutation(slots.shape[1])
    rgb_p, _ = model.decoder(slots[:, perm], o, d)
    assert float(jnp.max(jnp.abs(rgb_p - rgb))) <= 1e-6
