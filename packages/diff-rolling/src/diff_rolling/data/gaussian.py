"""Linear-Gaussian sequences with an exact denoiser: the oracle the rolling sampler is tested with.

Each Fourier mode f of a frame (``fft2``, ``norm="ortho"``, channels independent) is a stationary
AR(1) process

    x_f^{k+1} = φ_f x_f^k + √(P_f (1 − |φ_f|²)) ξ_f,
    φ_f = phi · exp(−(damping + diffusivity |f|²)) · exp(−i f·velocity),

with f the angular wavenumber per pixel (``2π·fftfreq``), so ``velocity`` is in pixels per frame
along (rows, columns) and advection is a phase rotation. The stationary power is ``P_f = 1``
(``"white"``) or ``∝ (1 + |k|²/k0²)^(−slope/2)`` with integer wavenumbers k (``"power"``),
normalised to pixel variance 1. With a velocity the self-conjugate Nyquist modes get ``P = 0``
(their φ would be complex), so frames stay real. ``"white"`` with no velocity, damping or
diffusivity is an independent AR(1) per pixel with coefficient ``phi``: variance 1, lag-ℓ
correlation φ^ℓ.

Given the last context frame c (the process is Markov; no context: the stationary prior), the
window frames 0..W−1 have per mode the prior mean ``m_k = φ^{k+1} c_f`` and covariance
``C_ij = P φ^{i−j} − P φ^{i+1} conj(φ^{j+1})`` (i ≥ j; Hermitian). With ``A = diag(α)``,
``Σ = diag(σ²)`` per frame the posterior mean is ``x̂ = m + C A (A C A + Σ)^{−1}(z − A m)``,
computed in the scaled form ``C Ã (Ã C Ã + I)^{−1}(z̃ − Ã m)`` (``Ã = α/σ``, ``z̃ = z/σ``) for
conditioning: one batched W×W complex solve per mode.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diff_protocol import jax_normal

__all__ = ["GaussianVideo", "GaussianVideoDenoiser", "LossFloor"]


class LossFloor(NamedTuple):
    """The Bayes floor of the rolling objective: the mean and the floor per window position."""

    mean: float
    per_position: np.ndarray


@dataclass(frozen=True)
class GaussianVideo:
    """Stationary linear-Gaussian sequences of ``resolution²×channels`` frames (see the module).

    Example:
      >>> import jax
      >>> gv = GaussianVideo(resolution=8, phi=0.9)
      >>> gv.sample(jax.random.key(0), 2, 5).shape
      (2, 5, 8, 8, 1)
    """

    registry_name: ClassVar[str] = "gaussian_video"

    resolution: int = 32
    channels: int = 1
    phi: float = 0.9
    spectrum: str = "white"
    damping: float = 0.0
    diffusivity: float = 0.0
    velocity: tuple[float, float] = (0.0, 0.0)
    slope: float = 3.0
    k0: float = 4.0

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ValueError:
            return ValueError(
                f"GaussianVideo: {name} must be {expected}, got {getattr(self, name)!r}"
            )

        for name in ("resolution", "channels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "a positive int")
        if not (isinstance(self.phi, (int, float)) and 0.0 <= self.phi < 1.0):
            raise bad("phi", "in [0, 1)")
        if self.spectrum not in ("white", "power"):
            raise bad("spectrum", "'white' or 'power'")
        for name in ("damping", "diffusivity"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise bad(name, "a finite number >= 0")
        vel = tuple(self.velocity)
        if len(vel) != 2 or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in vel):
            raise bad("velocity", "two finite numbers (rows, columns)")
        object.__setattr__(self, "velocity", (float(vel[0]), float(vel[1])))

    # -- description (diff.models registry) -----------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        d = asdict(self)
        d["velocity"] = list(self.velocity)
        return d

    @classmethod
    def from_config(cls, config: dict[str, Any], *, seed: int = 0) -> GaussianVideo:
        d = dict(config)
        if "velocity" in d:
            d["velocity"] = tuple(d["velocity"])
        return cls(**d)

    # -- the spectrum ---------------------------------------------------------------------------
    def modes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(φ_f, P_f)`` on the full ``fft2`` grid, complex128 and float64 of shape (n, n)."""
        n = self.resolution
        k_int = np.fft.fftfreq(n) * n
        ky, kx = np.meshgrid(
            2 * np.pi * np.fft.fftfreq(n), 2 * np.pi * np.fft.fftfreq(n), indexing="ij"
        )
        f2 = ky**2 + kx**2
        vy, vx = self.velocity
        phi = (
            self.phi
            * np.exp(-(self.damping + self.diffusivity * f2))
            * np.exp(-1j * (ky * vy + kx * vx))
        )
        if self.spectrum == "white":
            power = np.ones((n, n))
        else:
            iy, ix = np.meshgrid(k_int, k_int, indexing="ij")
            power = (1.0 + (iy**2 + ix**2) / self.k0**2) ** (-self.slope / 2.0)
        if self.velocity != (0.0, 0.0):
            idx = np.arange(n)
            self_conj = (-idx) % n == idx
            sc = self_conj[:, None] & self_conj[None, :]
            sc[0, 0] = False
            power = np.where(sc, 0.0, power)
        power = power / power.mean()
        return phi, power

    # -- sampling -------------------------------------------------------------------------------
    def sample(self, key: Any, batch: int, length: int) -> jax.Array:
        """``(batch, length, n, n, C)`` float32 frames from the stationary start."""
        for name, v in (("batch", batch), ("length", length)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"GaussianVideo.sample: {name} must be a positive int, got {v!r}")
        phi, power = self.modes()
        return _sample(
            key,
            int(batch),
            int(length),
            self.resolution,
            self.channels,
            jnp.asarray(phi, jnp.complex64),
            jnp.asarray(power, jnp.float32),
        )

    # -- the exact denoiser ---------------------------------------------------------------------
    def exact_denoiser(self) -> GaussianVideoDenoiser:
        """The posterior mean ``E[x | z, context]`` of a window (``prediction = "x"``)."""
        return GaussianVideoDenoiser(self)

    def _prior_cov(
        self, window: int, context: bool, phi: np.ndarray, power: np.ndarray
    ) -> np.ndarray:
        """``(..., W, W)`` prior covariance per mode (numpy complex128)."""
        k = np.arange(window)
        lag = k[:, None] - k[None, :]
        ph = phi[..., None, None]
        p = power[..., None, None]
        lower = p * ph ** np.maximum(lag, 0)
        c = np.where(lag >= 0, lower, np.conj(np.swapaxes(lower, -1, -2)))
        if context:
            pw = ph[..., 0] ** (k + 1)  # (..., W)
            c = c - p * pw[..., :, None] * np.conj(pw[..., None, :])
        return c

    def posterior_covariance(self, logsnr_frames: Any, context: bool = True) -> np.ndarray:
        """``(..., n, n, W, W)`` posterior covariance per mode for per-frame levels
        ``logsnr_frames (..., W)`` (float64 numpy)."""
        lam = np.asarray(logsnr_frames, np.float64)
        phi, power = self.modes()
        return _posterior_cov(self._prior_cov(lam.shape[-1], context, phi, power), lam)

    def loss_floor(
        self,
        window: int,
        regime: str = "rolling",
        beta: float = 0.1,
        weighting: Any = None,
        *,
        context: bool = True,
        schedule: Any = None,
        n_quad: int = 20000,
    ) -> LossFloor:
        """The Bayes floor of the rolling objective (diff-core's convention, with the ½).

        Midpoint quadrature over the global time t of ``½ W_x(λ_k) P_kk`` per frame, ``W_x`` the
        weighting's x-space factor (for ``v_mse``: ``1/σ_k²``) and ``P_kk`` the exact posterior
        variance of frame k averaged over modes (= per pixel, by Parseval). ``regime``:
        ``"rolling"``, ``"init"``, ``"standard"`` or ``"mixed"`` (``(1 − β)·rolling + β·init``).
        """
        from diff_core import CosineSchedule
        from diff_core.weighting import v_mse

        from ..local_time import local_times

        weighting = v_mse() if weighting is None else weighting
        schedule = CosineSchedule(-15.0, 15.0) if schedule is None else schedule
        if regime == "mixed":
            r = self.loss_floor(
                window,
                "rolling",
                beta,
                weighting,
                context=context,
                schedule=schedule,
                n_quad=n_quad,
            )
            i = self.loss_floor(
                window, "init", beta, weighting, context=context, schedule=schedule, n_quad=n_quad
            )
            per = (1.0 - beta) * r.per_position + beta * i.per_position
            return LossFloor(float(per.mean()), per)
        t = (np.arange(n_quad, dtype=np.float64) + 0.5) / n_quad
        lam = np.asarray(schedule.logsnr(np.asarray(local_times(t, window, regime))), np.float64)
        phi, power = self.modes()
        # distinct modes only (a white spectrum has one)
        key = np.round(np.stack([phi.real, phi.imag, power], -1).reshape(-1, 3), 12)
        uniq, inverse = np.unique(key, axis=0, return_inverse=True)
        counts = np.bincount(inverse.ravel(), minlength=len(uniq)).astype(np.float64)
        u_phi = uniq[:, 0] + 1j * uniq[:, 1]
        prior = self._prior_cov(window, context, u_phi, uniq[:, 2])  # (U, W, W)
        pkk = np.zeros((n_quad, window))
        for chunk in np.array_split(np.arange(n_quad), max(1, n_quad // 2000)):
            post = _posterior_cov(prior[None], lam[chunk][:, None, :])  # (T, U, W, W)
            diag = np.real(np.diagonal(post, axis1=-2, axis2=-1))  # (T, U, W)
            pkk[chunk] = (diag * counts[None, :, None]).sum(1) / counts.sum()
        factor = np.asarray(weighting.factor(lam, None, "x"), np.float64)
        per = (0.5 * factor * pkk).mean(0)
        return LossFloor(float(per.mean()), per)

    # -- statistics of generated frames ---------------------------------------------------------
    @staticmethod
    def moments(frames: Any, max_lag: int = 3) -> dict[str, Any]:
        """``variance`` (mean over frames of the per-frame variance), ``lag_corr``/``lag_cov``
        for lags 1..max_lag (mean over frame pairs) and the mean power ``spectrum`` per mode."""
        x = np.asarray(frames, np.float64)
        if x.ndim != 5:
            raise ValueError(
                f"GaussianVideo.moments: frames must be (B, L, h, w, C), got {x.shape}"
            )
        axes = (0, 2, 3, 4)
        mu = x.mean(axes, keepdims=True)
        xc = x - mu
        var = (xc**2).mean(axes)  # (L,)
        lag_cov, lag_corr = [], []
        for lag in range(1, max_lag + 1):
            if lag >= x.shape[1]:
                break
            cov = (xc[:, lag:] * xc[:, :-lag]).mean(axes)
            lag_cov.append(float(cov.mean()))
            lag_corr.append(float((cov / np.sqrt(var[lag:] * var[:-lag])).mean()))
        spec = (np.abs(np.fft.fft2(x, axes=(2, 3), norm="ortho")) ** 2).mean((0, 1, 4))
        return {
            "variance": float(var.mean()),
            "lag_corr": np.asarray(lag_corr),
            "lag_cov": np.asarray(lag_cov),
            "spectrum": spec,
        }


def _posterior_cov(prior: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``C − C Ã (Ã C Ã + I)^{−1} Ã C`` with ``Ã = e^{λ/2}`` per frame (float64/complex128)."""
    a = np.exp(0.5 * lam)  # α/σ
    a_c = a[..., :, None] * prior  # Ã C
    m = a_c * a[..., None, :] + np.eye(lam.shape[-1])
    cross = prior * a[..., None, :]  # C Ã
    return prior - cross @ np.linalg.solve(m, a_c)


@functools.partial(jax.jit, static_argnames=("batch", "length", "n", "channels"))
def _sample(key, batch, length, n, channels, phi, power):
    def fft(x):
        return jnp.fft.fft2(x, axes=(1, 2), norm="ortho")

    def ifft(x):
        return jnp.real(jnp.fft.ifft2(x, axes=(1, 2), norm="ortho"))

    sp = jnp.sqrt(power)[None, :, :, None]
    innov = jnp.sqrt(power * (1.0 - jnp.abs(phi) ** 2))[None, :, :, None]
    ph = phi[None, :, :, None]
    shape = (batch, n, n, channels)
    x0 = ifft(sp * fft(jax_normal(jax.random.fold_in(key, 0), shape)))

    def step(x, i):
        xi = jax_normal(jax.random.fold_in(key, i), shape)
        x = ifft(ph * fft(x) + innov * fft(xi))
        return x, x

    _, rest = jax.lax.scan(step, x0, jnp.arange(1, length))
    frames = jnp.concatenate([x0[None], rest], axis=0)
    return jnp.moveaxis(frames, 0, 1).astype(jnp.float32)


class GaussianVideoDenoiser:
    """``E[x | z, context]`` for a :class:`GaussianVideo` window (``prediction = "x"``).

    ``__call__(z (B, W, n, n, C), logsnr (B, W) or (B,) or (), cond={"context": (B, K, n, n, C)})``;
    K = 0 (or no ``cond``) uses the stationary prior. Computes in complex128 when JAX's x64 mode is
    on (``with jax.enable_x64(True)``), else complex64; returns z's dtype.
    """

    prediction = "x"

    def __init__(self, video: GaussianVideo) -> None:
        self.video = video
        phi, power = video.modes()
        self._phi, self._power = phi, power
        # every mode alike (white, no velocity/damping/diffusivity): one real W×W gain per example,
        # applied per pixel (the same maths without the FFT)
        self._uniform = bool(np.allclose(phi, phi.flat[0]) and np.allclose(power, power.flat[0]))

    def __hash__(self) -> int:
        return hash(("GaussianVideoDenoiser", self.video))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GaussianVideoDenoiser) and other.video == self.video

    def __call__(self, z: Any, logsnr: Any, cond: Any = None) -> jax.Array:
        z = jnp.asarray(z)
        if z.ndim != 5:
            raise ValueError(
                f"GaussianVideoDenoiser: z must have shape (B, W, n, n, C), got {tuple(z.shape)}"
            )
        b, w = z.shape[:2]
        ctx = None
        if cond is not None:
            ctx = cond.get("context") if isinstance(cond, dict) else cond
        has_ctx = ctx is not None and ctx.shape[1] > 0
        x64 = jax.config.jax_enable_x64
        cdt, rdt = (jnp.complex128, jnp.float64) if x64 else (jnp.complex64, jnp.float32)
        lam = jnp.asarray(logsnr, rdt)
        if lam.ndim == 0:
            lam = jnp.full((b, w), lam)
        elif lam.shape == (b,):
            lam = jnp.broadcast_to(lam[:, None], (b, w))
        elif lam.shape != (b, w):
            raise ValueError(
                f"GaussianVideoDenoiser: logsnr must have shape () or {(b,)} or {(b, w)}, "
                f"got {tuple(lam.shape)}"
            )
        if self._uniform:
            return self._pixelwise(z, lam, ctx if has_ctx else None, rdt)
        prior = jnp.asarray(
            self.video._prior_cov(w, has_ctx, self._phi, self._power), cdt
        )  # (n,n,W,W)
        phi = jnp.asarray(self._phi, cdt)
        zf = jnp.fft.fft2(z.astype(rdt), axes=(2, 3), norm="ortho")  # (B, W, n, n, C)
        zf = jnp.moveaxis(zf, 1, -2)  # (B, n, n, W, C)
        sigma = jnp.sqrt(jax.nn.sigmoid(-lam))
        a = jnp.exp(0.5 * lam)  # α/σ, (B, W)
        if has_ctx:
            cf = jnp.fft.fft2(jnp.asarray(ctx[:, -1], rdt), axes=(1, 2), norm="ortho")  # (B,n,n,C)
            pw = phi[..., None] ** jnp.arange(1, w + 1)  # (n, n, W)
            m = pw[None, :, :, :, None] * cf[:, :, :, None, :]  # (B, n, n, W, C)
        else:
            m = jnp.zeros_like(zf)
        aa = a[:, None, None, :]  # (B,1,1,W)
        rhs = zf / sigma[:, None, None, :, None] - aa[..., None] * m
        mat = aa[..., :, None] * prior[None] * aa[..., None, :] + jnp.eye(w, dtype=cdt)
        y = jnp.linalg.solve(mat, rhs)
        x_hat = m + (prior[None] * aa[..., None, :]) @ y
        x_hat = jnp.moveaxis(x_hat, -2, 1)  # (B, W, n, n, C)
        out = jnp.real(jnp.fft.ifft2(x_hat, axes=(2, 3), norm="ortho"))
        return out.astype(z.dtype)

    def _pixelwise(self, z: Any, lam: Any, ctx: Any, rdt: Any) -> jax.Array:
        b, w = z.shape[:2]
        phi = float(np.real(self._phi.flat[0]))
        power = float(self._power.flat[0])
        prior = jnp.asarray(
            np.real(self.video._prior_cov(w, ctx is not None, np.array(phi), np.array(power))), rdt
        )  # (W, W)
        sigma = jnp.sqrt(jax.nn.sigmoid(-lam))
        a = jnp.exp(0.5 * lam)  # (B, W)
        mat = a[:, :, None] * prior[None] * a[:, None, :] + jnp.eye(w, dtype=rdt)
        gain = jnp.swapaxes(
            jnp.linalg.solve(mat, jnp.swapaxes(prior[None] * a[:, None, :], 1, 2)), 1, 2
        )
        zz = z.astype(rdt)
        if ctx is not None:
            pw = jnp.asarray(phi ** np.arange(1, w + 1), rdt)
            m = pw[None, :, None, None, None] * jnp.asarray(ctx[:, -1:], rdt)
        else:
            m = jnp.zeros_like(zz)
        rhs = zz / sigma[:, :, None, None, None] - a[:, :, None, None, None] * m
        x_hat = m + jnp.einsum("bij,bjhwc->bihwc", gain, rhs)
        return x_hat.astype(z.dtype)
