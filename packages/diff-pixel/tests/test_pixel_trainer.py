"""Trainer mechanics on a small NNX regression model (fast to compile).

EMA formula, learning-rate schedules, non-finite handling (spec check 21), configuration mismatch
errors, checkpoint atomicity, metrics truncation on resume, aux arguments, 0.1 checkpoints, hooks
(sample grids, loss curve, interruption). Several networks, frozen parts and method state are in
test_pixel_trainer_networks.py; the diffusion-model checks (15, 20) in test_pixel_train_digits.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from diff_pixel.data import ArraySource, Loader
from diff_pixel.images import LossCurveHook, SampleGridHook
from diff_pixel.train import (
    Hook,
    PeriodicHook,
    StopAt,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    ema_decay_at,
    lr_schedule,
    read_metrics,
)


@dataclasses.dataclass(frozen=True)
class RegressorConfig:
    width: int = 4

    def to_dict(self):
        return dataclasses.asdict(self)


class Regressor(nnx.Module):
    """x (B, 4, 4, 1) → per-pixel affine map + a conv; learns y = 2x − 0.5 (label-shifted)."""

    def __init__(self, width: int = 4, *, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(1, width, (3, 3), rngs=rngs)
        self.out = nnx.Conv(width, 1, (1, 1), rngs=rngs)
        self.config = RegressorConfig(width)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(jnp.tanh(self.conv(x)))


def regression_loss(model, batch, key, aux):
    x = batch["x"]
    noise = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:]))(
        jax.vmap(jax.random.fold_in, (None, 0))(key, batch["index"])
    )
    scale = 1.0 if aux is None else aux["scale"]
    target = scale * (2.0 * x - 0.5) + 0.01 * noise
    err = (model(x) - target) ** 2
    loss = jnp.mean(err)
    return loss, {
        "mse": loss,
        "per_label_sum": jnp.zeros(2).at[0].set(loss),
        "per_label_count": jnp.ones(2),
    }


def source(n=40):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (n, 4, 4, 1)).astype(np.float32)
    return ArraySource(x, np.arange(n) % 2, num_classes=2, name="toy")


def make(out_dir, steps=4, seed=0, width=4, **kw):
    cfg_kw = dict(
        steps=steps,
        batch_size=8,
        lr=1e-2,
        warmup_steps=2,
        ema_decay=0.99,
        log_every=1,
        checkpoint_every=2,
        out_dir=str(out_dir),
        progress=False,
    )
    trainer_kw = {k: kw.pop(k) for k in list(kw) if k in ("aux", "hooks", "recipe", "resume")}
    cfg_kw.update(kw)
    model = Regressor(width, rngs=nnx.Rngs(seed))
    return Trainer(
        model, regression_loss, TrainConfig(**cfg_kw), Loader(source(), 8, seed=0), **trainer_kw
    )


def params(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.smoke
def test_ema_and_adamw_follow_their_formulas(tmp_path):
    trainer = make(tmp_path / "run")
    theta0 = params(nnx.state(trainer.model(), nnx.Param))
    batch = next(Loader(source(), 8, seed=0))
    m = trainer.step(batch)
    assert m["finite"] and m["ema_decay"] == pytest.approx(0.1)  # min(0.99, (1+0)/(10+0))
    theta1 = params(nnx.state(trainer.model(), nnx.Param))
    ema1 = params(trainer.state.ema)
    assert list(trainer.state.ema) == ["model"] and int(trainer.state.count["model"]) == 1
    for e, a, b in zip(ema1, theta0, theta1):
        np.testing.assert_allclose(
            e, np.float32(0.1) * a + np.float32(0.9) * b, rtol=1e-6, atol=1e-7
        )
    # first AdamW update with bias correction is -lr_0 * sign-like g/(|g| + eps); lr_0 = lr/2
    step = np.array([np.abs(b - a).max() for a, b in zip(theta0, theta1)])
    assert np.all(step <= 0.5e-2 * (1 + 1e-5)) and step.max() > 0.4e-2
    assert float(ema_decay_at(1000, 0.99, True)) == pytest.approx(0.99)
    assert float(ema_decay_at(5, 0.99, True)) == pytest.approx(6 / 15)
    assert float(ema_decay_at(5, 0.99, False)) == pytest.approx(0.99)


def test_step_cost_counts_the_step_without_running_it(tmp_path):
    trainer = make(tmp_path / "run")
    batch = next(Loader(source(), 8, seed=0))
    before = params(trainer.state)
    cost = trainer.step_cost(batch)
    assert trainer.step_count == 0
    assert all(np.array_equal(a, b) for a, b in zip(before, params(trainer.state)))
    # batch 8 of 4x4 pixels: conv 3x3 1->4 (4,608 multiply-adds) and conv 1x1 4->1 (512)
    # forward; backward the weight gradients of both and the input gradient of the second
    # (4,608 + 512 + 512); 2 flops each: 21,504. XLA adds the element-wise work (tanh, loss,
    # AdamW, EMA; 31,008 in all on jax 0.10.2) and one tanh per hidden unit (512) at least.
    assert 21_504 < cost["flops"] < 2 * 21_504
    assert cost["transcendentals"] >= 512
    assert trainer.step(batch)["finite"]  # the state was not consumed by the lowering


def test_lr_schedule_warmup_cosine_and_linear():
    cfg = TrainConfig(steps=110, batch_size=1, lr=1.0, warmup_steps=10)
    f = lr_schedule(cfg)
    np.testing.assert_allclose(
        [float(f(c)) for c in (0, 4, 9, 50)], [0.1, 0.5, 1.0, 1.0], rtol=1e-6
    )
    g = lr_schedule(cfg.replace(lr_decay="cosine"))
    np.testing.assert_allclose(float(g(60)), 0.5 * (1 + np.cos(np.pi * 0.5)), atol=1e-6)
    np.testing.assert_allclose(float(g(110)), 0.0, atol=1e-7)
    h = lr_schedule(cfg.replace(lr_decay="linear"))
    np.testing.assert_allclose([float(h(c)) for c in (35, 60, 110)], [0.75, 0.5, 0.0], atol=1e-6)


def test_nonfinite_raise_and_skip(tmp_path):
    batch = next(Loader(source(), 8, seed=0))
    bad = dict(batch)
    bad["x"] = batch["x"].copy()
    bad["x"][3, 1, 2, 0] = np.nan
    trainer = make(tmp_path / "raise")
    trainer.step(batch)
    with pytest.raises(
        FloatingPointError, match=r"non-finite loss at step 2; last checkpoint: none"
    ):
        trainer.step(bad)
    skipper = make(tmp_path / "skip", on_nonfinite="skip")
    skipper.step(batch)
    before = params(skipper.state.variables) + params(skipper.state.ema) + params(skipper.state.opt)
    m = skipper.step(bad)
    assert not m["finite"]
    after = params(skipper.state.variables) + params(skipper.state.ema) + params(skipper.state.opt)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert skipper.step_count == 2  # the data stream moves on; the weights do not
    assert int(skipper.state.count["model"]) == 1  # the discarded update is not counted
    m = skipper.step(batch)
    assert m["finite"] and not np.array_equal(params(skipper.state.variables)[0], before[0])


def test_resume_continues_exactly_and_truncates_metrics(tmp_path):
    full = make(tmp_path / "full", steps=6, hooks=[LossCurveHook()])
    full_state = full.run()
    first = make(tmp_path / "split", steps=6, hooks=[StopAt(4)])
    first.run()
    assert first.stopped_at == 4
    # a later, newer record left by a crash after the last checkpoint must be dropped on resume
    with open(tmp_path / "split" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, "loss": 123.0}) + "\n")
    # an interrupted Orbax save leaves a temporary directory: it is not a checkpoint
    os.makedirs(tmp_path / "split" / "checkpoints" / "6.orbax-checkpoint-tmp-1700000000" / "state")
    resumed = make(tmp_path / "split", steps=6, hooks=[LossCurveHook()])
    assert resumed.restored_step == 4
    assert [r["step"] for r in read_metrics(tmp_path / "split" / "metrics.jsonl")] == [1, 2, 3, 4]
    state = resumed.run()
    for a, b in zip(params(full_state), params(state), strict=True):
        assert np.array_equal(a, b)
    ra = read_metrics(tmp_path / "full" / "metrics.jsonl")
    rb = read_metrics(tmp_path / "split" / "metrics.jsonl")
    strip = lambda r: {k: v for k, v in r.items() if k not in ("wall_s", "examples_per_s")}  # noqa: E731
    assert [strip(r) for r in ra] == [strip(r) for r in rb] and len(ra) == 6
    assert set(ra[0]) >= {
        "step",
        "loss",
        "grad_norm",
        "lr",
        "ema_decay",
        "examples_per_s",
        "wall_s",
        "mse",
    }
    assert (tmp_path / "split" / "loss.png").is_file()
    assert sorted(os.listdir(tmp_path / "split" / "checkpoints"))[:3] == ["2", "4", "6"]


def test_exported_resume_check_passes_under_a_cosine_schedule():
    from diff_pixel.testing import assert_resume_bitwise

    report = assert_resume_bitwise(
        lambda out_dir, hooks: make(out_dir, steps=5, lr_decay="cosine", hooks=hooks), 2
    )
    assert report == {"steps": 5, "stop_at": 2, "leaves": 21, "records": 5}


def test_ctrl_c_checkpoints_and_raises_one_line(tmp_path):
    class CtrlC(Hook):
        def on_step(self, trainer, step, metrics):
            if step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    t = make(tmp_path / "run", steps=6, checkpoint_every=0, hooks=[CtrlC()])
    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 3; checkpoint written"):
        t.run()
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["3"]
    assert make(tmp_path / "run", steps=6, checkpoint_every=0).restored_step == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_other_configuration_is_a_clear_error(tmp_path):
    make(tmp_path / "run", steps=2).run()
    with pytest.raises(
        ValueError, match=r"differing fields: model\.config\.width: checkpoint 4, now 6"
    ):
        make(tmp_path / "run", steps=4, width=6)
    with pytest.raises(ValueError, match=r"train\.lr: checkpoint 0\.01, now 0\.02"):
        make(tmp_path / "run", steps=4, lr=2e-2)
    with pytest.raises(ValueError, match=r"recipe\.b: checkpoint <absent>, now 1"):
        make(tmp_path / "run", steps=4, recipe={"b": 1})
    with pytest.raises(ValueError, match="resume=False"):
        make(tmp_path / "run", steps=4, resume=False)
    # steps, logging and checkpoint cadence may change
    t = make(tmp_path / "run", steps=3, log_every=2, checkpoint_every=1)
    assert t.restored_step == 2


def test_batch_size_validation(tmp_path):
    model = Regressor(rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match="Trainer: batch_size must equal the loader's global batch size 8"
    ):
        Trainer(
            model,
            regression_loss,
            TrainConfig(steps=1, batch_size=16, out_dir=str(tmp_path)),
            Loader(source(), 8, seed=0),
        )
    with pytest.raises(TypeError, match="Trainer: config must be a TrainConfig"):
        Trainer(model, regression_loss, {"steps": 1}, Loader(source(), 8, seed=0))
    with pytest.raises(ValueError, match="TrainConfig: ema_decay must be in"):
        TrainConfig(steps=1, batch_size=1, ema_decay=1.0)


def test_aux_is_an_argument_not_a_constant(tmp_path):
    batch = next(Loader(source(), 8, seed=0))
    a = make(tmp_path / "a", aux={"scale": jnp.float32(1.0)})
    b = make(tmp_path / "b", aux={"scale": jnp.float32(3.0)})
    la = a.step(batch)["loss"]
    compiled = a._step.jitted((0,))._cache_size()
    lb = b.step(batch)["loss"]
    assert lb > 2 * la  # the target scale reaches the loss through aux
    # equal models and losses share one TrainStep; a new aux value is an argument: no recompile
    assert a._step is b._step
    assert a._step.jitted((0,))._cache_size() == compiled


V01_RUN = Path(__file__).parent / "data" / "v01_run"


def test_a_0_1_checkpoint_loads_for_sampling_and_is_refused_for_resuming(tmp_path):
    # tests/data/v01_run: 3 steps of a class- and vector-conditional 8x8 ResidualUViT written by
    # diff-pixel 0.1.0 (git HEAD of 2026-12-06), with its raw and EMA outputs on fixed inputs
    from diff_pixel.models import Cond

    model, ema, saved = Trainer.restore(V01_RUN)
    assert saved["format"] == 1 and saved["model"]["type"] == "ResidualUViT"
    ref = np.load(V01_RUN / "reference.npz")
    cond = Cond(label=jnp.array([0, 2]), vector=jnp.asarray([[0.5, -1.0], [1.0, 2.0]]))
    lam, z = jnp.array([-1.0, 2.0]), jnp.asarray(ref["z"])
    # the renamed label/vector embedder paths load: outputs equal 0.1's to float32 rounding.
    # Not bitwise: the reference was computed on another machine, and XLA's CPU code depends on
    # the processor (vector width changes the order of sums): on a second Xeon the same weights
    # gave 45 of 128 outputs one or two float32 ulps apart (max 6e-8). 1e-6 is far below what a
    # weight loaded wrongly changes: raw and EMA weights, three AdamW steps apart, differ > 1e-2.
    np.testing.assert_allclose(np.asarray(model(z, lam, cond)), ref["raw"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ema(z, lam, cond)), ref["ema"], rtol=0, atol=1e-6)
    assert np.abs(ref["raw"] - ref["ema"]).max() > 1e-2
    run = tmp_path / "old"
    shutil.copytree(V01_RUN, run)
    message = r"written by diff-pixel 0\.1 \(train-state format 1\); diff-pixel 0\.2 cannot resume"
    with pytest.raises(ValueError, match=message):
        make(run, steps=4)


def test_adam_second_moment_is_read_from_the_checkpoint(tmp_path):
    """adam_second_moment reads the default optimiser's (clipping + AdamW) ν from a checkpoint,
    without the model: bitwise the live state's ν at that step, keyed by parameter path."""
    import optax

    from diff_pixel.train import adam_second_moment

    trainer = make(tmp_path / "run", steps=4)
    trainer.run()
    live = optax.tree_utils.tree_get(trainer.state.opt["model"], "nu")
    mu = optax.tree_utils.tree_get(trainer.state.opt["model"], "mu")
    nu = adam_second_moment(tmp_path / "run")
    expect = {tuple(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(live)}
    assert (
        sorted(nu)
        == sorted(expect)
        == [
            ("conv", "bias"),
            ("conv", "kernel"),
            ("out", "bias"),
            ("out", "kernel"),
        ]
    )
    for k, v in expect.items():
        assert nu[k].dtype == v.dtype and nu[k].tobytes() == v.tobytes(), k
        assert (nu[k] >= 0).all()
    flat_mu = {tuple(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(mu)}
    assert any(not np.array_equal(flat_mu[k], nu[k]) for k in nu)  # ν, not μ
    # an earlier checkpoint holds an earlier ν
    early = adam_second_moment(tmp_path / "run", step=2)
    assert any(not np.array_equal(early[k], nu[k]) for k in nu)
    with pytest.raises(
        ValueError, match=r"optimizer must be one of the run's optimisers \['model'\], got 'aux'"
    ):
        adam_second_moment(tmp_path / "run", "aux")
    plain = Trainer(
        Regressor(rngs=nnx.Rngs(0)),
        regression_loss,
        TrainConfig(steps=1, batch_size=8, out_dir=str(tmp_path / "sgd"), progress=False),
        Loader(source(), 8, seed=0),
        tx=optax.sgd(1e-2),
    )
    plain.save_checkpoint()
    with pytest.raises(ValueError, match=r"must keep one Adam state \(count, mu, nu\), got 0"):
        adam_second_moment(tmp_path / "sgd")
    with pytest.raises(
        ValueError, match=r"format 1\); its optimiser and method state are not read"
    ):
        adam_second_moment(V01_RUN)


def test_sample_grids_and_loss_curve_are_hooks(tmp_path):
    def sample_fn(model, key):
        x = jax.random.uniform(key, (6, 4, 4, 1), minval=-1, maxval=1)
        return jnp.clip(model(x), -1, 1), jnp.array([0, 1, 0, 1, 1, 1])

    t = make(tmp_path / "s", steps=4, hooks=[SampleGridHook(sample_fn, every=2), LossCurveHook()])
    t.run()
    assert (tmp_path / "s" / "loss.png").is_file()
    files = sorted(os.listdir(tmp_path / "s" / "samples"))
    assert files == ["step_0000002.png", "step_0000004.png"]
    img = np.asarray(Image.open(tmp_path / "s" / "samples" / files[-1]))
    expected, labels = sample_fn(t.ema_model(), t.sample_key())
    from diff_pixel.images import make_grid

    grid, layout = make_grid(np.asarray(expected), labels=np.asarray(labels), boxes=True)
    assert (layout.rows, layout.cols) == (2, 4)  # two classes → two rows; four of class 1
    np.testing.assert_array_equal(img, grid[..., 0])


def test_periodic_hook_writes_every_n_steps_and_once_at_the_end(tmp_path):
    class Record(PeriodicHook):
        def __init__(self, every):
            super().__init__(every)
            self.steps = []

        def write(self, trainer, step):
            self.steps.append((step, trainer.step_count))

    hooks = [Record(2), Record(3), Record(0)]
    make(tmp_path / "p", steps=4, hooks=hooks).run()
    # written after the step it names; the last step is written once, by on_end
    assert [h.steps for h in hooks] == [[(2, 2), (4, 4)], [(3, 3), (4, 4)], [(4, 4)]]
    with pytest.raises(ValueError, match=r"Record: every must be an int >= 0, got -1"):
        Record(-1)
    with pytest.raises(NotImplementedError, match="PeriodicHook must implement write"):
        PeriodicHook(1).write(None, 1)
