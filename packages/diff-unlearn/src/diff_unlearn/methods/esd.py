"""``esd`` — Erasing Stable Diffusion (Gandikota et al., ICCV 2023, arXiv 2303.07345;
rohitgandikota/erasing), for a class-conditional model.

Minimise ``forget_esd``: the model under the forgotten condition is regressed onto the original
model's *negatively guided* prediction ``ε_θ₀(∅) − η(ε_θ₀(c_f) − ε_θ₀(∅))`` (diff-core's
``guided`` at scale −η). ``params="all"`` trains every parameter (the ESD-u analogue);
``params="cond"`` only the class table / condition projection and the conditioning layers
(AdaLN and FiLM modulations), the ESD-x analogue. z_t comes from noised forget data
(``source="data"``, our default) or, as in ESD's code, from the model's own partial sampling
trajectories under the forgotten condition (``source="model"``: DDIM with ``sample_steps``
steps and guidance ``sample_guidance``, stopped at a random step; costs ``sample_steps`` guided
evaluations per training step and uses no forget images).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flax import nnx

from diff_unlearn.losses import LossSetup, check_esd_source, forget_esd
from diff_unlearn.methods.base import MethodLoss, UnlearnMethod, batch_part, check_weight

__all__ = ["COND_PARAMS", "esd"]

#: The conditioning parameters of a diff-pixel backbone (``params="cond"``).
COND_PARAMS = nnx.All(
    nnx.Param,
    nnx.Any(
        nnx.PathContains("label_emb"),
        nnx.PathContains("vector_emb"),
        nnx.PathContains("adaln"),
        nnx.PathContains("film"),
    ),
)


@dataclass(frozen=True)
class ESDLoss(MethodLoss):
    eta: float = 1.0
    source: str = "data"
    sample_steps: int = 25
    sample_guidance: float = 3.0
    method: str = field(default="esd", init=False)

    def _hidden(self) -> tuple[str, ...]:
        return ("source", "sample_steps", "sample_guidance") if self.source == "data" else ()

    def __call__(self, model, batch, key, aux, extra):
        lf, _ = forget_esd(
            self.setup,
            model,
            aux["original"],
            batch_part(batch, "forget"),
            key,
            self.eta,
            source=self.source,
            sample_steps=self.sample_steps,
            sample_guidance=self.sample_guidance,
        )
        return lf, {"forget_loss": lf}, extra


def esd(
    setup: LossSetup,
    eta: float = 1.0,
    params: str = "all",
    source: str = "data",
    sample_steps: int = 25,
    sample_guidance: float = 3.0,
) -> UnlearnMethod:
    """ESD with negative guidance η = 1 on every parameter, z_t from forget data (our
    defaults); ``source="model"`` samples z_t from the model itself (25 DDIM steps, guidance 3)."""
    eta = check_weight("esd", "eta", eta)
    if params not in ("all", "cond"):
        raise ValueError(f"esd: params must be 'all' or 'cond', got {params!r}")
    check_esd_source("esd", source, sample_steps, sample_guidance)
    sample_guidance = float(sample_guidance)
    return UnlearnMethod(
        "esd",
        ESDLoss(setup, eta, source, sample_steps, sample_guidance),
        trainable=nnx.Param if params == "all" else COND_PARAMS,
        hparams=(
            ("eta", eta),
            ("params", params),
            ("source", source),
            ("sample_steps", sample_steps),
            ("sample_guidance", sample_guidance),
        ),
    )
