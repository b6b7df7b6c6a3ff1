"""CPU train-step time of the packed, fused EGNN against the dense reference (spec 14.1).

The batch is the first 64 training molecules in the official permutation order (V = 1,142 atoms,
E = 19,806 packed edges, N_pad = 25, B N^2 = 40,000 dense pairs). One step = EDM l2 loss forward,
backward and the AdamW (amsgrad) step. Ours (``layout="packed"``) and `DenseEGNNReference` (the
same weights) are interleaved A/B/A/B; the figure is the median of ``--steps`` timed steps after
``--warmup`` warm-up steps, per thread count. Prints one JSON object per figure; only the ratio
dense/ours is a claim (the official code measured 11.2 s for 256/9 and 0.36 s for 64/4 per step
on a shared 2-core VM).

    python packages/diff-edm3d/benchmarks/cpu_train_step.py --configs 256x9,64x4 --threads 2,1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from diff_edm3d import EDM, EDMConfig, EGNNConfig, EGNNDynamics, collate
from diff_edm3d.data.qm9 import load_qm9, official_split
from diff_edm3d.testing import DenseEGNNReference


def benchmark_batch(cache_dir: str | None = None, size: int = 64):
    all_mols = load_qm9(cache_dir=cache_dir, progress=True)
    first = official_split(all_mols.ids)["train"][:size]
    index = {int(i): j for j, i in enumerate(all_mols.ids)}
    return all_mols.subset(np.array([index[int(i)] for i in first]))


def _models(nf: int, layers: int, seed: int = 0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        dyn = EGNNDynamics(EGNNConfig(nf=nf, n_layers=layers))
    dense = DenseEGNNReference.like(dyn)
    out = []
    for d in (dyn, dense):
        edm = EDM(d, EDMConfig(), None).train()
        opt = torch.optim.AdamW(edm.parameters(), lr=1e-4, weight_decay=1e-12, amsgrad=True)
        out.append((edm, opt))
    return out


def _step(edm, opt, batch, i: int) -> float:
    gen = torch.Generator().manual_seed(i)
    t0 = time.perf_counter()
    loss, _ = edm.loss(batch, gen)
    loss = loss.mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="256x9,64x4")
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    ms = benchmark_batch(args.cache_dir)
    batch = collate(ms)
    n = batch.n_atoms
    print(json.dumps({
        "figure": "benchmark_batch", "molecules": int(len(n)), "V": int(batch.num_atoms),
        "E": int(batch.edge_index.shape[1]), "N_pad": int(n.max()),
        "B_N2": int(len(n) * int(n.max()) ** 2), "first_ids": np.asarray(ms.ids[:5]).tolist(),
    }), flush=True)  # fmt: skip
    for threads in [int(v) for v in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for cfg in args.configs.split(","):
            nf, layers = (int(v) for v in cfg.split("x"))
            (ours, opt_o), (dense, opt_d) = _models(nf, layers)
            for i in range(args.warmup):
                _step(ours, opt_o, batch, i)
                _step(dense, opt_d, batch, i)
            t_o, t_d = [], []
            for i in range(args.steps):  # interleaved A/B/A/B
                t_o.append(_step(ours, opt_o, batch, 100 + i))
                t_d.append(_step(dense, opt_d, batch, 100 + i))
            mo, md = statistics.median(t_o), statistics.median(t_d)
            print(json.dumps({
                "figure": "cpu_train_step", "config": f"nf{nf}/L{layers}", "batch": 64,
                "threads": threads, "ours_s": round(mo, 4), "dense_s": round(md, 4),
                "ratio_dense_over_ours": round(md / mo, 3), "ours_all": [round(v, 4) for v in t_o],
                "dense_all": [round(v, 4) for v in t_d], "torch": torch.__version__,
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
