"""Pair data (check 4) and the semantic filter (check 5): exact statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from diff_semantica import (
    KINDS,
    FilterConfig,
    GroupedImages,
    PairConfig,
    Pairs,
    filter_pairs,
    load_pairs,
    pair_cosines,
    pair_images,
    sample_pairs,
    save_pairs,
)


@pytest.mark.smoke
def test_clean_pairs_are_distinct_same_group_and_size_weighted(train):
    p = sample_pairs(train, PairConfig(pairs_per_epoch=100_000, seed=3), 0)
    assert np.all(p.a_idx != p.b_idx)
    assert np.all(train.groups[p.a_idx] == train.groups[p.b_idx])
    sizes = np.bincount(train.groups, minlength=10)
    counts = np.bincount(train.groups[p.a_idx], minlength=10)
    assert stats.chisquare(counts, sizes / sizes.sum() * len(p)).pvalue > 1e-3
    # b is uniform over the other members of a's group: a within-group position chi-square
    g0 = np.flatnonzero(train.groups == 0)
    sel = train.groups[p.a_idx] == 0
    bc = np.bincount(np.searchsorted(g0, p.b_idx[sel]), minlength=len(g0))
    assert stats.chisquare(bc).pvalue > 1e-3


def test_corrupt_fraction_and_same_class_share(train):
    p = sample_pairs(train, PairConfig(pairs_per_epoch=100_000, corrupt_fraction=0.6), 0)
    corrupt = p.kind == KINDS.index("corrupt")
    assert abs(corrupt.mean() - 0.6) <= 0.005
    same = (train.groups[p.a_idx] == train.groups[p.b_idx]).mean()
    sizes = np.bincount(train.groups) / len(train)
    expected = 0.4 + 0.6 * float(np.sum(sizes**2))  # a random image lands in a's class
    assert abs(same - 0.46) <= 0.01 and abs(same - expected) <= 0.006


def test_stream_is_a_pure_function_of_seed_and_step(train):
    cfg = PairConfig(pairs_per_epoch=5000, corrupt_fraction=0.3, duplicate_fraction=0.2, seed=7)
    a, b = sample_pairs(train, cfg, 4), sample_pairs(train, cfg, 4)
    for f in ("a_idx", "b_idx", "kind", "b_extra"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    c = sample_pairs(train, cfg, 5)
    assert not np.array_equal(a.a_idx, c.a_idx)


def test_duplicates_and_self_pairs(train, tmp_path):
    p = sample_pairs(train, PairConfig(pairs_per_epoch=4000, duplicate_fraction=0.25), 1)
    dup = p.kind == KINDS.index("duplicate")
    assert abs(dup.mean() - 0.25) < 0.03
    x_a, x_b = pair_images(p, train)
    rel = np.abs(x_b[dup] - x_a[dup])
    assert rel.max() <= 0.1 * 1 + 6 * 0.05 + 1e-6 and x_b.min() >= -1 and x_b.max() <= 1
    save_pairs(p, tmp_path / "pairs.npz")
    q = load_pairs(tmp_path / "pairs.npz")
    np.testing.assert_array_equal(pair_images(q, train)[1], x_b)
    s = sample_pairs(train, PairConfig(pairs_per_epoch=100, self_pairs=True), 0)
    assert np.array_equal(s.a_idx, s.b_idx) and np.all(s.kind == KINDS.index("self"))


def test_bad_pair_inputs():
    with pytest.raises(
        ValueError, match=r"PairConfig: corrupt_fraction must be in \[0, 1\], got 1.2"
    ):
        PairConfig(corrupt_fraction=1.2)
    x = np.zeros((5, 8, 8, 1), np.float32)
    data = GroupedImages(x, np.array([0, 0, 1, 1, 2]), ("a", "b", "c"))
    with pytest.raises(
        ValueError, match="sample_pairs: group 2 has 1 image; every group needs >= 2"
    ):
        sample_pairs(data, PairConfig(pairs_per_epoch=10), 0)


def _unit_pairs(cosines: np.ndarray) -> tuple[Pairs, np.ndarray]:
    idx = np.arange(len(cosines)) % 1437  # any valid image indices: the cosines are given
    return Pairs(idx, idx, np.zeros(len(idx), np.int8)), cosines


def test_filter_band_exact_with_ties(train):
    rng = np.random.default_rng(0)
    c = np.round(rng.uniform(-1, 1, 20_000), 2)  # many exact ties, including 0.3 and 0.8
    # unit embeddings with prescribed cosines: e_a = (1, 0), e_b = (c, sqrt(1 - c²))
    e_b = np.stack([c, np.sqrt(1 - c**2)], 1)
    cos = e_b @ np.array([1.0, 0.0])
    pairs, _ = _unit_pairs(c)
    kept, rep = filter_pairs(pairs, train, FilterConfig(0.3, 0.8), cosines=cos)
    expect = (cos >= 0.3) & (cos <= 0.8)
    np.testing.assert_array_equal(kept.a_idx, pairs.a_idx[expect])
    assert len(kept) == int(expect.sum())
    assert (c == 0.3).any() and (c == 0.8).any()
    u = rng.uniform(-1, 1, 20_000)
    kept, rep = filter_pairs(_unit_pairs(u)[0], train, FilterConfig("p60", None), cosines=u)
    assert abs(rep.kept_fraction - 0.40) <= 0.001


@pytest.mark.smoke
def test_pca_filter_removes_duplicates_not_clean_pairs(train, pca):
    p = sample_pairs(train, PairConfig(pairs_per_epoch=20_000, duplicate_fraction=0.3), 0)
    c = pair_cosines(p, train, pca)
    kept, rep = filter_pairs(p, train, FilterConfig(-1.0, 0.98), pca)
    assert rep.duplicates_removed >= 0.99
    assert 1 - rep.kept_by_kind["clean"] <= 0.005
    clean = c[p.kind == 0]
    assert 0.45 <= np.median(clean) <= 0.55  # spec: median 0.50, 60th percentile 0.58


def test_filter_raises_the_same_class_share(train, pca):
    p = sample_pairs(train, PairConfig(pairs_per_epoch=20_000, corrupt_fraction=0.6), 0)
    kept, rep = filter_pairs(p, train, FilterConfig(), pca)
    assert abs(rep.same_group_before - 0.456) < 0.015
    assert rep.same_group_after >= 0.80  # spec: 0.847 measured
    assert rep.to_dict()["tau_hi"] == 0.98


def test_filter_errors(train):
    with pytest.raises(ValueError, match=r"FilterConfig: tau_lo must be <= tau_hi, got 0.9 > 0.5"):
        FilterConfig(0.9, 0.5)
    with pytest.raises(
        ValueError, match=r"FilterConfig: tau_lo percentile must be in \[0, 100\], got 'p160'"
    ):
        FilterConfig("p160")
    cos = np.linspace(-0.5, 0.5, 100)
    with pytest.raises(
        ValueError,
        match=r"filter_pairs: no pair has cosine in \[0.97, 0.98\]; lower tau_lo or raise tau_hi",
    ):
        filter_pairs(_unit_pairs(cos)[0], train, FilterConfig(0.97, 0.98), cosines=cos)
