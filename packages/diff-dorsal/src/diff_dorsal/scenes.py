"""Procedural multi-object scenes with exact edit ground truth, and their ray-casters.

A scene is a checkered floor (z = 0, unit squares of grey 0.75 / 0.55; beyond distance 64 along
a ray, where squares are far below a pixel, the checker's mean grey 0.65), a constant sky
(0.6, 0.75, 0.95), one directional light ``l = normalise(0.4, 0.3, 0.87)`` and K objects resting
on the floor: spheres (centre height = radius) and boxes (half-size r, yaw about +z). Shading is
Lambertian, ``a + (1 − a)·max(0, n·l)`` with ambient ``a``; with ``shadows=True`` a point whose ray
towards the light hits another object gets the ambient term only. Object j has instance id j + 1
(0 floor, −1 sky).

This stands in for MultiShapeNet in DORSal (Jabri et al., arXiv 2306.08068), which cannot be
fetched here: removing object j changes exactly its visible mask (plus, with shadows, its shadow),
so object edits have an exact ground truth.

Two ray-casters compute the same image: :func:`render` (numpy, the reference used by
``SceneDataset``) and :func:`render_jax` (pure ``jnp`` on a padded scene with a validity mask,
``jit``/``vmap``-able). Both run in float32 with the same formulas: analytic ray–sphere with the
perpendicular-distance discriminant, the slab method for the yawed box in its local frame and
ray–plane for the floor.
"""

from __future__ import annotations

import io
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diff_dorsal.cameras import CameraConfig, Cameras, canonicalize, rays, sample_cameras

__all__ = [
    "FLOOR_GREYS",
    "ITEM_KEYS",
    "LIGHT",
    "SCENE_KEYS",
    "SKY",
    "Render",
    "Scene",
    "SceneConfig",
    "SceneDataset",
    "cameras_from_item",
    "footprint_radius",
    "load_scenes",
    "remove_object",
    "render",
    "render_jax",
    "render_rays",
    "sample_scene",
    "save_scenes",
    "scene_from_item",
    "transfer_objects",
]

SKY = (0.6, 0.75, 0.95)
FLOOR_GREYS = (0.75, 0.55)
_L = np.array([0.4, 0.3, 0.87], dtype=np.float64)
LIGHT = tuple(float(x) for x in (_L / np.linalg.norm(_L)).astype(np.float32))
_SHAPES = {"sphere": 0, "box": 1}
_SPLITS = {"train": 0, "val": 1, "test": 2}
_EPS = 1e-4  # minimum hit distance along a ray
_TINY = 1e-12  # replaces exactly-zero direction components in the slab method
# Floor points farther than this along the ray get the checker's mean grey: squares are far below
# a pixel there (pure aliasing), and float32 cannot place a point within a square reliably.
_FAR = 64.0
_RESTARTS, _ROUNDS, _CANDIDATES = 200, 4, 64  # rejection sampling of footprints

#: Keys every data item (and every file read by :func:`load_scenes`) has.
ITEM_KEYS = ("images", "origins", "directions", "instance", "poses", "intrinsics", "n_objects")
#: Padded-scene keys (``Scene.padded``); present in generated items, optional in user files.
SCENE_KEYS = ("kinds", "centres", "sizes", "yaws", "colours", "valid")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _pair(func: str, name: str, value) -> tuple[float, float]:
    if not (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(_is_real(v) for v in value)
        and value[0] <= value[1]
    ):
        raise ValueError(
            f"{func}: {name} must be a (low, high) pair with low <= high, got {value!r}"
        )
    return float(value[0]), float(value[1])


