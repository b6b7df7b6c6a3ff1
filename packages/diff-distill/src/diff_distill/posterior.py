"""z_s from z_t and a clean sample: diff-core's DDIM-η step with x in place of the denoiser's x̂.

With ε̂ = (z_t − α_t x)/σ_t and c = −expm1(λ_t − λ_s) = 1 − SNR_t/SNR_s:

    z_s = α_s x + σ_s √(1 − η² c) ε̂ + η √c σ_s n

η = 1 draws the forward-process posterior q(z_s | z_t, x) (mean α_s[(1 − c) z_t/α_t + c x],
variance c σ_s²); η = 0 is DDIM. This is a thin call of ``diff_core.samplers.ddim(eta).step``, so
the student sampler and the training inputs share one implementation.
"""

from __future__ import annotations

from typing import Any

from diff_core import samplers as core_samplers

__all__ = ["posterior_sample"]


def posterior_sample(
    z_t: Any, x: Any, logsnr_t: Any, logsnr_s: Any, noise: Any, *, eta: float = 1.0
) -> Any:
    """One DDIM-η transition t → s (λ_s > λ_t) with ``x`` as the clean estimate and ``noise`` a
    standard normal draw of z_t's shape (ignored at η = 0). Bitwise ``ddim(eta).step``."""
    step = core_samplers.ddim(eta)
    z_s, _ = step.step(z_t, x, logsnr_t, logsnr_s, noise if eta > 0 else None)
    return z_s
