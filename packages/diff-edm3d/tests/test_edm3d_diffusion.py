"""The EDM diffusion: l2 loss normalisation, layout identity and invariance of loss and NLL,
the exact oracle NLL, oracle sampling, sampling equivariance, decode slicing, the protocol
adapter and bad input (spec 7, 13.1 #5, #8-#12, #19)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diff_edm3d import (
    EDM,
    QM9_WITH_H,
    AtomCountDistribution,
    ComFreeNoise,
    EDMConfig,
    EDMDenoiser,
    EGNNConfig,
    EGNNDynamics,
    collate,
    graph_from_n_atoms,
    sample_with,
    to_padded,
)
from diff_edm3d.com import remove_mean
from diff_edm3d.testing import (
    OracleDynamics,
    boost_coordinate_head,
    random_rotation,
    relative_error,
)

pytestmark = pytest.mark.usefixtures("single_thread")


# spec 4.2: the train histogram of M (p(5) = 5/100000, so -log p(5) = log 20000)
TRAIN_HISTOGRAM = {
    3: 1, 4: 4, 5: 5, 6: 9, 7: 16, 8: 49, 9: 124, 10: 362, 11: 807, 12: 1689, 13: 3060,
    14: 5136, 15: 7796, 16: 10644, 17: 13025, 18: 13364, 19: 13832, 20: 9482, 21: 9970,
    22: 3393, 23: 4848, 24: 539, 25: 1506, 26: 48, 27: 266, 29: 25,
}  # fmt: skip
ROWS = [0, 5, 22, 100, 500, 999]


@pytest.fixture(scope="module")
def counts():
    return AtomCountDistribution(TRAIN_HISTOGRAM)


def _edm(counts, dtype=torch.float64, nf=32, layers=3, boost=True, seed=0, **cfg):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        dyn = EGNNDynamics(EGNNConfig(nf=nf, n_layers=layers), QM9_WITH_H,
                           include_charges=cfg.get("include_charges", True),
                           context_dim=cfg.get("context_dim", 0))  # fmt: skip
    if boost:
        boost_coordinate_head(dyn, seed=seed)
    return EDM(dyn, EDMConfig(**cfg), counts).to(dtype)


def _terms(edm, batch, k, eps):
    loss, _ = edm.loss(batch, t=k, eps=eps)
    nll = edm.nll(batch, t=k.clamp(min=1), eps=eps).as_dict()
    nll.pop("k")
    return {"loss": loss, **nll}


def _packed_eps(batch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch.x.shape[0], 9, generator=gen, dtype=batch.x.dtype)


def test_l2_loss_normalisation(qm9_head, counts):
    """L = 1/2 |eps - eps_hat|^2 / ((3 + F) N_pad) + KL_prior with N_pad the batch's largest M."""
    edm = _edm(counts).train()
    ms = qm9_head.subset(np.array(ROWS))
    batch = collate(ms, dtype=torch.float64)
    k = torch.tensor([1, 10, 200, 500, 800, 1000])
    eps = remove_mean(_packed_eps(batch)[:, :3], batch.graph)
    eps = torch.cat([eps, _packed_eps(batch, 1)[:, 3:]], -1)
    with torch.no_grad():
        loss, terms = edm.loss(batch, t=k, eps=eps)
    n_pad = int(batch.n_atoms.max())
    expected = 0.5 * terms["error"] / (9 * n_pad) + terms["kl_prior"]
    assert torch.allclose(loss, expected, rtol=1e-14, atol=0)
    # the same molecule alone has its own N_pad: the loss scales by N_pad(batch)/M
    one = collate(ms.subset(np.array([1])), dtype=torch.float64)
    sl = slice(int(batch.ptr[1]), int(batch.ptr[2]))
    with torch.no_grad():
        alone, t_alone = edm.loss(one, t=k[1:2], eps=eps[sl])
    assert math.isclose(
        float(t_alone["error"][0]), float(terms["error"][1].detach()), rel_tol=1e-12
    )
    m = int(one.n_atoms[0])
    assert math.isclose(
        float(alone[0] - t_alone["kl_prior"][0]),
        float(loss[1] - terms["kl_prior"][1]) * n_pad / m,
        rel_tol=1e-12,
    )
    assert 0 < float(terms["kl_prior"].max()) < 1e-3


