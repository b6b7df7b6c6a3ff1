"""Image and segmentation metrics of novel views, and the baselines every model is compared with.

Images are float arrays in [0, 1] shaped ``(..., h, w, C)``: every leading axis is a view (a batch
of scenes of several views is ``(B, L, h, w, C)``). Per-view figures are averaged over views.

* :func:`psnr` — peak signal-to-noise ratio per view, averaged (float64 arithmetic).
* :func:`ssim` — structural similarity (``skimage.metrics.structural_similarity`` with
  ``channel_axis=-1, data_range=1, win_size=7``) per view, averaged.
* :func:`sharpness_ratio` — mean squared discrete Laplacian of the images over that of a
  reference: 1 is as sharp as the ground truth, a blurry regression decoder is well below 1.
* :func:`fg_ari` — adjusted Rand index over foreground pixels (ground-truth instance id ≥ 1),
  the object-discovery score of slot models (Greff et al. 2019; Locatello et al., arXiv
  2006.15055; OSRT, arXiv 2206.06922).
* :func:`miou` — mean intersection over union of the ground-truth objects with predicted segments
  matched one-to-one by the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``).
* Baselines (DORSal, arXiv 2306.08068, is compared with them beside OSRT-lite):
  :func:`mean_image_baseline` (the dataset-mean target image), :func:`nearest_view_baseline`
  (the input view whose camera centre is nearest to the target camera's) and
  :func:`empty_scene_baseline` (floor and sky rendered exactly from the target camera: an oracle
  background).

Instance ids follow the package convention: −1 sky, 0 floor, ``j + 1`` object ``j``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from diff_protocol.errors import arg_error

__all__ = [
    "adjusted_rand_index",
    "empty_scene_baseline",
    "fg_ari",
    "laplacian_energy",
    "mean_image_baseline",
    "miou",
    "nearest_view_baseline",
    "psnr",
    "sharpness_ratio",
    "ssim",
]


# --------------------------------------------------------------------------------------------------
# input checks


def _images(func: str, name: str, x: Any, *, min_size: int = 1) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise arg_error(func, name, "a numeric array shaped (..., h, w, C)", x) from None
    if a.ndim < 3:
        raise arg_error(
            func, name, "an array shaped (..., h, w, C) (ndim >= 3)", f"shape {a.shape}"
        )
    if a.size == 0:
        raise arg_error(func, name, "a non-empty array", f"shape {a.shape}")
    if a.shape[-3] < min_size or a.shape[-2] < min_size:
        raise arg_error(
            func, name, f"images of at least {min_size}x{min_size} pixels", f"shape {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        raise arg_error(func, name, "finite", f"{int(np.sum(~np.isfinite(a)))} non-finite values")
    return a


def _pair(func: str, a: Any, b: Any, names=("a", "b"), min_size: int = 1):
    x = _images(func, names[0], a, min_size=min_size)
    y = _images(func, names[1], b, min_size=min_size)
    if x.shape != y.shape:
        raise arg_error(func, names[1], f"shaped like {names[0]} {x.shape}", f"shape {y.shape}")
    return x, y


def _positive(func: str, name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise arg_error(func, name, "a positive number", value) from None
    if not np.isfinite(v) or v <= 0:
        raise arg_error(func, name, "a positive number", repr(value))
    return v


# --------------------------------------------------------------------------------------------------
# image metrics


def psnr(a: Any, b: Any, data_range: float = 1.0, *, per_view: bool = False) -> Any:
    """Peak signal-to-noise ratio ``10 log10(data_range² / MSE)`` in dB of each view, averaged.

    Args:
      a, b: images ``(..., h, w, C)`` of the same shape; every leading axis is a view.
      data_range: the value range of the images (1 for images in [0, 1]).
      per_view: return the ``(...)`` array of per-view values instead of their mean.

    Identical views give ``inf`` (and so does their mean). Arithmetic is float64, so
    ``psnr(x, x + 0.1)`` is 20 dB to ~1e-14.

    >>> x = np.zeros((2, 8, 8, 3))
    >>> round(psnr(x, x + 0.1), 9)
    20.0
    """
    x, y = _pair("psnr", a, b)
    r = _positive("psnr", "data_range", data_range)
    mse = np.mean((x - y) ** 2, axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(r * r / mse)
    return values if per_view else float(np.mean(values))


def ssim(a: Any, b: Any, data_range: float = 1.0, *, win_size: int = 7, per_view: bool = False):
    """Structural similarity of each view (scikit-image, ``channel_axis=-1``), averaged.

    Images ``(..., h, w, C)`` with ``h, w >= win_size``; Gaussian weighting off (scikit-image's
    default uniform 7×7 window), ``data_range`` 1 for images in [0, 1]. ``ssim(x, x) = 1``.
    """
    from skimage.metrics import structural_similarity

    if (
        isinstance(win_size, bool)
        or not isinstance(win_size, int)
        or win_size < 3
        or win_size % 2 == 0
    ):
        raise arg_error("ssim", "win_size", "an odd int >= 3", repr(win_size))
    x, y = _pair("ssim", a, b, min_size=win_size)
    r = _positive("ssim", "data_range", data_range)
    lead = x.shape[:-3]
    xv = x.reshape(-1, *x.shape[-3:])
    yv = y.reshape(-1, *y.shape[-3:])
    values = np.array(
        [
            structural_similarity(p, q, channel_axis=-1, data_range=r, win_size=win_size)
            for p, q in zip(xv, yv)
        ],
        dtype=np.float64,
    ).reshape(lead)
    return values if per_view else float(np.mean(values))


def laplacian_energy(images: Any) -> float:
    """Mean squared 5-point discrete Laplacian ``4x[i,j] − x[i±1,j] − x[i,j±1]`` over the interior
    pixels (no padding) of every view and channel of ``images (..., h, w, C)``."""
    x = _images("laplacian_energy", "images", images, min_size=3)
    return _lap_energy(x)


def _lap_energy(x: np.ndarray) -> float:
    c = x[..., 1:-1, 1:-1, :]
    lap = (
        4.0 * c
        - x[..., :-2, 1:-1, :]
        - x[..., 2:, 1:-1, :]
        - x[..., 1:-1, :-2, :]
        - x[..., 1:-1, 2:, :]
    )
    return float(np.mean(lap * lap))


def sharpness_ratio(images: Any, reference: Any) -> float:
    """``laplacian_energy(images) / laplacian_energy(reference)``.

    1 means as much high-frequency energy as the reference (the ground-truth views); a blurry
    posterior-mean decoder is well below 1, a noisy sample can exceed it. ``images`` and
    ``reference`` need the same image size but may hold different numbers of views. A reference
    without any Laplacian energy (a constant image) is a ``ValueError``.
    """
    x = _images("sharpness_ratio", "images", images, min_size=3)
    ref = _images("sharpness_ratio", "reference", reference, min_size=3)
    if x.shape[-3:] != ref.shape[-3:]:
        raise arg_error(
            "sharpness_ratio",
            "reference",
            f"views of the images' size {x.shape[-3:]}",
            f"shape {ref.shape}",
        )
    e_ref = _lap_energy(ref)
    if e_ref <= 0:
        raise arg_error(
            "sharpness_ratio", "reference", "an image with some Laplacian energy", "constant views"
        )
    return _lap_energy(x) / e_ref


# --------------------------------------------------------------------------------------------------
# segmentation metrics


def _labels(func: str, name: str, x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == bool or not (
        np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    ):
        raise arg_error(func, name, "an integer label array", x, TypeError)
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise arg_error(func, name, "integer-valued labels", "non-integer values")
        a = a.astype(np.int64)
    return a.astype(np.int64, copy=False)


def _label_pair(func: str, pred: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _labels(func, "pred_labels", pred)
    t = _labels(func, "true_instance", true)
    if p.shape != t.shape:
        raise arg_error(func, "pred_labels", f"shaped like true_instance {t.shape}", f"{p.shape}")
    if p.ndim == 0:
        raise arg_error(func, "pred_labels", "an array of pixel labels", "a scalar")
    return p, t


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.int64)
    np.add.at(table, (ai.ravel(), bi.ravel()), 1)
    return table


def adjusted_rand_index(labels_a: Any, labels_b: Any) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) of two labelings of the same items.

    Contingency-table form: ``(Σ C(n_ij, 2) − E) / (½(Σ C(a_i, 2) + Σ C(b_j, 2)) − E)`` with
    ``E = Σ C(a_i, 2) Σ C(b_j, 2) / C(n, 2)``; 1 for identical partitions under any relabelling.
    As in scikit-learn, the degenerate cases (both labelings one cluster, or both all singletons,
    or fewer than two items) give 1. No items at all gives ``nan``.
    """
    a = _labels("adjusted_rand_index", "labels_a", labels_a).ravel()
    b = _labels("adjusted_rand_index", "labels_b", labels_b).ravel()
    if a.shape != b.shape:
        raise arg_error("adjusted_rand_index", "labels_b", f"{a.size} labels", f"{b.size}")
    n = a.size
    if n == 0:
        return float("nan")
    table = _contingency(a, b)
    sum_ij = float(np.sum(table * (table - 1)) // 2)
    rows = table.sum(axis=1)
    cols = table.sum(axis=0)
    sum_a = float(np.sum(rows * (rows - 1)) // 2)
    sum_b = float(np.sum(cols * (cols - 1)) // 2)
    pairs = n * (n - 1) / 2.0
    if pairs == 0:
        return 1.0
    expected = sum_a * sum_b / pairs
    max_index = 0.5 * (sum_a + sum_b)
    if max_index == expected:  # both one cluster, or both all singletons
        return 1.0
    return (sum_ij - expected) / (max_index - expected)


def fg_ari(pred_labels: Any, true_instance: Any, *, per_scene: bool = False) -> float:
    """Foreground adjusted Rand index: ARI of ``pred_labels`` against ``true_instance`` on the
    pixels whose ground-truth instance id is ≥ 1 (objects; sky −1 and floor 0 are ignored).

    Args:
      pred_labels: integer labels (any values, e.g. the argmax slot), same shape as the truth.
      true_instance: ground-truth instance ids, e.g. ``(B, L, h, w)``.
      per_scene: compute the ARI of each item along the leading axis (a scene with all its views)
        and return the mean over the scenes that have foreground pixels; otherwise one ARI over
        every pixel given.

    Returns ``nan`` when no pixel is foreground (no scene has any, with ``per_scene``).
    """
    p, t = _label_pair("fg_ari", pred_labels, true_instance)
    if per_scene:
        if p.ndim < 2:
            raise arg_error("fg_ari", "pred_labels", "(B, ...) with per_scene=True", f"{p.shape}")
        values = [_fg_ari_one(p[i], t[i]) for i in range(p.shape[0])]
        kept = [v for v in values if not np.isnan(v)]
        return float(np.mean(kept)) if kept else float("nan")
    return _fg_ari_one(p, t)


def _fg_ari_one(p: np.ndarray, t: np.ndarray) -> float:
    fg = t >= 1
    if not np.any(fg):
        return float("nan")
    return adjusted_rand_index(p[fg], t[fg])


def miou(
    pred_labels: Any,
    true_instance: Any,
    *,
    include_background: bool = False,
    per_scene: bool = False,
) -> float:
    """Mean IoU of the ground-truth objects with predicted segments under the best one-to-one
    matching (Hungarian algorithm on the IoU matrix, ``scipy.optimize.linear_sum_assignment``).

    Every ground-truth object (instance id ≥ 1) present counts once; an object left without a
    predicted segment (more objects than segments) scores 0. IoUs are over all pixels given, so a
    segment that spills onto the background is penalised. ``include_background=True`` adds the
    background (ids ≤ 0 merged) as one more ground-truth segment. ``per_scene``: mean over the
    leading axis of per-scene values (scenes without objects skipped). ``nan`` without objects.
    """
    p, t = _label_pair("miou", pred_labels, true_instance)
    if per_scene:
        if p.ndim < 2:
            raise arg_error("miou", "pred_labels", "(B, ...) with per_scene=True", f"{p.shape}")
        values = [_miou_one(p[i], t[i], include_background) for i in range(p.shape[0])]
        kept = [v for v in values if not np.isnan(v)]
        return float(np.mean(kept)) if kept else float("nan")
    return _miou_one(p, t, include_background)


def _miou_one(p: np.ndarray, t: np.ndarray, include_background: bool) -> float:
    from scipy.optimize import linear_sum_assignment

    t = t.ravel()
    p = p.ravel()
    if include_background:
        t = np.where(t <= 0, 0, t)
        true_ids = np.unique(t)
    else:
        true_ids = np.unique(t[t >= 1])
    if true_ids.size == 0:
        return float("nan")
    pred_ids = np.unique(p)
    tm = t[None, :] == true_ids[:, None]  # (T, N)
    pm = p[None, :] == pred_ids[:, None]  # (P, N)
    inter = tm.astype(np.int64) @ pm.T.astype(np.int64)
    union = tm.sum(1)[:, None] + pm.sum(1)[None, :] - inter
    iou = inter / np.maximum(union, 1)
    rows, cols = linear_sum_assignment(-iou)
    return float(np.sum(iou[rows, cols]) / true_ids.size)


# --------------------------------------------------------------------------------------------------
# baselines


def mean_image_baseline(train_images: Any, shape: Sequence[int]) -> np.ndarray:
    """The dataset-mean image (mean over every scene and view of ``train_images (..., h, w, C)``)
    broadcast to ``shape`` (e.g. the targets' ``(B, L, h, w, C)``), float32."""
    x = _images("mean_image_baseline", "train_images", train_images)
    shape = tuple(int(s) for s in shape)
    if len(shape) < 3 or shape[-3:] != x.shape[-3:]:
        raise arg_error(
            "mean_image_baseline", "shape", f"(..., {', '.join(map(str, x.shape[-3:]))})", shape
        )
    mean = x.reshape(-1, *x.shape[-3:]).mean(axis=0).astype(np.float32)
    return np.broadcast_to(mean, shape).copy()


def nearest_view_baseline(input_images: Any, input_poses: Any, target_poses: Any) -> np.ndarray:
    """For each target camera, the input view whose camera centre is nearest (Euclidean).

    Args:
      input_images: ``(B, V_in, h, w, C)``.
      input_poses: ``(B, V_in, 3, 4)`` camera-to-world poses (last column = camera centre).
      target_poses: ``(B, L, 3, 4)``.

    Returns ``(B, L, h, w, C)``: the chosen input views (ties go to the lower input index).
    """
    func = "nearest_view_baseline"
    x = np.asarray(input_images)
    pi = np.asarray(input_poses, dtype=np.float64)
    pt = np.asarray(target_poses, dtype=np.float64)
    if x.ndim != 5:
        raise arg_error(func, "input_images", "(B, V_in, h, w, C)", f"shape {x.shape}")
    if pi.shape != (*x.shape[:2], 3, 4):
        raise arg_error(func, "input_poses", f"shape {(*x.shape[:2], 3, 4)}", f"shape {pi.shape}")
    if pt.ndim != 4 or pt.shape[0] != x.shape[0] or pt.shape[2:] != (3, 4):
        raise arg_error(func, "target_poses", f"shape ({x.shape[0]}, L, 3, 4)", f"{pt.shape}")
    d = np.linalg.norm(pt[:, :, None, :, 3] - pi[:, None, :, :, 3], axis=-1)  # (B, L, V_in)
    idx = np.argmin(d, axis=-1)
    return np.take_along_axis(x, idx[:, :, None, None, None], axis=1)


def empty_scene_baseline(
    batch: Mapping[str, Any], views: Sequence[int] | None = None, *, ambient: float = 0.35
) -> np.ndarray:
    """Floor and sky rendered exactly from each target camera, every object dropped: the oracle
    background (``diff_dorsal.scenes.render(..., drop=all objects)``).

    Args:
      batch: a stacked ``SceneDataset`` batch (``images``, ``poses``, ``intrinsics``, the padded
        scene keys ``kinds, centres, sizes, yaws, colours, valid`` and, for first-input frames,
        ``frame_pose``).
      views: the target view indices (default: every view).
      ambient: the renderer's ambient term (the dataset's ``SceneConfig.ambient``).

    Returns ``(B, L, h, w, 3)`` float32 in [0, 1].
    """
    from diff_dorsal.scenes import cameras_from_item, render, scene_from_item

    func = "empty_scene_baseline"
    need = (
        "images",
        "poses",
        "intrinsics",
        "kinds",
        "centres",
        "sizes",
        "yaws",
        "colours",
        "valid",
    )
    missing = [k for k in need if k not in batch]
    if missing:
        raise arg_error(func, "batch", f"a stacked SceneDataset batch with keys {need}", missing)
    n = int(np.shape(batch["images"])[0])
    out = []
    for i in range(n):
        item = {k: np.asarray(batch[k])[i] for k in (*need, "frame_pose") if k in batch}
        scene = scene_from_item(item)
        cams = cameras_from_item(item)
        if views is not None:
            cams = cams.take(np.asarray(list(views), dtype=np.int64))
        r = render(scene, cams, drop=tuple(range(scene.n_objects)), ambient=ambient)
        out.append(np.asarray(r.rgb, np.float32))
    return np.stack(out)
