"""The trainer with several networks: frozen teacher, alternating named optimisers, a frozen
encoder under weight decay, method state in ``extra`` and bitwise resume (platform 0.2).

Small MLPs on random vectors keep every test a few seconds; the numbers asserted (bitwise equality
of idle parts, the decoupled weight-decay factor, the learning of the student) only hold if the
trainer routes gradients, optimiser states and EMAs by network.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_pixel.data import SampledData
from diff_pixel.testing import assert_resume_bitwise
from diff_pixel.train import (
    Frozen,
    OptimizerSpec,
    Phase,
    TrainConfig,
    Trainer,
    freeze,
    read_metrics,
)

DIM = 4


class MLP(nnx.Module):
    def __init__(self, width: int = 16, *, rngs: nnx.Rngs) -> None:
        self.fc1 = nnx.Linear(DIM, width, rngs=rngs)
        self.fc2 = nnx.Linear(width, DIM, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jnp.tanh(self.fc1(x)))


class TeacherStudent(nnx.Module):
    def __init__(self, seed: int = 0) -> None:
        self.teacher = freeze(MLP(rngs=nnx.Rngs(100)))
        self.student = MLP(rngs=nnx.Rngs(seed))


class StudentAux(nnx.Module):
    def __init__(self) -> None:
        self.student = MLP(rngs=nnx.Rngs(1))
        self.aux = MLP(rngs=nnx.Rngs(2))


class EncoderHead(nnx.Module):
    def __init__(self, frozen: bool) -> None:
        encoder = MLP(rngs=nnx.Rngs(3))
        self.encoder = freeze(encoder) if frozen else encoder
        self.head = nnx.Linear(DIM, 1, rngs=nnx.Rngs(4))
        self.spare = nnx.Param(jnp.full((3,), 2.0))  # no gradient: only weight decay moves it

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.encoder(x))


def vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((n, DIM)).astype(np.float32)


def config(tmp_path, name: str, steps: int, **kw) -> TrainConfig:
    base = dict(
        steps=steps,
        batch_size=16,
        lr=1e-2,
        warmup_steps=0,
        grad_clip=0.0,
        ema_decay=0.9,
        log_every=1,
        checkpoint_every=0,
        out_dir=str(tmp_path / name),
        progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def same(a, b) -> bool:
    la, lb = leaves(a), leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def paths(tree) -> list[str]:
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def distill_loss(model, batch, key, aux):
    target = jax.lax.stop_gradient(model.teacher(batch["x"]))
    loss = jnp.mean((model.student(batch["x"]) - target) ** 2)
    return loss, {"mse": loss}


def test_frozen_teacher_is_bitwise_unchanged_and_has_no_optimizer_or_ema_state(tmp_path):
    model = TeacherStudent()
    teacher0 = leaves(nnx.state(model.teacher))
    trainer = Trainer(
        model,
        distill_loss,
        config(tmp_path, "ts", 100),
        SampledData(vectors, 16, seed=0),
    )
    trainer.run()
    end = trainer.model()
    assert same(nnx.state(end.teacher), teacher0)
    assert all(isinstance(v, Frozen) for _, v in nnx.to_flat_state(nnx.state(end.teacher)))
    # optimiser state and EMA exist for the student only
    for tree in (trainer.state.opt, trainer.state.ema):
        names = paths(tree)
        assert names and not any("teacher" in n for n in names)
        assert any("student" in n for n in names)
    assert sum(x.size for x in leaves(trainer.state.ema)) == sum(
        x.size for x in leaves(nnx.state(end.student))
    )
    # the student learned the teacher: the loss fell by more than 10x in 100 Adam steps
    records = read_metrics(trainer.metrics_log.path)
    assert len(records) == 100
    assert records[-1]["loss"] < 0.1 * records[0]["loss"]
    # the EMA model keeps the frozen teacher too
    assert same(nnx.state(trainer.ema_model().teacher), teacher0)


def aux_loss(model, batch, key, aux):
    # the auxiliary network regresses onto the student's (stop-gradient) output
    target = jax.lax.stop_gradient(model.student(batch["x"]))
    loss = jnp.mean((model.aux(batch["x"]) - target) ** 2)
    return loss, {}


def student_loss(model, batch, key, aux):
    loss = jnp.mean(
        (model.student(batch["x"]) - 0.5 * jax.lax.stop_gradient(model.aux(batch["x"]))) ** 2
    ) + jnp.mean(model.student(batch["x"]) ** 2)
    return loss, {}


def alternating_trainer(tmp_path, name, steps=4, **kw):
    optimizers = {
        "student": OptimizerSpec(wrt=nnx.All(nnx.Param, nnx.PathContains("student"))),
        "aux": OptimizerSpec(wrt=nnx.All(nnx.Param, nnx.PathContains("aux")), ema_decay=None),
    }
    phases = [
        Phase(aux_loss, ("aux",), name="aux", every=2, offset=0),
        Phase(student_loss, ("student",), name="student", every=2, offset=1),
    ]
    return Trainer(
        StudentAux(),
        None,
        config(tmp_path, name, steps, **kw),
        SampledData(vectors, 16, seed=1),
        optimizers=optimizers,
        phases=phases,
    )


def test_alternating_optimizers_leave_the_idle_network_and_its_adam_moments_bitwise(tmp_path):
    trainer = alternating_trainer(tmp_path, "alt", log_every=2)
    assert sorted(trainer.state.opt) == ["aux", "student"] and list(trainer.state.ema) == [
        "student"
    ]
    data = SampledData(vectors, 16, seed=1)

    def parts(state):
        model = nnx.merge(trainer.graphdef, state.variables)
        return (
            leaves(nnx.state(model.student)),
            leaves(nnx.state(model.aux)),
            leaves(state.opt["student"]),
            leaves(state.opt["aux"]),
            leaves(state.ema),
        )

    before = parts(trainer.state)
    m0 = trainer.step(next(data))  # step 0: the auxiliary phase only
    after0 = parts(trainer.state)
    assert set(m0) == {"aux/loss", "aux/grad_norm", "finite"}
    assert same(after0[0], before[0]) and same(after0[2], before[2]) and same(after0[4], before[4])
    assert not same(after0[1], before[1]) and not same(after0[3], before[3])
    m1 = trainer.step(next(data))  # step 1: the student phase only
    after1 = parts(trainer.state)
    assert set(m1) == {"student/loss", "student/grad_norm", "student/ema_decay", "finite"}
    assert same(after1[1], after0[1]) and same(after1[3], after0[3])
    assert not same(after1[0], after0[0]) and not same(after1[2], after0[2])
    assert {k: int(v) for k, v in trainer.state.count.items()} == {"aux": 1, "student": 1}
    # first EMA update of the student uses its own update count (0): min(0.9, 1/10)
    assert float(m1["student/ema_decay"]) == pytest.approx(0.1)

    # run(): each record averages each metric over the steps of the interval that reported it
    run = alternating_trainer(tmp_path, "alt_run", steps=4, log_every=2)
    run.run()
    records = read_metrics(run.metrics_log.path)
    assert [r["step"] for r in records] == [2, 4]
    assert {"aux/loss", "student/loss", "student/grad_norm"} <= set(records[0])


class SpareLoss:
    def __call__(self, model, batch, key, aux):
        y = jnp.sum(batch["x"], axis=-1, keepdims=True)
        loss = jnp.mean((model(batch["x"]) - y) ** 2)
        return loss, {}


@pytest.mark.smoke
@pytest.mark.parametrize("how", ["freeze", "filter"])
def test_frozen_encoder_gets_no_weight_decay_while_the_head_does(tmp_path, how):
    model = EncoderHead(frozen=how == "freeze")
    encoder0 = leaves(nnx.state(model.encoder))
    kw = {}
    if how == "filter":
        kw["trainable"] = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("encoder")))
    lr, wd = 0.05, 0.1
    trainer = Trainer(
        model,
        SpareLoss(),
        config(tmp_path, how, 3, lr=lr, weight_decay=wd),
        SampledData(vectors, 16, seed=2),
        **kw,
    )
    trainer.run()
    end = trainer.model()
    assert same(nnx.state(end.encoder), encoder0)
    assert not any("encoder" in p for p in paths(trainer.state.opt))
    # decoupled weight decay on a parameter with zero gradient: θ ← θ (1 − lr·wd) per step
    np.testing.assert_allclose(np.asarray(end.spare[...]), 2.0 * (1 - lr * wd) ** 3, rtol=1e-6)


def extra_loss(model, batch, key, aux, extra):
    # a method statistic kept between steps: a running mean of the raw loss, which also scales
    # the objective (so a wrong restore of `extra` changes the parameters)
    raw = jnp.mean(
        (model.student(batch["x"]) - jax.lax.stop_gradient(model.teacher(batch["x"]))) ** 2
    )
    scale = 1.0 / (1e-3 + extra["mean"])
    n = extra["n"] + 1
    mean = extra["mean"] + (jax.lax.stop_gradient(raw) - extra["mean"]) / n
    return scale * raw, {"raw": raw}, {"mean": mean, "n": n}


def extra_trainer(out_dir, hooks):
    cfg = TrainConfig(
        steps=6,
        batch_size=16,
        lr=1e-2,
        warmup_steps=2,
        lr_decay="cosine",
        log_every=1,
        checkpoint_every=0,
        out_dir=out_dir,
        progress=False,
    )
    return Trainer(
        TeacherStudent(),
        None,
        cfg,
        SampledData(vectors, 16, seed=3),
        phases=[Phase(extra_loss, ("model",), updates_extra=True)],
        extra={"mean": jnp.float32(1.0), "n": jnp.int32(0)},
        hooks=hooks,
    )


def test_kill_and_resume_with_extra_state_is_bitwise(tmp_path):
    report = assert_resume_bitwise(extra_trainer, 3)
    assert report["steps"] == 6 and report["records"] == 6
    t = extra_trainer(str(tmp_path / "x"), [])
    state = t.run()
    records = read_metrics(t.metrics_log.path)
    assert int(state.extra["n"]) == 6
    np.testing.assert_allclose(
        float(state.extra["mean"]), np.mean([r["raw"] for r in records]), rtol=1e-5
    )


def test_bad_optimizer_setups_are_named(tmp_path):
    data = SampledData(vectors, 16, seed=0)
    cfg = config(tmp_path, "bad", 1)
    both = nnx.All(nnx.Param, nnx.PathContains("student"))
    with pytest.raises(ValueError, match="disjoint variables, got 'student/fc1/bias'"):
        Trainer(
            StudentAux(),
            None,
            cfg,
            data,
            optimizers={"a": OptimizerSpec(wrt=both), "b": OptimizerSpec(wrt=nnx.Param)},
            phases=[Phase(aux_loss, ("a", "b"))],
        )
    with pytest.raises(ValueError, match="optimizer 'x' must select at least one variable"):
        Trainer(
            StudentAux(),
            aux_loss,
            cfg,
            data,
            optimizers={"x": OptimizerSpec(wrt=nnx.PathContains("nothing"))},
        )
    with pytest.raises(ValueError, match=r"phases\[0\]\.optimizers must name optimizers"):
        Trainer(StudentAux(), None, cfg, data, phases=[Phase(aux_loss, ("typo",))])
    with pytest.raises(ValueError, match="give either loss_fn or phases"):
        Trainer(StudentAux(), aux_loss, cfg, data, phases=[Phase(aux_loss, ("model",))])
    with pytest.raises(ValueError, match="offset in"):
        Phase(aux_loss, ("model",), every=2, offset=2)
