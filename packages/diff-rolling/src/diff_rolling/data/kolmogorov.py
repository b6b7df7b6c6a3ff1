"""Kolmogorov flow trajectories simulated with jax-cfd (extra ``[kolmogorov]``).

2-D incompressible Navier–Stokes on the periodic square [0, 2π]² with Kolmogorov forcing
``f = (sin(4y), 0)`` and linear drag 0.1 (Kochkov et al., PNAS 2021; jax-cfd's spectral
``NavierStokes2D``), stepped with ``crank_nicolson_rk4``. Trajectory i starts from
``curl(filtered_velocity_field(fold_in(key(seed), i)))``, so it does not depend on the batch it is
generated in. Frames are stored every ``save_every`` time units after ``burn_in``; the velocity is
mean-pooled ``pool×pool`` and vorticity recomputed spectrally on the pooled grid.

Presets (our defaults; the paper's simulation settings are not confirmed): ``cpu`` (32², ν = 1e-2,
Δ = 0.4, vorticity, 256/0/32 trajectories) and ``paper`` (256² → 64², ν = 1e-3, Δ = 0.2,
velocity, 820/102/102), after the SDA recipe (francois-rozet/sda).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .windows import load_sequences

__all__ = [
    "PRESETS",
    "KolmogorovConfig",
    "KolmogorovData",
    "generate",
    "kolmogorov_dataset",
    "load_kolmogorov",
    "preset",
    "require_jax_cfd",
]

EXTRA_HINT = "needs the 'kolmogorov' extra: pip install diff-rolling[kolmogorov]"


def require_jax_cfd() -> Any:
    """Import jax-cfd or raise ``ImportError`` with the install hint."""
    try:
        import jax_cfd.base  # noqa: F401
        import jax_cfd.spectral  # noqa: F401
    except ImportError:
        raise ImportError(EXTRA_HINT) from None
    import jax_cfd

    return jax_cfd


@dataclass(frozen=True)
class KolmogorovConfig:
    """Simulation and storage settings (see the module docstring)."""

    grid: int = 32
    viscosity: float = 1e-2
    drag: float = 0.1
    forcing_wavenumber: int = 4
    solver: Literal["spectral", "finite_volume"] = "spectral"
    cfl_max_velocity: float = 7.0
    courant: float = 0.5
    save_every: float = 0.4
    burn_in: float = 10.0
    n_frames: int = 64
    n_trajectories: int = 288
    split: tuple[int, int, int] = (256, 0, 32)
    pool: int = 1
    fields: Literal["vorticity", "velocity"] = "vorticity"
    ic_max_velocity: float = 3.0
    ic_peak_wavenumber: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ValueError:
            return ValueError(
                f"KolmogorovConfig: {name} must be {expected}, got {getattr(self, name)!r}"
            )

        for name in ("grid", "n_frames", "n_trajectories", "pool", "forcing_wavenumber"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "a positive int")
        for name in ("viscosity", "save_every", "cfl_max_velocity", "courant"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise bad(name, "a positive number")
        if not (isinstance(self.burn_in, (int, float)) and self.burn_in >= 0):
            raise bad("burn_in", "a number >= 0")
        if self.solver not in ("spectral", "finite_volume"):
            raise bad("solver", "'spectral' or 'finite_volume'")
        if self.fields not in ("vorticity", "velocity"):
            raise bad("fields", "'vorticity' or 'velocity'")
        if self.grid % self.pool:
            raise bad("pool", f"a divisor of grid={self.grid}")
        split = tuple(int(s) for s in self.split)
        if len(split) != 3 or sum(split) != self.n_trajectories or min(split) < 0:
            raise bad("split", f"three counts summing to n_trajectories={self.n_trajectories}")
        object.__setattr__(self, "split", split)

    def replace(self, **changes: Any) -> KolmogorovConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["split"] = list(self.split)
        return d

    @property
    def stored_grid(self) -> int:
        return self.grid // self.pool

    @property
    def channels(self) -> int:
        return 1 if self.fields == "vorticity" else 2

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


PRESETS: dict[str, KolmogorovConfig] = {
    "cpu": KolmogorovConfig(),
    "paper": KolmogorovConfig(
        grid=256,
        viscosity=1e-3,
        save_every=0.2,
        burn_in=12.8,
        n_frames=64,
        n_trajectories=1024,
        split=(820, 102, 102),
        pool=4,
        fields="velocity",
    ),
}


def preset(name: str, **overrides: Any) -> KolmogorovConfig:
    """The named preset with ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"kolmogorov preset must be one of {sorted(PRESETS)}, got {name!r}")
    cfg = PRESETS[name]
    if "n_trajectories" in overrides and "split" not in overrides:
        n = overrides["n_trajectories"]
        test = min(cfg.split[2], n // 2)
        overrides["split"] = (n - test, 0, test)
    return cfg.replace(**overrides)


@dataclass
class KolmogorovData:
    """Stored trajectories ``frames (N, T, h, w, C)`` (raw float32), their config and training std.

    ``train`` / ``val`` / ``test`` give the splits divided by ``std`` (the training std).
    """

    frames: np.ndarray
    config: dict[str, Any]
    std: float
    split: tuple[int, int, int]

    def _part(self, i: int) -> np.ndarray:
        lo = sum(self.split[:i])
        return self.frames[lo : lo + self.split[i]] / np.float32(self.std)

    @property
    def train(self) -> np.ndarray:
        return self._part(0)

    @property
    def val(self) -> np.ndarray:
        return self._part(1)

    @property
    def test(self) -> np.ndarray:
        return self._part(2)

    def meta(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "std": self.std,
            "split": list(self.split),
            "shape": list(self.frames.shape),
        }

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.npz: ``frames``, ``meta`` JSON) and ``path.json`` atomically."""
        from diff_protocol.io import atomic_write

        path = Path(path)
        buf = io.BytesIO()
        meta = json.dumps(self.meta(), sort_keys=True)
        np.savez(buf, frames=self.frames, meta=np.array(meta))
        atomic_write(path, buf.getvalue())
        atomic_write(
            path.with_suffix(".json"), json.dumps(self.meta(), indent=1, sort_keys=True) + "\n"
        )
        return path


def load_kolmogorov(path: str | Path) -> KolmogorovData:
    """Read a file written by :meth:`KolmogorovData.save`, or a user's ``.npz`` holding
    ``frames (N, T, h, w, C)`` (then the std is computed, all trajectories are train but the last
    eighth, which is test)."""
    frames = load_sequences(path, "frames", "load_kolmogorov")
    meta = None
    with np.load(path, allow_pickle=False) as f:
        if "meta" in f.files:
            meta = json.loads(str(f["meta"]))
    if meta is None:
        n = frames.shape[0]
        test = max(1, n // 8) if n > 1 else 0
        split = (n - test, 0, test)
        std = float(frames[: split[0]].std()) or 1.0
        return KolmogorovData(frames, {"source": str(path)}, std, split)
    return KolmogorovData(frames, meta["config"], float(meta["std"]), tuple(meta["split"]))


def _grid_and_dt(config: KolmogorovConfig) -> tuple[Any, float, int]:
    require_jax_cfd()
    import jax_cfd.base as cfd
    from jax_cfd.base import grids

    n = config.grid
    grid = grids.Grid((n, n), domain=((0, 2 * math.pi), (0, 2 * math.pi)))
    dt_cfl = cfd.equations.stable_time_step(
        config.cfl_max_velocity, config.courant, config.viscosity, grid
    )
    inner = max(1, round(config.save_every / dt_cfl))
    return grid, config.save_every / inner, inner


def spectral_step(config: KolmogorovConfig, *, forced_class: bool = False) -> tuple[Any, Any, int]:
    """``(step, grid, inner)``: one Crank–Nicolson RK4 step of the spectral solver on ω̂ and the
    substeps per stored frame. ``forced_class`` uses ``ForcedNavierStokes2D`` (drag 0.1 fixed)."""
    grid, dt, inner = _grid_and_dt(config)
    from jax_cfd.base import forcings
    from jax_cfd.spectral import equations as speq
    from jax_cfd.spectral import time_stepping

    if forced_class:
        eq = speq.ForcedNavierStokes2D(config.viscosity, grid, smooth=True)
    else:
        k = config.forcing_wavenumber
        eq = speq.NavierStokes2D(
            config.viscosity,
            grid,
            drag=config.drag,
            smooth=True,
            forcing_fn=lambda g: forcings.kolmogorov_forcing(g, k=k, offsets=((0, 0), (0, 0))),
        )
    return time_stepping.crank_nicolson_rk4(eq, dt), grid, inner


def _initial_vorticity(config: KolmogorovConfig, grid: Any, key: Any) -> Any:
    from jax_cfd.base import finite_differences, initial_conditions

    v0 = initial_conditions.filtered_velocity_field(
        key, grid, config.ic_max_velocity, config.ic_peak_wavenumber
    )
    return finite_differences.curl_2d(v0).data


def _to_fields(config: KolmogorovConfig, grid: Any, w_hat: Any) -> Any:
    """``(T, h, w, C)`` stored fields from ``(T, n, n//2+1)`` ω̂."""
    import jax.numpy as jnp
    from jax_cfd.spectral import utils as sputils

    if config.pool == 1 and config.fields == "vorticity":
        return jnp.fft.irfftn(w_hat, axes=(-2, -1))[..., None]
    u_hat, v_hat = sputils.vorticity_to_velocity(grid)(w_hat)
    n = config.grid
    u = jnp.fft.irfftn(u_hat, s=(n, n), axes=(-2, -1))
    v = jnp.fft.irfftn(v_hat, s=(n, n), axes=(-2, -1))
    p = config.pool
    if p > 1:
        m = n // p
        u = u.reshape(u.shape[:-2] + (m, p, m, p)).mean((-3, -1))
        v = v.reshape(v.shape[:-2] + (m, p, m, p)).mean((-3, -1))
    if config.fields == "velocity":
        return jnp.stack([u, v], -1)
    return velocity_to_vorticity(jnp.stack([u, v], -1))[..., 0]


def velocity_to_vorticity(uv: Any, domain: float = 2 * math.pi) -> Any:
    """``ω = ∂v/∂x − ∂u/∂y`` spectrally; ``uv (..., n, n, 2)`` with axis −3 = x, axis −2 = y;
    returns ``(..., n, n, 1)``."""
    import jax.numpy as jnp

    xp = jnp if type(uv).__module__.startswith("jax") else np
    n = uv.shape[-2]
    k = xp.asarray(np.fft.fftfreq(n, d=domain / n) * 2 * np.pi)
    kx, ky = k[:, None], k[None, :]
    u_hat = xp.fft.fft2(uv[..., 0], axes=(-2, -1))
    v_hat = xp.fft.fft2(uv[..., 1], axes=(-2, -1))
    w = xp.real(xp.fft.ifft2(1j * kx * v_hat - 1j * ky * u_hat, axes=(-2, -1)))
    return w[..., None]


@functools.lru_cache(maxsize=8)
def _spectral_batch(config: KolmogorovConfig) -> Any:
    import jax
    from jax_cfd.base import funcutils

    step, grid, inner = spectral_step(config)
    n_burn = round(config.burn_in / config.save_every)
    total = n_burn + config.n_frames
    traj = funcutils.trajectory(funcutils.repeated(step, inner), total)

    def one(key):
        import jax.numpy as jnp

        w0 = _initial_vorticity(config, grid, key)
        _, ws = traj(jnp.fft.rfftn(w0))
        return _to_fields(config, grid, ws[n_burn:])

    return jax.jit(jax.vmap(one))


@functools.lru_cache(maxsize=8)
def _finite_volume_batch(config: KolmogorovConfig) -> Any:
    from . import _jaxcfd_compat

    _jaxcfd_compat.install()
    import jax
    import jax.numpy as jnp
    import jax_cfd.base as cfd
    from jax_cfd.base import finite_differences, forcings, funcutils, initial_conditions

    grid, dt, inner = _grid_and_dt(config)
    forcing = forcings.simple_turbulence_forcing(
        grid,
        constant_magnitude=1.0,
        constant_wavenumber=config.forcing_wavenumber,
        linear_coefficient=-config.drag,
        forcing_type="kolmogorov",
    )
    step = cfd.equations.semi_implicit_navier_stokes(
        density=1.0, viscosity=config.viscosity, dt=dt, grid=grid, forcing=forcing
    )
    n_burn = round(config.burn_in / config.save_every)
    traj = funcutils.trajectory(funcutils.repeated(step, inner), n_burn + config.n_frames)

    def one(key):
        v0 = initial_conditions.filtered_velocity_field(
            key, grid, config.ic_max_velocity, config.ic_peak_wavenumber
        )
        _, vs = traj(v0)
        w = jax.vmap(lambda v: finite_differences.curl_2d(v).data)(vs)  # per stored frame
        return jnp.asarray(w[n_burn:])[..., None]

    return jax.jit(jax.vmap(one))


def generate(
    config: KolmogorovConfig,
    *,
    batch: int = 32,
    progress: bool = True,
    indices: Any = None,
) -> KolmogorovData:
    """Simulate ``config.n_trajectories`` trajectories (or only ``indices``) in batches.

    Returns :class:`KolmogorovData` with raw float32 frames ``(N, T, h, w, C)`` and the std of the
    training split (1 if it is empty).
    """
    require_jax_cfd()
    import jax

    if not isinstance(config, KolmogorovConfig):
        raise TypeError(f"generate: config must be a KolmogorovConfig, got {type(config).__name__}")
    # the compiled simulator depends on the physics only: more trajectories, another split or
    # seed reuse it (the seed enters through the keys)
    physics = config.replace(n_trajectories=1, split=(1, 0, 0), seed=0)
    run = _spectral_batch(physics) if config.solver == "spectral" else _finite_volume_batch(physics)
    idx = np.arange(config.n_trajectories) if indices is None else np.asarray(indices, int)
    base = jax.random.key(config.seed)
    out = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(idx), desc="kolmogorov", unit="traj", dynamic_ncols=True)
    for lo in range(0, len(idx), batch):
        chunk = idx[lo : lo + batch]
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(chunk.astype(np.uint32))
        out.append(np.asarray(jax.device_get(run(keys)), np.float32))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    frames = np.concatenate(out, 0)
    if not np.isfinite(frames).all():
        raise FloatingPointError(
            "generate: the simulation produced non-finite values (lower courant?)"
        )
    n_train = config.split[0] if indices is None else len(idx)
    std = float(frames[:n_train].std()) if n_train else 1.0
    return KolmogorovData(
        frames, config.to_dict(), std, config.split if indices is None else (len(idx), 0, 0)
    )


def kolmogorov_dataset(
    config: KolmogorovConfig, cache_dir: str | Path | None = None, **kw: Any
) -> KolmogorovData:
    """:func:`generate` once per configuration: read ``cache_dir/kolmogorov_<hash>.npz`` when it
    exists, else generate and save it atomically."""
    if cache_dir is None:
        return generate(config, **kw)
    path = Path(cache_dir) / f"kolmogorov_{config.fingerprint()}.npz"
    if path.exists():
        return load_kolmogorov(path)
    data = generate(config, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    data.save(path)
    return data
