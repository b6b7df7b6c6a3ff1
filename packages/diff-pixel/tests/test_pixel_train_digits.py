"""The trainer on the real model and loss: ``tiny-16`` on digits with the SiD2 recipe.

Spec checks 15 (bitwise resume, metrics records, stray Orbax temporary directory), 20 (bf16
compute keeps float32 state and matches the float32 loss) and the clear error for a checkpoint of
another model configuration. All float32 trainers here share one compiled step (equal graphdef,
loss function and optimiser settings).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_pixel.data import Loader, digits
from diff_pixel.models import build_model
from diff_pixel.sid import RUN_PRESETS, recipe_loss
from diff_pixel.train import StopAt, TrainConfig, Trainer, read_metrics

# The digits run preset's recipe (lr 2e-3, 100 warm-up steps, EMA 0.999) at batch 16: the same
# optimiser and loss as `diff-pixel train --batch-size 16`, so the CLI test reuses this compile.
RECIPE = RUN_PRESETS["digits"].recipe()
LOSS = recipe_loss(RECIPE)


def make(out_dir, steps, *, precision="float32", hooks=(), **model_overrides):
    cfg = TrainConfig.from_recipe(
        RECIPE,
        steps=steps,
        batch_size=16,
        log_every=1,
        checkpoint_every=3,
        out_dir=str(out_dir),
        progress=False,
    )
    model = build_model("tiny-16", compute_dtype=precision, **model_overrides)
    return Trainer(model, LOSS, cfg, Loader(digits(16), 16, seed=0), recipe=RECIPE, hooks=hooks)


def leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    state = make(out, 6).run()
    return out, leaves(state)


@pytest.mark.slow
def test_resume_is_bitwise(uninterrupted, tmp_path):
    full_dir, full = uninterrupted
    make(tmp_path, 6, hooks=[StopAt(3)]).run()
    # a save interrupted after step 3 leaves an incomplete Orbax temporary directory behind
    stray = tmp_path / "checkpoints" / "5.orbax-checkpoint-tmp-1761234567890"
    os.makedirs(stray / "model")
    (stray / "model" / "partial").write_bytes(b"\0" * 16)
    resumed = make(tmp_path, 6)
    assert resumed.restored_step == 3
    state = resumed.run()
    got = leaves(state)
    assert len(got) == len(full)
    bad = [i for i, (a, b) in enumerate(zip(full, got)) if not np.array_equal(a, b)]
    assert not bad, f"{len(bad)} of {len(full)} state leaves differ after resume"
    assert int(state.step) == 6
    strip = lambda r: {k: v for k, v in r.items() if k not in ("wall_s", "examples_per_s")}  # noqa: E731
    ra = [strip(r) for r in read_metrics(full_dir / "metrics.jsonl")]
    rb = [strip(r) for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in ra] == [1, 2, 3, 4, 5, 6]
    assert ra == rb
    # the loss function's per-λ-bin metrics are logged as interval means
    assert len(ra[0]["bin_loss_sum"]) == 8 and sum(ra[0]["bin_loss_count"]) == 16


@pytest.mark.slow
def test_restore_returns_model_and_ema(uninterrupted):
    full_dir, full = uninterrupted
    model, ema, saved = Trainer.restore(full_dir)
    assert saved["model"]["type"] == "residual_uvit" and saved["recipe"]["name"] == "sid2"
    raw_params = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
    ema_params = [np.asarray(x) for x in jax.tree.leaves(nnx.state(ema, nnx.Param))]
    # the EMA lags the raw weights; both come from the step-6 checkpoint
    assert any(not np.array_equal(a, b) for a, b in zip(raw_params, ema_params))
    trainer = make(full_dir, 6)
    assert trainer.restored_step == 6
    for a, b in zip(ema_params, jax.tree.leaves(trainer.state.ema["model"]), strict=True):
        assert np.array_equal(a, np.asarray(b))


@pytest.mark.slow
def test_checkpoint_of_another_model_config_is_a_clear_error(uninterrupted):
    full_dir, _ = uninterrupted
    with pytest.raises(
        ValueError, match=r"differing fields: model\.config\.mid_blocks: checkpoint 2, now 1"
    ):
        make(full_dir, 8, mid_blocks=1)


@pytest.mark.slow  # 40 s on a slower Xeon: over the fast-suite cap there (CI budget step)
def test_bfloat16_compute_keeps_float32_state(tmp_path):
    f32 = make(tmp_path / "f32", 20)
    bf16 = make(tmp_path / "bf16", 20, precision="bfloat16")
    s32, s16 = f32.run(), bf16.run()
    for leaf in (
        jax.tree.leaves(s16.variables) + jax.tree.leaves(s16.opt) + jax.tree.leaves(s16.ema)
    ):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32
    model = bf16.model()
    x = jnp.zeros((2, 16, 16, 1))
    from diff_pixel.models import Cond

    # abstract evaluation (no compilation): the bf16 model's output is float32
    out = jax.eval_shape(lambda: model(x, jnp.zeros(2), Cond(label=jnp.array([1, 2]))))
    assert out.dtype == jnp.float32 and model.config.compute_dtype == "bfloat16"
    l32 = read_metrics(tmp_path / "f32" / "metrics.jsonl")[-1]["loss"]
    l16 = read_metrics(tmp_path / "bf16" / "metrics.jsonl")[-1]["loss"]
    assert abs(l16 - l32) <= 0.1 * l32, (l16, l32)
    assert np.isfinite(l16) and int(s32.step) == int(s16.step) == 20
