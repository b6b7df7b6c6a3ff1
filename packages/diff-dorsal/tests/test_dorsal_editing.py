"""Check 7 of dorsal.md §9: the sampling + editing pipeline is exact with the renderer as the
denoiser (oracle slots, DDIM-8 through ``sample_views``), on 50 scenes × every object; plus the
editing helpers' own contracts and the long-path sampler."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diff_dorsal.cameras import CameraConfig
from diff_dorsal.editing import (
    edit_iou,
    edit_locality,
    edit_maps,
    locality_ratio,
    match_slots,
    random_other_slots,
    remove_slots,
    segmentation_from_edits,
    transfer_slots,
)
from diff_dorsal.encoder import object_slots
from diff_dorsal.metrics import fg_ari
from diff_dorsal.sampling import guided_denoiser, make_cond, sample_path, sample_views
from diff_dorsal.scenes import SceneConfig, SceneDataset, render, transfer_objects
from diff_dorsal.testing import RendererDenoiser, check_removal_exact

N_SCENES, VIEWS, RES, MAX_OBJ = 50, 3, 16, 5
STEPS = 8


@jax.jit
def _call(denoiser, z, lam, cond):
    return denoiser(z, lam, cond)


@pytest.fixture(scope="module")
def world():
    ds = SceneDataset(
        SceneConfig(max_objects=MAX_OBJ),
        CameraConfig(n_views=VIEWS, resolution=RES),
        split="test",
        size=N_SCENES,
        seed=3,
    )
    items = ds.batch(range(N_SCENES))
    scenes = [ds.scene(i) for i in range(N_SCENES)]
    cams = [ds.cameras(i) for i in range(N_SCENES)]
    # slot capacity 2·MAX_OBJ throughout (transfer_slots' layout), so every run shares shapes
    den = RendererDenoiser.from_scenes(scenes, cams, capacity=2 * MAX_OBJ)
    slots, mask = object_slots(items, 2 * MAX_OBJ)
    key = jax.random.key(7)

    def run(m, **kw):
        return np.asarray(
            sample_views(
                den, slots, m, items["origins"], items["directions"], key, steps=STEPS, **kw
            )
        )

    return dict(
        ds=ds,
        items=items,
        scenes=scenes,
        cams=cams,
        den=den,
        slots=slots,
        mask=mask,
        key=key,
        run=run,
        base=run(mask),
    )


@pytest.mark.smoke
def test_check7_removal_is_exact_and_local(world):
    items, scenes, cams, base = world["items"], world["scenes"], world["cams"], world["base"]
    np.testing.assert_allclose(base, items["images"], rtol=0, atol=1e-5)
    inst = items["instance"]
    n_obj = items["n_objects"]
    removals = visible = 0
    for j in range(MAX_OBJ):
        has = n_obj > j
        edited = world["run"](remove_slots(world["mask"], j))
        delta = edit_maps(base, edited)
        own = inst == j + 1
        # a different object's mask as the control: object (j + 1) mod n
        other_id = np.where(has, (j + 1) % np.maximum(n_obj, 1), 0)
        other = inst == (other_id + 1)[:, None, None, None]
        loc = edit_locality(delta, own, dilate=0)
        iou = edit_iou(delta, own, tau=1e-6)
        loc_c = edit_locality(delta, other, dilate=0)
        iou_c = edit_iou(delta, other, tau=1e-6)
        for b in np.flatnonzero(has):
            truth = render(scenes[b], cams[b], drop=(j,)).rgb
            np.testing.assert_allclose(edited[b], truth, rtol=0, atol=1e-5)
            removals += 1
            if own[b].any():
                visible += 1
                assert loc[b] == 1.0 and iou[b] == 1.0, (b, j, loc[b], iou[b])
                assert loc_c[b] <= 0.05 and iou_c[b] <= 0.05, (b, j, loc_c[b], iou_c[b])
            else:  # hidden in every view: nothing may change
                assert not delta[b].any() and np.isnan(loc[b]) and iou[b] == 1.0
        # a slot beyond the scene's objects is already masked: removing it changes nothing
        for b in np.flatnonzero(~has):
            np.testing.assert_array_equal(edited[b], base[b])
    assert removals == int(n_obj.sum()) and visible >= 0.8 * removals


def test_check7_segmentation_from_edits(world):
    items = world["items"]
    labels = segmentation_from_edits(
        world["den"],
        world["slots"],
        world["mask"],
        items["origins"],
        items["directions"],
        world["key"],
        tau=1e-6,
        steps=STEPS,
    )
    inst = items["instance"]
    for b in range(N_SCENES):
        fg = inst[b] >= 1
        # every foreground pixel goes to its object's oracle slot (slot j = object j) ...
        np.testing.assert_array_equal(labels[b][fg], inst[b][fg] - 1)
        if len(np.unique(inst[b][fg])) > 1:
            assert fg_ari(labels[b], inst[b]) == pytest.approx(1.0, abs=1e-12)
    # ... and the floor and sky (unchanged by every removal) are background
    assert (labels[inst < 1] == -1).all()


def test_check7_transfer_gives_the_union(world):
    items, scenes, cams = world["items"], world["scenes"], world["cams"]
    partner, ids, unions = [], [], []
    for a in range(N_SCENES):  # per scene A the first object of another scene that fits beside
        found = None
        for step in range(1, N_SCENES):
            b = (a + step) % N_SCENES
            for k in range(scenes[b].n_objects):
                try:
                    found = (b, k, transfer_objects(scenes[a], scenes[b], [k]))
                    break
                except ValueError:  # overlapping footprints: not a valid union
                    continue
            if found:
                break
        b, k, union = found if found else (a, -1, scenes[a])  # a full scene takes nothing
        partner.append(b)
        ids.append([k])
        unions.append(union)
    ib, ids = np.asarray(partner), np.asarray(ids)
    assert (ids >= 0).sum() >= 40
    s = MAX_OBJ
    sa, ma = world["slots"][:, :s], world["mask"][:, :s]
    slots, mask = transfer_slots(sa, ma, sa[ib], ma[ib], ids)
    assert slots.shape == (N_SCENES, 2 * s, 11)
    np.testing.assert_array_equal(mask[:, s], ids[:, 0] >= 0)
    assert not mask[:, s + 1 :].any()
    moved = ids[:, 0] >= 0
    np.testing.assert_array_equal(slots[moved, s], sa[ib[moved], ids[moved, 0]])
    # the exact denoiser of the union scene: A's objects keep their slots, B's object 0 is slot S
    layout = np.full((N_SCENES, 2 * s), -1)
    for a in range(N_SCENES):
        k = scenes[a].n_objects
        layout[a, :k] = np.arange(k)
        layout[a, s] = k if moved[a] else -1
    den = RendererDenoiser.from_scenes(unions, cams, slot_objects=layout)
    out = np.asarray(
        sample_views(
            den, slots, mask, items["origins"], items["directions"], world["key"], steps=STEPS
        )
    )
    for a in range(N_SCENES):
        np.testing.assert_allclose(out[a], render(unions[a], cams[a]).rgb, rtol=0, atol=1e-5)


def test_check7_guidance_is_linear_in_the_renders(world):
    """Guided x̂ = empty + w·(render − empty) (the all-masked condition is the empty scene):
    through sample_views for w = 0, 1, and for w = 0, 1, 3 on the guided denoiser sample_views
    builds (at several noise levels)."""
    items = world["items"]
    empty = world["run"](np.zeros_like(world["mask"]))
    full = items["images"]
    for w in (0.0, 1.0):
        out = world["run"](world["mask"], guidance=w)  # in [0, 1]: clipping is a no-op
        np.testing.assert_allclose(out, empty + w * (full - empty), rtol=0, atol=1e-6)
    cond = make_cond(world["slots"], world["mask"], items["origins"], items["directions"])
    z = jax.random.normal(jax.random.key(1), full.shape)
    for w in (0.0, 1.0, 3.0):
        den, c = guided_denoiser(world["den"], cond, w)
        for lam in (-10.0, 0.0, 8.0):
            x_hat = (np.asarray(_call(den, z, jnp.full((N_SCENES,), lam), c)) + 1.0) / 2.0
            np.testing.assert_allclose(x_hat, empty + w * (full - empty), rtol=0, atol=1e-6)


def test_locality_control_and_matching_helpers(world):
    items, mask = world["items"], world["mask"]
    # matching: a mixer whose weights are the true object masks picks the oracle slot
    inst = items["instance"]
    weights = np.stack([inst == s + 1 for s in range(2 * MAX_OBJ)], -1).astype(np.float32)
    weights += 0.01 * np.random.default_rng(0).random(weights.shape)
    for j in range(2):
        np.testing.assert_array_equal(match_slots(weights, inst, j), np.full(N_SCENES, j))
    ctrl = random_other_slots(mask, np.zeros(N_SCENES, int), rng=0)
    assert (ctrl != 0).all() and mask[np.arange(N_SCENES), ctrl].all()
    # with the exact denoiser removing the matched slot is local, a random other slot is not
    base = world["base"]
    own = inst == 1
    inside_m = edit_locality(edit_maps(base, world["run"](remove_slots(mask, 0))), own)
    inside_r = edit_locality(edit_maps(base, world["run"](remove_slots(mask, ctrl[:, None]))), own)
    ratio = locality_ratio(inside_m, inside_r)
    assert np.nanmean(inside_m) == 1.0 and ratio > 5.0


def test_editing_validation():
    m = np.ones((2, 3), bool)
    np.testing.assert_array_equal(remove_slots(m, [0, 2]), [[False, True, False]] * 2)
    np.testing.assert_array_equal(
        remove_slots(m, np.array([[1], [-1]])), [[True, False, True], [True, True, True]]
    )
    with pytest.raises(ValueError, match=r"remove_slots: ids must lie in \[0, S = 3\)"):
        remove_slots(m, 3)
    with pytest.raises(ValueError, match="remove_slots: slot_mask must be a \\(B, S\\) bool"):
        remove_slots(m.astype(int), 0)
    with pytest.raises(ValueError, match="edit_locality: dilate must be an int >= 0"):
        edit_locality(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), bool), dilate=-1)
    d = np.zeros((1, 1, 5, 5))
    d[0, 0, 2, 3] = 1.0
    obj = np.zeros((1, 1, 5, 5), bool)
    obj[0, 0, 2, 2] = True
    assert edit_locality(d, obj, dilate=0)[0] == 0.0 and edit_locality(d, obj, dilate=1)[0] == 1.0
    assert edit_iou(d, obj, tau=0.5)[0] == 0.0


def test_sample_path_holds_the_overlap_by_replacement(world):
    """With the exact denoiser every chunk reproduces the renders; the overlapping views of a
    chunk are the previous chunk's (replacement) and the path has no seams."""
    from diff_dorsal.cameras import circle_path, rays

    scenes = world["scenes"][:2]
    path = circle_path(9, resolution=RES)
    o, d = rays(path)
    den = RendererDenoiser.from_scenes(scenes, path, capacity=MAX_OBJ)
    slots, mask = world["slots"][:2, :MAX_OBJ], world["mask"][:2, :MAX_OBJ]
    out = np.asarray(
        sample_path(
            den,
            slots,
            mask,
            np.stack([o, o]),
            np.stack([d, d]),
            world["key"],
            chunk=5,
            overlap=2,
            steps=STEPS,
        )
    )
    for b in range(2):
        np.testing.assert_allclose(out[b], render(scenes[b], path).rgb, rtol=0, atol=1e-5)


