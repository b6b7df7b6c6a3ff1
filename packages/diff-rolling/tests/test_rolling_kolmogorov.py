"""Check 10 of rolling.md §10: Kolmogorov flow from jax-cfd's spectral solver (``cpu`` preset,
shortened), storage and the user's own ``.npz`` files."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("jax_cfd")

from diff_rolling.data.kolmogorov import (  # noqa: E402
    generate,
    kolmogorov_dataset,
    load_kolmogorov,
    preset,
    spectral_step,
)


@pytest.fixture(scope="module")
def short():
    """32 trajectories: enough for the persistence statistics of the slow invariants test."""
    cfg = preset("cpu", n_trajectories=32, n_frames=12)
    return cfg, generate(cfg, batch=32, progress=False)


@pytest.fixture(scope="module")
def few():
    """8 trajectories of 12 frames, the spec's fast set (rolling.md §10 check 10)."""
    cfg = preset("cpu", n_trajectories=8, n_frames=12)
    return cfg, generate(cfg, batch=8, progress=False)


@pytest.mark.slow
def test_rolling_kolmogorov_data_invariants(short):
    cfg, data = short
    x = data.frames
    assert x.shape == (32, 12, 32, 32, 1) and np.isfinite(x).all()
    # mean vorticity vanishes (periodic domain)
    assert np.abs(x.mean(axis=(2, 3, 4))).max() < 1e-5 * np.abs(x).max()
    # the velocity from ω̂ through the stream function is divergence free (spectrally)
    n = 32
    k = np.fft.fftfreq(n, d=1 / n)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    w_hat = np.fft.fft2(x[:8, :, :, :, 0].astype(np.float64))
    k2 = kx**2 + ky**2
    k2[0, 0] = 1
    psi = w_hat / k2
    u_hat, v_hat = 1j * ky * psi, -1j * kx * psi
    div = 1j * kx * u_hat + 1j * ky * v_hat
    assert np.abs(div).max() < 1e-5 * np.abs(u_hat).max()
    # persistence correlation at one stored step (Δ = 0.4) over 32 trajectories
    xs = x / data.std
    a, b = xs[:, :-1], xs[:, 1:]
    a = a - a.mean((2, 3, 4), keepdims=True)
    b = b - b.mean((2, 3, 4), keepdims=True)
    corr = (
        (a * b).sum((2, 3, 4)) / np.sqrt((a * a).sum((2, 3, 4)) * (b * b).sum((2, 3, 4)))
    ).mean()
    assert 0.85 <= corr <= 0.91


def test_rolling_kolmogorov_determinism_and_batch_independence(few):
    cfg, data = few
    # a trajectory depends on (seed, index) only: fewer trajectories, one per batch, same arrays
    again = generate(cfg.replace(n_trajectories=2, split=(2, 0, 0)), batch=1, progress=False)
    assert np.array_equal(again.frames, data.frames[:2])
    alone = generate(cfg, indices=[5], batch=8, progress=False)
    assert np.array_equal(alone.frames[0], data.frames[5])
    # another seed is another flow
    other = generate(cfg.replace(n_trajectories=1, split=(1, 0, 0), seed=1), progress=False)
    assert not np.allclose(other.frames[0], data.frames[0])


def test_rolling_kolmogorov_drag_equals_forced_class():
    cfg = preset("cpu")
    step_a, grid, _ = spectral_step(cfg)
    step_b, _, _ = spectral_step(cfg, forced_class=True)
    from diff_rolling.data.kolmogorov import _initial_vorticity

    w = jnp.fft.rfftn(_initial_vorticity(cfg, grid, jax.random.key(0)))

    def run(step):
        return jax.jit(lambda w: jax.lax.fori_loop(0, 20, lambda i, v: step(v), w))(w)

    assert np.array_equal(np.asarray(run(step_a)), np.asarray(run(step_b)))


@pytest.mark.slow
def test_rolling_kolmogorov_finite_volume_runs():
    cfg = preset(
        "cpu", solver="finite_volume", n_trajectories=2, n_frames=2, burn_in=0.0, save_every=0.1
    )
    data = generate(cfg, batch=2, progress=False)
    assert np.isfinite(data.frames).all() and data.frames.shape == (2, 2, 32, 32, 1)


def test_rolling_kolmogorov_storage_and_user_files(tmp_path, few, monkeypatch):
    cfg, data = few
    path = data.save(tmp_path / "k.npz")
    back = load_kolmogorov(path)
    assert np.array_equal(back.frames, data.frames) and back.std == data.std
    assert back.split == data.split and (tmp_path / "k.json").exists()
    # cache: the second call reads the file
    two = cfg.replace(n_trajectories=2, split=(2, 0, 0))
    cached = kolmogorov_dataset(two, tmp_path / "c", batch=1, progress=False)
    assert np.array_equal(cached.frames, data.frames[:2])
    files = list((tmp_path / "c").glob("kolmogorov_*.npz"))
    assert len(files) == 1
    import diff_rolling.data.kolmogorov as kolmogorov

    monkeypatch.setattr(kolmogorov, "generate", lambda *a, **k: pytest.fail("simulated again"))
    again = kolmogorov_dataset(two, tmp_path / "c")
    assert np.array_equal(again.frames, cached.frames)
    # the user's own file
    np.savez(tmp_path / "mine.npz", frames=np.ones((8, 6, 4, 4, 1), np.float32))
    mine = load_kolmogorov(tmp_path / "mine.npz")
    assert mine.split == (7, 0, 1) and mine.frames.shape == (8, 6, 4, 4, 1)
    np.savez(tmp_path / "x.npz", u=np.ones(3), v=np.ones(3))
    with pytest.raises(
        ValueError,
        match=r"^load_kolmogorov: path must hold an array 'frames', got keys \['u', 'v'\] in x.npz$",
    ):
        load_kolmogorov(tmp_path / "x.npz")
    np.savez(tmp_path / "r.npz", frames=np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"'frames' in r.npz must have shape \(N, T, h, w, C\)"):
        load_kolmogorov(tmp_path / "r.npz")
