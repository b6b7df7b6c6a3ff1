"""Public checks for users of diff-edm3d (the e3nn ``util.test`` idea): equivariance of a dynamics,
a dense reference EGNN, an exact oracle dynamics and stability agreement.

Relative error of arrays a (reference) and b: max|a - b| / max|a|. Rotations are Haar-distributed
(e3nn's ``o3.rand_matrix``, drawn under a forked RNG so callers' global state is untouched);
improper rotations use -R. Rotated inputs are formed in float64 and then cast, so the error
measured is the network's, not the rounding of the test's own matrix product.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .batch import Graph, PackedBatch, PaddedBatch, to_packed
from .com import remove_mean
from .dynamics.base import Dynamics
from .dynamics.egnn import EGNNConfig, EGNNDynamics
from .schedule import EDMSchedule, alpha_from_gamma, sigma_from_gamma

__all__ = [
    "DenseEGNNReference",
    "ddp_consistency",
    "OracleDynamics",
    "assert_equivariant",
    "boost_coordinate_head",
    "equivariance_errors",
    "noisy_state",
    "random_rotation",
    "relative_error",
    "stability_agreement",
]


def relative_error(reference: Tensor, other: Tensor) -> float:
    """max|a - b| / max|a| in float64 (0 when both are exactly zero)."""
    a = reference.detach().to(torch.float64)
    b = other.detach().to(torch.float64)
    scale = float(a.abs().max()) if a.numel() else 0.0
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def random_rotation(seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
    """A Haar-random proper rotation (e3nn ``o3.rand_matrix``) drawn under a forked RNG."""
    try:
        from e3nn import o3
    except ImportError as exc:  # pragma: no cover
        raise ImportError('random_rotation needs e3nn: pip install "diff-edm3d[e3nn]"') from exc
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        r = o3.rand_matrix(dtype=torch.float64)
    return r.to(dtype)


def boost_coordinate_head(dynamics: Dynamics, std: float = 0.05, seed: int = 0) -> Dynamics:
    """Re-initialise the last phi_x layer of every EGNN block with N(0, std^2) (in place).

    The paper's Xavier gain 0.001 makes the coordinate head tiny at initialisation; the boost
    gives equivariance tests a network whose position output is large (max |eps_x| ~ 10^2).
    """
    if not isinstance(dynamics, EGNNDynamics):
        return dynamics
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in dynamics.blocks():
            w = block.gcl_equiv.coord_mlp[4].weight
            w.copy_(torch.randn(w.shape, generator=gen, dtype=torch.float64).mul(std).to(w.dtype))
    return dynamics


def noisy_state(
    edm: Any, batch: PackedBatch | PaddedBatch, k: int = 500, seed: int = 0
) -> tuple[PackedBatch, Tensor]:
    """The scaled noisy state z_k of a batch as a `PackedBatch` (x = z_x, h_cat/h_int = z_h),
    and t = k/T per molecule. Used to feed dynamics realistic inputs."""
    state = edm._prepare(batch, "noisy_state")
    gen = torch.Generator(device=state.xh.device).manual_seed(seed)
    eps = edm._draw_eps(state, gen)
    b = state.graph.num_molecules
    kk = torch.full((b,), k, dtype=torch.long, device=state.xh.device)
    g = edm.gamma(kk)
    bi = state.graph.batch
    alpha = alpha_from_gamma(g).to(state.xh.dtype).index_select(0, bi)[:, None]
    sigma = sigma_from_gamma(g).to(state.xh.dtype).index_select(0, bi)[:, None]
    z = alpha * state.xh + sigma * eps
    kcat = edm.n_types
    packed = to_packed(batch)
    out = packed.with_(x=z[:, :3], h_cat=z[:, 3 : 3 + kcat], h_int=z[:, 3 + kcat :])
    return out, (kk.to(torch.float64) / edm.T).to(state.xh.dtype)


def _features(batch: PackedBatch) -> Tensor:
    return torch.cat([batch.h_cat, batch.h_int], -1)


def _permutation(graph: Graph, seed: int) -> Tensor:
    """A random permutation of atoms within each molecule (packed indices)."""
    rng = np.random.default_rng(seed)
    ptr = graph.ptr.cpu().numpy()
    perm = np.concatenate(
        [ptr[b] + rng.permutation(ptr[b + 1] - ptr[b]) for b in range(len(ptr) - 1)]
    )
    return torch.as_tensor(perm, dtype=torch.long, device=graph.batch.device)


def equivariance_errors(
    dynamics: Dynamics,
    batch: PackedBatch | PaddedBatch,
    dtype: torch.dtype = torch.float64,
    boost_coord_head: bool = False,
    *,
    t: Tensor | float = 0.5,
    seed: int = 0,
) -> dict[str, float]:
    """Relative equivariance errors of a dynamics on a batch of (noisy, scaled) states.

    A copy of `dynamics` is cast to `dtype` (and its coordinate head boosted when asked).
    Checks, each as max(relative error of eps_x, of eps_h):

    * rotation: phi(R x) = (R eps_x, eps_h) for a Haar rotation R;
    * reflection: the same with an improper -R' (R' an independent Haar rotation);
    * translation: phi(x + c_b) = phi(x) for a random shift c_b per molecule (eps unchanged);
    * permutation: phi(P x, P h) = P phi(x, h) for random within-molecule permutations P.

    Returns a dict with these four keys, their ``_x``/``_h`` parts and ``max_abs_eps_x``.
    """
    net = copy.deepcopy(dynamics).to(dtype)
    if boost_coord_head:
        boost_coordinate_head(net, seed=seed)
    packed = to_packed(batch)
    graph = packed.graph
    x64 = packed.x.detach().to(torch.float64)
    h = _features(packed).to(dtype)
    ctx = None if packed.context is None else packed.context.to(dtype)
    t = torch.as_tensor(t, dtype=dtype)
    with torch.no_grad():
        ex, eh = net(x64.to(dtype), h, t, graph, ctx)
        ex64 = ex.to(torch.float64)
        out: dict[str, float] = {"max_abs_eps_x": float(ex.abs().max())}
        rot = random_rotation(seed)
        # a second, independent rotation for the improper case: -R alone would only test
        # that the network is odd in x, which holds exactly in floating point
        for name, r in (("rotation", rot), ("reflection", -random_rotation(seed + 3))):
            rx, rh = net((x64 @ r.T).to(dtype), h, t, graph, ctx)
            out[f"{name}_x"] = relative_error(ex64 @ r.T, rx)
            out[f"{name}_h"] = relative_error(eh, rh)
        gen = torch.Generator().manual_seed(seed + 1)
        shift = torch.randn((graph.num_molecules, 3), generator=gen, dtype=torch.float64) * 5.0
        tx, th = net((x64 + shift[graph.batch.cpu()].to(x64.device)).to(dtype), h, t, graph, ctx)
        out["translation_x"] = relative_error(ex, tx)
        out["translation_h"] = relative_error(eh, th)
        perm = _permutation(graph, seed + 2)
        px, ph = net(x64[perm].to(dtype), h[perm], t, graph, ctx)
        out["permutation_x"] = relative_error(ex[perm], px)
        out["permutation_h"] = relative_error(eh[perm], ph)
    for name in ("rotation", "reflection", "translation", "permutation"):
        out[name] = max(out[f"{name}_x"], out[f"{name}_h"])
    return out


def assert_equivariant(
    dynamics: Dynamics,
    batch: PackedBatch | PaddedBatch,
    dtype: torch.dtype = torch.float64,
    boost_coord_head: bool = False,
    tol: float | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """Raise AssertionError unless every error of `equivariance_errors` is below `tol`
    (default 1e-10 in float64, 1e-5 in float32); return the errors."""
    if tol is None:
        tol = 1e-10 if dtype == torch.float64 else 1e-5
    errs = equivariance_errors(dynamics, batch, dtype, boost_coord_head, **kwargs)
    bad = {
        k: v
        for k, v in errs.items()
        if k in ("rotation", "reflection", "translation", "permutation") and not v < tol
    }
    if bad:
        raise AssertionError(f"assert_equivariant: errors above {tol:g}: {bad} (all: {errs})")
    return errs


class DenseEGNNReference(EGNNDynamics):
    """The official dense padded EGNN computation (B N^2 edges with masks), taking the same
    state dict as `EGNNDynamics`; the reference of the layout-identity tests and benchmarks."""

    def __init__(
        self,
        config: EGNNConfig | None = None,
        elements: Any = None,
        include_charges: bool = True,
        context_dim: int = 0,
    ) -> None:
        config = config or EGNNConfig()
        fields = config.to_dict()
        fields["layout"] = "dense"
        super().__init__(EGNNConfig(**fields), elements, include_charges, context_dim)

    @classmethod
    def like(cls, dynamics: EGNNDynamics) -> DenseEGNNReference:
        """A dense reference with the same configuration and weights as `dynamics`."""
        ref = cls(
            dynamics.config, dynamics.elements, dynamics.include_charges, dynamics.context_dim
        )
        ref.load_state_dict(dynamics.state_dict())
        p = next(dynamics.parameters())
        return ref.to(device=p.device, dtype=p.dtype)


class OracleDynamics(Dynamics):
    """The exact posterior-mean eps-predictor for a finite set of same-size molecules.

    With the scaled states xh_i of the S training molecules (CoM-free positions), the optimal
    denoiser is E[xh | z_k] = sum_i softmax_i(-|z - alpha_k xh_i|^2 / (2 sigma_k^2)) xh_i,
    which is diff-core's exact finite-set denoiser (`EmpiricalDistribution`) on the flattened
    states; for z and xh_i in U the Euclidean posterior equals the CoM-free one. The
    eps-prediction is (z - alpha_k E[xh | z]) / sigma_k.

    Args:
        molecules: a `MoleculeSet` whose molecules all have the same atom count M.
        norm_values, norm_biases, include_charges: as the `EDMConfig` it is used with.
        schedule: the `EDMSchedule` (default: the paper's).
    """

    def __init__(
        self,
        molecules: Any,
        *,
        norm_values: tuple[float, float, float] = (1.0, 4.0, 10.0),
        norm_biases: tuple[float, float, float] = (0.0, 0.0, 0.0),
        include_charges: bool = True,
        schedule: EDMSchedule | None = None,
    ) -> None:
        super().__init__()
        from diff_core.analytic import EmpiricalDistribution

        from .batch import collate

        sizes = np.unique(np.asarray(molecules.n_atoms))
        if sizes.size != 1:
            raise ValueError(
                f"OracleDynamics: molecules must all have the same atom count, got {sizes.tolist()}"
            )
        self.m = int(sizes[0])
        self.elements = molecules.elements
        self.n_types = len(self.elements.symbols)
        self.include_charges = include_charges
        self.n_features = self.n_types + int(include_charges)
        self.context_dim = 0
        self.nan_policy = "raise"
        self.nan_resets = 0
        self.schedule = schedule or EDMSchedule()
        b = collate(molecules, dtype=torch.float64, include_charges=include_charges)
        x = remove_mean(b.x, b.graph)
        n_x, n_cat, n_int = norm_values
        b_x, b_cat, b_int = norm_biases
        xh = torch.cat([(x - b_x) / n_x, (b.h_cat - b_cat) / n_cat, (b.h_int - b_int) / n_int], -1)
        self.data = xh.reshape(b.num_molecules, -1).numpy()
        self.distribution = EmpiricalDistribution(self.data)

    def extra_config(self) -> dict[str, Any]:
        return {"name": "oracle", "m": self.m}

    def forward_packed(
        self, x: Tensor, h: Tensor, t: Tensor, graph: Graph, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if bool((graph.n_atoms != self.m).any()):
            raise ValueError(f"OracleDynamics: every molecule must have M = {self.m} atoms")
        b = graph.num_molecules
        z = torch.cat([x, h], -1).to(torch.float64).reshape(b, -1)
        k = self.schedule.k_of_t(t.to(torch.float64).cpu())
        gamma = self.schedule.gamma_table[k]
        logsnr = (-gamma).numpy()
        x_hat = np.asarray(self.distribution.posterior_mean(z.cpu().numpy(), logsnr))
        x_hat = torch.as_tensor(x_hat, dtype=torch.float64)
        alpha = alpha_from_gamma(gamma)[:, None]
        sigma = sigma_from_gamma(gamma)[:, None]
        eps = ((z.cpu() - alpha * x_hat) / sigma).reshape(-1, 3 + self.n_features)
        eps = eps.to(device=x.device, dtype=x.dtype)
        return self.finish(eps[:, :3], eps[:, 3:], graph)


def stability_agreement(a: Any, b: Any) -> dict[str, Any]:
    """Compare two stability results (or dicts of their flags): per-molecule and per-atom
    agreement fractions and whether the aggregate counts are identical."""

    def flags(r: Any, name: str) -> np.ndarray:
        v = r[name] if isinstance(r, Mapping) else getattr(r, name)
        return np.asarray(v, dtype=bool)

    ma, mb = flags(a, "molecule_stable"), flags(b, "molecule_stable")
    aa, ab = flags(a, "atom_stable"), flags(b, "atom_stable")
    if ma.shape != mb.shape or aa.shape != ab.shape:
        raise ValueError("stability_agreement: a and b must describe the same molecules")
    return {
        "molecule_agreement": float((ma == mb).mean()) if ma.size else 1.0,
        "atom_agreement": float((aa == ab).mean()) if aa.size else 1.0,
        "identical": bool((ma == mb).all() and (aa == ab).all()),
        "stable_molecules": (int(ma.sum()), int(mb.sum())),
        "stable_atoms": (int(aa.sum()), int(ab.sum())),
    }


# ----------------------------------------------------------------------------------------------
# DDP consistency (2 gloo processes on 127.0.0.1)


def _flat(tensors: Any) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _ddp_worker(rank: int, world: int, port: int, npz: str, config: dict, out: str) -> None:
    import os
    from pathlib import Path

    from .data.molecules import MoleculeSet
    from .distributed import init_distributed
    from .train import TrainConfig, Trainer

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    data = MoleculeSet.load_npz(npz)
    cfg = TrainConfig.from_dict(config).with_(out=str(Path(out) / "run"))
    trainer = Trainer(cfg, train_set=data, distributed=ctx)
    molecules = trainer.loader.next_batch()
    trainer.compute_gradients(molecules, 0)
    grads = _flat([p.grad for p in trainer.model.parameters()]).clone()
    trainer.apply_gradients()
    torch.save(
        {
            "ids": np.asarray(molecules.ids).tolist(),
            "backend": ctx.backend,
            "grads": grads,
            "params": _flat(trainer.model.parameters()).detach().clone(),
            "ema": _flat(trainer.ema.parameters()).detach().clone(),
        },
        Path(out) / f"rank{rank}.pt",
    )
    torch.distributed.destroy_process_group()


def ddp_consistency(molecules: Any, config: Any, workdir: Any) -> dict[str, Any]:
    """Compare one DDP training step on 2 spawned gloo processes (127.0.0.1) with one process.

    Each rank takes its contiguous half of the first global batch; DDP averages the gradients.
    The single process computes the two half-batch gradients with the ranks' generators (seeded
    from (seed, rank, step)), averages them and applies the same clipping, AdamW and EMA step.

    Args:
        molecules: the training `MoleculeSet` (its first global batch is used).
        config: a `TrainConfig` (use ``dtype="float64"`` for a 1e-12 comparison).
        workdir: an empty directory for the data file and the ranks' results.

    Returns:
        ``grad_rel`` (DDP vs the average of the half-batch gradients), ``params_rel`` and
        ``ema_rel`` (after the step, vs the single process), ``ranks_bitwise_equal`` (gradients,
        parameters and EMA identical on both ranks), ``rank_ids`` and ``backend``.
    """
    import socket
    from pathlib import Path

    import torch.multiprocessing as mp

    from .distributed import DistributedContext
    from .train import Trainer

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    npz = workdir / "data.npz"
    molecules.save_npz(npz, overwrite=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(
        _ddp_worker,
        args=(2, port, str(npz), config.to_dict(), str(workdir)),
        nprocs=2,
        join=True,
    )
    r0 = torch.load(workdir / "rank0.pt", weights_only=True)
    r1 = torch.load(workdir / "rank1.pt", weights_only=True)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = Trainer(
            config.with_(out=str(workdir / "single")),
            train_set=molecules,
            distributed=DistributedContext(),
        )
        halves = np.array_split(single.loader.global_indices(0, 0), 2)
        grads = []
        for rank, half in enumerate(halves):
            single.compute_gradients(molecules.subset(half), 0, rank=rank)
            grads.append([p.grad.clone() for p in single.model.parameters()])
        for p, g0, g1 in zip(single.model.parameters(), *grads):
            p.grad = (g0 + g1) / 2
        avg = _flat([p.grad for p in single.model.parameters()])
        single.apply_gradients()
        return {
            "backend": r0["backend"],
            "rank_ids": (r0["ids"], r1["ids"]),
            "single_ids": tuple(np.asarray(molecules.subset(h).ids).tolist() for h in halves),
            "ranks_bitwise_equal": bool(
                torch.equal(r0["grads"], r1["grads"])
                and torch.equal(r0["params"], r1["params"])
                and torch.equal(r0["ema"], r1["ema"])
            ),
            "grad_rel": relative_error(avg, r0["grads"]),
            "params_rel": relative_error(_flat(single.model.parameters()).detach(), r0["params"]),
            "ema_rel": relative_error(_flat(single.ema.parameters()).detach(), r0["ema"]),
        }
    finally:
        torch.set_num_threads(old)
