"""Spec checks 1-3 of diff-dorsal: camera geometry, exact edit ground truth, determinism/parity."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from diff_dorsal.cameras import (
    CameraConfig,
    Cameras,
    camera_pose,
    canonicalize,
    circle_path,
    intrinsics_matrix,
    project,
    rays,
    sample_cameras,
)
from diff_dorsal.scenes import (
    ITEM_KEYS,
    LIGHT,
    SCENE_KEYS,
    Scene,
    SceneConfig,
    SceneDataset,
    cameras_from_item,
    footprint_radius,
    load_scenes,
    remove_object,
    render,
    render_jax,
    render_rays,
    sample_scene,
    save_scenes,
    scene_from_item,
    transfer_objects,
)


@pytest.fixture(scope="module")
def dataset():
    return SceneDataset(SceneConfig(), CameraConfig(), split="test", size=100, seed=3)


@pytest.fixture(scope="module")
def items(dataset):
    """The first 50 items, rendered once for the whole module."""
    return [dataset[i] for i in range(50)]


def _scene(kinds, xy, sizes, yaws=None):
    sizes = np.asarray(sizes, np.float32)
    xy = np.asarray(xy, np.float32)
    k = len(kinds)
    return Scene(
        kinds=np.asarray(kinds),
        centres=np.concatenate([xy, sizes[:, None]], axis=1),
        sizes=sizes,
        yaws=np.zeros(k) if yaws is None else np.asarray(yaws),
        colours=np.full((k, 3), 0.5),
    )


# ------------------------------------------------------------------------------ check 1: geometry


@pytest.mark.smoke
def test_rays_unit_and_centre_ray_hits_look_at_point():
    config = CameraConfig(n_views=16, resolution=33)
    cams = sample_cameras(np.random.default_rng(0), config)
    o, d = rays(cams)
    assert o.shape == d.shape == (16, 33, 33, 3)
    assert np.abs(np.linalg.norm(d.astype(np.float64), axis=-1) - 1).max() <= 1e-6
    # The centre pixel of an odd resolution looks exactly along the forward axis, at the origin.
    oc, dc = o[:, 16, 16].astype(np.float64), d[:, 16, 16].astype(np.float64)
    t = np.linalg.norm(oc, axis=-1)
    assert np.abs(oc + t[:, None] * dc).max() <= 1e-5
    np.testing.assert_allclose(t, config.radius, rtol=1e-6)
    # One pixel against the contract's formula, and K⁻¹ [j+0.5, i+0.5, 1] is the camera ray.
    f = 0.5 * 33 / math.tan(math.radians(50) / 2)
    i, j = 3, 28
    d_cam = np.array([(j + 0.5 - 16.5) / f, -(i + 0.5 - 16.5) / f, 1.0])
    np.testing.assert_allclose(np.linalg.inv(cams.intrinsics) @ [j + 0.5, i + 0.5, 1], d_cam, 1e-6)
    want = cams.poses[5, :, :3].astype(np.float64) @ d_cam
    np.testing.assert_allclose(d[5, i, j], want / np.linalg.norm(want), atol=1e-6)
    # Poses: orthonormal (right, up, forward), up has +z, cameras above the floor.
    rot = cams.poses[:, :, :3].astype(np.float64)
    np.testing.assert_allclose(
        np.einsum("vba,vbc->vac", rot, rot), np.broadcast_to(np.eye(3), rot.shape), atol=1e-6
    )
    assert np.all(rot[:, 2, 1] > 0) and np.all(cams.poses[:, 2, 3] > 0)


def test_circle_cameras_and_path_are_evenly_spaced():
    cams = sample_cameras(np.random.default_rng(1), CameraConfig(n_views=8, azimuth="circle"))
    az = np.arctan2(cams.centres[:, 1], cams.centres[:, 0])
    steps = np.mod(np.diff(az), 2 * np.pi)
    np.testing.assert_allclose(steps, 2 * np.pi / 8, atol=1e-5)
    np.testing.assert_allclose(cams.centres[:, 2], cams.centres[0, 2], atol=1e-6)
    path = circle_path(12, elevation=0.4)
    np.testing.assert_allclose(
        path.centres[0], 5 * np.array([np.cos(0.4), 0, np.sin(0.4)]), atol=1e-5
    )
    assert path.take([0, 3]).n_views == 2 and path.take(slice(0, 12, 2)).n_views == 6


def test_projected_sphere_centre_matches_mask_centroid(items):
    """K·[R|t]⁻¹ of an unoccluded sphere's centre lands within 1 px of its mask centroid."""
    checked, worst = 0, 0.0
    for i in range(20):
        item = items[i]
        scene, cams = scene_from_item(item), cameras_from_item(item)
        uv, depth = project(cams, scene.centres)
        for j in np.flatnonzero(scene.kinds == 0):
            alone = render(scene, cams, drop=[k for k in range(scene.n_objects) if k != j])
            mask = alone.instance == j + 1
            for v in range(cams.n_views):
                m = mask[v]
                unoccluded = np.array_equal(m, item["instance"][v] == j + 1)
                inside = not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())
                if not (unoccluded and inside and m.sum() >= 4):
                    continue
                rows, cols = np.nonzero(m)
                centroid = np.array([cols.mean() + 0.5, rows.mean() + 0.5])
                worst = max(worst, float(np.linalg.norm(uv[v, j] - centroid)))
                checked += 1
    assert checked >= 50, checked
    assert worst <= 1.0, worst