def test_check_removal_exact_on_the_renderer(world):
    """diff_dorsal.testing.check_removal_exact: exact for the renderer without shadows; a renderer
    that casts shadows changes pixels outside the removed object's mask and is caught."""
    scenes, cams = world["scenes"][:10], world["cams"][:10]
    report = check_removal_exact(scenes=scenes, cameras=cams)
    assert report["removals"] == report["exact"] == sum(s.n_objects for s in scenes)

    def shadowed(scene, cameras, *, drop=(), shadows=False):
        return render(scene, cameras, drop=drop, shadows=True)

    with pytest.raises(AssertionError, match="check_removal_exact: .* removals exact"):
        check_removal_exact(shadowed, scenes=world["scenes"], cameras=world["cams"])


def test_replacement_feeds_the_forward_noised_known_views():
    """sample_path's replacement: known views enter the network as α_λ x + σ_λ ε (the others as
    z), at the current logsnr."""
    from diff_dorsal.sampling import _Replaced

    class Echo:  # returns its input: shows what the network sees
        prediction = "x"

        def __call__(self, z, logsnr, cond=None):
            return z

    rng = np.random.default_rng(0)
    z, known, eps = (jnp.asarray(rng.normal(size=(2, 4, 3, 3, 3)), jnp.float32) for _ in range(3))
    mask = jnp.asarray([True, False, True, False])
    lam = jnp.asarray([-2.0, 3.0])
    seen = np.asarray(_Replaced(Echo(), known, eps, mask, "x")(z, lam, None))
    a = np.sqrt(1 / (1 + np.exp(-np.asarray(lam))))[:, None, None, None]
    s = np.sqrt(1 / (1 + np.exp(np.asarray(lam))))[:, None, None, None]
    for v in range(4):
        want = a * known[:, v] + s * eps[:, v] if mask[v] else z[:, v]
        np.testing.assert_allclose(seen[:, v], want, rtol=0, atol=1e-6)
