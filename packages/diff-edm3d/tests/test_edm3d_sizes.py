"""p(M) and p(c | M) (spec 4.2 and 8), with the QM9 training histogram given in the spec."""

import numpy as np
import pytest
import torch

from diff_edm3d.sizes import AtomCountDistribution, PropertyGivenSize

# Spec 4.2: the training-split histogram of M, equal to the official config tables.
QM9_TRAIN_HISTOGRAM = {
    3: 1, 4: 4, 5: 5, 6: 9, 7: 16, 8: 49, 9: 124, 10: 362, 11: 807, 12: 1689, 13: 3060, 14: 5136,
    15: 7796, 16: 10644, 17: 13025, 18: 13364, 19: 13832, 20: 9482, 21: 9970, 22: 3393, 23: 4848,
    24: 539, 25: 1506, 26: 48, 27: 266, 29: 25,
}  # fmt: skip


def test_qm9_size_distribution_values():
    p = AtomCountDistribution(QM9_TRAIN_HISTOGRAM)
    assert sum(QM9_TRAIN_HISTOGRAM.values()) == 100_000
    assert p.entropy() == pytest.approx(2.475701, abs=5e-7)
    nll = -p.log_prob(np.array([3, 19, 5]))
    assert nll[0] == pytest.approx(np.log(100_000), rel=1e-15)  # 11.512925
    assert nll[1] == pytest.approx(1.978185, abs=5e-7)
    assert nll[2] == pytest.approx(np.log(20_000), rel=1e-15)  # 9.903488, used by the oracle NLL
    assert p.max_atoms == 29 and 28 not in p.support.tolist()
    assert p.histogram() == QM9_TRAIN_HISTOGRAM
    assert AtomCountDistribution.from_dict(p.to_dict()).histogram() == QM9_TRAIN_HISTOGRAM
    n = np.repeat(list(QM9_TRAIN_HISTOGRAM), list(QM9_TRAIN_HISTOGRAM.values()))
    assert AtomCountDistribution.from_n_atoms(n).histogram() == QM9_TRAIN_HISTOGRAM


def test_unseen_sizes():
    p = AtomCountDistribution(QM9_TRAIN_HISTOGRAM)
    with pytest.raises(ValueError, match=r"M must be in the support.*got M=\[28, 30\]"):
        p.log_prob(np.array([19, 28, 30]))
    lp = p.log_prob(np.array([19, 28, 0, 40]), allow_unseen_sizes=True)
    assert np.isfinite(lp[0]) and np.all(lp[1:] == -np.inf)


def test_torch_in_torch_out():
    p = AtomCountDistribution(QM9_TRAIN_HISTOGRAM)
    n = torch.tensor([3, 19, 29])
    lp = p.log_prob(n)
    assert isinstance(lp, torch.Tensor) and lp.dtype == torch.float64
    np.testing.assert_array_equal(lp.numpy(), p.log_prob(n.numpy()))


def test_sampling_deterministic_and_faithful():
    p = AtomCountDistribution({1: 1, 4: 2, 9: 7})
    a = p.sample(20_000, np.random.default_rng(0))
    b = p.sample(20_000, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a).tolist()) == {1, 4, 9}
    freq = np.array([(a == m).mean() for m in (1, 4, 9)])
    # binomial 5-sigma band around 0.1/0.2/0.7 at n = 20,000
    assert np.all(np.abs(freq - [0.1, 0.2, 0.7]) < 5 * np.sqrt(0.25 / 20_000))
    np.testing.assert_array_equal(
        p.sample(5, 3), p.sample(5, np.random.Generator(np.random.PCG64([3, 0])))
    )


def test_bad_counts():
    with pytest.raises(ValueError, match="molecules must have M >= 1"):
        AtomCountDistribution([1, 2])
    with pytest.raises(ValueError, match="positive total"):
        AtomCountDistribution([0, 0])
    with pytest.raises(TypeError, match="integer atom counts"):
        AtomCountDistribution.from_n_atoms(np.array([1.5]))


def test_property_given_size_histograms():
    n = np.array([5, 5, 5, 5, 7, 7])
    c = np.array([0.0, 1.0, 1.0, 10.0, 2.0, 2.0])
    d = PropertyGivenSize(n, c, n_bins=10)
    lo, hi, probs = d.tables[5]
    assert (lo[0], hi[0]) == (0.0, 10.0)
    # i = floor((c - 0)/(10 + 1e-12)·10): 0 -> 0, 1 -> 0 (0.999...), 10 -> 9
    expected = np.zeros(10)
    expected[[0, 9]] = [0.75, 0.25]
    np.testing.assert_array_equal(probs[0], expected)
    lo7, hi7, probs7 = d.tables[7]
    assert lo7[0] == hi7[0] == 2.0 and probs7[0, 0] == 1.0  # constant values: one bin


def test_property_given_size_sampling():
    rng = np.random.default_rng(0)
    n = rng.integers(3, 6, size=3000)
    c = np.stack([n * 10 + rng.uniform(0, 1, 3000), rng.normal(size=3000)], axis=1)
    d = PropertyGivenSize(n, c, names=("a", "b"))
    m = np.array([3, 4, 5] * 400)
    s = d.sample(m, np.random.default_rng(1))
    assert s.shape == (1200, 2)
    for size in (3, 4, 5):
        rows = s[m == size, 0]
        ref = c[n == size, 0]
        assert rows.min() >= ref.min() and rows.max() <= ref.max()
        assert abs(rows.mean() - ref.mean()) < 0.05  # uniform within [10M, 10M + 1): std 0.29
    np.testing.assert_array_equal(s, d.sample(m, np.random.default_rng(1)))
    again = PropertyGivenSize.from_dict(d.to_dict())
    np.testing.assert_array_equal(again.sample(m, np.random.default_rng(1)), s)

    class Norm:  # duck-typed PropertyNormaliser
        def normalise(self, values, names):
            assert list(names) == ["a", "b"]
            return (values - 1.0) / 2.0

    np.testing.assert_allclose(
        d.sample(m, np.random.default_rng(1), normaliser=Norm()), (s - 1) / 2
    )
    with pytest.raises(ValueError, match=r"M must occur.*got M=\[9\]"):
        d.sample([9], 0)
    with pytest.raises(ValueError, match="values must have shape"):
        PropertyGivenSize(n, c[:10])
