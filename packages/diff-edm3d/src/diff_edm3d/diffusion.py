"""The EDM diffusion model: normalisation, the l2 training loss, the likelihood bound, sampling.

Hoogeboom, Satorras, Vignac, Welling, "Equivariant Diffusion for Molecule Generation in 3D",
ICML 2022, arXiv:2203.17003; the official code is ehoogeboom/e3_diffusion_for_molecules
(``equivariant_diffusion/en_diffusion.py``). Where the paper text and the code disagree this module
follows the code. Notation (per molecule with M atoms, d_x = 3(M - 1), F feature channels):

* scaled state xh = [x/n_x, (h_cat - b_cat)/n_cat, (Z - b_int)/n_int] with n = (1, 4, 10);
* z_k = alpha_k xh + sigma_k eps, eps CoM-free in x (`ComFreeNoise`), gamma_k = -logsnr_k from
  `EDMSchedule` (diff-core's ``PolynomialSchedule``), t = k/T;
* training loss (``loss_type="l2"``): k ~ U{0..T},
  L = 1/2 |eps - eps_hat|^2 / ((3 + F) N_pad) for k >= 1 (N_pad the batch's largest M), and
  1/2 |eps_x - eps_hat_x|^2 / ((3 + F) N_pad) - log p(Z | z_0) - log p(cat | z_0) for k = 0,
  plus the prior KL (VDM, arXiv:2107.00630, for the bound);
* likelihood bound (nats): NLL = L_prior + T/2 expm1(gamma_k - gamma_{k-1}) |eps - eps_hat|^2
  + d_x (gamma_0/2 + log(2 pi)/2) + 1/2 |eps_0,x - eps_hat_0,x|^2 - log p(Z) - log p(cat)
  - log p(M) + d_x log n_x, k ~ U{1..T};
* ancestral sampling with diff-core's DDPM step and a re-projection of x onto U after every step,
  then the final decode (types sliced by K; the official code drops the last element when
  ``include_charges=False``).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .batch import (
    Graph,
    PackedBatch,
    PaddedBatch,
    check_atoms,
    check_graph,
    graph_from_n_atoms,
    to_packed,
)
from .com import ComFreeNoise, com_free_kl, remove_mean, segment_sum, subspace_dim
from .dynamics.base import Dynamics
from .elements import QM9_WITH_H, ElementSet
from .schedule import EDMSchedule, alpha_from_gamma, sigma_from_gamma

__all__ = ["EDM", "EDMConfig", "EDMDenoiser", "NLLTerms", "default_grid", "sample_with"]

_LOG_2PI = math.log(2 * math.pi)
# per-model default generators, kept outside the module so copies and state dicts ignore them
_DEFAULT_GENERATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class EDMConfig:
    """Diffusion hyper-parameters; defaults are the paper's unconditional QM9 runs.

    The conditional preset uses ``norm_values=(1, 8, 1)`` and ``include_charges=False``.
    """

    elements: ElementSet = QM9_WITH_H
    include_charges: bool = True
    norm_values: tuple[float, float, float] = (1.0, 4.0, 10.0)
    norm_biases: tuple[float, float, float] = (0.0, 0.0, 0.0)
    T: int = 1000
    schedule: str = "polynomial_2"
    precision: float = 1e-5
    loss_type: str = "l2"
    l2_denominator: str = "batch_max_atoms"
    max_atoms: int = 29
    context_dim: int = 0
    check_finite: bool = True
    allow_unseen_sizes: bool = False

    def __post_init__(self) -> None:
        func = "EDMConfig"
        if not isinstance(self.elements, ElementSet):
            raise TypeError(f"{func}: elements must be an ElementSet, got {type(self.elements)}")
        for key in ("norm_values", "norm_biases"):
            raw = getattr(self, key)
            try:
                vals = tuple(float(v) for v in raw)
                ok = len(vals) == 3 and not any(isinstance(v, (bool, str)) for v in raw)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"{func}: {key} must be 3 numbers, got {raw!r}")
            object.__setattr__(self, key, vals)
        if not all(math.isfinite(v) and v > 0 for v in self.norm_values):
            raise ValueError(
                f"{func}: norm_values must be 3 finite positive numbers, got {self.norm_values}"
            )
        if not all(math.isfinite(v) for v in self.norm_biases):
            raise ValueError(
                f"{func}: norm_biases must be 3 finite numbers, got {self.norm_biases}"
            )
        for key in ("include_charges", "check_finite", "allow_unseen_sizes"):
            if not isinstance(getattr(self, key), bool):
                raise TypeError(f"{func}: {key} must be a bool, got {getattr(self, key)!r}")
        if isinstance(self.T, bool) or not isinstance(self.T, int) or self.T < 1:
            raise ValueError(f"{func}: T must be a positive int, got {self.T!r}")
        if (
            isinstance(self.precision, bool)
            or not isinstance(self.precision, (int, float))
            or not 0 < float(self.precision) < 1
        ):
            raise ValueError(
                f"{func}: precision must be a number in (0, 1), got {self.precision!r}"
            )
        if not isinstance(self.schedule, str):
            raise TypeError(f"{func}: schedule must be a str, got {type(self.schedule).__name__}")
        if self.loss_type not in ("l2", "vlb"):
            raise ValueError(f"{func}: loss_type must be 'l2' or 'vlb', got {self.loss_type!r}")
        if self.l2_denominator not in ("batch_max_atoms", "per_molecule", "constant"):
            raise ValueError(
                f"{func}: l2_denominator must be 'batch_max_atoms', 'per_molecule' or 'constant', "
                f"got {self.l2_denominator!r}"
            )
        if (
            isinstance(self.max_atoms, bool)
            or not isinstance(self.max_atoms, int)
            or self.max_atoms < 1
        ):
            raise ValueError(f"{func}: max_atoms must be a positive int, got {self.max_atoms!r}")
        if (
            isinstance(self.context_dim, bool)
            or not isinstance(self.context_dim, int)
            or self.context_dim < 0
        ):
            raise ValueError(f"{func}: context_dim must be an int >= 0, got {self.context_dim!r}")

    @property
    def n_types(self) -> int:
        return len(self.elements.symbols)

    @property
    def n_features(self) -> int:
        return self.n_types + int(self.include_charges)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["elements"] = self.elements.to_dict()
        d["norm_values"] = list(self.norm_values)
        d["norm_biases"] = list(self.norm_biases)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EDMConfig:
        if not isinstance(d, dict):
            raise TypeError(f"EDMConfig.from_dict: d must be a dict, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"EDMConfig.from_dict: unknown keys {unknown}")
        d = dict(d)
        if isinstance(d.get("elements"), dict):
            d["elements"] = ElementSet.from_dict(d["elements"])
        for k in ("norm_values", "norm_biases"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass
class NLLTerms:
    """Per-molecule terms of the variational bound (nats), each a tensor [B].

    ``nll = prior + diffusion + x_constants + x_reconstruction - log_p_int - log_p_cat
    - log_p_n_atoms + volume``.
    """

    nll: Tensor
    prior: Tensor
    diffusion: Tensor
    x_constants: Tensor
    x_reconstruction: Tensor
    log_p_int: Tensor
    log_p_cat: Tensor
    log_p_n_atoms: Tensor
    volume: Tensor
    k: Tensor

    def as_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class _State:
    """A validated, packed, normalised batch."""

    graph: Graph
    xh: Tensor
    h_cat: Tensor  # one-hot (unnormalised)
    h_int: Tensor  # Z (unnormalised), [V, 0] without charges
    context: Tensor | None
    padded: PaddedBatch | None = field(default=None)


def _check_generator(generator: Any, func: str) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"EDM.{func}: generator must be a torch.Generator or None, got "
            f"{type(generator).__name__} {generator!r:.40} (for a seed, pass "
            f"torch.Generator().manual_seed(seed))"
        )


def default_grid(T: int) -> list[int]:
    """The paper's grid: every knot k = T, T-1, ..., 0."""
    return list(range(T, -1, -1))


