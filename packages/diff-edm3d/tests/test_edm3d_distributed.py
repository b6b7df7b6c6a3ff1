"""DDP on 2 gloo processes on 127.0.0.1 (spawned): gradients equal the single-process average of
the two half-batch gradients, and after one step parameters and EMA are bitwise equal across
ranks and match the single process (spec 10, 13.1 #18)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from diff_edm3d import MoleculeSet, preset
from diff_edm3d.data.qm9 import read_qm9pack
from diff_edm3d.distributed import DistributedContext, init_distributed
from diff_edm3d.testing import relative_error
from diff_edm3d.train import Trainer


def _config(out: Path):
    return preset("tiny", dtype="float64", batch_size=8, steps=1, eval_every=0, progress=False,
                  out=str(out), seed=3)  # fmt: skip


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _worker(rank: int, world: int, port: int, npz: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )  # fmt: skip
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    assert ctx.world_size == 2 and ctx.backend == "gloo"
    data = MoleculeSet.load_npz(npz)
    trainer = Trainer(_config(Path(out) / "run"), train_set=data, distributed=ctx)
    molecules = trainer.loader.next_batch()
    trainer.compute_gradients(molecules, 0)
    grads = _flat([p.grad for p in trainer.model.parameters()]).clone()
    trainer.apply_gradients()
    torch.save(
        {
            "ids": np.asarray(molecules.ids).tolist(),
            "grads": grads,
            "params": _flat(trainer.model.parameters()).detach().clone(),
            "ema": _flat(trainer.ema.parameters()).detach().clone(),
        },
        Path(out) / f"rank{rank}.pt",
    )
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gradients_match_single_process(tmp_path):
    data = read_qm9pack(nrows=1000).subset(np.arange(40))
    npz = tmp_path / "data.npz"
    data.save_npz(npz)
    mp.spawn(_worker, args=(2, _free_port(), str(npz), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # the global batch of 8 is cut into two contiguous halves of 4
    assert len(r0["ids"]) == 4 and len(r1["ids"]) == 4 and not set(r0["ids"]) & set(r1["ids"])
    assert torch.equal(r0["grads"], r1["grads"])
    assert torch.equal(r0["params"], r1["params"]) and torch.equal(r0["ema"], r1["ema"])

    # single process: the average of the two half-batch gradients, then the same update
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = Trainer(_config(tmp_path / "single"), train_set=data,
                         distributed=DistributedContext())  # fmt: skip
        idx = single.loader.global_indices(0, 0)
        halves = np.array_split(idx, 2)
        grads = []
        for rank, half in enumerate(halves):
            part = data.subset(half)
            assert np.asarray(part.ids).tolist() == (r0 if rank == 0 else r1)["ids"]
            single.compute_gradients(part, 0, rank=rank)
            grads.append([p.grad.clone() for p in single.model.parameters()])
        for p, g0, g1 in zip(single.model.parameters(), *grads):
            p.grad = (g0 + g1) / 2
        avg = _flat([p.grad for p in single.model.parameters()])
        assert relative_error(avg, r0["grads"]) < 1e-12
        single.apply_gradients()
        assert relative_error(_flat(single.model.parameters()).detach(), r0["params"]) < 1e-12
        assert relative_error(_flat(single.ema.parameters()).detach(), r0["ema"]) < 1e-12
    finally:
        torch.set_num_threads(old)
