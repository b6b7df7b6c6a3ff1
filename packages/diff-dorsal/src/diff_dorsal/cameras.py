"""Pinhole cameras for the procedural DORSal scenes: poses, intrinsics, per-pixel rays.

Cameras sit on a sphere of radius ``radius`` around the origin and look at it with up = +z
(elevation in radians above the floor, azimuth about +z). A pose is a camera-to-world matrix
``[R | c]`` whose columns are the camera's right, up and forward axes and its centre; because the
axes are (right, up, forward) the matrix ``R`` has determinant -1 (the image's row axis points
down while the camera's ``up`` axis points up).

Intrinsics map camera coordinates to continuous pixel coordinates ``(u, v) = (column, row)`` with
pixel centres at ``+0.5``::

    K = [[f, 0, w/2], [0, -f, h/2], [0, 0, 1]],   f = ½·res / tan(fov/2)

so ``K⁻¹ [j+0.5, i+0.5, 1] = [(j+0.5-w/2)/f, -(i+0.5-h/2)/f, 1]`` is the camera-frame ray of pixel
(row i, column j); the negative ``K[1, 1]`` encodes the downward row axis.

``frame="first_input"`` (the MultiShapeNet convention of SRT/OSRT, arXiv 2111.13152 /
2206.06922, used by DORSal, arXiv 2306.08068) expresses every pose and ray in the first camera's
frame (:func:`canonicalize`); the scenes are always rendered in the world frame.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CameraConfig",
    "Cameras",
    "camera_pose",
    "canonicalize",
    "circle_path",
    "intrinsics_matrix",
    "project",
    "rays",
    "sample_cameras",
]

_AZIMUTHS = ("random", "circle")
_FRAMES = ("world", "first_input")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_elevation(func: str, lo, hi, got) -> None:
    if not (_is_real(lo) and _is_real(hi) and 0.0 < lo <= hi < math.pi / 2):
        raise ValueError(
            f"{func}: elevation must be radians with 0 < low <= high < pi/2 (cameras above the "
            f"floor, not at the pole), got {got!r}"
        )


@dataclass(frozen=True)
class CameraConfig:
    """How :func:`sample_cameras` places the views of one scene.

    ``elevation`` is a ``(low, high)`` range in radians (one number means a fixed elevation);
    ``azimuth="random"`` draws every view's azimuth and elevation independently,
    ``"circle"`` spaces the azimuths evenly (random phase) at one drawn elevation.
    ``frame`` is applied by ``SceneDataset``: ``"world"`` or ``"first_input"`` (poses and rays in
    view 0's frame). Defaults are this project's choice (the paper's MSN cameras are not public).
    """

    n_views: int = 10
    radius: float = 5.0
    elevation: tuple[float, float] | float = (0.3, 0.8)
    azimuth: str = "random"
    fov_deg: float = 50.0
    resolution: int = 32
    frame: str = "world"

    def __post_init__(self):
        if not _is_int(self.n_views) or self.n_views < 1:
            raise ValueError(f"CameraConfig: n_views must be an int >= 1, got {self.n_views!r}")
        if not _is_real(self.radius) or not self.radius > 0:
            raise ValueError(f"CameraConfig: radius must be a number > 0, got {self.radius!r}")
        elev = self.elevation
        if _is_real(elev):
            elev = (float(elev), float(elev))
        if not isinstance(elev, (tuple, list)) or len(elev) != 2:
            raise ValueError(
                f"CameraConfig: elevation must be a (low, high) pair of radians, got {elev!r}"
            )
        _check_elevation("CameraConfig", elev[0], elev[1], self.elevation)
        object.__setattr__(self, "elevation", (float(elev[0]), float(elev[1])))
        if self.azimuth not in _AZIMUTHS:
            raise ValueError(
                f"CameraConfig: azimuth must be one of {_AZIMUTHS}, got {self.azimuth!r}"
            )
        if not _is_real(self.fov_deg) or not 0 < self.fov_deg < 180:
            raise ValueError(f"CameraConfig: fov_deg must be in (0, 180), got {self.fov_deg!r}")
        if not _is_int(self.resolution) or self.resolution < 1:
            raise ValueError(
                f"CameraConfig: resolution must be an int >= 1, got {self.resolution!r}"
            )
        if self.frame not in _FRAMES:
            raise ValueError(f"CameraConfig: frame must be one of {_FRAMES}, got {self.frame!r}")


@dataclass(frozen=True)
class Cameras:
    """``poses (V, 3, 4)`` float32 camera-to-world ``[right, up, forward | centre]``,
    ``intrinsics (3, 3)`` float32 (shared by all views), square ``resolution`` in pixels."""

    poses: np.ndarray
    intrinsics: np.ndarray
    resolution: int

    def __post_init__(self):
        poses = np.asarray(self.poses, dtype=np.float32)
        if poses.ndim == 2 and poses.shape == (3, 4):
            poses = poses[None]
        if poses.ndim != 3 or poses.shape[1:] != (3, 4):
            raise ValueError(f"Cameras: poses must have shape (V, 3, 4), got {poses.shape}")
        k = np.asarray(self.intrinsics, dtype=np.float32)
        if k.shape != (3, 3):
            raise ValueError(f"Cameras: intrinsics must have shape (3, 3), got {k.shape}")
        if not (np.all(np.isfinite(poses)) and np.all(np.isfinite(k))):
            raise ValueError("Cameras: poses and intrinsics must be finite, got non-finite values")
        if k[0, 0] == 0 or k[1, 1] == 0:
            raise ValueError(
                f"Cameras: intrinsics must have non-zero focal lengths, got {k[0, 0]}, {k[1, 1]}"
            )
        res = self.resolution
        if isinstance(res, np.integer):
            res = int(res)
        if not _is_int(res) or res < 1:
            raise ValueError(f"Cameras: resolution must be an int >= 1, got {self.resolution!r}")
        object.__setattr__(self, "poses", poses)
        object.__setattr__(self, "intrinsics", k)
        object.__setattr__(self, "resolution", int(res))

    @property
    def n_views(self) -> int:
        return int(self.poses.shape[0])

    @property
    def centres(self) -> np.ndarray:
        """Camera centres ``(V, 3)``."""
        return self.poses[:, :, 3]

    def take(self, idx) -> Cameras:
        """The views ``idx`` (an int, a sequence of ints or a slice) as new ``Cameras``."""
        if _is_int(idx):
            if not -self.n_views <= idx < self.n_views:
                raise ValueError(
                    f"Cameras.take: idx must be in [-{self.n_views}, {self.n_views}), got {idx}"
                )
            idx = [idx]
        if not isinstance(idx, slice):
            arr = np.asarray(idx)
            if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
                raise ValueError(
                    f"Cameras.take: idx must be an int, a 1-D sequence of ints or a slice, "
                    f"got {idx!r}"
                )
            if arr.size and (arr.min() < -self.n_views or arr.max() >= self.n_views):
                raise ValueError(
                    f"Cameras.take: idx must be in [-{self.n_views}, {self.n_views}), got {idx!r}"
                )
            idx = arr.astype(np.int64)
        return Cameras(self.poses[idx], self.intrinsics, self.resolution)


def intrinsics_matrix(resolution: int, fov_deg: float) -> np.ndarray:
    """``K (3, 3)`` float32 with ``f = ½·res/tan(fov/2)``, principal point at the image centre and
    ``K[1, 1] = -f`` (rows grow downwards while the camera's up axis points up)."""
    if not _is_int(resolution) or resolution < 1:
        raise ValueError(f"intrinsics_matrix: resolution must be an int >= 1, got {resolution!r}")
    if not _is_real(fov_deg) or not 0 < fov_deg < 180:
        raise ValueError(f"intrinsics_matrix: fov_deg must be in (0, 180), got {fov_deg!r}")
    f = 0.5 * resolution / math.tan(math.radians(fov_deg) / 2)
    c = resolution / 2
    return np.array([[f, 0.0, c], [0.0, -f, c], [0.0, 0.0, 1.0]], dtype=np.float32)


def camera_pose(azimuth, elevation, radius: float = 5.0) -> np.ndarray:
    """Camera-to-world poses ``(V, 3, 4)`` float32 looking at the origin with up = +z.

    ``azimuth``/``elevation`` (radians) broadcast against each other; the centre is
    ``radius·(cos e cos a, cos e sin a, sin e)``.
    """
    az, el = np.broadcast_arrays(
        np.atleast_1d(np.asarray(azimuth, np.float64)),
        np.atleast_1d(np.asarray(elevation, np.float64)),
    )
    if az.ndim != 1:
        raise ValueError(f"camera_pose: azimuth/elevation must be scalars or 1-D, got {az.shape}")
    if not np.all(np.abs(el) < math.pi / 2):
        raise ValueError(f"camera_pose: elevation must be in (-pi/2, pi/2), got {el}")
    if not _is_real(radius) or not radius > 0:
        raise ValueError(f"camera_pose: radius must be > 0, got {radius!r}")
    centre = radius * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
    forward = -centre / np.linalg.norm(centre, axis=-1, keepdims=True)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    up = np.cross(right, forward)
    poses = np.stack([right, up, forward, centre], axis=-1)  # (V, 3, 4)
    return poses.astype(np.float32)


def sample_cameras(rng: np.random.Generator, config: CameraConfig) -> Cameras:
    """Draw ``config.n_views`` world-frame cameras looking at the origin.

    Always returns world-frame poses (the renderer needs them); ``config.frame`` is applied by
    ``SceneDataset`` after rendering, through :func:`canonicalize`.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"sample_cameras: rng must be a numpy.random.Generator, got {type(rng).__name__}"
        )
    if not isinstance(config, CameraConfig):
        raise TypeError(
            f"sample_cameras: config must be a CameraConfig, got {type(config).__name__}"
        )
    v = config.n_views
    lo, hi = config.elevation
    if config.azimuth == "random":
        az = rng.uniform(0.0, 2 * math.pi, size=v)
        el = rng.uniform(lo, hi, size=v)
    else:
        phase = rng.uniform(0.0, 2 * math.pi)
        az = phase + 2 * math.pi * np.arange(v) / v
        el = np.full(v, rng.uniform(lo, hi))
    poses = camera_pose(az, el, config.radius)
    return Cameras(poses, intrinsics_matrix(config.resolution, config.fov_deg), config.resolution)


def rays(cameras: Cameras) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel rays ``(origins (V, h, w, 3), directions (V, h, w, 3))`` float32.

    Pixel (row i, column j) has camera-frame direction ``K⁻¹ [j+0.5, i+0.5, 1]``
    (``[(j+0.5-w/2)/f, -(i+0.5-h/2)/f, 1]`` for :func:`intrinsics_matrix`), rotated by the pose and
    normalised (computed in float64, unit within 1e-7 after the cast).
    """
    if not isinstance(cameras, Cameras):
        raise TypeError(f"rays: cameras must be Cameras, got {type(cameras).__name__}")
    res = cameras.resolution
    k = cameras.intrinsics.astype(np.float64)
    pix = np.arange(res, dtype=np.float64) + 0.5
    x = (pix - k[0, 2]) / k[0, 0]  # per column
    y = (pix - k[1, 2]) / k[1, 1]  # per row
    d_cam = np.stack(np.broadcast_arrays(x[None, :], y[:, None], np.ones((1, 1))), -1)  # (h,w,3)
    rot = cameras.poses[:, :, :3].astype(np.float64)
    d = np.matmul(d_cam.reshape(1, -1, 3), rot.transpose(0, 2, 1)).reshape(-1, res, res, 3)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(cameras.poses[:, None, None, :, 3], d.shape)
    return np.ascontiguousarray(o, dtype=np.float32), d.astype(np.float32)


def canonicalize(cameras: Cameras, reference_pose) -> Cameras:
    """Express ``cameras`` in the frame of ``reference_pose`` (3, 4) (camera-to-world).

    A pose ``[R | c]`` becomes ``[R₀ᵀR | R₀ᵀ(c − c₀)]``; with ``reference_pose = cameras.poses[0]``
    view 0 becomes ``[I | 0]`` (the ``frame="first_input"`` convention). Rays of the result are
    the world rays mapped by the same transform (``rays(canonicalize(c, p))``).
    """
    if not isinstance(cameras, Cameras):
        raise TypeError(f"canonicalize: cameras must be Cameras, got {type(cameras).__name__}")
    ref = np.asarray(reference_pose, dtype=np.float64)
    if ref.shape != (3, 4):
        raise ValueError(f"canonicalize: reference_pose must have shape (3, 4), got {ref.shape}")
    r0, c0 = ref[:, :3], ref[:, 3]
    if not np.allclose(r0.T @ r0, np.eye(3), atol=1e-4):
        raise ValueError("canonicalize: reference_pose's rotation part must be orthonormal")
    p = cameras.poses.astype(np.float64)
    rot = np.einsum("ba,vbc->vac", r0, p[:, :, :3])
    centre = (p[:, :, 3] - c0) @ r0
    poses = np.concatenate([rot, centre[:, :, None]], axis=-1)
    return Cameras(poses.astype(np.float32), cameras.intrinsics, cameras.resolution)


def circle_path(
    n_frames: int,
    *,
    radius: float = 5.0,
    elevation: float = 0.5,
    resolution: int = 32,
    fov_deg: float = 50.0,
) -> Cameras:
    """``n_frames`` world-frame cameras evenly spaced in azimuth (from 0) at one elevation."""
    if not _is_int(n_frames) or n_frames < 1:
        raise ValueError(f"circle_path: n_frames must be an int >= 1, got {n_frames!r}")
    _check_elevation("circle_path", elevation, elevation, elevation)
    az = 2 * math.pi * np.arange(n_frames) / n_frames
    poses = camera_pose(az, np.full(n_frames, float(elevation)), radius)
    return Cameras(poses, intrinsics_matrix(resolution, fov_deg), resolution)


def project(cameras: Cameras, points) -> tuple[np.ndarray, np.ndarray]:
    """Project world ``points (P, 3)`` into every view: ``K·[R | c]⁻¹``.

    Returns ``uv (V, P, 2)`` continuous pixel coordinates (column, row; pixel (i, j) has its centre
    at ``(j+0.5, i+0.5)``) and ``depth (V, P)`` along the forward axis.
    """
    if not isinstance(cameras, Cameras):
        raise TypeError(f"project: cameras must be Cameras, got {type(cameras).__name__}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"project: points must have shape (P, 3), got {pts.shape}")
    p = cameras.poses.astype(np.float64)
    cam = np.einsum("vba,vpb->vpa", p[:, :, :3], pts[None] - p[:, None, :, 3])  # Rᵀ(x − c)
    hom = cam @ cameras.intrinsics.astype(np.float64).T
    depth = hom[..., 2]
    return hom[..., :2] / depth[..., None], depth
