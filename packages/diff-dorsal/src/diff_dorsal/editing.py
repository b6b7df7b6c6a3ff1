"""Object-level editing with DORSal: slot removal and transfer, slot-to-object matching, edit maps,
edit locality and segmentation from edits (Jabri et al., arXiv 2306.08068).

An edit changes only the conditioning: the same noise key is re-used, so the original and the
edited samples differ through the slots alone (:func:`~diff_dorsal.sampling.sample_views`).
Locality is measured against the exact ground-truth visible mask of the removed object (the
procedural scenes give it); the control is the same measurement after removing a random other
slot, and ``locality_ratio = inside_matched / inside_random``. The segmentation threshold τ = 0.05
is our default (the paper's is not confirmed).

Masks: ``slot_mask`` True = the slot is kept. Arrays here are numpy (host) unless noted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "edit_iou",
    "edit_locality",
    "edit_maps",
    "locality_ratio",
    "match_slots",
    "random_other_slots",
    "remove_slots",
    "segmentation_from_edits",
    "transfer_slots",
]


def _mask2(func: str, slot_mask: Any) -> np.ndarray:
    m = np.asarray(slot_mask)
    if m.ndim != 2 or m.dtype != np.bool_:
        raise ValueError(
            f"{func}: slot_mask must be a (B, S) bool array, got {m.dtype}{tuple(m.shape)}"
        )
    return m


def remove_slots(slot_mask: Any, ids: Any) -> np.ndarray:
    """``slot_mask`` with the slots ``ids`` masked (set False).

    ``ids``: an int or a 1-D sequence of ints (removed in every example), or a ``(B, k)`` int array
    (row b removes ``ids[b]`` from example b; entries −1 are ignored).
    """
    func = "remove_slots"
    m = _mask2(func, slot_mask).copy()
    b, s = m.shape
    a = np.asarray(ids)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{func}: ids must be integers, got dtype {a.dtype}")
    lo = 0
    if a.ndim <= 1:
        a = np.broadcast_to(a.reshape(1, -1), (b, a.size))
    elif a.ndim != 2 or a.shape[0] != b:
        raise ValueError(
            f"{func}: ids must be an int, a 1-D list or of shape ({b}, k), got {a.shape}"
        )
    else:
        lo = -1  # per-example rows may hold -1 (none)
    if ((a < lo) | (a >= s)).any():
        raise ValueError(f"{func}: ids must lie in [0, S = {s}), got {np.unique(a).tolist()}")
    rows, cols = np.nonzero(a >= 0)
    m[rows, a[rows, cols]] = False
    return m


def transfer_slots(
    slots_a: Any, mask_a: Any, slots_b: Any, mask_b: Any, ids: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Append scene B's slots ``ids`` to scene A's: ``(slots (B, 2S, D), mask (B, 2S))``.

    The capacity is padded to ``S_max = 2·S`` with masked zero slots: A's slots keep indices
    ``0 .. S−1`` and B's slot ``ids[k]`` becomes slot ``S + k`` (kept where ``mask_b`` keeps it).
    ``ids``: int, 1-D list (every example) or ``(B, k)`` array (per example; −1 = none). A
    transferred slot renders at its source-scene position (no pose control).
    """
    func = "transfer_slots"
    sa, sb = np.asarray(slots_a, np.float32), np.asarray(slots_b, np.float32)
    ma, mb = _mask2(func, mask_a), _mask2(func, mask_b)
    if sa.ndim != 3 or sa.shape != sb.shape:
        raise ValueError(
            f"{func}: slots_a and slots_b must share a shape (B, S, D), got {sa.shape} and "
            f"{sb.shape}"
        )
    if ma.shape != sa.shape[:2] or mb.shape != sb.shape[:2]:
        raise ValueError(
            f"{func}: mask_a and mask_b must have shape {sa.shape[:2]}, got {ma.shape} and "
            f"{mb.shape}"
        )
    b, s, d = sa.shape
    a = np.asarray(ids)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{func}: ids must be integers, got dtype {a.dtype}")
    a = np.broadcast_to(a.reshape(1, -1), (b, a.size)) if a.ndim <= 1 else a
    if a.ndim != 2 or a.shape[0] != b or a.shape[1] > s or ((a < -1) | (a >= s)).any():
        raise ValueError(
            f"{func}: ids must be at most S = {s} slot indices in [0, {s}) per example (an int, a "
            f"list or a ({b}, k) array), got {np.asarray(ids).tolist()!r:.80}"
        )
    slots = np.zeros((b, 2 * s, d), np.float32)
    mask = np.zeros((b, 2 * s), bool)
    slots[:, :s], mask[:, :s] = sa, ma
    for k in range(a.shape[1]):
        ok = a[:, k] >= 0
        src = np.where(ok, a[:, k], 0)
        rows = np.arange(b)
        slots[:, s + k] = np.where(ok[:, None], sb[rows, src], 0.0)
        mask[:, s + k] = ok & mb[rows, src]
    return slots, mask


def match_slots(mixer_weights: Any, instance: Any, object_id: Any) -> np.ndarray:
    """The slot of object ``object_id`` (0-based; instance id ``object_id + 1``) per example: the
    slot whose mixer weight summed over the object's ground-truth pixels (all views) is largest.

    ``mixer_weights (B, ..., S)`` (OSRT-lite's slot-mixer weights at the target pixels),
    ``instance (B, ...)`` int, ``object_id`` int or ``(B,)``. Returns ``(B,)`` int (−1 where the
    object covers no pixel).
    """
    func = "match_slots"
    w = np.asarray(mixer_weights, np.float64)
    inst = np.asarray(instance)
    if w.ndim < 2 or w.shape[:-1] != inst.shape:
        raise ValueError(
            f"{func}: mixer_weights must have shape instance.shape + (S,) = "
            f"{inst.shape} + (S,), got {w.shape}"
        )
    b = inst.shape[0]
    j = np.broadcast_to(np.asarray(object_id), (b,))
    if j.dtype.kind not in "iu":
        raise ValueError(f"{func}: object_id must be an int or (B,) ints, got dtype {j.dtype}")
    sel = inst.reshape(b, -1) == (j[:, None] + 1)
    score = np.einsum("bn,bns->bs", sel.astype(np.float64), w.reshape(b, -1, w.shape[-1]))
    return np.where(sel.any(axis=1), np.argmax(score, axis=1), -1)