def test_loss_at_k0_uses_discrete_likelihood(qm9_head, counts):
    edm = _edm(counts).train()
    batch = collate(qm9_head.subset(np.array([0, 1])), dtype=torch.float64)
    eps = _packed_eps(batch)
    loss, terms = edm.loss(batch, t=torch.tensor([0, 0]), eps=eps)
    assert torch.all(terms["log_p_h_z0"] != 0)
    assert torch.allclose(loss, terms["loss_t"] + terms["kl_prior"], rtol=1e-14, atol=0)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 3e-5)])
def test_loss_and_nll_layout_identity(qm9_head, counts, dtype, tol):
    edm = _edm(counts, dtype=dtype)
    batch = collate(qm9_head.subset(np.array(ROWS)), dtype=dtype)
    eps = _packed_eps(batch).to(dtype)
    k = torch.tensor([0, 3, 250, 500, 999, 1000])
    packed = _terms(edm.train(), batch, k, eps)
    padded_batch = to_padded(batch)
    eps_pad = to_padded(batch.with_(x=eps[:, :3], h_cat=eps[:, 3:8], h_int=eps[:, 8:]))
    eps_pad = torch.cat([eps_pad.x, eps_pad.h_cat, eps_pad.h_int], -1)
    padded = _terms(edm, padded_batch, k, eps_pad)
    for name in packed:
        assert relative_error(packed[name], padded[name]) <= tol, name


def _rotate_batch(batch, eps, r, shift=None):
    x = batch.x @ r.T
    if shift is not None:
        x = x + shift[batch.batch]
    e = torch.cat([eps[:, :3] @ r.T, eps[:, 3:]], -1)
    return batch.with_(x=x), e


def test_loss_and_nll_invariance(qm9_head, counts):
    edm = _edm(counts)
    batch = collate(qm9_head.subset(np.array(ROWS)), dtype=torch.float64)
    eps = _packed_eps(batch)
    k = torch.tensor([0, 3, 250, 500, 999, 1000])
    ref = _terms(edm.train(), batch, k, eps)
    gen = torch.Generator().manual_seed(5)
    shift = torch.randn(6, 3, generator=gen, dtype=torch.float64) * 3
    cases = {
        "rotation": _rotate_batch(batch, eps, random_rotation(1)),
        "reflection": _rotate_batch(batch, eps, -random_rotation(2)),
        "translation": _rotate_batch(batch, eps, torch.eye(3, dtype=torch.float64), shift),
    }
    rng = np.random.default_rng(0)
    perm = torch.as_tensor(np.concatenate(
        [int(batch.ptr[b]) + rng.permutation(int(batch.n_atoms[b])) for b in range(6)]))  # fmt: skip
    cases["permutation"] = (
        batch.with_(x=batch.x[perm], h_cat=batch.h_cat[perm], h_int=batch.h_int[perm]),
        eps[perm],
    )
    for case, (b2, e2) in cases.items():
        other = _terms(edm, b2, k, e2)
        for name in ref:
            assert relative_error(ref[name], other[name]) <= 1e-10, (case, name)


