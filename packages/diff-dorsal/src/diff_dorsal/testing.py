"""Public checks of the DORSal pipeline and an exact denoiser for procedural scenes.

:class:`RendererDenoiser`: with oracle object slots the image of a scene is a deterministic function
of (slots, cameras), so the exact denoiser returns the render of the unmasked objects in [−1, 1]
for every z (prediction ``"x"``). Driven through :func:`~diff_dorsal.sampling.sample_views` and the
editing API it makes every edit exact, so the pipeline (noise re-use, masks, transfer layout,
guidance, segmentation from edits) is tested against ground truth (spec check 7).

It renders each object alone once (``render(scene, cameras, drop=<all others>)``) plus the empty
scene, then composites any subset of objects per pixel by depth. Without shadows an object's
shading does not depend on the other objects, so the composite of a subset equals
``render(scene, cameras, drop=<the rest>)``; the composition is pure JAX, so the denoiser runs
inside diff-core's jitted driver with a traced slot mask.

The ``check_*`` functions measure the properties of check 5 on any slot-conditioned denoiser (or,
for :func:`check_removal_exact`, check 2 on a renderer), raise ``AssertionError`` naming the
failed property, and return the measured figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "RendererDenoiser",
    "check_mask_equals_removal",
    "check_removal_exact",
    "check_slot_order_invariance",
    "check_view_permutation",
    "random_condition",
]


def _default_render() -> Callable[..., Any]:
    from diff_dorsal.scenes import render

    return render


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class RendererDenoiser:
    """Exact denoiser of procedural scenes with oracle slots (prediction ``"x"``).

    Build it with :meth:`from_scenes` (``RendererDenoiser.from_scenes(scenes, cameras)``) or
    :meth:`from_layers`. ``__call__(z, logsnr, cond)`` returns ``2·render(unmasked objects) − 1``
    of shape ``(B, L, h, w, 3)``; it reads ``cond["slot_mask"]`` (slot s is the object
    ``slot_objects[b, s]``; oracle slot j = object j by default) and ``cond["origins"]``: each
    conditioned view is the rendered view whose camera centre is nearest to its rays' origin,
    so any subset, order or repetition of the rendered views works (camera paths in chunks,
    view permutations).

    Attributes (arrays): ``colours (B, C, V, h, w, 3)`` each object rendered alone (in [0, 1]),
    ``depths (B, C, V, h, w)`` its depth where it is hit (inf elsewhere), ``background
    (B, V, h, w, 3)`` the empty scene, ``centres (B, V, 3)`` the camera centres; C = slot
    capacity.
    """

    colours: jax.Array
    depths: jax.Array
    background: jax.Array
    centres: jax.Array
    prediction: str = field(default="x", metadata={"static": True})

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_layers(
        cls, colours: Any, depths: Any, background: Any, centres: Any
    ) -> RendererDenoiser:
        c = jnp.asarray(colours, jnp.float32)
        d = jnp.asarray(depths, jnp.float32)
        bg = jnp.asarray(background, jnp.float32)
        cc = jnp.asarray(centres, jnp.float32)
        if (
            c.ndim != 6
            or c.shape[-1] != 3
            or d.shape != c.shape[:-1]
            or bg.shape != (c.shape[:1] + c.shape[2:])
            or cc.shape != c.shape[:1] + c.shape[2:3] + (3,)
        ):
            raise ValueError(
                "RendererDenoiser: colours (B, C, V, h, w, 3), depths (B, C, V, h, w), background "
                f"(B, V, h, w, 3) and centres (B, V, 3) must agree, got {c.shape}, {d.shape}, "
                f"{bg.shape}, {cc.shape}"
            )
        return cls(c, d, bg, cc)

    @classmethod
    def from_scenes(
        cls,
        scenes: Any,
        cameras: Any,
        *,
        capacity: int | None = None,
        slot_objects: Any = None,
        render: Callable[..., Any] | None = None,
        ambient: float = 0.35,
    ) -> RendererDenoiser:
        """Render the layers of ``scenes`` (a Scene or a list, one per example) seen by
        ``cameras`` (a Cameras or a list).

        ``slot_objects (B, C)`` int: the object of each slot (−1: none); default slot j =
        object j with capacity C = ``capacity`` or the largest object count. ``render`` defaults
        to :func:`diff_dorsal.scenes.render` (no shadows).
        """
        render = _default_render() if render is None else render
        scenes, cams = _as_list(scenes), _as_list(cameras)
        if len(cams) == 1 and len(scenes) > 1:
            cams = cams * len(scenes)
        if len(cams) != len(scenes):
            raise ValueError(
                f"RendererDenoiser: cameras must be one Cameras or one per scene "
                f"({len(scenes)}), got {len(cams)}"
            )
        b = len(scenes)
        counts = [int(s.n_objects) for s in scenes]
        if slot_objects is None:
            cap = max(counts) if capacity is None else int(capacity)
            if cap < max(counts):
                raise ValueError(
                    f"RendererDenoiser: capacity must be >= the largest object count "
                    f"{max(counts)}, got {cap}"
                )
            so = np.array([[j if j < k else -1 for j in range(cap)] for k in counts], np.int64)
        else:
            so = np.asarray(slot_objects, np.int64)
            if so.ndim != 2 or so.shape[0] != b:
                raise ValueError(
                    f"RendererDenoiser: slot_objects must have shape ({b}, C), got {so.shape}"
                )
            cap = so.shape[1]
        colours = depths = background = centres = None
        for i, (scene, cam) in enumerate(zip(scenes, cams, strict=True)):
            k = counts[i]
            empty = render(scene, cam, drop=tuple(range(k)), shadows=False, ambient=ambient)
            bg = np.asarray(empty.rgb, np.float32)
            if colours is None:
                colours = np.zeros((b, cap) + bg.shape, np.float32)
                depths = np.full((b, cap) + bg.shape[:-1], np.inf, np.float32)
                background = np.zeros((b,) + bg.shape, np.float32)
                centres = np.zeros((b, bg.shape[0], 3), np.float32)
            background[i] = bg
            centres[i] = np.asarray(cam.poses, np.float32)[:, :, 3]
            for s in range(cap):
                j = int(so[i, s])
                if j < 0:
                    continue
                if j >= k:
                    raise ValueError(
                        f"RendererDenoiser: slot_objects[{i}, {s}] = {j} must be < the scene's "
                        f"{k} objects"
                    )
                others = tuple(o for o in range(k) if o != j)
                solo = render(scene, cam, drop=others, shadows=False, ambient=ambient)
                hit = np.asarray(solo.instance) == j + 1
                colours[i, s] = np.where(hit[..., None], np.asarray(solo.rgb, np.float32), 0.0)
                depths[i, s] = np.where(hit, np.asarray(solo.depth, np.float32), np.inf)
        return cls.from_layers(colours, depths, background, centres)

    # ------------------------------------------------------------------ the denoiser
    @property
    def capacity(self) -> int:
        return int(self.colours.shape[1])

    def views_of(self, origins: Any) -> jax.Array:
        """``(B, L)`` index of the rendered view nearest to each conditioned view's origin."""
        o = jnp.asarray(origins, jnp.float32)
        o = o.reshape(o.shape[:2] + (-1, 3))[:, :, 0]  # one centre per pinhole view
        d2 = jnp.sum((o[:, :, None, :] - self.centres[:, None, :, :]) ** 2, axis=-1)
        return jnp.argmin(d2, axis=-1)

    def render(self, slot_mask: Any, views: Any = None) -> jax.Array:
        """The composite ``(B, L, h, w, 3)`` in [0, 1] of the objects kept by ``slot_mask`` in
        the rendered views ``views (B, L)`` (default all, in order)."""
        m = jnp.asarray(slot_mask, bool)
        if m.shape != self.colours.shape[:2]:
            raise ValueError(
                f"RendererDenoiser: cond['slot_mask'] shape {tuple(m.shape)} must be "
                f"{tuple(self.colours.shape[:2])}"
            )
        colours, depths, bg = self.colours, self.depths, self.background
        if views is not None:
            v = jnp.asarray(views)
            rows = jnp.arange(v.shape[0])[:, None]
            colours = jnp.moveaxis(jnp.moveaxis(colours, 1, 2)[rows, v], 2, 1)
            depths = jnp.moveaxis(jnp.moveaxis(depths, 1, 2)[rows, v], 2, 1)
            bg = bg[rows, v]
        d = jnp.where(m[:, :, None, None, None], depths, jnp.inf)
        j = jnp.argmin(d, axis=1)  # (B, L, h, w)
        near = jnp.min(d, axis=1)
        rgb = jnp.take_along_axis(colours, j[:, None, ..., None], axis=1)[:, 0]
        return jnp.where(jnp.isfinite(near)[..., None], rgb, bg)

    def __call__(self, z: jax.Array, logsnr: jax.Array, cond: Any = None) -> jax.Array:
        if not isinstance(cond, dict) or "slot_mask" not in cond or "origins" not in cond:
            raise ValueError("RendererDenoiser: cond must be a dict with 'slot_mask' and 'origins'")
        b, _, h, w, _ = self.background.shape
        o = cond["origins"]
        if z.ndim != 5 or tuple(z.shape[:1] + z.shape[2:]) != (b, h, w, 3):
            raise ValueError(
                f"RendererDenoiser: z shape {tuple(z.shape)} must be ({b}, L, {h}, {w}, 3)"
            )
        if tuple(o.shape) != tuple(z.shape):
            raise ValueError(
                f"RendererDenoiser: cond['origins'] shape {tuple(o.shape)} must be {tuple(z.shape)}"
            )
        x = self.render(cond["slot_mask"], self.views_of(o))
        return (2.0 * x - 1.0).astype(z.dtype)


