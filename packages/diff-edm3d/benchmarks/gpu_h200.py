"""One-GPU figures for EDM (spec 14.3): equivariance on the GPU, paper-config throughput against
the dense reference (TF32 off and on), seconds per QM9 epoch, model TFLOP/s, a 240 s training run
with EMA 0.999, and 1,000 molecules sampled in one batch with all 1,000 steps (stability with
Wilson intervals, drift events, ``samples.xyz``). Designed to finish in under 8 minutes on one
H200; every figure is one JSON line.

    python packages/diff-edm3d/benchmarks/gpu_h200.py --out "$OUT"            # on the GPU
    python packages/diff-edm3d/benchmarks/gpu_h200.py --dry-run --out /tmp/x   # CPU smoke test

QM9 comes from qm9pack (``load_qm9``) or, where qm9pack is not installed, from ``--data`` (a
`MoleculeSet` ``.npz`` of the training split written beforehand with ``--export-data``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from diff_edm3d import (
    EDM,
    AtomCountDistribution,
    EDMConfig,
    EGNNConfig,
    EGNNDynamics,
    MoleculeSet,
    collate,
    stability,
    write_xyz,
)
from diff_edm3d.data.loader import MoleculeLoader
from diff_edm3d.testing import DenseEGNNReference, equivariance_errors, noisy_state, relative_error
from diff_edm3d.train import AdaptiveClipper, ema_update

H200_FP32_TFLOPS = 67.0
H200_TF32_TFLOPS = 495.0  # dense tensor-core TF32
OFFICIAL = {"step_ms_b64": 39.4, "epoch_s_b64": 61.6, "reverse_step_ms_100": 16.8, "mol_per_s": 6.0}


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    torch.set_float32_matmul_precision("high" if on else "highest")


def load_train(args: argparse.Namespace) -> MoleculeSet:
    if args.data:
        return MoleculeSet.load_npz(args.data)
    from diff_edm3d import load_qm9

    return load_qm9(split="train", progress=False)


def egnn_macs(nf: int, layers: int, in_nf: int, v: int, e: int, dense_pairs: int | None) -> int:
    """Multiply-adds of one forward pass. Packed/fused (dense_pairs None): node projections
    V 2nf nf per first layer plus E-sized terms; dense: every first layer on B N^2
    concatenations."""
    if dense_pairs is None:
        first = v * 2 * nf * nf + e * 2 * nf
        edges = e
    else:
        first = dense_pairs * (2 * nf + 2) * nf
        edges = dense_pairs
    per_layer = (
        2 * first  # edge_mlp[0] and coord_mlp[0]
        + 2 * edges * nf * nf  # edge_mlp[2], coord_mlp[2]
        + 2 * edges * nf  # attention gate and the last coordinate layer
        + v * (2 * nf * nf + nf * nf)  # node_mlp
    )
    return layers * per_layer + 2 * v * in_nf * nf


def make_models(nf: int, layers: int, device: torch.device, counts, seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dyn = EGNNDynamics(EGNNConfig(nf=nf, n_layers=layers))
    cfg = EDMConfig(check_finite=False)
    ours = EDM(dyn, cfg, counts).to(device)
    dense = EDM(DenseEGNNReference.like(dyn), cfg, counts).to(device)
    return ours, dense


def time_training(edm, batches, warmup: int, steps: int, device) -> float:
    opt = torch.optim.AdamW(edm.parameters(), lr=1e-4, weight_decay=1e-12, amsgrad=True)
    edm.train()
    gen = torch.Generator(device=device).manual_seed(0)

    def step(b):
        loss, _ = edm.loss(b, gen)
        opt.zero_grad(set_to_none=True)
        loss.mean().backward()
        opt.step()

    for i in range(warmup):
        step(batches[i % len(batches)])
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    sync(device)
    return (time.perf_counter() - t0) / steps


@torch.no_grad()
def time_reverse_steps(edm, sizes, steps: int, device) -> float:
    grid = np.linspace(1000, 0, steps + 1).round().astype(int)
    edm.eval()
    edm.sample(sizes[:10], grid=np.array([1000, 500, 0]), device=device)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    edm.sample(sizes, grid=grid, device=device)
    sync(device)
    return (time.perf_counter() - t0) / (steps + 1)  # steps + the final decode pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu_out")
    ap.add_argument("--data", default=None, help="MoleculeSet .npz of the training split")
    ap.add_argument("--export-data", default=None, help="write the training split .npz and exit")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes, any device (smoke test)")
    ap.add_argument("--train-seconds", type=float, default=240.0)
    ap.add_argument("--n-samples", type=int, default=1000)
    args = ap.parse_args(argv)
    if args.export_data:
        from diff_edm3d import load_qm9

        train = load_qm9(split="train")
        train._replace(positions=train.positions.astype(np.float32)).save_npz(args.export_data)
        emit({"figure": "export", "path": args.export_data, "molecules": len(train)})
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dry = args.dry_run
    nf, layers = (32, 2) if dry else (256, 9)
    warmup, steps = (2, 3) if dry else (20, 200)
    train_seconds = 5.0 if dry else args.train_seconds
    n_samples = 10 if dry else args.n_samples
    sample_steps = 20 if dry else 1000
    emit({
        "figure": "environment", "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dry_run": dry,
    })  # fmt: skip
    t_start = time.perf_counter()
    train = load_train(args)
    counts = AtomCountDistribution.from_molecules(train)

    # 1-2. equivariance and layout identity on the device, TF32 off
    set_tf32(False)
    rows = np.array([0, 5, 22, 100, 500, 999]) % len(train)
    ctx6 = np.linspace(-1, 1, 6)[:, None]
    batch6 = collate(train.subset(rows), dtype=torch.float32, context=ctx6,
                     device=device)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = EGNNDynamics(EGNNConfig(nf=32, n_layers=3), context_dim=1).to(device)
    edm_c = EDM(net, EDMConfig(context_dim=1), None)
    state, t6 = noisy_state(edm_c, batch6, k=500, seed=3)
    for boost in (False, True):
        e = equivariance_errors(net, state, torch.float32, boost, t=t6)
        emit({"figure": "gpu_equivariance_float32", "boost_coord_head": boost,
              **{k: e[k] for k in ("rotation", "reflection", "translation", "permutation",
                                   "max_abs_eps_x")},
              "pass": all(e[k] < 1e-5 for k in ("rotation", "reflection", "translation",
                                                "permutation"))})  # fmt: skip
    dense_net = DenseEGNNReference.like(net)
    h = torch.cat([state.h_cat, state.h_int], -1).float()
    with torch.no_grad():
        px, ph = net(state.x.float(), h, t6.float(), state.graph, state.context.float())
        dx, dh = dense_net(state.x.float(), h, t6.float(), state.graph, state.context.float())
        g = state.graph
        com = max(float(px[g.ptr[b] : g.ptr[b + 1]].sum(0).abs().max()
                        / px[g.ptr[b] : g.ptr[b + 1]].abs().max()) for b in range(6))  # fmt: skip
    emit({"figure": "gpu_layout_identity_float32", "x": relative_error(px, dx),
          "h": relative_error(ph, dh), "com_free_max_rel": com})  # fmt: skip

    # 3. throughput of the paper configuration, ours vs dense, TF32 off and on
    bs = 64 if not dry else 8
    loader = MoleculeLoader(train, bs, shuffle=True, seed=0)
    batches = [collate(loader.next_batch(), device=device) for _ in range(20 if not dry else 2)]
    v_mean = float(np.mean([b.num_atoms for b in batches]))
    e_mean = float(np.mean([b.edge_index.shape[1] for b in batches]))
    pairs_mean = float(np.mean([b.num_molecules * int(b.n_atoms.max()) ** 2 for b in batches]))
    ours, dense = make_models(nf, layers, device, counts)
    steps_per_epoch = math.ceil(len(train) / 64)
    for tf32 in (False, True):
        set_tf32(tf32)
        for name, edm in (("ours", ours), ("dense", dense)):
            s = time_training(edm, batches, warmup, steps, device)
            macs = egnn_macs(nf, layers, 7, int(v_mean), int(e_mean),
                             None if name == "ours" else int(pairs_mean))  # fmt: skip
            tflops = 3 * 2 * macs / s / 1e12  # forward + backward (2x) multiply-adds
            peak = H200_TF32_TFLOPS if tf32 else H200_FP32_TFLOPS
            emit({
                "figure": "gpu_train_throughput", "impl": name, "tf32": tf32,
                "config": f"nf{nf}/L{layers}", "batch": bs, "step_ms": round(1e3 * s, 3),
                "steps_per_s": round(1 / s, 3), "epoch_s": round(s * steps_per_epoch, 2),
                "model_tflops": round(tflops, 3), "peak_fraction": round(tflops / peak, 4),
                "official_step_ms_b64": OFFICIAL["step_ms_b64"],
                "ratio_vs_official": round(OFFICIAL["step_ms_b64"] / (1e3 * s), 3),
            })  # fmt: skip
    set_tf32(True)
    sizes100, _ = ours.draw_sizes_and_context(100 if not dry else 10, 0)
    for name, edm in (("ours", ours), ("dense", dense)):
        s = time_reverse_steps(edm, sizes100, 50 if not dry else 3, device)
        emit({
            "figure": "gpu_reverse_step", "impl": name, "molecules": len(sizes100),
            "reverse_step_ms": round(1e3 * s, 3), "molecules_per_s_T1000": round(
                len(sizes100) / (1000 * s), 3),
            "official_reverse_step_ms": OFFICIAL["reverse_step_ms_100"],
            "goal_molecules_per_s": 12.0,
        })  # fmt: skip

    # 4. train the paper model for a fixed time with EMA 0.999
    model = ours
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-12, amsgrad=True)
    clipper = AdaptiveClipper()
    curve = []
    step = 0
    t0 = time.perf_counter()
    model.train()
    while time.perf_counter() - t0 < train_seconds:
        b = collate(loader.next_batch(), device=device)
        gen = torch.Generator(device=device).manual_seed(step)
        loss, _ = model.loss(b, gen)
        loss = loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm, _ = clipper.clip(model.parameters())
        opt.step()
        ema_update(ema, model, 0.999)
        step += 1
        if step % 10 == 0:
            curve.append({"step": step, "loss": float(loss.detach()), "grad_norm": norm,
                          "seconds": time.perf_counter() - t0})  # fmt: skip
    (out / "train_curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
    last = [r["loss"] for r in curve[-20:]] or [float("nan")]
    emit({"figure": "gpu_train_240s", "steps": step, "seconds": round(time.perf_counter() - t0, 1),
          "loss_last_200_steps": float(np.mean(last)), "ema": 0.999})  # fmt: skip

    # 5. sample in one batch with all steps, from the EMA
    sizes, _ = ema.draw_sizes_and_context(n_samples, 1)
    grid = np.linspace(1000, 0, sample_steps + 1).round().astype(int)
    sync(device)
    t1 = time.perf_counter()
    samples = ema.sample(sizes, seed=1, grid=grid, device=device)
    sync(device)
    secs = time.perf_counter() - t1
    st = stability(samples)
    write_xyz(samples, out / "samples.xyz", st.molecule_stable, overwrite=True)
    emit({
        "figure": "gpu_sample", "molecules": n_samples, "grid_steps": sample_steps,
        "seconds": round(secs, 2), "molecules_per_s": round(n_samples / secs, 3),
        "atom_stability": st.atom_stability, "atom_interval": list(st.atom_interval),
        "molecule_stability": st.molecule_stability,
        "molecule_interval": list(st.molecule_interval),
        "drift_events": samples.meta["drift_events"],
        "inconsistent_atoms": samples.meta["inconsistent_atoms"],
    })  # fmt: skip
    emit({"figure": "gpu_total", "seconds": round(time.perf_counter() - t_start, 1)})


if __name__ == "__main__":
    main()
