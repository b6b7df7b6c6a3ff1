"""Sampling on an 8-device CPU mesh equals single-device sampling (slow: a subprocess with forced
XLA CPU devices, run through diff_pixel.testing.run_sharded_equality)."""

import pytest

from diff_pixel.testing import run_sharded_equality

SCRIPT = r"""
import json
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from diff_core.schedules import CosineSchedule
from diff_pixel.models import Cond, ResidualUViT, UViTConfig
from diff_pixel.sampling import sample
from diff_pixel.testing import perturb
from diff_pixel.train import data_mesh

cfg = UViTConfig(8, 1, channels=(8, 16, 32), blocks=(1, 1), block_types=("res", "attn"),
                 mid_blocks=1, head_dim=8, dropout=(0.0, 0.0, 0.0), num_classes=3)
model = ResidualUViT(cfg, nnx.Rngs(0))
perturb(model, 1, 0.05)
cond = Cond(label=jnp.arange(16) % 3)
kw = dict(shape=(16, 8, 8, 1), key=jax.random.key(3), schedule=CosineSchedule(), steps=6,
          cond=cond, guidance=2.0, interval=(-3.0, 5.0))
out = {"devices": jax.device_count()}
ref = np.asarray(sample(model, **kw))
for n in (2, 8):
    x = sample(model, mesh=data_mesh(n), **kw)
    out[f"shards_{n}"] = len(x.sharding.device_set)
    out[f"max_diff_{n}"] = float(np.abs(np.asarray(x) - ref).max())
print(json.dumps(out))
"""


@pytest.mark.slow
def test_sampling_on_a_mesh_matches_one_device():
    res = run_sharded_equality(SCRIPT, devices=8, timeout=600)
    assert res["devices"] == 8
    assert res["shards_8"] == 8 and res["shards_2"] == 2
    assert res["max_diff_2"] <= 1e-5 and res["max_diff_8"] <= 1e-5, res
