"""DDP on 2 gloo processes on 127.0.0.1 (spawned): gradients equal the single-process average of
the two half-batch gradients, and after one step parameters and EMA are bitwise equal across
ranks and match the single process (spec 10, 13.1 #18)."""

from __future__ import annotations

import numpy as np

from diff_edm3d import preset
from diff_edm3d.data.qm9 import read_qm9pack
from diff_edm3d.testing import ddp_consistency


def test_ddp_gradients_match_single_process(tmp_path):
    data = read_qm9pack(nrows=1000).subset(np.arange(40))
    cfg = preset("tiny", dtype="float64", batch_size=8, steps=1, eval_every=0, progress=False,
                 seed=3)  # fmt: skip
    res = ddp_consistency(data, cfg, tmp_path)
    assert res["backend"] == "gloo"
    a, b = res["rank_ids"]
    assert len(a) == 4 and len(b) == 4 and not set(a) & set(b)  # contiguous halves of 8
    assert tuple(res["single_ids"]) == (a, b)
    assert res["ranks_bitwise_equal"]
    assert res["grad_rel"] < 1e-12
    assert res["params_rel"] < 1e-12 and res["ema_rel"] < 1e-12
