"""Adaptation-without-fine-tuning measures of Semantica (arXiv 2405.14857), host numpy.

Distances are RMSEs in [−1, 1] pixel units. Generated samples are ``(n, k, H, W, C)``: ``k``
variations of each of ``n`` conditioning images.

* :func:`class_agreement` — share of samples whose predicted class is the conditioning image's
  (chance 0.10 on digits).
* :func:`subset_tv` — total variation between the predicted-class histogram and the uniform
  distribution on the conditioning subset (0 = the generated set covers the subset evenly).
* :func:`copy_distance` — RMSE(sample, its conditioning image) over the mean RMSE of random
  same-group real pairs (:func:`reference_pair_rmse`); below 1 = closer to the condition than a
  typical other member of its group.
* :func:`copy_rate` — share of samples closer to their condition than ``threshold ×`` the
  median nearest-neighbour RMSE among real images of that group (our default 0.5).
* :func:`diversity` — mean pairwise RMSE among one condition's samples over the same-group pair
  RMSE.
* :func:`memorisation_rate` — share of samples whose nearest training image is closer than
  ``0.5 ×`` the median training-set nearest-neighbour RMSE.
* :func:`set_fd` — Fréchet distance (diff-core) between classifier features of the generated set
  and of the real conditioning set: **FD-digits** with diff-pixel's digits classifier, never FID.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from diff_core.metrics import frechet_distance
from diff_semantica.data import GroupedImages

__all__ = [
    "class_agreement",
    "copy_distance",
    "copy_rate",
    "diversity",
    "group_nn_rmse",
    "memorisation_rate",
    "nearest_rmse",
    "per_class_agreement",
    "reference_pair_rmse",
    "set_fd",
    "subset_tv",
]


def _samples(func: str, samples: Any) -> np.ndarray:
    s = np.asarray(samples, np.float64)
    if s.ndim != 5:
        raise ValueError(f"{func}: samples must be (n, k, H, W, C), got shape {s.shape}")
    return s


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1)


def _predict(classifier: Any, s: np.ndarray) -> np.ndarray:
    n, k = s.shape[:2]
    return np.asarray(
        classifier.predict(s.reshape(n * k, *s.shape[2:]).astype(np.float32))
    ).reshape(n, k)


def class_agreement(samples: Any, cond_labels: Any, classifier: Any) -> float:
    """Share of samples classified as their conditioning image's label."""
    s = _samples("class_agreement", samples)
    lab = np.asarray(cond_labels)
    if lab.shape != (s.shape[0],):
        raise ValueError(
            f"class_agreement: cond_labels must have shape ({s.shape[0]},), got {lab.shape}"
        )
    return float(np.mean(_predict(classifier, s) == lab[:, None]))


def per_class_agreement(samples: Any, cond_labels: Any, classifier: Any) -> dict[int, float]:
    """``{class: agreement}`` over the conditioning classes."""
    s = _samples("per_class_agreement", samples)
    lab = np.asarray(cond_labels)
    hit = _predict(classifier, s) == lab[:, None]
    return {int(c): float(hit[lab == c].mean()) for c in np.unique(lab)}


def subset_tv(samples: Any, classifier: Any, subset: Sequence[int]) -> float:
    """``½ Σ_c |p̂_c − u_c|`` with ``u`` uniform on ``subset`` (classes 0..max)."""
    s = _samples("subset_tv", samples)
    subset = sorted({int(c) for c in subset})
    if not subset:
        raise ValueError("subset_tv: subset must hold at least one class, got none")
    pred = _predict(classifier, s).ravel()
    m = max(int(pred.max()), subset[-1]) + 1
    p = np.bincount(pred, minlength=m) / pred.size
    u = np.zeros(m)
    u[subset] = 1.0 / len(subset)
    return float(0.5 * np.abs(p - u).sum())


def _rmse_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean((_flat(a) - _flat(b)) ** 2, axis=1))


