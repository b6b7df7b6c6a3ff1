"""Tier (a) checks 11 and 12 and the training plumbing: the trainer phases against a from-scratch
transcription (TRACT), the diffusion limit through the real step, the frozen teacher, bitwise
resume and the validation messages."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_consistency import (
    ConsistencyConfig,
    initial_extra,
    make_phases,
    make_student,
    teacher_fingerprint,
    tract,
    train_consistency,
)
from diff_core.schedules import CosineSchedule
from diff_pixel import MLPDenoiser, SampledData
from diff_pixel.losses import example_keys
from diff_pixel.testing import assert_resume_bitwise
from diff_pixel.train import read_metrics
from diff_protocol import jax_normal

SCHEDULE = CosineSchedule(-15.0, 15.0)


def _mlp(seed: int, dim: int = 2, scale: float = 0.3) -> MLPDenoiser:
    model = MLPDenoiser(dim, width=16, depth=2, rngs=nnx.Rngs(seed))
    state = nnx.state(model, nnx.Param)
    keys = iter(jax.random.split(jax.random.key(100 + seed), len(jax.tree.leaves(state))))
    nnx.update(model, jax.tree.map(lambda p: p + scale * jax_normal(next(keys), p.shape), state))
    return model


def _ring(n, rng):
    a = rng.uniform(0, 2 * np.pi, n)
    return np.stack([np.cos(a), np.sin(a)], axis=1) + 0.05 * rng.standard_normal((n, 2))


def _batch(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": jnp.asarray(_ring(n, rng), jnp.float32), "index": jnp.arange(n)}


# --------------------------------------------------------------------------- TRACT (check 11)


def _alpha_sigma(lam):
    return jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam))


def _transcribed_tract_loss(student, teacher, target, batch, key, big_t, s_steps, clip=1.0):
    """TRACT's loss written out from spec §5.6 (apple/ml-tract ``tc_distill.py``): t on the
    teacher grid inside the student segment, the teacher's clipped DDIM step t → t − 1/T, the EMA
    self-teacher's DDIM jump to the segment end (skipped at the end), the invDDIM target and the
    max(SNR, 1)-weighted squared error summed over dimensions."""
    x = batch["x"]
    keys = example_keys(key, batch["index"])
    u_seg = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 3), ()))(keys)
    u_pos = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 4), ()))(keys)
    eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), (2,), x.dtype))(keys)
    n_seg = big_t // s_steps
    j = jnp.floor(u_seg * s_steps).astype(jnp.int32)
    n_rel = jnp.floor(u_pos * n_seg).astype(jnp.int32) + 1
    t = (j * n_seg + n_rel).astype(x.dtype) / big_t
    s = (j * n_seg + n_rel - 1).astype(x.dtype) / big_t
    t_end = j.astype(x.dtype) / s_steps
    lam = lambda tt: jnp.asarray(SCHEDULE.logsnr(tt), x.dtype)  # noqa: E731
    lt, ls = lam(t), lam(s)
    a_t, s_t = _alpha_sigma(lt)
    a_s, s_s = _alpha_sigma(ls)
    a_e, s_e = _alpha_sigma(lam(t_end))
    a_e = jnp.where(t_end == 0, 1.0, a_e)  # the data end (spec §2): α = 1, σ = 0
    s_e = jnp.where(t_end == 0, 0.0, s_e)
    a_s = jnp.where(s == 0, 1.0, a_s)
    s_s = jnp.where(s == 0, 0.0, s_s)
    col = lambda v: v[:, None]  # noqa: E731
    z_t = col(a_t) * x + col(s_t) * eps

    def x_of(net, z, lam_):  # v-prediction networks
        a, sg = _alpha_sigma(lam_)
        return col(a) * z - col(sg) * net(z, lam_)

    x_teacher = jnp.clip(x_of(teacher, z_t, lt), -clip, clip)
    z_s = col(a_s) * x_teacher + col(s_s) * (z_t - col(a_t) * x_teacher) / col(s_t)
    x_ema = x_of(target, z_s, ls)
    s_s_safe = jnp.where(s_s == 0, 1.0, s_s)  # unused where s = 0 (then n_rel = 1)
    z_end = col(a_e) * x_ema + col(s_e) * (z_s - col(a_s) * x_ema) / col(s_s_safe)
    z_end = jnp.where(col(n_rel == 1), z_s, z_end)
    x_tgt = (z_end - col(s_e / s_t) * z_t) / col(a_e - a_t * s_e / s_t)
    w = jnp.maximum(jnp.exp(lt), 1.0)
    f = x_of(student, z_t, lt)
    return jnp.mean(w * jnp.sum((f - jax.lax.stop_gradient(x_tgt)) ** 2, axis=1))


@pytest.mark.slow
@pytest.mark.parametrize("phase", [0, 1])
def test_tract_step_equals_transcription(phase):
    """Check 11: the "tract" preset's loss and gradient (schedule 64, 8, 1; phase 0: T = 64,
    S = 8; phase 1: T = 8, S = 1) equal the transcription to 1e-6 on a fixed batch, with random
    tiny MLPs as teacher, student and EMA target (float64: in float32 the max(SNR, 1) weights,
    up to e^15, amplify rounding to ~3e-4 relative between two correct evaluation orders)."""
    with jax.enable_x64(True):
        _tract_vs_transcription(phase)


def _tract_vs_transcription(phase):
    big_t, s_steps = ((64, 8), (8, 1))[phase]
    cfg = ConsistencyConfig.preset(
        "tract", student_steps=s_steps, n_start=big_t, n_end=big_t, tract_schedule=(64, 8, 1)
    )
    teacher, student_net, target_net = _mlp(0), _mlp(1), _mlp(2)
    student = make_student(student_net)
    extra = initial_extra(cfg, student)
    extra["target"] = nnx.state(make_student(target_net), nnx.Param)
    (phase_student, _) = make_phases(cfg, schedule=SCHEDULE, teacher_in_aux=True)
    batch, key = _batch(), jax.random.key(7)
    batch["x"] = batch["x"].astype(jnp.float64)

    def ours(params):
        graphdef, _, rest = nnx.split(student, nnx.Param, ...)
        model = nnx.merge(graphdef, params, rest)
        return phase_student.loss(model, batch, key, teacher, extra)[0]

    def theirs(params):
        graphdef, _, rest = nnx.split(student, nnx.Param, ...)
        model = nnx.merge(graphdef, params, rest)
        return _transcribed_tract_loss(
            lambda z, lam: model(z, lam),
            lambda z, lam: teacher(z, lam),
            lambda z, lam: target_net(z, lam),
            batch,
            key,
            big_t,
            s_steps,
        )

    params = nnx.state(student, nnx.Param)
    la, ga = jax.value_and_grad(ours)(params)
    lb, gb = jax.value_and_grad(theirs)(params)
    assert float(lb) > 1e-3
    np.testing.assert_allclose(float(la), float(lb), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(b)))
        )


def _data(seed=0, batch=64):
    return SampledData(lambda n, rng: _ring(n, rng), batch, seed=seed)


@pytest.mark.slow
def test_tract_target_ema_and_phase_switch(tmp_path):
    """The target EMA after each step is 0.5·target + 0.5·(updated student); the phase switch
    gives phase 1 the EMA student of phase 0 as teacher (parameter hashes), and a resumed TRACT
    run finishes as complete."""
    cfg = ConsistencyConfig.preset(
        "tract",
        tract_schedule=(8, 4, 1),
        num_steps=3,
        batch_size=64,
        warmup_steps=0,
        ema_decay=0.9,
    )
    teacher = _mlp(0)
    students = tract(
        cfg,
        data=lambda: _data(),
        out_dir=str(tmp_path),
        teacher=teacher,
        schedule=SCHEDULE,
        progress=False,
    )
    assert len(students) == 2
    from diff_pixel.train import Trainer

    _, ema0, cfg0 = Trainer.restore(tmp_path / "phase_0")
    _, _, cfg1 = Trainer.restore(tmp_path / "phase_1")
    assert cfg0["recipe"]["teacher"] == teacher_fingerprint(teacher)
    assert cfg1["recipe"]["teacher"] == teacher_fingerprint(students[0])
    assert teacher_fingerprint(ema0) == teacher_fingerprint(students[0])
    # the EMA target: one step by hand
    one = train_consistency(
        cfg.replace(student_steps=4, n_start=8, n_end=8, num_steps=1),
        data=_data(),
        out_dir=str(tmp_path / "one"),
        init=teacher,
        schedule=SCHEDULE,
        teacher=teacher,
        progress=False,
    )
    init_params = nnx.state(make_student(teacher), nnx.Param)
    new_params = nnx.state(one.model(), nnx.Param)
    for e, a, b in zip(
        jax.tree.leaves(one.state.extra["target"]),
        jax.tree.leaves(init_params),
        jax.tree.leaves(new_params),
    ):
        np.testing.assert_allclose(
            np.asarray(e), 0.5 * np.asarray(a) + 0.5 * np.asarray(b), rtol=1e-6, atol=1e-7
        )
    assert not np.allclose(
        np.asarray(jax.tree.leaves(new_params)[0]), np.asarray(jax.tree.leaves(init_params)[0])
    )


# ---------------------------------------------------------------------- the real step, CT


def test_ct_step_with_s_equal_t_is_the_diffusion_loss():
    """Check 5(b) through the trainer's phase: CT with S = T = 8 (n_seg = 1) gives the weighted
    diffusion loss mean_b h(√(SNR_t+1)(f(z_t, t) − x)) with t = (j + 1)/8 (float64, 1e-12)."""
    from diff_consistency.norms import pseudo_huber
    from diff_protocol import alpha_sigma

    cfg = ConsistencyConfig.preset("mcm-ct", student_steps=8, n_start=8, n_end=8)
    with jax.enable_x64(True):
        student = make_student(_mlp(3))
        (phase,) = make_phases(cfg, schedule=SCHEDULE)
        batch = _batch(256)
        batch["x"] = batch["x"].astype(jnp.float64)
        key = jax.random.key(11)
        loss, metrics, extra = phase.loss(student, batch, key, None, initial_extra(cfg, student))
        keys = example_keys(key, batch["index"])
        u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 3), ()))(keys)
        eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), (2,)))(keys)
        t = (jnp.floor(u * 8) + 1) / 8
        lt = jnp.asarray(SCHEDULE.logsnr(t))
        a, s = alpha_sigma(lt[:, None])
        z = a * batch["x"] + s * eps
        v = student(z, lt)
        f = a * z - s * v
        want = jnp.mean(pseudo_huber(jnp.sqrt(jnp.exp(lt) + 1)[:, None] * (f - batch["x"]), 1e-4))
        assert abs(float(loss) - float(want)) <= 1e-12 * float(want)
        assert int(extra["iteration"]) == 1 and float(metrics["n_rel"]) == 1.0


# ------------------------------------------------------------ frozen teacher, resume (check 12)


def _cd_config(**kw):
    base = dict(
        student_steps=4,
        n_start=8,
        n_end=64,
        anneal_steps=6,
        batch_size=32,
        num_steps=8,
        warmup_steps=2,
        ema_decay=0.9,
        teacher_step="addim",
    )
    base.update(kw)
    return ConsistencyConfig.preset("mcm-cd", **base)


@pytest.mark.smoke
def test_cd_with_frozen_teacher(tmp_path):
    """20 CD steps (S = 4, aDDIM teacher step): the NNX teacher (the trainer's aux) is bitwise
    unchanged, has no optimiser state or EMA; every target is finite; the curriculum advanced."""
    teacher = _mlp(0)
    before = teacher_fingerprint(teacher)
    trainer = train_consistency(
        _cd_config(num_steps=20, anneal_steps=10),
        data=_data(batch=32),
        out_dir=str(tmp_path / "run"),
        init=teacher,
        schedule=SCHEDULE,
        teacher=teacher,
        progress=False,
        log_every=10,
    )
    assert teacher_fingerprint(teacher) == before == teacher_fingerprint(trainer.aux)
    n_params = len(jax.tree.leaves(nnx.state(teacher, nnx.Param)))
    assert len(jax.tree.leaves(trainer.state.ema)) == n_params  # the student's EMA only
    assert int(trainer.state.extra["iteration"]) == 20
    records = read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
    assert [r["nonfinite_targets"] for r in records] == [0.0, 0.0]
    assert records[0]["T"] < records[1]["T"] == 64.0
    assert records[-1]["bad_logsnr_t_min"] in ("inf", float("inf"))  # ±inf JSON


def test_resume_bitwise_cd_s4():
    """diff-pixel's assert_resume_bitwise for CD with S = 4 (curriculum in extra, EMA, the
    learning-rate warm-up)."""
    teacher = _mlp(0)

    def make(out_dir, hooks):
        return train_consistency(
            _cd_config(),
            data=_data(batch=32),
            out_dir=out_dir,
            init=teacher,
            schedule=SCHEDULE,
            teacher=teacher,
            hooks=hooks,
            progress=False,
            log_every=2,
            run=False,
        )

    out = assert_resume_bitwise(make, stop_at=4)
    assert out["steps"] == 8 and out["records"] == 4


def test_resume_bitwise_tract_phase_with_target_ema():
    """A TRACT phase (target EMA in extra, squared loss, clipping) resumes bitwise."""
    teacher = _mlp(0)
    cfg = ConsistencyConfig.preset(
        "tract",
        student_steps=2,
        n_start=8,
        n_end=8,
        batch_size=32,
        num_steps=6,
        warmup_steps=0,
        tract_schedule=(8, 2, 1),
    )

    def make(out_dir, hooks):
        return train_consistency(
            cfg,
            data=_data(batch=32),
            out_dir=out_dir,
            init=teacher,
            schedule=SCHEDULE,
            teacher=teacher,
            hooks=hooks,
            progress=False,
            log_every=3,
            run=False,
        )

    assert_resume_bitwise(make, stop_at=3)


def test_validation_messages(tmp_path):
    """CT refuses a teacher, CD needs one, shape mismatches name both shapes, and a run resumed
    with another teacher is refused naming the differing field."""
    teacher = _mlp(0)
    data = _data(batch=32)
    kw = dict(data=data, init=teacher, schedule=SCHEDULE, progress=False)
    with pytest.raises(ValueError, match="teacher must be None for consistency training"):
        train_consistency(_cd_config(mode="ct"), out_dir=str(tmp_path / "a"), teacher=teacher, **kw)
    with pytest.raises(ValueError, match="teacher must be given"):
        train_consistency(_cd_config(), out_dir=str(tmp_path / "b"), **kw)
    with pytest.raises(
        ValueError, match=r"teacher and student must have the same output shape|does not accept"
    ):
        train_consistency(_cd_config(), out_dir=str(tmp_path / "c"), teacher=_mlp(0, dim=3), **kw)
    train_consistency(_cd_config(num_steps=2), out_dir=str(tmp_path / "d"), teacher=teacher, **kw)
    with pytest.raises(ValueError, match="recipe.teacher"):
        train_consistency(
            _cd_config(num_steps=4), out_dir=str(tmp_path / "d"), teacher=_mlp(5), **kw
        )
    with pytest.raises(ValueError, match="output must be"):
        make_student(teacher, "eps")