@pytest.mark.smoke
def test_oracle_nll_methane(qm9_head, counts):
    methane = qm9_head.subset(np.array([0]))
    assert int(methane.ids[0]) == 1 and int(methane.n_atoms[0]) == 5
    oracle = OracleDynamics(methane)
    edm = EDM(oracle, EDMConfig(), counts).eval()
    ks = torch.arange(1, 1001)
    many = methane.subset(np.zeros(1000, dtype=np.int64))
    batch = collate(many, dtype=torch.float64)
    terms = edm.nll(batch, generator=torch.Generator().manual_seed(0), t=ks)
    assert float(terms.diffusion.abs().max()) < 1e-9
    assert float(terms.x_reconstruction.abs().max()) < 1e-9
    assert float(terms.log_p_int.abs().max()) < 1e-8
    assert float(terms.log_p_cat.abs().max()) < 1e-8
    assert abs(float(terms.x_constants[0]) - (-58.050230)) < 1e-5
    assert abs(-float(terms.log_p_n_atoms[0]) - math.log(20000)) < 1e-9
    assert abs(float(terms.prior[0]) - 2.74e-5) < 1e-7
    assert float(terms.volume.abs().max()) == 0.0
    assert float((terms.nll - (-48.146715)).abs().max()) < 1e-5


def test_oracle_sampling_hits_the_data(qm9_head, counts):
    rows = np.flatnonzero(qm9_head.n_atoms == 9)[:3]
    data = qm9_head.subset(rows)
    edm = EDM(OracleDynamics(data), EDMConfig(), counts)
    n = 300
    samples = edm.sample(np.full(n, 9), seed=0, dtype=torch.float64)
    assert samples.meta["drift_events"] == 0 and samples.meta["inconsistent_atoms"] == 0
    pos = samples.positions.reshape(n, 9, 3)
    ref = data.positions.reshape(3, 9, 3)
    rms = np.sqrt(((pos[:, None] - ref[None]) ** 2).sum(-1).mean(-1))  # [n, 3]
    hit = rms.argmin(1)
    assert float(rms.min(1).max()) < 0.02
    types = samples.types.reshape(n, 9)
    assert np.array_equal(types, data.types.reshape(3, 9)[hit])
    counts_hit = np.bincount(hit, minlength=3)
    assert np.all(np.abs(counts_hit - 100) <= 30), counts_hit
    assert float(np.abs(pos.sum(1)).max()) < 1e-5


def test_decode_slices_by_k_without_charges(qm9_head):
    """include_charges=False, K = 5: the fifth categorical column decodes to F (the official
    'all but last' slice would drop it)."""
    cf4 = qm9_head.subset(np.array([180]))  # Index 184, CF4
    assert list(cf4.types) == [4, 1, 4, 4, 4] or sorted(cf4.types.tolist()) == [1, 4, 4, 4, 4]
    counts = AtomCountDistribution({5: 1})
    oracle = OracleDynamics(cf4, include_charges=False)
    edm = EDM(oracle, EDMConfig(include_charges=False), counts)
    grid = np.linspace(1000, 0, 51).round().astype(int)
    s = edm.sample(np.array([5, 5]), seed=1, grid=grid, dtype=torch.float64)
    assert np.array_equal(s.types, np.tile(cf4.types, 2))
    # and a hand-made z_0 whose fifth column is largest decodes to F
    z = torch.zeros(1, 3 + 5, dtype=torch.float64)
    z[0, 3:] = torch.tensor([0.1, 0.2, 0.0, 0.05, 0.3])
    _, types, charges = edm._decode(z, graph_from_n_atoms([1]))
    assert QM9_WITH_H.symbols[int(types[0])] == "F" and int(charges[0]) == 9