def test_first_input_frame_maps_view0_to_identity_and_keeps_pixels():
    kw = dict(split="val", size=4, seed=11)
    world = SceneDataset(SceneConfig(), CameraConfig(frame="world"), **kw)
    first = SceneDataset(SceneConfig(), CameraConfig(frame="first_input"), **kw)
    for i in range(4):
        a, b = world[i], first[i]
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["instance"], b["instance"])
        np.testing.assert_allclose(b["poses"][0], np.eye(3, 4), atol=1e-6)
        np.testing.assert_array_equal(a["frame_pose"], np.eye(3, 4, dtype=np.float32))
        np.testing.assert_array_equal(b["frame_pose"], a["poses"][0])
        r0, c0 = a["poses"][0, :, :3].astype(np.float64), a["poses"][0, :, 3]
        np.testing.assert_allclose(b["directions"], a["directions"] @ r0, atol=1e-6)
        np.testing.assert_allclose(b["origins"], (a["origins"] - c0) @ r0, atol=1e-5)
        # Back to the world frame: the item's scene re-renders to its images.
        cams = cameras_from_item(b)
        np.testing.assert_allclose(cams.poses, a["poses"], atol=1e-5)
        np.testing.assert_array_equal(cameras_from_item(b, frame="item").poses, b["poses"])
        re = render(scene_from_item(b), cams)
        assert np.mean(np.abs(re.rgb - b["images"]) < 1e-4) > 0.999
    cams = sample_cameras(np.random.default_rng(2), CameraConfig())
    canon = canonicalize(cams, cams.poses[3])
    np.testing.assert_allclose(canon.poses[3], np.eye(3, 4), atol=1e-6)


# ----------------------------------------------------------------------- check 2: exact editing


def test_removal_changes_exactly_the_visible_mask(items):
    removals = 0
    for i in range(50):
        item = items[i]
        scene, cams = scene_from_item(item), cameras_from_item(item).take([0])
        full = render(scene, cams)
        for j in range(scene.n_objects):
            edited = render(scene, cams, drop=(j,))
            changed = np.any(edited.rgb != full.rgb, axis=-1)
            np.testing.assert_array_equal(changed, full.instance == j + 1)
            # drop= and remove_object agree (ids above j move down by one).
            removed = render(remove_object(scene, j), cams)
            np.testing.assert_array_equal(removed.rgb, edited.rgb)
            removals += 1
    assert removals == sum(int(item["n_objects"]) for item in items) >= 100


def test_removal_with_shadows_adds_only_the_objects_shadow(items):
    light = np.array(LIGHT, np.float32)
    extra_total = 0
    for i in range(50):
        item = items[i]
        scene, cams = scene_from_item(item), cameras_from_item(item).take([0])
        o, d = rays(cams)
        full = render_rays(scene, o, d, shadows=True)
        for j in range(scene.n_objects):
            edited = render_rays(scene, o, d, shadows=True, drop=(j,))
            changed = np.any(edited.rgb != full.rgb, axis=-1)
            visible = full.instance == j + 1
            assert np.all(changed[visible])
            extra = changed & ~visible
            # Every extra pixel was in j's shadow: its ray to the light hits object j.
            p = o[extra] + full.depth[extra][:, None] * d[extra]
            only_j = Scene.from_padded(
                {**scene.padded(scene.n_objects), "valid": np.arange(scene.n_objects) == j}
            )
            hits = render_rays(only_j, p, np.broadcast_to(light, p.shape)).instance
            assert np.all(hits == 1)
            extra_total += int(extra.sum())
    assert extra_total > 0  # shadows are on: some removals uncover a shadow