# --------------------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class SceneConfig:
    """How :func:`sample_scene` draws a scene; ``ambient``/``shadows`` are the dataset's shading.

    K is uniform in ``[min_objects, max_objects]``; each object's kind uniform over ``shapes``,
    size r uniform in ``size``, centre uniform in ``[−extent, extent]²``, yaw uniform in
    ``[0, π/2)`` (boxes), colour uniform in ``[0.15, 1]³``; footprints (radius r for a sphere,
    r·√2 for a box) are kept ≥ ``min_gap`` apart by rejection sampling.
    """

    min_objects: int = 2
    max_objects: int = 5
    shapes: tuple[str, ...] = ("sphere", "box")
    size: tuple[float, float] = (0.3, 0.6)
    extent: float = 1.5
    min_gap: float = 0.05
    ambient: float = 0.35
    shadows: bool = False

    def __post_init__(self):
        for name in ("min_objects", "max_objects"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise ValueError(f"SceneConfig: {name} must be an int >= 0, got {v!r}")
        if self.min_objects > self.max_objects:
            raise ValueError(
                f"SceneConfig: min_objects must be <= max_objects, got {self.min_objects} > "
                f"{self.max_objects}"
            )
        shapes = self.shapes
        if isinstance(shapes, str):
            shapes = (shapes,)
        shapes = tuple(shapes)
        if not shapes or any(s not in _SHAPES for s in shapes):
            raise ValueError(
                f"SceneConfig: shapes must be a non-empty tuple of {tuple(_SHAPES)}, "
                f"got {self.shapes!r}"
            )
        object.__setattr__(self, "shapes", shapes)
        lo, hi = _pair("SceneConfig", "size", tuple(self.size))
        if lo <= 0:
            raise ValueError(f"SceneConfig: size must be > 0, got {self.size!r}")
        object.__setattr__(self, "size", (lo, hi))
        if not _is_real(self.extent) or not self.extent > 0:
            raise ValueError(f"SceneConfig: extent must be > 0, got {self.extent!r}")
        if not _is_real(self.min_gap) or not self.min_gap >= 0:
            raise ValueError(f"SceneConfig: min_gap must be >= 0, got {self.min_gap!r}")
        if not _is_real(self.ambient) or not 0 <= self.ambient <= 1:
            raise ValueError(f"SceneConfig: ambient must be in [0, 1], got {self.ambient!r}")
        if not isinstance(self.shadows, bool):
            raise ValueError(f"SceneConfig: shadows must be a bool, got {self.shadows!r}")


@dataclass(frozen=True)
class Scene:
    """K objects: ``kinds (K,)`` int32 (0 sphere, 1 box), ``centres (K, 3)`` float32 (z = size,
    resting on the floor), ``sizes (K,)`` (radius / half-size), ``yaws (K,)`` (radians about +z;
    ignored for spheres), ``colours (K, 3)`` in [0, 1]. Object j has instance id j + 1."""

    kinds: np.ndarray
    centres: np.ndarray
    sizes: np.ndarray
    yaws: np.ndarray
    colours: np.ndarray

    def __post_init__(self):
        kinds = np.asarray(self.kinds).reshape(-1)
        k = kinds.shape[0]
        if k and not np.issubdtype(kinds.dtype, np.integer):
            if not np.all(np.asarray(kinds) == np.round(kinds)):
                raise ValueError(
                    f"Scene: kinds must be integers 0 (sphere) or 1 (box), got {kinds}"
                )
        kinds = kinds.astype(np.int32)
        if np.any((kinds != 0) & (kinds != 1)):
            raise ValueError(f"Scene: kinds must be 0 (sphere) or 1 (box), got {kinds.tolist()}")
        shapes = {"centres": (k, 3), "sizes": (k,), "yaws": (k,), "colours": (k, 3)}
        for name, shape in shapes.items():
            arr = np.asarray(getattr(self, name), dtype=np.float32)
            if arr.size == 0 and k == 0:
                arr = arr.reshape(shape)
            if arr.shape != shape:
                raise ValueError(
                    f"Scene: {name} must have shape {shape} for {k} objects, got {arr.shape}"
                )
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"Scene: {name} must be finite, got {arr.tolist()}")
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "kinds", kinds)
        if np.any(self.sizes <= 0):
            raise ValueError(f"Scene: sizes must be > 0, got {self.sizes.tolist()}")
        if np.any((self.colours < 0) | (self.colours > 1)):
            raise ValueError("Scene: colours must be in [0, 1]")

    @property
    def n_objects(self) -> int:
        return int(self.kinds.shape[0])

    def padded(self, max_objects: int) -> dict[str, np.ndarray]:
        """The scene as fixed-size arrays: ``kinds, centres, sizes, yaws, colours`` padded with
        zeros to ``max_objects`` and ``valid (max_objects,)`` bool (a prefix of True)."""
        if not _is_int(max_objects) or max_objects < self.n_objects:
            raise ValueError(
                f"Scene.padded: max_objects must be an int >= n_objects ({self.n_objects}), "
                f"got {max_objects!r}"
            )
        k, m = self.n_objects, int(max_objects)
        out = {}
        for name in ("kinds", "centres", "sizes", "yaws", "colours"):
            arr = getattr(self, name)
            pad = np.zeros((m, *arr.shape[1:]), arr.dtype)
            pad[:k] = arr
            out[name] = pad
        out["valid"] = np.arange(m) < k
        return out

    @classmethod
    def from_padded(cls, d: Mapping) -> Scene:
        """Inverse of :meth:`padded`: keeps the slots where ``valid`` is True, in order."""
        missing = [key for key in SCENE_KEYS if key not in d]
        if missing:
            raise ValueError(f"Scene.from_padded: d is missing keys {missing}")
        valid = np.asarray(d["valid"]).astype(bool)
        if valid.ndim != 1:
            raise ValueError(
                f"Scene.from_padded: valid must be 1-D (one scene, no batch), got {valid.shape}"
            )
        return cls(
            kinds=np.asarray(d["kinds"])[valid],
            centres=np.asarray(d["centres"])[valid],
            sizes=np.asarray(d["sizes"])[valid],
            yaws=np.asarray(d["yaws"])[valid],
            colours=np.asarray(d["colours"])[valid],
        )


@dataclass(frozen=True)
class Render:
    """``rgb (V, h, w, 3)`` float32 in [0, 1]; ``instance (V, h, w)`` int32 (−1 sky, 0 floor,
    j + 1 object j); ``depth (V, h, w)`` float32 distance along the ray (``inf`` for sky)."""

    rgb: np.ndarray
    instance: np.ndarray
    depth: np.ndarray