@pytest.mark.smoke
def test_ddpm_step_equals_edm_eps_form():
    """diff-core's ancestral step from x_hat equals EDM's eps-form within 1e-10 (float64)."""
    from diff_core.samplers import ddpm
    from diff_edm3d.schedule import EDMSchedule, alpha_t_given_s, sigma2_t_given_s
    from diff_protocol import to_x_eps

    sch = EDMSchedule()
    gen = torch.Generator().manual_seed(0)
    step = ddpm(0.0)
    for kt in (1, 2, 10, 500, 999, 1000):
        gt, gs = sch.gamma_table[kt], sch.gamma_table[kt - 1]
        z = torch.randn(20, 9, generator=gen, dtype=torch.float64)
        eps_hat = torch.randn(20, 9, generator=gen, dtype=torch.float64)
        noise = torch.randn(20, 9, generator=gen, dtype=torch.float64)
        x_hat, _ = to_x_eps(eps_hat, z, -gt, "eps")
        ours, _ = step.step(z, x_hat, -gt, -gs, noise, ())
        s2ts = sigma2_t_given_s(gt, gs)
        ats = alpha_t_given_s(gt, gs)
        sigma_t, sigma_s = torch.sigmoid(gt).sqrt(), torch.sigmoid(gs).sqrt()
        mean = z / ats - s2ts / (ats * sigma_t) * eps_hat
        std = s2ts.sqrt() * sigma_s / sigma_t
        assert relative_error(mean + std * noise, ours) < 1e-10, kt


class _RotatedNoise:
    def __init__(self, noise, r):
        self.noise, self.r = noise, r
        self.shape, self.dtype = noise.shape, noise.dtype

    def __call__(self, i):
        e = self.noise(i)
        return torch.cat([e[:, :3] @ self.r.T, e[:, 3:]], -1)


def test_sampling_equivariance_and_batch_independence(counts):
    edm = _edm(counts, nf=16, layers=2, boost=False)
    grid = np.linspace(1000, 0, 21).round().astype(int)
    sizes = np.array([5, 9, 3, 12, 7])
    g = graph_from_n_atoms(sizes)
    noise = ComFreeNoise(g, seed=4, n_features=6, dtype=torch.float64)
    r = random_rotation(7)
    a = edm.sample(sizes, noise=noise, grid=grid)
    b = edm.sample(sizes, noise=_RotatedNoise(noise, r), grid=grid)
    assert np.array_equal(a.types, b.types)
    ra = torch.as_tensor(a.positions) @ r.T
    assert relative_error(ra, torch.as_tensor(b.positions)) < 1e-9
    # per-molecule noise: a molecule alone equals the same molecule inside the batch of 5
    full = edm.sample(sizes, seed=9, grid=grid, per_molecule=True)
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    for j in (0, 3):
        gj = graph_from_n_atoms(sizes[j : j + 1])
        nj = ComFreeNoise(gj, 9, True, n_features=6, dtype=torch.float64, molecule_offset=j)
        alone = edm.sample(sizes[j : j + 1], noise=nj, grid=grid)
        ref = torch.as_tensor(full.positions[ptr[j] : ptr[j + 1]])
        assert relative_error(ref, torch.as_tensor(alone.positions)) < 1e-10
        assert np.array_equal(alone.types, full.types[ptr[j] : ptr[j + 1]])


def _pre_change_packed(self, x, h, t, graph, context):
    """The autograd packed path (the algorithm before the sampling buffers), run under no_grad's
    caller by re-enabling autograd: the pre-change reference for the sampling identity."""
    with torch.enable_grad():
        out = EGNNDynamics.forward_packed(self, x, h, t, graph, context)
    return out[0].detach(), out[1].detach()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sampling_identical_to_pre_change_and_dense(counts, dtype, monkeypatch):
    """Same seed, same molecules: the buffered sampling path equals the autograd packed path
    bitwise (same operations, same order) in float64 and float32, and the official dense layout
    to float64 rounding (1e-12: its sums run over padded pairs in another order). EDM.sample
    validates no graph per step (it builds its own; check_graph is never called)."""
    import diff_edm3d.batch as batch_mod
    import diff_edm3d.diffusion as diffusion_mod
    import diff_edm3d.dynamics.base as base_mod
    from diff_edm3d.testing import DenseEGNNReference

    calls = []

    def counting(*a, **k):
        calls.append(a[2])
        return batch_mod.check_graph(*a, **k)

    edm = _edm(counts, dtype=dtype, nf=16, layers=2)
    sizes = np.array([5, 1, 9, 3, 12])
    grid = np.linspace(1000, 0, 11).round().astype(int)
    for mod in (diffusion_mod, base_mod):
        monkeypatch.setattr(mod, "check_graph", counting)
    new = edm.sample(sizes, seed=3, grid=grid, per_molecule=True)
    assert calls == []
    monkeypatch.setattr(EGNNDynamics, "_forward_packed_inference", _pre_change_packed)
    old = edm.sample(sizes, seed=3, grid=grid, per_molecule=True)
    monkeypatch.undo()
    assert np.array_equal(new.positions, old.positions)
    assert np.array_equal(new.types, old.types) and new.meta == old.meta
    if dtype == torch.float64:
        dense = EDM(DenseEGNNReference.like(edm.dynamics), EDMConfig(), counts)
        ref = dense.sample(sizes, seed=3, grid=grid, per_molecule=True)
        assert np.array_equal(new.types, ref.types)
        err = relative_error(torch.as_tensor(new.positions), torch.as_tensor(ref.positions))
        assert err < 1e-12, err