# ---------------------------------------------------------------------- check 2 (renderer)
def check_removal_exact(
    render_fn: Callable[..., Any] | None = None,
    *,
    scenes: Sequence[Any],
    cameras: Any,
) -> dict[str, Any]:
    """Removal is exact (no shadows): for every scene and object, the pixels whose RGB changes
    when the object is dropped are exactly its visible mask (``instance == j + 1``).

    Returns ``{"removals", "exact"}``; raises ``AssertionError`` listing the first mismatches.
    """
    render_fn = _default_render() if render_fn is None else render_fn
    cams = _as_list(cameras)
    if len(cams) == 1:
        cams = cams * len(scenes)
    n = exact = 0
    bad: list[str] = []
    for i, (scene, cam) in enumerate(zip(scenes, cams, strict=True)):
        full = render_fn(scene, cam, shadows=False)
        for j in range(int(scene.n_objects)):
            removed = render_fn(scene, cam, drop=(j,), shadows=False)
            changed = np.any(np.asarray(full.rgb) != np.asarray(removed.rgb), axis=-1)
            visible = np.asarray(full.instance) == j + 1
            n += 1
            if np.array_equal(changed, visible):
                exact += 1
            elif len(bad) < 5:
                bad.append(
                    f"scene {i} object {j}: {int((changed & ~visible).sum())} changed outside, "
                    f"{int((visible & ~changed).sum())} unchanged inside"
                )
    if exact != n:
        raise AssertionError(
            f"check_removal_exact: {exact} / {n} removals exact; " + "; ".join(bad)
        )
    return {"removals": n, "exact": exact}


