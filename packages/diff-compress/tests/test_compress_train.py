"""Training on diff-pixel's trainer: bitwise resume (check 15), model loading refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

from diff_compress import CodecConfig, Compressor, load_codec, train_codec
from diff_pixel.train import StopAt

STEPS, HALF = 20, 10


def _params(codec) -> dict:
    return {
        str(p): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(codec, nnx.Param))
    }


@pytest.mark.slow
def test_killed_and_resumed_run_is_bitwise_equal(tmp_path):
    cfg = CodecConfig(
        channels=8,
        latent_channels=4,
        levels=3,
        entropy_model="factorized",
        in_channels=1,
        lmbda=0.01,
        preset="custom",
    )
    kw = dict(crop=8, batch=16, checkpoint_every=10, progress=False)
    train_codec(cfg, "digits", tmp_path / "full", STEPS, **kw)
    tr = train_codec(cfg, "digits", tmp_path / "cut", STEPS, hooks=[StopAt(HALF)], **kw)
    assert tr.stopped_at == HALF and not (tmp_path / "cut" / "codec" / "config.json").exists()
    tr = train_codec(cfg, "digits", tmp_path / "cut", STEPS, **kw)
    assert tr.restored_step == HALF
    a, ta = load_codec(tmp_path / "full")
    b, tb = load_codec(tmp_path / "cut")
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])
    assert ta.fingerprint == tb.fingerprint
    np.testing.assert_array_equal(ta.z_pmf, tb.z_pmf)
    # a resumed run with another configuration is refused, naming the differing field
    other = CodecConfig(
        channels=8,
        latent_channels=4,
        levels=3,
        entropy_model="factorized",
        in_channels=1,
        lmbda=0.02,
        preset="custom",
    )
    with pytest.raises(ValueError, match="differing fields"):
        train_codec(other, "digits", tmp_path / "cut", STEPS + 10, **kw)
    cfgd = json.loads((tmp_path / "full" / "codec" / "config.json").read_text())
    assert cfgd["lmbda"] == 0.01
    comp = Compressor.load(tmp_path / "cut")
    img = np.zeros((8, 8), np.uint8)
    assert comp.decompress(comp.compress(img)).shape == (8, 8)