def test_denoiser_adapter_and_ddim(qm9_head, counts):
    from diff_core.samplers import ddim
    from diff_protocol import Denoiser

    rows = np.flatnonzero(qm9_head.n_atoms == 7)[:2]
    data = qm9_head.subset(rows)
    edm = EDM(OracleDynamics(data), EDMConfig(), counts)
    g = graph_from_n_atoms([7, 7])
    den = EDMDenoiser(edm, g)
    assert isinstance(den, Denoiser) and den.prediction == "eps"
    z = ComFreeNoise(g, 0, n_features=6, dtype=torch.float64)(0)
    k = 300
    logsnr = -edm.schedule.gamma_table[k]
    out = den(z, logsnr)
    ex, eh = edm.dynamics(z[:, :3], z[:, 3:], torch.full((2,), k / 1000, dtype=torch.float64), g)
    assert torch.equal(out, torch.cat([ex, eh], -1))
    assert torch.equal(den(z, logsnr.expand(14)), out)
    grid = np.linspace(1000, 0, 101).round().astype(int)
    s = sample_with(ddim(0.0), edm, np.array([7] * 4), grid=grid, seed=3, dtype=torch.float64)
    pos = s.positions.reshape(4, 7, 3)
    ref = data.positions.reshape(2, 7, 3)
    rms = np.sqrt(((pos[:, None] - ref[None]) ** 2).sum(-1).mean(-1))
    assert float(rms.min(1).max()) < 0.02


def test_bad_input(qm9_head, counts):
    edm = _edm(counts)
    ms = qm9_head.subset(np.array([0, 1, 2]))
    batch = collate(ms, dtype=torch.float64)
    x = batch.x.clone()
    x[int(batch.ptr[1]) + 2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"molecule 1, atom 2"):
        edm.loss(batch.with_(x=x))
    with pytest.raises(ValueError, match=r"n_atoms must lie in \[1, max_atoms = 29\], got 30"):
        edm.sample(np.array([5, 30]))
    with pytest.raises(ValueError, match="got 0"):
        edm.sample(np.array([0]))
    with pytest.raises(ValueError, match="context"):
        edm.loss(batch.with_(context=torch.zeros(3, 1, dtype=torch.float64)))
    cond = _edm(counts, context_dim=1)
    with pytest.raises(ValueError, match="context"):
        cond.loss(batch)
    rare = AtomCountDistribution({5: 10, 4: 3})
    edm_rare = _edm(rare)
    with pytest.raises(ValueError, match="3"):
        edm_rare.nll(batch)  # Index 3 (water) has M = 3, unseen in this p(M)
    twelve = qm9_head.subset(np.array([999]))
    assert int(twelve.n_atoms[0]) > 10
    with pytest.raises(ValueError, match=r"molecule 0 must have at most max_atoms = 10 atoms"):
        collate(twelve, max_atoms=10)
    with pytest.raises(ValueError, match=r"types must index the element set"):
        collate(twelve._replace(types=np.full(int(twelve.n_atoms[0]), 7)))