# ---------------------------------------------------------------------- check 5 (denoiser)
def random_condition(
    denoiser: Any, batch: int = 2, views: int = 5, num_slots: int = 6, seed: int = 0
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """``(z, logsnr, cond)`` of random inputs for ``denoiser`` (``image_shape``, ``slot_dim``):
    cameras on a sphere of radius 5 looking at the origin, some slots masked."""
    from diff_dorsal.sampling import make_cond

    h, w, _ = denoiser.image_shape
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(batch, views, 3))
    centre = 5.0 * centre / np.linalg.norm(centre, axis=-1, keepdims=True)
    fwd = -centre / np.linalg.norm(centre, axis=-1, keepdims=True)
    right = np.cross(fwd, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    up = np.cross(right, fwd)
    f = 0.5 * w / np.tan(np.deg2rad(25.0))
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    dc = np.stack([(jj + 0.5 - w / 2) / f, -(ii + 0.5 - h / 2) / f, np.ones_like(jj, float)], -1)
    dc /= np.linalg.norm(dc, axis=-1, keepdims=True)
    rot = np.stack([right, up, fwd], axis=-1)  # (B, V, 3, 3) columns
    directions = np.einsum("bvij,hwj->bvhwi", rot, dc)
    origins = np.broadcast_to(centre[:, :, None, None, :], directions.shape)
    slots = rng.normal(size=(batch, num_slots, denoiser.slot_dim))
    mask = np.ones((batch, num_slots), bool)
    mask[0, -1] = False
    if batch > 1:
        mask[1, 1] = False
    z = jnp.asarray(rng.normal(size=(batch, views, h, w, 3)), jnp.float32)
    lam = jnp.asarray(np.linspace(-2.0, 3.0, batch), jnp.float32)
    return z, lam, make_cond(slots, mask, origins, directions)


@jax.jit
def _apply(denoiser: Any, z: jax.Array, lam: jax.Array, cond: Any) -> jax.Array:
    return denoiser(z, lam, cond)


def _call(denoiser: Any) -> Callable[..., jax.Array]:
    return _apply


def _max_err(a: Any, b: Any) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


def check_slot_order_invariance(
    denoiser: Any, inputs: Any = None, *, tol: float = 1e-5, seed: int = 0
) -> float:
    """Permuting the slots (with their mask) leaves the output unchanged within ``tol``; returns
    the largest difference."""
    z, lam, cond = random_condition(denoiser, seed=seed) if inputs is None else inputs
    call = _call(denoiser)
    base = call(denoiser, z, lam, cond)
    perm = np.random.default_rng(seed + 1).permutation(cond["slots"].shape[1])
    moved = dict(cond, slots=cond["slots"][:, perm], slot_mask=cond["slot_mask"][:, perm])
    err = _max_err(call(denoiser, z, lam, moved), base)
    if not err <= tol:
        raise AssertionError(
            f"check_slot_order_invariance: slot permutation changed the output by {err:.3g} > {tol}"
        )
    return err


def check_view_permutation(
    denoiser: Any, inputs: Any = None, *, tol: float = 1e-5, seed: int = 0
) -> float:
    """Permuting the views together with their cameras permutes the output within ``tol``."""
    z, lam, cond = random_condition(denoiser, seed=seed) if inputs is None else inputs
    call = _call(denoiser)
    base = call(denoiser, z, lam, cond)
    perm = np.random.default_rng(seed + 2).permutation(z.shape[1])
    moved = dict(cond)
    for k in ("origins", "directions", "poses"):
        if k in cond:
            moved[k] = cond[k][:, perm]
    err = _max_err(call(denoiser, z[:, perm], lam, moved), base[:, perm])
    if not err <= tol:
        raise AssertionError(
            f"check_view_permutation: permuted output differs by {err:.3g} > {tol}"
        )
    return err


def check_mask_equals_removal(
    denoiser: Any, inputs: Any = None, *, slot: int = 0, tol: float = 1e-5, seed: int = 0
) -> float:
    """Masking slot ``slot`` equals building the slot set without it, within ``tol``."""
    z, lam, cond = random_condition(denoiser, seed=seed) if inputs is None else inputs
    call = _call(denoiser)
    masked = dict(cond, slot_mask=cond["slot_mask"].at[:, slot].set(False))
    keep = np.array([s for s in range(cond["slots"].shape[1]) if s != slot])
    removed = dict(cond, slots=cond["slots"][:, keep], slot_mask=cond["slot_mask"][:, keep])
    err = _max_err(call(denoiser, z, lam, masked), call(denoiser, z, lam, removed))
    if not err <= tol:
        raise AssertionError(
            f"check_mask_equals_removal: masked vs removed differ by {err:.3g} > {tol}"
        )
    return err