def test_transfer_renders_the_union(items):
    done = 0
    for i in range(0, 40, 2):
        a, b = scene_from_item(items[i]), scene_from_item(items[i + 1])
        cams = cameras_from_item(items[i])
        for ib in range(b.n_objects):
            try:
                union = transfer_objects(a, b, [ib])
            except ValueError as err:
                assert f"and {ib} (scene B) overlap" in str(err)
                continue
            assert union.n_objects == a.n_objects + 1
            ru = render(union, cams)
            rb = render(b, cams, drop=[k for k in range(b.n_objects) if k != ib])
            ra = render(a, cams)
            from_b = ru.instance == a.n_objects + 1
            np.testing.assert_array_equal(rb.instance[from_b], ib + 1)
            np.testing.assert_array_equal(ru.rgb[from_b], rb.rgb[from_b])
            from_a = (ru.instance >= 1) & (ru.instance <= a.n_objects)
            np.testing.assert_array_equal(ru.rgb[from_a], ra.rgb[from_a])
            done += from_b.any()
    assert done >= 10


# --------------------------------------------------------------- check 3: determinism, parity


@pytest.mark.smoke
def test_item_17_is_bitwise_identical_across_constructions_batches_and_order():
    make = lambda: SceneDataset(SceneConfig(), CameraConfig(), split="train", size=64, seed=5)  # noqa: E731
    ds1, ds2 = make(), make()
    ref = ds1[17]
    views = [
        ds2[17],
        {k: v[0] for k, v in ds2.batch([17]).items()},
        {k: v[7] for k, v in ds2.batch(range(10, 18)).items()},
        {k: v[0] for k, v in ds2.batch(range(17, 9, -1)).items()},
        {k: v[17] for k, v in ds2.arrays(18, progress=False).items()},
    ]
    for got in views:
        assert got.keys() == ref.keys()
        for key in ref:
            assert got[key].dtype == ref[key].dtype and got[key].tobytes() == ref[key].tobytes(), (
                key
            )
    assert set(ITEM_KEYS) <= ref.keys() and set(SCENE_KEYS) <= ref.keys()
    other = SceneDataset(SceneConfig(), CameraConfig(), split="val", size=64, seed=5)[17]
    assert not np.array_equal(other["images"], ref["images"])


def test_render_jax_matches_numpy_on_20_scenes(dataset):
    items = dataset.batch(range(20))
    padded = {k: items[k] for k in SCENE_KEYS}
    for shadows in (False, True):
        fn = jax.jit(jax.vmap(lambda s, o, d, sh=shadows: render_jax(s, o, d, shadows=sh)))
        rgb, inst = fn(padded, items["origins"], items["directions"])
        rgb, inst = np.asarray(rgb), np.asarray(inst)
        for i in range(20):
            scene = scene_from_item({k: items[k][i] for k in SCENE_KEYS})
            ref = render_rays(scene, items["origins"][i], items["directions"][i], shadows=shadows)
            np.testing.assert_array_equal(inst[i], ref.instance)
            assert np.abs(rgb[i] - ref.rgb).max() <= 1e-5
    # The dataset's images are the numpy render; clearing a validity bit == drop= that object.
    one = {k: items[k][0] for k in SCENE_KEYS}
    scene = scene_from_item(one)
    o, d = items["origins"][0], items["directions"][0]
    np.testing.assert_array_equal(items["images"][0], render_rays(scene, o, d).rgb)
    rgb, inst = jax.jit(render_jax)(
        {**one, "valid": one["valid"] & (np.arange(len(one["valid"])) != 1)}, o, d
    )
    ref = render_rays(scene, o, d, drop=(1,))
    np.testing.assert_array_equal(np.asarray(inst), ref.instance)
    assert np.abs(np.asarray(rgb) - ref.rgb).max() <= 1e-5


# --------------------------------------------------------------------- sampling, files, errors


