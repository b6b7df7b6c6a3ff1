r"""Semantic filtering of training pairs by encoder similarity.

Semantica (arXiv 2405.14857) finds semantic data filtering necessary for good generations. We
keep a pair when ``tau_lo ≤ cos(e_a, e_b) ≤ tau_hi`` on L2-normalised pooled embeddings: the
lower bound drops unrelated pairs (the logos and ads of a page), the upper bound drops
near-duplicates that teach copying. A float threshold is an absolute cosine; ``"pNN"`` is the
NN-th percentile of the candidates' cosines (``"p60"`` keeps the top 40 %). The rule and the
defaults (``"p60"``, 0.98) are ours; the paper's are not confirmed.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diff_protocol.io import atomic_write
from diff_semantica.data import GroupedImages
from diff_semantica.encoders import EmbeddingCache
from diff_semantica.pairs import KINDS, Pairs

__all__ = ["FilterConfig", "FilterReport", "filter_pairs", "pair_cosines", "resolve_threshold"]

_PCT = re.compile(r"^p(\d+(?:\.\d+)?)$")
_BINS = np.linspace(-1.0, 1.0, 41)


def _check_tau(name: str, v: Any) -> None:
    if v is None and name == "tau_hi":
        return
    if isinstance(v, str):
        m = _PCT.match(v)
        if m is None:
            raise ValueError(
                f"FilterConfig: {name} must be a cosine in [-1, 1] or 'pNN' (percentile), got {v!r}"
            )
        if not 0.0 <= float(m.group(1)) <= 100.0:
            raise ValueError(f"FilterConfig: {name} percentile must be in [0, 100], got {v!r}")
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1.0 <= v <= 1.0:
        raise ValueError(f"FilterConfig: {name} must be a cosine in [-1, 1] or 'pNN', got {v!r}")


@dataclass(frozen=True)
class FilterConfig:
    """Keep pairs with ``tau_lo ≤ cos ≤ tau_hi`` (``tau_hi=None``: no upper bound).

    ``encoder=None`` uses the conditioning encoder's ``pooled``.
    """

    tau_lo: float | str = "p60"
    tau_hi: float | str | None = 0.98
    encoder: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_tau("tau_lo", self.tau_lo)
        _check_tau("tau_hi", self.tau_hi)
        lo, hi = self.tau_lo, self.tau_hi
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo > hi:
            raise ValueError(f"FilterConfig: tau_lo must be <= tau_hi, got {lo} > {hi}")

    def to_dict(self) -> dict[str, Any]:
        return {"tau_lo": self.tau_lo, "tau_hi": self.tau_hi}


@dataclass
class FilterReport:
    """What the filter did (JSON-able with :meth:`to_dict`).

    ``same_group_before/after``: the share of pairs whose two images share a group (the "clean
    fraction"; a corrupt pair lands in ``a``'s group by chance); ``kept_by_kind`` the share of
    each kind kept; ``duplicates_removed`` the share of near-duplicates dropped; ``histograms``
    counts of cosines per kind on 40 bins over [−1, 1].
    """

    tau_lo: float
    tau_hi: float | None
    n_candidates: int
    n_kept: int
    kept_fraction: float
    same_group_before: float
    same_group_after: float
    kept_by_kind: dict[str, float | None]
    duplicates_removed: float | None
    histograms: dict[str, list[int]]
    bin_edges: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        return atomic_write(Path(path), json.dumps(self.to_dict(), indent=2))


def resolve_threshold(tau: float | str | None, cosines: np.ndarray) -> float | None:
    """A float as is; ``"pNN"`` the NN-th percentile of ``cosines`` (numpy's linear rule)."""
    if tau is None or not isinstance(tau, str):
        return None if tau is None else float(tau)
    return float(np.percentile(cosines, float(_PCT.match(tau).group(1))))  # type: ignore[union-attr]


def pair_cosines(
    pairs: Pairs, data: GroupedImages, encoder: Any, cache: EmbeddingCache | None = None
) -> np.ndarray:
    """``cos(e_a, e_b)`` per pair with ``e = encoder.pooled`` (cached for the dataset)."""
    cache = cache if cache is not None else EmbeddingCache()
    e = np.asarray(cache.get(encoder, data.images, "pooled"), np.float64)
    dup = pairs.kind == KINDS.index("duplicate")
    e_b = e[np.where(dup, 0, pairs.b_idx)]
    if dup.any():
        e_b = e_b.copy()
        e_b[dup] = np.asarray(cache.get(encoder, pairs.b_extra, "pooled"), np.float64)[
            pairs.b_idx[dup]
        ]
    return np.einsum("nd,nd->n", e[pairs.a_idx], e_b)


def filter_pairs(
    pairs: Pairs,
    data: GroupedImages,
    config: FilterConfig,
    encoder: Any = None,
    *,
    cache: EmbeddingCache | None = None,
    cosines: np.ndarray | None = None,
) -> tuple[Pairs, FilterReport]:
    """Keep the pairs whose cosine lies in ``[tau_lo, tau_hi]`` (ties kept).

    Args:
      pairs: candidates (:func:`~diff_semantica.pairs.sample_pairs`).
      data: the images they index.
      config: thresholds; ``config.encoder`` (if set) overrides ``encoder``.
      encoder: the conditioning encoder (its ``pooled``).
      cache: an :class:`~diff_semantica.encoders.EmbeddingCache` to reuse.
      cosines: precomputed cosines per pair (then no encoder is needed).

    Returns:
      ``(kept, report)``.
    """
    if not isinstance(config, FilterConfig):
        raise TypeError(f"filter_pairs: config must be a FilterConfig, got {type(config).__name__}")
    if cosines is None:
        enc = config.encoder if config.encoder is not None else encoder
        if enc is None:
            raise ValueError(
                "filter_pairs: give an encoder (or config.encoder, or cosines), got None"
            )
        cosines = pair_cosines(pairs, data, enc, cache)
    c = np.asarray(cosines, np.float64)
    if c.shape != (len(pairs),):
        raise ValueError(f"filter_pairs: cosines must have shape ({len(pairs)},), got {c.shape}")
    lo = resolve_threshold(config.tau_lo, c)
    hi = resolve_threshold(config.tau_hi, c)
    keep = c >= lo
    if hi is not None:
        if lo > hi:
            raise ValueError(
                f"filter_pairs: tau_lo resolved to {lo:.4g} > tau_hi {hi:.4g}; lower tau_lo or "
                "raise tau_hi"
            )
        keep &= c <= hi
    if not keep.any():
        hi_text = "inf" if hi is None else f"{hi:.4g}"
        raise ValueError(
            f"filter_pairs: no pair has cosine in [{lo:.4g}, {hi_text}]"
            "; lower tau_lo or raise tau_hi"
        )
    kept = pairs.select(keep)
    dup = pairs.kind == KINDS.index("duplicate")
    same = np.zeros(len(pairs), bool)
    nd = ~dup
    same[nd] = data.groups[pairs.a_idx[nd]] == data.groups[pairs.b_idx[nd]]
    same[dup] = True
    by_kind = {
        k: (float(keep[pairs.kind == i].mean()) if (pairs.kind == i).any() else None)
        for i, k in enumerate(KINDS)
    }
    report = FilterReport(
        tau_lo=lo,
        tau_hi=hi,
        n_candidates=len(pairs),
        n_kept=int(keep.sum()),
        kept_fraction=float(keep.mean()),
        same_group_before=float(same.mean()),
        same_group_after=float(same[keep].mean()),
        kept_by_kind=by_kind,
        duplicates_removed=None if not dup.any() else float(1.0 - keep[dup].mean()),
        histograms={
            k: np.histogram(np.clip(c[pairs.kind == i], -1, 1), _BINS)[0].tolist()
            for i, k in enumerate(KINDS)
            if (pairs.kind == i).any()
        },
        bin_edges=_BINS.tolist(),
    )
    return kept, report
