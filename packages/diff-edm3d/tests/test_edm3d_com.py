"""The CoM-free Gaussian against a brute-force computation in an orthonormal basis of U, and
the `ComFreeNoise` source (spec 7.3, 13.1 #2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diff_edm3d import ComFreeNoise, com_free_kl, com_free_log_density, graph_from_n_atoms
from diff_edm3d.com import derive_torch_seed, remove_mean

pytestmark = pytest.mark.usefixtures("single_thread")


def _basis(m: int) -> torch.Tensor:
    """Orthonormal basis Q [3m, 3(m-1)] of U from the eigenvectors of the centring projector."""
    p = torch.eye(m, dtype=torch.float64) - 1.0 / m
    proj = torch.kron(p, torch.eye(3, dtype=torch.float64))  # atom-major flattening of [m, 3]
    vals, vecs = torch.linalg.eigh(proj)
    q = vecs[:, vals > 0.5]
    assert q.shape == (3 * m, 3 * (m - 1))
    return q


@pytest.mark.smoke
def test_log_density_and_kl_against_brute_force():
    m = 4
    q = _basis(m)
    g = graph_from_n_atoms([m])
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        x = remove_mean(torch.randn(m, 3, generator=gen, dtype=torch.float64) * 2, g)
        mu = remove_mean(torch.randn(m, 3, generator=gen, dtype=torch.float64), g)
        sigma = float(torch.rand((), generator=gen, dtype=torch.float64)) * 2 + 0.05
        y = q.T @ (x - mu).reshape(-1)
        d = y.numel()
        brute = -0.5 * d * math.log(2 * math.pi * sigma**2) - float(y @ y) / (2 * sigma**2)
        ours = float(com_free_log_density(x, mu, sigma, g)[0])
        assert abs(ours - brute) < 1e-12 * max(1.0, abs(brute))
        mq = q.T @ mu.reshape(-1)
        kl_brute = float((-math.log(sigma) + 0.5 * (sigma**2 + mq**2) - 0.5).sum())
        assert abs(float(com_free_kl(mu, sigma, g)[0]) - kl_brute) < 1e-12 * max(1.0, kl_brute)


def test_padded_density_equals_packed():
    g = graph_from_n_atoms([4, 2])
    gen = torch.Generator().manual_seed(1)
    x = remove_mean(torch.randn(6, 3, generator=gen, dtype=torch.float64), g)
    packed = com_free_log_density(x, torch.zeros_like(x), 0.7, g)
    xp = torch.zeros(2, 4, 3, dtype=torch.float64)
    xp[0], xp[1, :2] = x[:4], x[4:]
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.float64)[..., None]
    padded = com_free_log_density(xp, torch.zeros_like(xp), 0.7, mask)
    assert torch.allclose(packed, padded, rtol=1e-14, atol=0)


def test_single_atom_is_zero_dimensional():
    g = graph_from_n_atoms([1, 3])
    x = remove_mean(torch.tensor([[1.0, 2.0, 3.0]] + [[0.5, 0.1, 0.0]] * 3, dtype=torch.float64), g)
    assert torch.all(x[0] == 0)
    assert float(com_free_log_density(x, torch.zeros_like(x), 0.3, g)[0]) == 0.0
    assert float(com_free_kl(x, 0.3, g)[0]) == 0.0
    noise = ComFreeNoise(g, seed=0, n_features=2, dtype=torch.float64)
    assert torch.all(noise(5)[0, :3] == 0)


def test_noise_statistics_m4():
    n_mol, m = 200_000, 4
    g = graph_from_n_atoms(np.full(n_mol, m))
    eps = ComFreeNoise(g, seed=123, n_features=1, dtype=torch.float64)(0)
    x = eps[:, :3].reshape(n_mol, m, 3)
    assert float(x.mean(1).abs().max()) <= 1e-6
    flat = x.reshape(n_mol, 3 * m)
    cov = flat.T @ flat / n_mol
    proj = torch.kron(
        torch.eye(m, dtype=torch.float64) - 1.0 / m, torch.eye(3, dtype=torch.float64)
    )
    assert float((cov - proj).abs().max()) < 0.015
    assert abs(float(flat.square().sum(1).mean()) - 9.0) < 0.05
    h = eps[:, 3]
    assert abs(float(h.mean())) < 0.01 and abs(float(h.var()) - 1.0) < 0.01


def test_noise_is_pure_in_seed_and_index():
    g = graph_from_n_atoms([3, 5, 2])
    a = ComFreeNoise(g, seed=7, n_features=6)
    b = ComFreeNoise(g, seed=7, n_features=6)
    d3 = a(3)
    _ = a(1), a(9)
    assert torch.equal(d3, a(3)) and torch.equal(d3, b(3))
    assert not torch.equal(a(3), a(4))
    assert not torch.equal(a(3), ComFreeNoise(g, seed=8, n_features=6)(3))
    # the documented seeding
    gen = torch.Generator().manual_seed(derive_torch_seed(7, 3))
    raw = torch.randn(10, 9, generator=gen)
    assert torch.equal(d3[:, 3:], raw[:, 3:])
    assert torch.allclose(d3[:, :3], remove_mean(raw[:, :3], g), atol=0, rtol=0)


def test_per_molecule_draws_do_not_depend_on_the_batch():
    sizes = [3, 5, 2, 7, 4]
    big = ComFreeNoise(graph_from_n_atoms(sizes), seed=2, per_molecule=True, n_features=6)(11)
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    for j, m in enumerate(sizes):
        alone = ComFreeNoise(
            graph_from_n_atoms([m]), seed=2, per_molecule=True, n_features=6, molecule_offset=j
        )(11)
        assert torch.equal(alone, big[ptr[j] : ptr[j + 1]])