def footprint_radius(kinds, sizes) -> np.ndarray:
    """Radius of a disc containing each object's footprint: r (sphere), r·√2 (box)."""
    kinds = np.asarray(kinds)
    sizes = np.asarray(sizes, dtype=np.float64)
    return np.where(kinds == 1, sizes * math.sqrt(2.0), sizes)


def sample_scene(rng: np.random.Generator, config: SceneConfig) -> Scene:
    """Draw one scene (see :class:`SceneConfig`); footprints by rejection sampling.

    Each object's centre is the first fitting one of up to 4 batches of 64 uniform draws; if none
    fits, the whole scene is redrawn (up to 200 times, then a ``ValueError`` says the
    configuration is too crowded).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"sample_scene: rng must be a numpy.random.Generator, got {type(rng).__name__}"
        )
    if not isinstance(config, SceneConfig):
        raise TypeError(f"sample_scene: config must be a SceneConfig, got {type(config).__name__}")
    kinds_avail = np.array([_SHAPES[s] for s in config.shapes], np.int32)
    e = config.extent
    for _ in range(_RESTARTS):
        k = int(rng.integers(config.min_objects, config.max_objects + 1))
        kinds = kinds_avail[rng.integers(0, len(kinds_avail), size=k)]
        sizes = rng.uniform(*config.size, size=k)
        yaws = np.where(kinds == 1, rng.uniform(0.0, math.pi / 2, size=k), 0.0)
        colours = rng.uniform(0.15, 1.0, size=(k, 3))
        fp = footprint_radius(kinds, sizes)
        xy = np.zeros((k, 2))
        placed = 0
        for j in range(k):
            for _ in range(_ROUNDS):
                cand = rng.uniform(-e, e, size=(_CANDIDATES, 2))
                dist = np.linalg.norm(cand[:, None] - xy[None, :j], axis=-1)  # (candidates, j)
                ok = np.all(dist >= fp[:j] + fp[j] + config.min_gap, axis=1)
                if ok.any():
                    xy[j] = cand[np.argmax(ok)]  # the first candidate that fits
                    placed += 1
                    break
            else:
                break
        if placed == k:
            centres = np.concatenate([xy, sizes[:, None]], axis=-1)
            return Scene(kinds, centres, sizes, yaws, colours)
    raise ValueError(
        f"sample_scene: could not place up to {config.max_objects} objects of size {config.size} "
        f"with gap {config.min_gap} in [-{e}, {e}]^2 after {_RESTARTS} tries; use fewer or "
        "smaller objects"
    )


def remove_object(scene: Scene, j: int) -> Scene:
    """The scene without object ``j`` (0-based); later objects move down one index."""
    if not isinstance(scene, Scene):
        raise TypeError(f"remove_object: scene must be a Scene, got {type(scene).__name__}")
    k = scene.n_objects
    if not _is_int(j) or not 0 <= j < k:
        raise ValueError(f"remove_object: j must name an object 0..{k - 1}, got {j!r}")
    keep = np.arange(k) != j
    return Scene(
        scene.kinds[keep], scene.centres[keep], scene.sizes[keep], scene.yaws[keep],
        scene.colours[keep],
    )  # fmt: skip


def transfer_objects(scene_a: Scene, scene_b: Scene, ids: Sequence[int]) -> Scene:
    """Scene A plus objects ``ids`` of scene B at their own positions (the union; B's objects
    come after A's, in the order of ``ids``).

    Footprints are compared with the conservative disc bound of :func:`footprint_radius`;
    overlapping discs are a ``ValueError`` naming both objects.
    """
    for name, s in (("scene_a", scene_a), ("scene_b", scene_b)):
        if not isinstance(s, Scene):
            raise TypeError(f"transfer_objects: {name} must be a Scene, got {type(s).__name__}")
    if _is_int(ids):
        ids = [ids]
    ids = list(ids)
    kb = scene_b.n_objects
    if any(not _is_int(i) or not 0 <= i < kb for i in ids) or len(set(ids)) != len(ids):
        raise ValueError(
            f"transfer_objects: ids must be distinct objects of scene B in 0..{kb - 1}, got {ids}"
        )
    idx = np.asarray(ids, dtype=np.int64)
    fp_a = footprint_radius(scene_a.kinds, scene_a.sizes)
    fp_b = footprint_radius(scene_b.kinds[idx], scene_b.sizes[idx])
    for ia in range(scene_a.n_objects):
        for n, ib in enumerate(ids):
            dist = np.linalg.norm(
                scene_a.centres[ia, :2].astype(np.float64) - scene_b.centres[ib, :2]
            )
            if dist < fp_a[ia] + fp_b[n]:
                raise ValueError(
                    f"transfer_objects: objects {ia} (scene A) and {ib} (scene B) overlap"
                )

    def cat(name):
        return np.concatenate([getattr(scene_a, name), getattr(scene_b, name)[idx]], axis=0)

    return Scene(cat("kinds"), cat("centres"), cat("sizes"), cat("yaws"), cat("colours"))


# ---------------------------------------------------------------------------- numpy ray-caster
# Every formula below is mirrored one-to-one in the jnp ray-caster further down (float32, the
# same operation order), so the two agree to rounding and make the same hit decisions.


def _dot(a, b):
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _np_sphere_t(o, d, c, r):
    """Hit distances (S, N) of rays o, d (N, 3) with spheres c (S, 3), r (S,); inf on a miss."""
    oc = o[None] - c[:, None]
    b = _dot(oc, d[None])
    perp = oc - b[..., None] * d[None]
    disc = (r * r)[:, None] - _dot(perp, perp)
    t = -b - np.sqrt(np.maximum(disc, np.float32(0)))
    return np.where((disc >= 0) & (t > _EPS), t, np.float32(np.inf))


def _np_to_local(v, cs, sn):
    """Rotate (S, N, 3) vectors by −yaw about z (cs, sn: (S, 1))."""
    x, y = v[..., 0], v[..., 1]
    return np.stack([cs * x + sn * y, cs * y - sn * x, v[..., 2]], axis=-1)


def _np_box_t(o, d, c, r, yaw):
    """Hit distances (B, N) with yawed cubes of half-size r centred at c; inf on a miss."""
    cs, sn = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    ol = _np_to_local(o[None] - c[:, None], cs, sn)
    dl = _np_to_local(np.broadcast_to(d[None], ol.shape), cs, sn)
    dl = np.where(np.abs(dl) < _TINY, np.float32(_TINY), dl)
    inv = np.float32(1) / dl
    rr = r[:, None, None]
    t1 = (-rr - ol) * inv
    t2 = (rr - ol) * inv
    lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
    tnear = np.maximum(np.maximum(lo[..., 0], lo[..., 1]), lo[..., 2])
    tfar = np.minimum(np.minimum(hi[..., 0], hi[..., 1]), hi[..., 2])
    return np.where((tnear <= tfar) & (tnear > _EPS), tnear, np.float32(np.inf))


def _np_object_t(scene: Scene, o, d, keep):
    """(K, N) hit distances of every object (inf for objects not in ``keep``)."""
    k = scene.n_objects
    t = np.full((k, o.shape[0]), np.inf, np.float32)
    sph = np.flatnonzero((scene.kinds == 0) & keep)
    box = np.flatnonzero((scene.kinds == 1) & keep)
    if sph.size:
        t[sph] = _np_sphere_t(o, d, scene.centres[sph], scene.sizes[sph])
    if box.size:
        t[box] = _np_box_t(o, d, scene.centres[box], scene.sizes[box], scene.yaws[box])
    return t


def _np_normals(p, d, kind, c, r, yaw):
    """Outward normals at hit points p (N, 3) of rays d (N, 3) on objects with parameters (N, ...).

    Box: the face whose coordinate is largest among the faces the ray enters through (never a
    face pointing away from the ray, e.g. the bottom face at a bottom edge)."""
    n_sph = (p - c) / r[:, None]
    cs, sn = np.cos(yaw), np.sin(yaw)
    q = p - c
    ql = np.stack([cs * q[:, 0] + sn * q[:, 1], cs * q[:, 1] - sn * q[:, 0], q[:, 2]], -1)
    dl = np.stack([cs * d[:, 0] + sn * d[:, 1], cs * d[:, 1] - sn * d[:, 0], d[:, 2]], -1)
    score = np.where(ql * dl < 0, np.abs(ql), np.float32(-1))
    axis = np.argmax(score, axis=-1)
    nl = np.zeros_like(ql)
    rows = np.arange(ql.shape[0])
    nl[rows, axis] = np.sign(ql[rows, axis])
    n_box = np.stack([cs * nl[:, 0] - sn * nl[:, 1], sn * nl[:, 0] + cs * nl[:, 1], nl[:, 2]], -1)
    return np.where((kind == 0)[:, None], n_sph, n_box)


def _check_drop(scene: Scene, drop) -> np.ndarray:
    k = scene.n_objects
    if _is_int(drop):
        drop = (drop,)
    try:
        drop = [int(j) if isinstance(j, np.integer) else j for j in drop]
    except TypeError:
        raise ValueError(
            f"render: drop must be a sequence of object indices 0..{k - 1}, got {drop!r}"
        ) from None
    for j in drop:
        if not _is_int(j) or not 0 <= j < k:
            raise ValueError(f"render: drop must name objects 0..{k - 1}, got {j!r}")
    keep = np.ones(k, bool)
    keep[list(drop)] = False
    return keep


def render_rays(
    scene: Scene, origins, directions, *, drop=(), shadows: bool = False, ambient: float = 0.35
) -> Render:
    """Ray-cast ``scene`` along arbitrary rays ``origins, directions (..., 3)`` (unit directions,
    world frame); the fields of the result have the rays' leading shape. See :func:`render`."""
    if not isinstance(scene, Scene):
        raise TypeError(f"render: scene must be a Scene, got {type(scene).__name__}")
    o = np.asarray(origins, dtype=np.float32)
    d = np.asarray(directions, dtype=np.float32)
    if o.shape != d.shape or o.ndim < 1 or o.shape[-1] != 3:
        raise ValueError(
            f"render: origins and directions must have the same shape (..., 3), got {o.shape} "
            f"and {d.shape}"
        )
    if not _is_real(ambient) or not 0 <= ambient <= 1:
        raise ValueError(f"render: ambient must be in [0, 1], got {ambient!r}")
    if not isinstance(shadows, (bool, np.bool_)):
        raise ValueError(f"render: shadows must be a bool, got {shadows!r}")
    keep = _check_drop(scene, drop)
    lead = o.shape[:-1]
    o = o.reshape(-1, 3)
    d = d.reshape(-1, 3)
    n = o.shape[0]
    a = np.float32(ambient)
    light = np.array(LIGHT, np.float32)

    t_obj = _np_object_t(scene, o, d, keep)
    if scene.n_objects:
        j = np.argmin(t_obj, axis=0)
        t_min = t_obj[j, np.arange(n)]
    else:
        j = np.zeros(n, np.int64)
        t_min = np.full(n, np.inf, np.float32)
    dz = d[:, 2]
    dz_safe = np.where(dz < 0, dz, np.float32(-1))
    t_floor = -o[:, 2] / dz_safe
    t_floor = np.where((dz < 0) & (t_floor > _EPS), t_floor, np.float32(np.inf))
    is_obj = t_min < t_floor
    t = np.where(is_obj, t_min, t_floor)
    hit = np.isfinite(t)
    instance = np.where(is_obj, j + 1, np.where(hit, 0, -1)).astype(np.int32)

    p = o + np.where(hit, t, np.float32(0))[:, None] * d
    n_obj = (
        _np_normals(p, d, scene.kinds[j], scene.centres[j], scene.sizes[j], scene.yaws[j])
        if (scene.n_objects)
        else np.zeros_like(p)
    )
    normal = np.where(is_obj[:, None], n_obj, np.array([0, 0, 1], np.float32))
    lambert = np.maximum(_dot(normal, light[None]), np.float32(0))
    if shadows and scene.n_objects:
        ts = _np_object_t(scene, p, np.broadcast_to(light, p.shape), keep)
        ts[j[is_obj], np.flatnonzero(is_obj)] = np.inf  # convex objects never shadow themselves
        lambert = np.where(hit & np.isfinite(ts.min(axis=0)), np.float32(0), lambert)
    shade = a + (np.float32(1) - a) * lambert
    floor_grey = np.where(
        (np.floor(p[:, 0]) + np.floor(p[:, 1])) % 2 == 0,
        np.float32(FLOOR_GREYS[0]),
        np.float32(FLOOR_GREYS[1]),
    )
    floor_grey = np.where(t > _FAR, np.float32(sum(FLOOR_GREYS) / 2), floor_grey)
    albedo = np.where(
        is_obj[:, None],
        scene.colours[j] if scene.n_objects else np.zeros_like(p),
        floor_grey[:, None],
    )
    rgb = np.where(hit[:, None], albedo * shade[:, None], np.array(SKY, np.float32))
    return Render(
        rgb=rgb.astype(np.float32).reshape(*lead, 3),
        instance=instance.reshape(lead),
        depth=t.astype(np.float32).reshape(lead),
    )


def render(
    scene: Scene, cameras: Cameras, *, drop=(), shadows: bool = False, ambient: float = 0.35
) -> Render:
    """Ray-cast ``scene`` from world-frame ``cameras`` (numpy reference, float32).

    ``drop``: 0-based object indices rendered as absent (instance ids of the others unchanged).
    ``shadows``: hard shadows by one shadow ray per hit point. ``ambient``: the term ``a``.
    Without shadows, dropping object j changes exactly the pixels of its visible mask.
    """
    if not isinstance(cameras, Cameras):
        raise TypeError(f"render: cameras must be Cameras, got {type(cameras).__name__}")
    o, d = rays(cameras)
    return render_rays(scene, o, d, drop=drop, shadows=shadows, ambient=ambient)


# ------------------------------------------------------------------------------ jnp ray-caster


def render_jax(scene: Mapping, origins, directions, *, ambient=0.35, shadows: bool = False):
    """Pure-``jnp`` twin of :func:`render_rays` on a padded scene (no batch axis).

    ``scene``: ``Scene.padded(M)`` as arrays (``valid`` masks the slots; clear ``valid[j]`` to drop
    object j); ``origins, directions (..., 3)`` world-frame unit rays. Returns
    ``(rgb (..., 3) float32, instance (...) int32)``; slot j has instance id j + 1.
    ``jax.jit(render_jax, static_argnames="shadows")`` and ``jax.vmap`` over a batch of scenes and
    rays both work; equal to :func:`render` within 1e-5.
    """
    import jax.numpy as jnp

    missing = [key for key in SCENE_KEYS if key not in scene]
    if missing:
        raise ValueError(f"render_jax: scene is missing keys {missing}")
    f32 = jnp.float32
    kinds = jnp.asarray(scene["kinds"]).astype(jnp.int32)
    c = jnp.asarray(scene["centres"], f32)
    r = jnp.asarray(scene["sizes"], f32)
    yaw = jnp.asarray(scene["yaws"], f32)
    col = jnp.asarray(scene["colours"], f32)
    valid = jnp.asarray(scene["valid"]).astype(bool)
    if kinds.ndim != 1 or c.shape != (kinds.shape[0], 3):
        raise ValueError(
            f"render_jax: scene must be one padded scene (kinds (M,), centres (M, 3)), got "
            f"{kinds.shape} and {c.shape}; vmap over a batch"
        )
    o = jnp.asarray(origins, f32)
    d = jnp.asarray(directions, f32)
    if o.shape != d.shape or o.shape[-1] != 3:
        raise ValueError(
            f"render_jax: origins and directions must have the same shape (..., 3), got "
            f"{o.shape} and {d.shape}"
        )
    lead = o.shape[:-1]
    o = o.reshape(-1, 3)
    d = d.reshape(-1, 3)
    a = jnp.asarray(ambient, f32)
    light = jnp.asarray(LIGHT, f32)
    inf = f32(jnp.inf)
    cs, sn = jnp.cos(yaw)[:, None], jnp.sin(yaw)[:, None]

    def object_t(o, d):
        oc = o[None] - c[:, None]
        # spheres
        b = _dot(oc, d[None])
        perp = oc - b[..., None] * d[None]
        disc = (r * r)[:, None] - _dot(perp, perp)
        ts = -b - jnp.sqrt(jnp.maximum(disc, f32(0)))
        ts = jnp.where((disc >= 0) & (ts > _EPS), ts, inf)
        # boxes
        ol = jnp.stack([cs * oc[..., 0] + sn * oc[..., 1], cs * oc[..., 1] - sn * oc[..., 0],
                        oc[..., 2]], axis=-1)  # fmt: skip
        dd = jnp.broadcast_to(d[None], oc.shape)
        dl = jnp.stack([cs * dd[..., 0] + sn * dd[..., 1], cs * dd[..., 1] - sn * dd[..., 0],
                        dd[..., 2]], axis=-1)  # fmt: skip
        dl = jnp.where(jnp.abs(dl) < _TINY, f32(_TINY), dl)
        inv = f32(1) / dl
        rr = r[:, None, None]
        t1 = (-rr - ol) * inv
        t2 = (rr - ol) * inv
        tnear = jnp.minimum(t1, t2).max(axis=-1)
        tfar = jnp.maximum(t1, t2).min(axis=-1)
        tb = jnp.where((tnear <= tfar) & (tnear > _EPS), tnear, inf)
        t = jnp.where((kinds == 0)[:, None], ts, tb)
        return jnp.where(valid[:, None], t, inf)

    t_obj = object_t(o, d)
    j = jnp.argmin(t_obj, axis=0)
    t_min = jnp.min(t_obj, axis=0)
    dz = d[:, 2]
    dz_safe = jnp.where(dz < 0, dz, f32(-1))
    t_floor = -o[:, 2] / dz_safe
    t_floor = jnp.where((dz < 0) & (t_floor > _EPS), t_floor, inf)
    is_obj = t_min < t_floor
    t = jnp.where(is_obj, t_min, t_floor)
    hit = jnp.isfinite(t)
    instance = jnp.where(is_obj, j + 1, jnp.where(hit, 0, -1)).astype(jnp.int32)

    p = o + jnp.where(hit, t, f32(0))[:, None] * d
    cj, rj, yj = c[j], r[j], yaw[j]
    n_sph = (p - cj) / rj[:, None]
    cy, sy = jnp.cos(yj), jnp.sin(yj)
    q = p - cj
    ql = jnp.stack([cy * q[:, 0] + sy * q[:, 1], cy * q[:, 1] - sy * q[:, 0], q[:, 2]], -1)
    dl = jnp.stack([cy * d[:, 0] + sy * d[:, 1], cy * d[:, 1] - sy * d[:, 0], d[:, 2]], -1)
    score = jnp.where(ql * dl < 0, jnp.abs(ql), f32(-1))
    axis = jnp.argmax(score, axis=-1)
    onehot = axis[:, None] == jnp.arange(3)[None]
    nl = jnp.where(onehot, jnp.sign(ql), f32(0))
    n_box = jnp.stack([cy * nl[:, 0] - sy * nl[:, 1], sy * nl[:, 0] + cy * nl[:, 1], nl[:, 2]], -1)
    n_obj = jnp.where((kinds[j] == 0)[:, None], n_sph, n_box)
    normal = jnp.where(is_obj[:, None], n_obj, jnp.asarray([0.0, 0.0, 1.0], f32))
    lambert = jnp.maximum(_dot(normal, light[None]), f32(0))
    if shadows:
        ts = object_t(p, jnp.broadcast_to(light, p.shape))
        own = (jnp.arange(c.shape[0])[:, None] == j[None]) & is_obj[None]
        ts = jnp.where(own, inf, ts)
        lambert = jnp.where(hit & jnp.isfinite(ts.min(axis=0)), f32(0), lambert)
    shade = a + (f32(1) - a) * lambert
    floor_grey = jnp.where(
        (jnp.floor(p[:, 0]) + jnp.floor(p[:, 1])) % 2 == 0, f32(FLOOR_GREYS[0]), f32(FLOOR_GREYS[1])
    )
    floor_grey = jnp.where(t > _FAR, f32(sum(FLOOR_GREYS) / 2), floor_grey)
    albedo = jnp.where(is_obj[:, None], col[j], floor_grey[:, None])
    rgb = jnp.where(hit[:, None], albedo * shade[:, None], jnp.asarray(SKY, f32))
    return rgb.reshape(*lead, 3), instance.reshape(lead)


# --------------------------------------------------------------------------------- the dataset


class SceneDataset:
    """Deterministic procedural multi-view data: item ``i`` of ``split`` comes from
    ``derive_seed(seed, split_id, i, 0)`` (scene) and ``derive_seed(seed, split_id, i, 1)``
    (cameras), so it is bitwise identical whatever the batch, worker or order (split ids: train 0,
    val 1, test 2).

    An item has ``images (V, h, w, 3)`` float32 in [0, 1], ``origins, directions (V, h, w, 3)``,
    ``instance (V, h, w)`` int32, ``poses (V, 3, 4)``, ``intrinsics (3, 3)``, ``n_objects`` int32,
    the padded scene (``kinds, centres, sizes, yaws, colours, valid`` with
    ``scene_config.max_objects`` slots, world frame) and ``frame_pose (3, 4)``: the world pose of
    the frame poses and rays are expressed in (identity for ``frame="world"``, view 0's world pose
    for ``"first_input"``). Images are rendered by :func:`render` in the world frame.
    """

    def __init__(
        self,
        scene_config: SceneConfig | None = None,
        camera_config: CameraConfig | None = None,
        split: str = "train",
        size: int = 1000,
        seed: int = 0,
    ):
        scene_config = SceneConfig() if scene_config is None else scene_config
        camera_config = CameraConfig() if camera_config is None else camera_config
        if not isinstance(scene_config, SceneConfig):
            raise TypeError(
                f"SceneDataset: scene_config must be a SceneConfig, got "
                f"{type(scene_config).__name__}"
            )
        if not isinstance(camera_config, CameraConfig):
            raise TypeError(
                f"SceneDataset: camera_config must be a CameraConfig, got "
                f"{type(camera_config).__name__}"
            )
        if split not in _SPLITS:
            raise ValueError(f"SceneDataset: split must be one of {tuple(_SPLITS)}, got {split!r}")
        if not _is_int(size) or size < 0:
            raise ValueError(f"SceneDataset: size must be an int >= 0, got {size!r}")
        if not _is_int(seed) or not 0 <= seed < 2**63:
            raise ValueError(f"SceneDataset: seed must be an int in [0, 2**63), got {seed!r}")
        self.scene_config = scene_config
        self.camera_config = camera_config
        self.split = split
        self.size = int(size)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        for i in range(self.size):
            yield self[i]

    def _index(self, i) -> int:
        if not _is_int(i):
            raise TypeError(f"SceneDataset: index must be an int, got {type(i).__name__}")
        i = int(i)
        if not -self.size <= i < self.size:
            raise IndexError(f"SceneDataset: index must be in [0, {self.size}), got {i}")
        return i % self.size if self.size else i

    def scene(self, i: int) -> Scene:
        """The scene of item ``i``."""
        from diff_protocol import derive_seed

        i = self._index(i)
        rng = np.random.default_rng(derive_seed(self.seed, _SPLITS[self.split], i, 0))
        return sample_scene(rng, self.scene_config)

    def cameras(self, i: int) -> Cameras:
        """The world-frame cameras of item ``i``."""
        from diff_protocol import derive_seed

        i = self._index(i)
        rng = np.random.default_rng(derive_seed(self.seed, _SPLITS[self.split], i, 1))
        return sample_cameras(rng, self.camera_config)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        scene = self.scene(i)
        cams = self.cameras(i)
        cfg = self.scene_config
        o, d = rays(cams)
        out = render_rays(scene, o, d, shadows=cfg.shadows, ambient=cfg.ambient)
        if self.camera_config.frame == "first_input":
            frame_pose = cams.poses[0].copy()
            cams = canonicalize(cams, frame_pose)
            o, d = rays(cams)
        else:
            frame_pose = np.eye(3, 4, dtype=np.float32)
        item = {
            "images": out.rgb,
            "origins": o,
            "directions": d,
            "instance": out.instance,
            "poses": cams.poses,
            "intrinsics": cams.intrinsics,
            "n_objects": np.asarray(scene.n_objects, np.int32),
            "frame_pose": frame_pose,
        }
        item.update(scene.padded(cfg.max_objects))
        return item

    def batch(self, indices) -> dict[str, np.ndarray]:
        """Items ``indices`` stacked on a leading axis (same keys as an item)."""
        indices = list(indices)
        if not indices:
            raise ValueError("SceneDataset.batch: indices must be non-empty, got []")
        return _stack(self[i] for i in indices)

    def arrays(self, n: int | None = None, progress: bool = True) -> dict[str, np.ndarray]:
        """The first ``n`` items (all by default) stacked, with a tqdm bar when ``progress``."""
        n = self.size if n is None else n
        if not _is_int(n) or not 1 <= n <= self.size:
            raise ValueError(f"SceneDataset.arrays: n must be in [1, {self.size}], got {n!r}")
        from tqdm.auto import tqdm

        it = tqdm(range(n), desc=f"scenes ({self.split})", disable=not progress, unit="scene")
        return _stack((self[i] for i in it), n)


def _stack(items, n: int | None = None) -> dict[str, np.ndarray]:
    """Stack dict items into preallocated arrays (``n`` known) or by ``np.stack``."""
    if n is None:
        items = list(items)
        return {k: np.stack([it[k] for it in items]) for k in items[0]}
    out = None
    for b, item in enumerate(items):
        if out is None:
            out = {k: np.empty((n, *np.shape(v)), np.asarray(v).dtype) for k, v in item.items()}
        for k, v in item.items():
            out[k][b] = v
    return out


# ----------------------------------------------------------------------------------- file i/o


def save_scenes(path, arrays: Mapping) -> Path:
    """Write stacked items (``SceneDataset.arrays``) to ``path`` as ``.npz``, atomically (temporary
    file in the same folder, then ``os.replace``). Returns the path."""
    from diff_protocol.io import atomic_write

    if not isinstance(arrays, Mapping):
        raise TypeError(f"save_scenes: arrays must be a mapping, got {type(arrays).__name__}")
    missing = [k for k in ITEM_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"save_scenes: arrays is missing keys {missing} (required: {ITEM_KEYS})")
    path = Path(os.fspath(path))
    if path.suffix != ".npz":
        raise ValueError(f"save_scenes: path must end in .npz, got {str(path)!r}")
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write(path, buf.getvalue())


def load_scenes(path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` of stacked items (ours or the user's, e.g. exported MSN).

    Required keys: ``images, origins, directions, instance, poses, intrinsics, n_objects``
    (missing ones are a ``ValueError`` naming them); others are returned as they are.
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise ValueError(f"load_scenes: path must be an existing .npz file, got {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise ValueError(
            f"load_scenes: {str(path)!r} is not a readable .npz file ({err})"
        ) from None
    missing = [k for k in ITEM_KEYS if k not in data]
    if missing:
        raise ValueError(
            f"load_scenes: {str(path)!r} is missing keys {missing} (required: {list(ITEM_KEYS)})"
        )
    lead = data["images"].shape[0] if data["images"].ndim == 5 else None
    if lead is None:
        raise ValueError(
            f"load_scenes: images must have shape (B, V, h, w, 3), got {data['images'].shape}"
        )
    for k in ITEM_KEYS:
        if data[k].shape[:1] != (lead,):
            raise ValueError(
                f"load_scenes: {k} must have leading size {lead} (like images), got {data[k].shape}"
            )
    return data


def scene_from_item(item: Mapping) -> Scene:
    """The world-frame :class:`Scene` of one item (padded keys ``kinds … valid``)."""
    if not isinstance(item, Mapping):
        raise TypeError(f"scene_from_item: item must be a mapping, got {type(item).__name__}")
    missing = [k for k in SCENE_KEYS if k not in item]
    if missing:
        raise ValueError(f"scene_from_item: item is missing keys {missing}")
    return Scene.from_padded(item)


def cameras_from_item(item: Mapping, *, frame: str = "world") -> Cameras:
    """The cameras of one item.

    ``frame="world"`` (default) undoes ``first_input`` canonicalisation with ``frame_pose`` when the
    item has it, so ``render(scene_from_item(item), cameras_from_item(item))`` reproduces the
    item's images; ``frame="item"`` returns the poses as stored (consistent with the item's rays).
    """
    if not isinstance(item, Mapping):
        raise TypeError(f"cameras_from_item: item must be a mapping, got {type(item).__name__}")
    if frame not in ("world", "item"):
        raise ValueError(f"cameras_from_item: frame must be 'world' or 'item', got {frame!r}")
    missing = [k for k in ("poses", "intrinsics", "images") if k not in item]
    if missing:
        raise ValueError(f"cameras_from_item: item is missing keys {missing}")
    shape = np.shape(item["images"])
    if len(shape) != 4 or shape[1] != shape[2]:
        raise ValueError(
            f"cameras_from_item: images must have shape (V, res, res, 3) (one item), got {shape}"
        )
    cams = Cameras(np.asarray(item["poses"]), np.asarray(item["intrinsics"]), int(shape[1]))
    if frame == "world" and "frame_pose" in item:
        fp = np.asarray(item["frame_pose"], np.float64)
        if not np.array_equal(fp, np.eye(3, 4)):
            p = cams.poses.astype(np.float64)
            rot = np.einsum("ab,vbc->vac", fp[:, :3], p[:, :, :3])
            centre = p[:, :, 3] @ fp[:, :3].T + fp[:, 3]
            poses = np.concatenate([rot, centre[:, :, None]], -1).astype(np.float32)
            cams = Cameras(poses, cams.intrinsics, cams.resolution)
    return cams