def reference_pair_rmse(data: GroupedImages, n_pairs: int = 20_000, seed: int = 0) -> float:
    """Mean RMSE of random ordered same-group pairs ``a ≠ b`` (0.56 on the digits)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(data), n_pairs)
    members = {g: np.flatnonzero(data.groups == g) for g in np.unique(data.groups)}
    b = np.array([rng.choice(members[data.groups[i]][members[data.groups[i]] != i]) for i in a])
    return float(
        _rmse_rows(data.images[a].astype(np.float64), data.images[b].astype(np.float64)).mean()
    )


def nearest_rmse(
    x: np.ndarray, refs: np.ndarray, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """RMSE to the nearest row of ``refs`` and its index, for each row of ``x``."""
    xf, rf = _flat(np.asarray(x, np.float64)), _flat(np.asarray(refs, np.float64))
    d2 = (xf**2).sum(1)[:, None] - 2 * xf @ rf.T + (rf**2).sum(1)[None, :]
    d2 = np.maximum(d2, 0.0) / xf.shape[1]
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    idx = np.argmin(d2, axis=1)
    return np.sqrt(d2[np.arange(len(xf)), idx]), idx


def group_nn_rmse(data: GroupedImages) -> dict[int, float]:
    """Median nearest-neighbour RMSE among the real images of each group."""
    out = {}
    for g in np.unique(data.groups):
        x = data.images[data.groups == g]
        out[int(g)] = float(np.median(nearest_rmse(x, x, exclude_self=True)[0]))
    return out


def copy_distance(samples: Any, cond_images: Any, reference: float) -> float:
    """Mean RMSE(sample, its conditioning image) / ``reference`` (:func:`reference_pair_rmse`)."""
    s = _samples("copy_distance", samples)
    c = np.asarray(cond_images, np.float64)
    if reference <= 0:
        raise ValueError(f"copy_distance: reference must be > 0, got {reference}")
    d = np.sqrt(np.mean((s - c[:, None]) ** 2, axis=(2, 3, 4)))
    return float(d.mean() / reference)


def copy_rate(
    samples: Any, cond_images: Any, cond_groups: Any, data: GroupedImages, threshold: float = 0.5
) -> float:
    """Share of samples with RMSE to their condition < ``threshold × median NN RMSE`` of the
    condition's group in ``data`` (which must hold real images of every conditioning group: for
    groups a model never saw, pass a set that has them)."""
    s = _samples("copy_rate", samples)
    c = np.asarray(cond_images, np.float64)
    nn = group_nn_rmse(data)
    groups = [int(g) for g in np.asarray(cond_groups)]
    missing = sorted(set(groups) - set(nn))
    if missing:
        raise ValueError(
            f"copy_rate: data must hold real images of every conditioning group, got none of "
            f"groups {missing} (data has {sorted(nn)})"
        )
    lim = np.array([nn[g] for g in groups]) * threshold
    d = np.sqrt(np.mean((s - c[:, None]) ** 2, axis=(2, 3, 4)))
    return float(np.mean(d < lim[:, None]))


def diversity(samples: Any, reference: float) -> float:
    """Mean pairwise RMSE among the ``k`` samples of each condition / ``reference``."""
    s = _samples("diversity", samples)
    k = s.shape[1]
    if k < 2:
        raise ValueError(f"diversity: needs k >= 2 samples per condition, got {k}")
    f = s.reshape(s.shape[0], k, -1)
    i, j = np.triu_indices(k, 1)
    d = np.sqrt(np.mean((f[:, i] - f[:, j]) ** 2, axis=-1))
    return float(d.mean() / reference)


def memorisation_rate(samples: Any, train_images: Any, factor: float = 0.5) -> float:
    """Share of samples closer to their nearest training image than ``factor ×`` the median
    training-set nearest-neighbour RMSE."""
    s = _samples("memorisation_rate", samples)
    t = np.asarray(train_images, np.float64)
    ref = float(np.median(nearest_rmse(t, t, exclude_self=True)[0]))
    d, _ = nearest_rmse(s.reshape(-1, *s.shape[2:]), t)
    return float(np.mean(d < factor * ref))


def set_fd(
    samples: Any, reference_images: Any, features: Callable[[np.ndarray], np.ndarray]
) -> float:
    """Fréchet distance between ``features`` of the generated set and of the reference images
    (FD-digits with ``DigitsClassifier.features``)."""
    s = _samples("set_fd", samples)
    flat = s.reshape(-1, *s.shape[2:]).astype(np.float32)
    return float(
        frechet_distance(
            np.asarray(features(flat)),
            np.asarray(features(np.asarray(reference_images, np.float32))),
        )
    )