def test_sampled_scenes_respect_the_config():
    config = SceneConfig()
    rng = np.random.default_rng(0)
    counts = set()
    for _ in range(200):
        s = sample_scene(rng, config)
        counts.add(s.n_objects)
        assert 2 <= s.n_objects <= 5
        assert np.all(np.abs(s.centres[:, :2]) <= 1.5)
        np.testing.assert_array_equal(s.centres[:, 2], s.sizes)
        assert np.all((s.sizes >= 0.3) & (s.sizes <= 0.6))
        assert np.all((s.colours >= 0.15) & (s.colours <= 1))
        assert np.all((s.yaws >= 0) & (s.yaws < np.pi / 2))
        fp = footprint_radius(s.kinds, s.sizes)
        dist = np.linalg.norm(s.centres[:, None, :2] - s.centres[None, :, :2], axis=-1)
        gap = dist - fp[:, None] - fp[None]
        assert np.all(gap[~np.eye(s.n_objects, dtype=bool)] >= 0.05 - 1e-6)
    assert counts == {2, 3, 4, 5}
    spheres = sample_scene(rng, SceneConfig(shapes=("sphere",)))
    assert np.all(spheres.kinds == 0)
    padded = s.padded(7)
    assert padded["valid"].tolist() == [True] * s.n_objects + [False] * (7 - s.n_objects)
    back = Scene.from_padded(padded)
    for name in ("kinds", "centres", "sizes", "yaws", "colours"):
        np.testing.assert_array_equal(getattr(back, name), getattr(s, name))


def test_save_load_roundtrip_is_atomic_and_names_missing_keys(tmp_path, dataset):
    arrays = dataset.batch([0, 1])
    path = save_scenes(tmp_path / "scenes.npz", arrays)
    loaded = load_scenes(path)
    assert loaded.keys() == arrays.keys()
    for k in arrays:
        np.testing.assert_array_equal(loaded[k], arrays[k])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenes.npz"]  # no temporary left
    np.savez(
        tmp_path / "user.npz",
        **{k: v for k, v in arrays.items() if k not in ("poses", "n_objects")},
    )
    with pytest.raises(ValueError, match=r"missing keys \['poses', 'n_objects'\]"):
        load_scenes(tmp_path / "user.npz")
    with pytest.raises(ValueError, match="missing keys"):
        save_scenes(tmp_path / "x.npz", {"images": arrays["images"]})


def test_bad_inputs_raise_clear_errors():
    scene = _scene([0, 1, 0], [[-1, -1], [0, 0], [1, 1]], [0.3, 0.3, 0.3])
    cams = circle_path(2, resolution=8)
    with pytest.raises(ValueError, match=r"^render: drop must name objects 0\.\.2, got 7$"):
        render(scene, cams, drop=(7,))
    a = _scene([0, 0], [[-1.2, -1.2], [0.5, 0.5]], [0.3, 0.4])
    b = _scene([1, 0, 1], [[1.2, -1.2], [-1.2, 1.2], [0.6, 0.4]], [0.3, 0.3, 0.3])
    msg = r"^transfer_objects: objects 1 \(scene A\) and 2 \(scene B\) overlap$"
    with pytest.raises(ValueError, match=msg):
        transfer_objects(a, b, [0, 2])
    assert transfer_objects(a, b, [0, 1]).n_objects == 4
    with pytest.raises(ValueError, match="ids must be distinct objects of scene B"):
        transfer_objects(a, b, [3])
    with pytest.raises(ValueError, match="remove_object: j must name an object 0..2, got 3"):
        remove_object(scene, 3)
    with pytest.raises(ValueError, match="CameraConfig: elevation"):
        CameraConfig(elevation=(0.8, 0.3))
    with pytest.raises(ValueError, match="CameraConfig: frame must be one of"):
        CameraConfig(frame="camera")
    with pytest.raises(ValueError, match="SceneConfig: min_objects must be <= max_objects"):
        SceneConfig(min_objects=4, max_objects=2)
    with pytest.raises(ValueError, match="SceneDataset: split must be one of"):
        SceneDataset(split="dev")
    with pytest.raises(IndexError, match=r"index must be in \[0, 3\), got 3"):
        SceneDataset(size=3)[3]
    with pytest.raises(ValueError, match=r"Cameras: poses must have shape \(V, 3, 4\)"):
        Cameras(np.zeros((2, 4, 4)), intrinsics_matrix(8, 50.0), 8)
    with pytest.raises(ValueError, match="Scene.padded: max_objects must be an int >= n_objects"):
        scene.padded(2)
    with pytest.raises(ValueError, match=r"sample_scene: could not place"):
        sample_scene(
            np.random.default_rng(0), SceneConfig(min_objects=9, max_objects=9, size=(0.6, 0.6))
        )
    with pytest.raises(ValueError, match="camera_pose: elevation"):
        camera_pose(0.0, np.pi / 2)