def edit_maps(original: Any, edited: Any) -> np.ndarray:
    """Δ ``(B, L, h, w)``: the per-pixel squared change summed over channels."""
    a, e = np.asarray(original, np.float64), np.asarray(edited, np.float64)
    if a.shape != e.shape or a.ndim < 2:
        raise ValueError(
            f"edit_maps: original and edited must share a shape (..., C), got {a.shape} and "
            f"{e.shape}"
        )
    return np.sum((e - a) ** 2, axis=-1)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Square (Chebyshev) dilation by ``r`` pixels over the last two axes."""
    if r <= 0:
        return mask
    out = mask.copy()
    h, w = mask.shape[-2:]
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            src = mask[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            out[..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] |= src
    return out


def _check_delta_mask(func: str, delta: Any, object_mask: Any) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(delta, np.float64)
    m = np.asarray(object_mask).astype(bool)
    if d.shape != m.shape or d.ndim < 3:
        raise ValueError(
            f"{func}: delta and object_mask must share a shape (B, ..., h, w), got {d.shape} and "
            f"{m.shape}"
        )
    return d, m


def edit_locality(delta: Any, object_mask: Any, dilate: int = 1) -> np.ndarray:
    """Fraction of Σ Δ inside the object's visible mask dilated by ``dilate`` pixels, per example
    ``(B,)``; NaN where nothing changed (Σ Δ = 0)."""
    func = "edit_locality"
    if isinstance(dilate, bool) or not isinstance(dilate, (int, np.integer)) or dilate < 0:
        raise ValueError(f"{func}: dilate must be an int >= 0, got {dilate!r}")
    d, m = _check_delta_mask(func, delta, object_mask)
    m = _dilate(m, int(dilate))
    axes = tuple(range(1, d.ndim))
    total = d.sum(axis=axes)
    inside = np.where(m, d, 0.0).sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def edit_iou(delta: Any, object_mask: Any, tau: float = 0.05) -> np.ndarray:
    """IoU of ``Δ > τ`` with the object's mask per example ``(B,)`` (1 where both are empty)."""
    func = "edit_iou"
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau >= 0:
        raise ValueError(f"{func}: tau must be a number >= 0, got {tau!r}")
    d, m = _check_delta_mask(func, delta, object_mask)
    changed = d > tau
    axes = tuple(range(1, d.ndim))
    inter = (changed & m).sum(axis=axes)
    union = (changed | m).sum(axis=axes)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def locality_ratio(inside_matched: Any, inside_random: Any) -> float:
    """``mean(inside_matched) / mean(inside_random)`` over the finite entries."""
    a, r = np.asarray(inside_matched, np.float64), np.asarray(inside_random, np.float64)
    a, r = a[np.isfinite(a)], r[np.isfinite(r)]
    if a.size == 0 or r.size == 0 or r.mean() == 0:
        return float("nan")
    return float(a.mean() / r.mean())


def random_other_slots(
    slot_mask: Any, matched: Any, rng: np.random.Generator | int = 0
) -> np.ndarray:
    """For the control of :func:`locality_ratio`: per example a uniformly drawn kept slot other than
    ``matched[b]`` (``(B,)`` int; −1 where there is none)."""
    m = _mask2("random_other_slots", slot_mask)
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    matched = np.broadcast_to(np.asarray(matched), (m.shape[0],))
    out = np.full(m.shape[0], -1, np.int64)
    for b in range(m.shape[0]):
        cand = [s for s in np.flatnonzero(m[b]) if s != matched[b]]
        if cand:
            out[b] = int(rng.choice(cand))
    return out


def segmentation_from_edits(
    denoiser: Any,
    slots: Any,
    slot_mask: Any,
    origins: Any,
    directions: Any,
    noise_key: Any,
    tau: float = 0.05,
    **sample_kw: Any,
) -> np.ndarray:
    """Labels ``(B, L, h, w)``: remove each kept slot in turn with the same noise, give each pixel
    to the slot whose removal changed it most (Δ of :func:`edit_maps`), −1 (background) where the
    largest change is <= τ. ``sample_kw`` go to :func:`~diff_dorsal.sampling.sample_views`.
    """
    from diff_dorsal.sampling import sample_views

    func = "segmentation_from_edits"
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau >= 0:
        raise ValueError(f"{func}: tau must be a number >= 0, got {tau!r}")
    m = _mask2(func, slot_mask)
    base = np.asarray(sample_views(denoiser, slots, m, origins, directions, noise_key, **sample_kw))
    best = np.full(base.shape[:-1], -np.inf)
    label = np.full(base.shape[:-1], -1, np.int64)
    for s in range(m.shape[1]):
        keep = m[:, s]
        if not keep.any():
            continue
        edited = sample_views(
            denoiser, slots, remove_slots(m, s), origins, directions, noise_key, **sample_kw
        )
        d = edit_maps(base, np.asarray(edited))
        d = np.where(keep.reshape((-1,) + (1,) * (d.ndim - 1)), d, -np.inf)
        better = d > best
        best = np.where(better, d, best)
        label = np.where(better, s, label)
    return np.where(best > tau, label, -1)