def _std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class EDM(nn.Module):
    """E(3)-equivariant diffusion model over a `Dynamics` backbone.

    Args:
        dynamics: an `EGNNDynamics`/`E3nnDynamics` (or any `Dynamics`) with matching F and C.
        config: `EDMConfig`.
        atom_counts: `AtomCountDistribution` p(M) (the training histogram; enters the NLL and
            `generate`).
        property_dist: `PropertyGivenSize` p(c | M) for conditional generation.
        property_normaliser: `PropertyNormaliser` mapping raw properties to the context c'.
        property_names: names of the context columns (conditional models).
    """

    def __init__(
        self,
        dynamics: Dynamics,
        config: EDMConfig | None = None,
        atom_counts: Any = None,
        property_dist: Any = None,
        *,
        property_normaliser: Any = None,
        property_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        config = config or EDMConfig()
        if not isinstance(config, EDMConfig):
            raise TypeError(f"EDM: config must be an EDMConfig, got {type(config)}")
        if not isinstance(dynamics, Dynamics):
            raise TypeError(f"EDM: dynamics must be a Dynamics module, got {type(dynamics)}")
        if dynamics.n_features != config.n_features:
            raise ValueError(
                f"EDM: dynamics must have F = {config.n_features} feature columns "
                f"(K = {config.n_types}, include_charges={config.include_charges}), got "
                f"{dynamics.n_features}"
            )
        if dynamics.context_dim != config.context_dim:
            raise ValueError(
                f"EDM: dynamics must have context_dim = {config.context_dim}, got "
                f"{dynamics.context_dim}"
            )
        self.dynamics = dynamics
        self.config = config
        self.elements = config.elements
        self.schedule = EDMSchedule(config.T, config.schedule, config.precision)
        self.T = config.T
        self.atom_counts = atom_counts
        self.property_dist = property_dist
        self.property_normaliser = property_normaliser
        self.property_names = list(property_names) if property_names is not None else None
        self.n_types = config.n_types
        self.n_features = config.n_features
        self.n_x, self.n_cat, self.n_int = config.norm_values
        self.b_x, self.b_cat, self.b_int = config.norm_biases
        sigma0 = self.schedule.sigma0
        if 8 * sigma0 > 1.0 / max(self.n_cat, self.n_int):
            raise ValueError(
                f"EDM: norm_values must keep 8*sigma_0 <= 1/max(n_cat, n_int) = "
                f"{1.0 / max(self.n_cat, self.n_int):.6f}, got 8*sigma_0 = {8 * sigma0:.6f} with "
                f"norm_values {config.norm_values} (the t = 0 bins would be blurred)"
            )
        self._gamma_cache: dict[Any, Tensor] = {}

    # ------------------------------------------------------------------------------ helpers

    def _default_generator(self, device: torch.device) -> torch.Generator:
        """The model's own generator (seeded with 0 once per device, then advancing), used when a
        caller passes none: deterministic, never the global RNG, and fresh draws per call."""
        gens = _DEFAULT_GENERATORS.setdefault(self, {})
        gen = gens.get(device)
        if gen is None:
            gen = torch.Generator(device=device).manual_seed(0)
            gens[device] = gen
        return gen

    def gamma(self, k: Tensor) -> Tensor:
        """gamma_k in float64 on k's device."""
        dev = k.device
        table = self._gamma_cache.get(dev)
        if table is None:
            table = self.schedule.gamma_table.to(dev)
            self._gamma_cache[dev] = table
        k = k.long()
        return table.index_select(0, k.reshape(-1)).reshape(k.shape)

    def _coef(self, k: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        g = self.gamma(k)
        return g, alpha_from_gamma(g).to(dtype), sigma_from_gamma(g).to(dtype)

    def _prepare(self, batch: PackedBatch | PaddedBatch, func: str) -> _State:
        padded = None
        if isinstance(batch, PaddedBatch):
            padded = batch
            batch = to_packed(batch)
        if not isinstance(batch, PackedBatch):
            raise TypeError(
                f"EDM.{func}: batch must be a PackedBatch or PaddedBatch, got {type(batch)}"
            )
        if not batch.x.dtype.is_floating_point:
            raise TypeError(f"EDM.{func}: batch.x must be floating point, got {batch.x.dtype}")
        param = next(self.dynamics.parameters(), None)
        if param is not None and batch.x.dtype != param.dtype:
            raise TypeError(
                f"EDM.{func}: batch dtype must match the model's {param.dtype}, got batch.x "
                f"{batch.x.dtype} (collate(..., dtype={param.dtype}) or convert the model with "
                f"edm.to({batch.x.dtype}))"
            )
        if param is not None and batch.x.device != param.device:
            raise ValueError(
                f"EDM.{func}: batch device must match the model's {param.device}, got batch.x on "
                f"{batch.x.device} (collate(..., device={str(param.device)!r}))"
            )
        if batch.h_cat.shape[-1] != self.n_types:
            raise ValueError(
                f"EDM.{func}: batch.h_cat must have K = {self.n_types} columns, got "
                f"{batch.h_cat.shape[-1]}"
            )
        want_int = int(self.config.include_charges)
        if batch.h_int.shape[-1] != want_int:
            raise ValueError(
                f"EDM.{func}: batch.h_int must have {want_int} column(s) "
                f"(include_charges={self.config.include_charges}), got {batch.h_int.shape[-1]}"
            )
        if batch.x.dim() != 2 or batch.x.shape[1] != 3:
            raise ValueError(
                f"EDM.{func}: batch.x must have shape [V, 3], got {tuple(batch.x.shape)}"
            )
        check_graph(batch.graph, batch.x.shape[0], f"EDM.{func}", "batch")
        for key in ("h_cat", "h_int"):
            value = getattr(batch, key)
            if value.dim() != 2 or value.shape[0] != batch.x.shape[0]:
                raise ValueError(
                    f"EDM.{func}: batch.{key} must have one row per atom ({batch.x.shape[0]}), "
                    f"got shape {tuple(value.shape)}"
                )
        check_atoms(batch.n_atoms.cpu().numpy(), self.config.max_atoms, f"EDM.{func}")
        one_hot = ((batch.h_cat == 0) | (batch.h_cat == 1)).all() & (batch.h_cat.sum(-1) == 1).all()
        if not bool(one_hot):
            raise ValueError(
                f"EDM.{func}: batch.h_cat must be one-hot (one 1 per atom, zeros elsewhere), got "
                "other values (collate builds it from integer types)"
            )
        if self.config.check_finite:
            self._check_finite(batch.x, batch.graph, f"EDM.{func}", "batch.x")
        graph = batch.graph
        x = remove_mean(batch.x, graph)
        h_cat = batch.h_cat.to(x.dtype)
        h_int = batch.h_int.to(x.dtype)
        xh = torch.cat(
            [
                (x - self.b_x) / self.n_x if self.b_x else x / self.n_x,
                (h_cat - self.b_cat) / self.n_cat,
                (h_int - self.b_int) / self.n_int,
            ],
            -1,
        )
        context = self.dynamics.check_context(batch.context, graph.num_molecules, x)
        return _State(graph, xh, h_cat, h_int, context, padded)

    @staticmethod
    def _check_finite(t: Tensor, graph: Graph, func: str, name: str) -> None:
        bad = ~torch.isfinite(t).all(-1)
        if bool(bad.any()):
            a = int(torch.nonzero(bad)[0])
            mol = int(graph.batch[a])
            raise ValueError(
                f"{func}: {name} must be finite, got {t[a].tolist()} in molecule {mol}, atom "
                f"{a - int(graph.ptr[mol])}"
            )

    def _draw_eps(self, state: _State, generator: torch.Generator) -> Tensor:
        v = state.xh.shape[0]
        eps = torch.randn(
            (v, state.xh.shape[1]),
            generator=generator,
            dtype=state.xh.dtype,
            device=generator.device,
        ).to(state.xh.device)
        return torch.cat([remove_mean(eps[:, :3], state.graph), eps[:, 3:]], -1)

    def _inject_eps(self, eps: Tensor, state: _State, func: str) -> Tensor:
        if eps.dim() == 3:
            if state.padded is None:
                raise ValueError(f"EDM.{func}: eps must be packed [V, D] for a packed batch")
            m = state.padded.node_mask[..., 0] > 0.5
            eps = eps[m]
        if eps.shape != state.xh.shape:
            raise ValueError(
                f"EDM.{func}: eps must have the state's shape {tuple(state.xh.shape)}, got "
                f"{tuple(eps.shape)}"
            )
        eps = eps.to(state.xh.dtype)
        return torch.cat([remove_mean(eps[:, :3], state.graph), eps[:, 3:]], -1)

    def _k_from(
        self, t: Tensor | None, state: _State, generator: torch.Generator, low: int, func: str
    ) -> Tensor:
        b = state.graph.num_molecules
        dev = state.xh.device
        if t is None:
            k = torch.randint(low, self.T + 1, (b,), generator=generator, device=generator.device)
            return k.to(dev)
        t = torch.as_tensor(t, device=dev)
        if t.dim() == 0:
            t = t.expand(b)
        if t.shape != (b,):
            raise ValueError(
                f"EDM.{func}: t must have one value per molecule ({b}), got {tuple(t.shape)}"
            )
        if t.dtype.is_floating_point:
            k = self.schedule.k_of_t(t).to(dev)
        else:
            k = t.long()
        if bool((k < low).any()) or bool((k > self.T).any()):
            raise ValueError(f"EDM.{func}: t must lie on the grid k/T with k in [{low}, {self.T}]")
        return k

    def _network(self, z: Tensor, k: Tensor, state: _State, func: str) -> Tensor:
        if self.config.check_finite:
            self._check_finite(z, state.graph, f"EDM.{func}", "the noisy state z")
        t = (k.to(torch.float64) / self.T).to(z.dtype)
        # graph, times and context were checked once per call (_prepare, sample, EDMDenoiser)
        ex, eh = self.dynamics(z[:, :3], z[:, 3:], t, state.graph, state.context, check=False)
        return torch.cat([ex, eh], -1)

    def _per_molecule(self, values: Tensor, graph: Graph) -> Tensor:
        return segment_sum(values, graph.batch, graph.num_molecules)

    def _log_p_h_given_z0(self, z0: Tensor, state: _State) -> tuple[Tensor, Tensor]:
        """(log p(Z | z_0), log p(cat | z_0)) per molecule, read from z_0 (not the network)."""
        sigma0 = sigma_from_gamma(self.gamma(torch.zeros((), dtype=torch.long, device=z0.device)))
        sigma0 = sigma0.to(z0.dtype)
        k = self.n_types
        graph = state.graph
        if self.config.include_charges:
            c = z0[:, 3 + k : 4 + k] * self.n_int + self.b_int
            z_true = torch.round(state.h_int)
            sig = sigma0 * self.n_int
            centred = z_true - c
            log_pz = torch.log(
                _std_normal_cdf((centred + 0.5) / sig)
                - _std_normal_cdf((centred - 0.5) / sig)
                + 1e-10
            )
            log_p_int = self._per_molecule(log_pz[:, 0], graph)
        else:
            log_p_int = z0.new_zeros(graph.num_molecules)
        u = z0[:, 3 : 3 + k] * self.n_cat + self.b_cat
        sig = sigma0 * self.n_cat
        centred = u - 1
        log_q = torch.log(
            _std_normal_cdf((centred + 0.5) / sig) - _std_normal_cdf((centred - 0.5) / sig) + 1e-10
        )
        log_prob = log_q - torch.logsumexp(log_q, -1, keepdim=True)
        log_p_cat = self._per_molecule((log_prob * state.h_cat).sum(-1), graph)
        return log_p_int, log_p_cat

    def _kl_prior(self, state: _State) -> Tensor:
        """KL(q(z_T | x, h) || N(0, I)): CoM-free part over d_x dims + features over M F dims."""
        dtype = state.xh.dtype
        kT = torch.full((), self.T, dtype=torch.long, device=state.xh.device)
        g = self.gamma(kT)
        alpha_T, sigma_T = alpha_from_gamma(g).to(dtype), sigma_from_gamma(g).to(dtype)
        mu = alpha_T * state.xh
        kl_x = com_free_kl(mu[:, :3], sigma_T, state.graph)
        mu_h = mu[:, 3:]
        per_dim = -torch.log(sigma_T) + 0.5 * (sigma_T.square() + mu_h.square()) - 0.5
        kl_h = self._per_molecule(per_dim.sum(-1), state.graph)
        return kl_x + kl_h

    def _x_constants(self, state: _State) -> Tensor:
        d = subspace_dim(state.graph.n_atoms).to(state.xh.dtype)
        return d * self.schedule.x_constant_per_dim()

    def _l2_denominator(self, state: _State) -> Tensor:
        c = 3 + self.n_features
        n = state.graph.n_atoms.to(state.xh.dtype)
        mode = self.config.l2_denominator
        if mode == "batch_max_atoms":
            return c * n.max().expand_as(n)
        if mode == "per_molecule":
            return c * n
        return torch.full_like(n, float(c * self.config.max_atoms))

    # ------------------------------------------------------------------------------ training

    def loss(
        self,
        batch: PackedBatch | PaddedBatch,
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        eps: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-molecule training loss [B] and its terms (``loss_type`` "l2" or "vlb").

        Args:
            batch: packed or padded batch of real molecules.
            generator: torch.Generator for k and eps (default: the model's own generator, seeded
                with 0 at first use and advancing with every call).
            t: optional injected times (floats on the grid k/T, or integer knots k), [B].
            eps: optional injected noise shaped like the state ([V, 3 + F] or [B, N, 3 + F]);
                its x part is projected onto U.

        Returns:
            (loss [B], terms) with terms ``loss_t``, ``kl_prior``, ``log_p_h_z0`` (only meaningful
            where k = 0), ``error`` (the unnormalised squared error) and ``k``.
        """
        _check_generator(generator, "loss")
        state = self._prepare(batch, "loss")
        if generator is None and (t is None or eps is None):
            generator = self._default_generator(state.xh.device)
        k = self._k_from(t, state, generator, 0, "loss")
        eps = (
            self._draw_eps(state, generator)
            if eps is None
            else self._inject_eps(eps, state, "loss")
        )
        dtype = state.xh.dtype
        gamma_t, alpha_t, sigma_t = self._coef(k, dtype)
        bi = state.graph.batch
        z = (
            alpha_t.index_select(0, bi)[:, None] * state.xh
            + sigma_t.index_select(0, bi)[:, None] * eps
        )
        net = self._network(z, k, state, "loss")
        sq = (eps - net).square()
        error = self._per_molecule(sq.sum(-1), state.graph)
        error_x = self._per_molecule(sq[:, :3].sum(-1), state.graph)
        log_p_int, log_p_cat = self._log_p_h_given_z0(z, state)
        log_p_h = log_p_int + log_p_cat
        kl_prior = self._kl_prior(state)
        is_zero = k == 0
        if self.config.loss_type == "l2" and self.training:
            denom = self._l2_denominator(state)
            loss_pos = 0.5 * error / denom
            loss_zero = 0.5 * error_x / denom - log_p_h
            loss_t = torch.where(is_zero, loss_zero, loss_pos)
            loss = kl_prior + loss_t
        else:
            gamma_s = self.gamma((k - 1).clamp(min=0))
            snr_w = torch.expm1(gamma_t - gamma_s).to(dtype)
            loss_pos = 0.5 * snr_w * error
            loss_zero = 0.5 * error_x - log_p_h
            loss_t = torch.where(is_zero, loss_zero, loss_pos)
            loss = kl_prior + (self.T + 1) * loss_t + self._x_constants(state)
        terms = {
            "loss_t": loss_t,
            "kl_prior": kl_prior,
            "log_p_h_z0": torch.where(is_zero, log_p_h, torch.zeros_like(log_p_h)),
            "error": error,
            "k": k,
        }
        return loss, terms

    def forward(
        self,
        batch: PackedBatch | PaddedBatch,
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        eps: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Same as `loss` (so DDP can wrap the model and call it)."""
        return self.loss(batch, generator, t, eps)

    # ------------------------------------------------------------------------------ likelihood

    def nll(
        self,
        batch: PackedBatch | PaddedBatch,
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        eps: Tensor | Sequence[Tensor] | None = None,
    ) -> NLLTerms:
        """Per-molecule variational bound on -log p(x, h, M) in nats (one draw of k and eps).

        Args:
            batch: packed or padded batch.
            generator: for k ~ U{1..T}, eps_k and eps_0 (default: the model's own generator).
            t: optional injected times/knots [B] with k >= 1.
            eps: optional injected noise: a pair (eps_k, eps_0), or one tensor used for both.
        """
        _check_generator(generator, "nll")
        state = self._prepare(batch, "nll")
        if generator is None and (t is None or eps is None):
            generator = self._default_generator(state.xh.device)
        k = self._k_from(t, state, generator, 1, "nll")
        if eps is None:
            eps_t = self._draw_eps(state, generator)
            eps_0 = self._draw_eps(state, generator)
        else:
            if isinstance(eps, Tensor):
                eps_t = eps_0 = eps
            else:
                eps_t, eps_0 = eps
            eps_t = self._inject_eps(eps_t, state, "nll")
            eps_0 = self._inject_eps(eps_0, state, "nll")
        dtype = state.xh.dtype
        graph = state.graph
        bi = graph.batch
        gamma_t, alpha_t, sigma_t = self._coef(k, dtype)
        gamma_s = self.gamma(k - 1)
        z_t = (
            alpha_t.index_select(0, bi)[:, None] * state.xh
            + sigma_t.index_select(0, bi)[:, None] * eps_t
        )
        net = self._network(z_t, k, state, "nll")
        error = self._per_molecule((eps_t - net).square().sum(-1), graph)
        diffusion = self.T * 0.5 * torch.expm1(gamma_t - gamma_s).to(dtype) * error
        k0 = torch.zeros_like(k)
        _, alpha_0, sigma_0 = self._coef(k0, dtype)
        z_0 = (
            alpha_0.index_select(0, bi)[:, None] * state.xh
            + sigma_0.index_select(0, bi)[:, None] * eps_0
        )
        net_0 = self._network(z_0, k0, state, "nll")
        x_rec = 0.5 * self._per_molecule((eps_0[:, :3] - net_0[:, :3]).square().sum(-1), graph)
        log_p_int, log_p_cat = self._log_p_h_given_z0(z_0, state)
        prior = self._kl_prior(state)
        x_const = self._x_constants(state)
        d = subspace_dim(graph.n_atoms).to(dtype)
        volume = d * math.log(self.n_x)
        log_p_m = self.log_p_n_atoms(graph.n_atoms).to(dtype)
        nll = prior + diffusion + x_const + x_rec - log_p_int - log_p_cat - log_p_m + volume
        return NLLTerms(
            nll=nll,
            prior=prior,
            diffusion=diffusion,
            x_constants=x_const,
            x_reconstruction=x_rec,
            log_p_int=log_p_int,
            log_p_cat=log_p_cat,
            log_p_n_atoms=log_p_m,
            volume=volume,
            k=k,
        )

    def log_p_n_atoms(self, n_atoms: Tensor) -> Tensor:
        """log p(M) from the training histogram (ValueError naming M for an unseen size)."""
        if self.atom_counts is None:
            raise ValueError("EDM.nll: atom_counts must be given to evaluate log p(M), got None")
        out = self.atom_counts.log_prob(n_atoms, allow_unseen_sizes=self.config.allow_unseen_sizes)
        return torch.as_tensor(out, device=n_atoms.device)

    # ------------------------------------------------------------------------------ sampling

    def _check_sizes(self, n_atoms: Any, func: str) -> np.ndarray:
        arr = np.asarray(n_atoms.cpu() if isinstance(n_atoms, Tensor) else n_atoms)
        if arr.ndim == 0:
            arr = arr[None]
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or arr.size == 0:
            raise TypeError(
                f"EDM.{func}: n_atoms must be a non-empty 1-D integer array, got {arr!r}"
            )
        bad = np.flatnonzero((arr < 1) | (arr > self.config.max_atoms))
        if bad.size:
            b = int(bad[0])
            raise ValueError(
                f"EDM.{func}: n_atoms must lie in [1, max_atoms = {self.config.max_atoms}], got "
                f"{int(arr[b])} for molecule {b}"
            )
        return arr.astype(np.int64)

    def _grid(self, grid: Any, func: str) -> list[int]:
        if grid is None:
            return default_grid(self.T)
        if hasattr(grid, "t") and hasattr(grid, "logsnr"):
            t = np.asarray(grid.t, dtype=np.float64)
            k = np.round(t * self.T)
            if np.max(np.abs(k - t * self.T)) > 1e-6:
                raise ValueError(f"EDM.{func}: grid.t must lie on the knots k/T of the schedule")
            ks = [int(v) for v in k]
        else:
            ks = [int(v) for v in np.asarray(grid).reshape(-1)]
        if len(ks) < 2 or ks[0] != self.T or ks[-1] != 0 or any(a <= b for a, b in zip(ks, ks[1:])):
            raise ValueError(
                f"EDM.{func}: grid must be a strictly decreasing list of knots from T = "
                f"{self.T} to "
                f"0, got {ks[:3]}...{ks[-3:]}"
            )
        return ks

    def _decode(self, z: Tensor, graph: Graph) -> tuple[Tensor, Tensor, Tensor]:
        """Unnormalised positions, types (argmax over the K categorical columns) and Z."""
        k = self.n_types
        x = z[:, :3] * self.n_x + self.b_x
        cat = z[:, 3 : 3 + k] * self.n_cat + self.b_cat
        types = torch.argmax(cat, -1)
        if self.config.include_charges:
            charges = torch.round(z[:, 3 + k] * self.n_int + self.b_int).long()
        else:
            charges = torch.as_tensor(self.elements.atomic_numbers, device=z.device)[types]
        return x, types, charges

    @torch.no_grad()
    def sample(
        self,
        n_atoms: Any,
        context: Tensor | np.ndarray | None = None,
        noise: Any = None,
        seed: int = 0,
        grid: Any = None,
        return_chain: bool = False,
        *,
        sampler: Any = None,
        per_molecule: bool = False,
        progress: bool = False,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Any:
        """Ancestral sampling of molecules with the given atom counts.

        z_T = noise(0); for consecutive grid knots (t, s): eps_hat = phi(z_t, t),
        x_hat = (z_t - sigma_t eps_hat)/alpha_t (diff-protocol's VP helper), z_s = diff-core's
        step (default ``ddpm(0)``, the true posterior) with noise(i + 1), then the x part of z_s
        is re-projected onto U. Final decode from z_0: x ~ N_U(x_hat_x, (sigma_0/alpha_0)^2) with
        the
        last draw noise(N + 1), types = argmax of the K categorical columns, Z = round(n_int z_int).

        Args:
            n_atoms: [B] atom counts in [1, max_atoms].
            context: [B, C] normalised properties for conditional models.
            noise: a noise source (default `ComFreeNoise(graph, seed, per_molecule)`).
            seed: seed of the default noise source.
            grid: strictly decreasing knots from T to 0 (default: all of them), or a protocol
                `TimeGrid` on the knots.
            return_chain: also return the noisy states (unnormalised) at 10 grid points.
            sampler: a diff-core `SamplerStep` (default ``diff_core.samplers.ddpm(0.0)``).

        Returns:
            A `MoleculeSet` whose ``meta`` holds ``drift_events``, ``inconsistent_atoms``,
            ``max_com_drift`` and ``grid_steps``; with ``return_chain`` a pair
            (molecules, chain) where chain is a list of (k, MoleculeSet).
        """
        from diff_protocol import to_x_eps

        from .data.molecules import MoleculeSet

        sizes = self._check_sizes(n_atoms, "sample")
        ks = self._grid(grid, "sample")
        param = next(self.dynamics.parameters(), None)
        dtype = dtype or (param.dtype if param is not None else torch.float32)
        device = (
            torch.device(device)
            if device is not None
            else (param.device if param is not None else torch.device("cpu"))
        )
        graph = graph_from_n_atoms(sizes, device=device)
        b = len(sizes)
        ctx = None
        ctx_exact = None  # the requested values before the cast to the model dtype
        if context is not None:
            ctx_exact = (
                context.detach().cpu().double().numpy()
                if isinstance(context, Tensor)
                else np.asarray(context, dtype=np.float64)
            ).reshape(b, -1)
            ctx = torch.as_tensor(
                np.asarray(context) if not isinstance(context, Tensor) else context
            )
            ctx = ctx.to(device=device, dtype=dtype)
        ctx = self.dynamics.check_context(ctx, b, torch.empty((), dtype=dtype, device=device))
        if noise is None:
            noise = ComFreeNoise(
                graph, seed, per_molecule, n_features=self.n_features, dtype=dtype, device=device
            )
        if sampler is None:
            from diff_core.samplers import ddpm

            sampler = ddpm(0.0)
        state_stub = _State(graph, torch.empty(0), torch.empty(0), torch.empty(0), ctx)
        z = noise(0).to(device=device, dtype=dtype)
        if z.shape != (graph.num_atoms, 3 + self.n_features):
            raise ValueError(
                f"EDM.sample: noise(0) must have shape [V, 3 + F] = "
                f"[{graph.num_atoms}, {3 + self.n_features}], got {tuple(z.shape)}"
            )
        z = torch.cat([remove_mean(z[:, :3], graph), z[:, 3:]], -1)
        carry = sampler.init(z)
        n_steps = len(ks) - 1
        chain_at = (
            set(np.linspace(0, n_steps, 10).round().astype(int).tolist()) if return_chain else set()
        )
        chain: list[tuple[int, Any]] = []
        iterator: Any = range(n_steps)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="denoising", unit="step", leave=False)
        gamma_tab = self.schedule.gamma_table.to(device)
        for i in iterator:
            kt, ks_ = ks[i], ks[i + 1]
            if i in chain_at:
                chain.append((kt, self._chain_snapshot(z, graph, sizes)))
            kt_t = torch.full((b,), kt, dtype=torch.long, device=device)
            net = self._network(z, kt_t, state_stub, "sample")
            logsnr_t = -gamma_tab[kt]
            logsnr_s = -gamma_tab[ks_]
            x_hat, _ = to_x_eps(net, z, logsnr_t, "eps")
            step_noise = noise(i + 1).to(device=device, dtype=dtype) if sampler.stochastic else None
            z, carry = sampler.step(z, x_hat, logsnr_t, logsnr_s, step_noise, carry)
            z = torch.cat([remove_mean(z[:, :3], graph), z[:, 3:]], -1)
        if n_steps in chain_at:
            chain.append((0, self._chain_snapshot(z, graph, sizes)))
        # final decode p(x, h | z_0)
        k0 = torch.zeros((b,), dtype=torch.long, device=device)
        net = self._network(z, k0, state_stub, "sample")
        logsnr_0 = -gamma_tab[0]
        x_hat, _ = to_x_eps(net, z, logsnr_0, "eps")
        g0 = gamma_tab[0]
        sigma_x = torch.exp(0.5 * g0).to(dtype)  # sigma_0 / alpha_0
        last = noise(n_steps + 1).to(device=device, dtype=dtype)
        x = x_hat[:, :3] + sigma_x * remove_mean(last[:, :3], graph)
        pos, types, charges = self._decode(torch.cat([x, z[:, 3:]], -1), graph)
        com = segment_sum(pos, graph.batch, b).norm(dim=-1)
        drift = com > 0.05
        pos = remove_mean(pos, graph)
        expected_z = torch.as_tensor(self.elements.atomic_numbers, device=device)[types]
        inconsistent = int((charges != expected_z).sum()) if self.config.include_charges else 0
        meta = {
            "drift_events": int(drift.sum()),
            "max_com_drift": float(com.max()) if com.numel() else 0.0,
            "inconsistent_atoms": inconsistent,
            "grid_steps": n_steps,
            "seed": int(seed),
        }
        molecules = MoleculeSet(
            positions=pos.detach().cpu().numpy(),
            types=types.cpu().numpy(),
            n_atoms=sizes,
            elements=self.elements,
            meta=meta,
        )
        if self.property_names and ctx_exact is not None:
            molecules = self._attach_context(molecules, ctx_exact)
        if return_chain:
            return molecules, chain
        return molecules

    def _attach_context(self, molecules: Any, values: np.ndarray) -> Any:
        """Store the requested (denormalised) property values with the samples."""
        if self.property_normaliser is not None:
            values = np.asarray(
                self.property_normaliser.denormalise(values, self.property_names), dtype=np.float64
            ).reshape(values.shape)
        props = {name: values[:, j] for j, name in enumerate(self.property_names)}
        return molecules._replace(properties=props)

    def _chain_snapshot(self, z: Tensor, graph: Graph, sizes: np.ndarray) -> Any:
        from .data.molecules import MoleculeSet

        pos, types, _ = self._decode(z, graph)
        return MoleculeSet(
            positions=pos.detach().cpu().numpy(),
            types=types.cpu().numpy(),
            n_atoms=sizes,
            elements=self.elements,
        )

    def draw_sizes_and_context(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """M ~ p(M) (and c' ~ p(c | M) for conditional models) from PCG64([seed, 0])."""
        if self.atom_counts is None:
            raise ValueError("EDM.generate: atom_counts must be given to draw M ~ p(M), got None")
        rng = np.random.Generator(np.random.PCG64([seed, 0]))
        sizes = np.asarray(self.atom_counts.sample(n, rng), dtype=np.int64)
        ctx = None
        if self.config.context_dim:
            if self.property_dist is None:
                raise ValueError(
                    "EDM.generate: property_dist must be given for a conditional model, got None"
                )
            ctx = np.asarray(
                self.property_dist.sample(sizes, rng, normaliser=self.property_normaliser),
                dtype=np.float64,
            ).reshape(n, -1)
        return sizes, ctx

    @torch.no_grad()
    def generate(
        self,
        n: int,
        seed: int = 0,
        context: Tensor | np.ndarray | None = None,
        *,
        batch_size: int | None = None,
        grid: Any = None,
        progress: bool = False,
    ) -> Any:
        """Draw M ~ p(M) (and c ~ p(c | M) when conditional), then `sample` in batches.

        Molecule j always gets the same noise (per-molecule seeding by global index), so the
        result does not depend on ``batch_size``.
        """
        from .data.molecules import MoleculeSet

        if not isinstance(n, int) or n < 1:
            raise ValueError(f"EDM.generate: n must be a positive int, got {n!r}")
        sizes, ctx = self.draw_sizes_and_context(n, seed)
        if context is not None:
            ctx = np.asarray(context.cpu() if isinstance(context, Tensor) else context)
        bs = batch_size or n
        parts = []
        meta_sum = {"drift_events": 0, "inconsistent_atoms": 0, "max_com_drift": 0.0}
        param = next(self.dynamics.parameters())
        for start in range(0, n, bs):
            stop = min(n, start + bs)
            graph = graph_from_n_atoms(sizes[start:stop], device=param.device)
            noise = ComFreeNoise(
                graph,
                seed,
                True,
                n_features=self.n_features,
                dtype=param.dtype,
                device=param.device,
                molecule_offset=start,
            )
            part = self.sample(
                sizes[start:stop],
                context=None if ctx is None else ctx[start:stop],
                noise=noise,
                seed=seed,
                grid=grid,
                progress=progress,
            )
            for key in ("drift_events", "inconsistent_atoms"):
                meta_sum[key] += part.meta[key]
            meta_sum["max_com_drift"] = max(meta_sum["max_com_drift"], part.meta["max_com_drift"])
            parts.append(part)
        out = MoleculeSet.concatenate(parts) if len(parts) > 1 else parts[0]
        meta = dict(parts[0].meta)
        meta.update(meta_sum)
        meta["n"] = n
        return out._replace(meta=meta)


class EDMDenoiser:
    """diff-protocol `Denoiser` adapter (``prediction = "eps"``) for a fixed molecule graph.

    ``__call__(z, logsnr, cond=None)``: z is the packed scaled state [V, 3 + F]; logsnr is a
    scalar, one value per molecule [B] or per atom [V]; it is mapped to t = k/T with the
    schedule's ``t_of`` (exact on the knots) and broadcast to the atoms. diff-core samplers run on
    EDM through `sample_with`, which passes `ComFreeNoise` and re-projects after every step.
    """

    prediction = "eps"

    def __init__(self, edm: EDM, graph: Graph, context: Tensor | None = None) -> None:
        if not isinstance(edm, EDM):
            raise TypeError(f"EDMDenoiser: edm must be an EDM, got {type(edm)}")
        if isinstance(graph, PackedBatch):
            graph = graph.graph
        check_graph(graph, None, "EDMDenoiser")
        if context is not None:
            context = edm.dynamics.check_context(
                context, graph.num_molecules, torch.empty(0, dtype=torch.float64)
            )
        self.edm = edm
        self.graph = graph
        self.context = context

    def __call__(self, z: Tensor, logsnr: Any, cond: Any = None) -> Tensor:
        graph = self.graph
        b, v = graph.num_molecules, graph.num_atoms
        d = 3 + self.edm.n_features
        if not isinstance(z, Tensor) or not z.dtype.is_floating_point or z.shape != (v, d):
            got = f"{z.dtype} {tuple(z.shape)}" if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(
                f"EDMDenoiser: z must be a floating tensor [V, 3 + F] = [{v}, {d}], got {got}"
            )
        logsnr = torch.as_tensor(logsnr, device=z.device, dtype=torch.float64)
        if not bool(torch.isfinite(logsnr).all()):
            raise ValueError("EDMDenoiser: logsnr must be finite, got NaN or inf")
        if logsnr.dim() == 0:
            k = self.edm.schedule.k_of_logsnr(logsnr.reshape(1)).expand(b)
        elif logsnr.shape == (b,):
            k = self.edm.schedule.k_of_logsnr(logsnr)
        elif logsnr.shape == (v,):
            k_atoms = self.edm.schedule.k_of_logsnr(logsnr)
            k = k_atoms[graph.ptr[:-1]]
        else:
            raise ValueError(
                f"EDMDenoiser: logsnr must be a scalar, [B] = [{b}] or [V] = [{v}], got "
                f"{tuple(logsnr.shape)}"
            )
        context = cond if cond is not None else self.context
        state = _State(graph, z, z, z, self.edm.dynamics.check_context(context, b, z))
        return self.edm._network(z, k.to(z.device), state, "denoiser")


def sample_with(
    step: Any,
    edm: EDM,
    n_atoms: Any,
    grid: Any = None,
    seed: int = 0,
    context: Tensor | None = None,
    **kwargs: Any,
) -> Any:
    """Sample EDM with any diff-core `SamplerStep` (e.g. ``ddim(eta=0)``) on the knots, passing
    `ComFreeNoise` and re-projecting x onto U after every step."""
    return edm.sample(n_atoms, context=context, seed=seed, grid=grid, sampler=step, **kwargs)
