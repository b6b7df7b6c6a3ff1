"""Tier (a) checks 9, 10 and 12 of distill.md §12.1 on diff-pixel's trainer: the frozen teacher,
bitwise resume of both variants, and input validation."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diff_pixel
from diff_core.testing import problem
from diff_distill import (
    MomentMatchingConfig,
    MomentMatchingModule,
    ParametricTeacher,
    aux_loss,
    make_trainer,
    moment_weight,
    normalize_direction,
    param_space_direction,
    posterior_sample,
    sample_time_pairs,
    student_surrogate,
    teacher_fingerprint,
)
from diff_distill.toy import exact_mixture
from diff_pixel.data import SampledData
from diff_pixel.testing import assert_resume_bitwise, perturb

PROB = problem("ring8")


def _mlp(seed: int = 0) -> nnx.Module:
    m = diff_pixel.MLPDenoiser(2, width=32, depth=2, rngs=nnx.Rngs(seed))
    perturb(m, seed=seed, scale=0.05)
    return m


def _data(batch: int = 64, seed: int = 0) -> SampledData:
    return SampledData(lambda n, rng: PROB.mixture.sample(n, rng)[0], batch, seed=seed)


def _config(variant: str, steps: int, **kw) -> MomentMatchingConfig:
    return MomentMatchingConfig.preset(
        "toy-2d", variant=variant, num_steps=steps, batch_size=64, **kw
    )


def _params_hash(model: nnx.Module) -> str:
    return teacher_fingerprint(model)


@pytest.mark.smoke
@pytest.mark.parametrize(
    "variant", ["alternating", pytest.param("param_space", marks=pytest.mark.slow)]
)
def test_teacher_frozen_student_trained(variant, tmp_path):
    """Check 9: 20 steps leave the teacher's parameters bitwise unchanged, change the student's,
    and the teacher is no output of the jitted step (it is an argument, not state)."""
    teacher = _mlp(0)
    before = _params_hash(teacher)
    trainer = make_trainer(
        _config(variant, 20),
        teacher=teacher,
        data=_data(),
        out_dir=tmp_path / "run",
        schedule=PROB.schedule,
        progress=False,
        log_every=10,
    )
    student_before = _params_hash(trainer.model().student)
    aux_before = None if variant == "param_space" else _params_hash(trainer.model().aux)
    trainer.run()
    assert _params_hash(teacher) == before
    assert teacher_fingerprint(trainer.aux) == teacher_fingerprint(
        ParametricTeacher.from_nnx(teacher)
    )
    pair = trainer.model()
    assert _params_hash(pair.student) != student_before
    if aux_before is not None:
        assert _params_hash(pair.aux) != aux_before
    # the step's outputs: the train state (student, aux, optimiser states, EMA) and metrics;
    # none of them holds a teacher parameter
    state_paths = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(trainer.state.variables)}
    assert all(p.split("/")[0] in ("student", "aux") for p in state_paths), state_paths
    from diff_pixel.train.step import train_step_fn

    step = train_step_fn(trainer.spec, trainer.spec.active(0))
    batch = {k: jnp.asarray(v) for k, v in next(_data()).items()}
    closed = jax.make_jaxpr(step)(trainer.state, batch, trainer.aux)
    n_aux = len(jax.tree.leaves(trainer.aux))
    assert n_aux > 0  # the teacher's parameters travel as the aux argument
    aux_invars = set(map(id, closed.jaxpr.invars[-n_aux:]))
    n_teacher_outputs = sum(id(v) in aux_invars for v in closed.jaxpr.outvars)
    assert n_teacher_outputs == 0
    out_state, _ = jax.eval_shape(step, trainer.state, batch, trainer.aux)
    assert len(jax.tree.leaves(out_state)) == len(jax.tree.leaves(trainer.state))


@pytest.mark.parametrize(
    "variant", ["alternating", pytest.param("param_space", marks=pytest.mark.slow)]
)
def test_resume_bitwise(variant):
    """Check 10: 30 steps uninterrupted vs 15 + restart + 15: every leaf of the train state
    (student, auxiliary, optimiser states, counts, extra) bitwise equal on CPU."""
    teacher = _mlp(1)
    cfg = _config(variant, 30, ema_decay=0.99, warmup_steps=10, lr_schedule="linear_to_zero")

    def make(out_dir, hooks):
        return make_trainer(
            cfg,
            teacher=teacher,
            data=_data(),
            out_dir=out_dir,
            schedule=PROB.schedule,
            hooks=hooks,
            progress=False,
            log_every=5,
            checkpoint_every=10,
        )

    info = assert_resume_bitwise(make, 15)
    assert info["records"] == 6


@pytest.mark.slow
def test_exact_teacher_and_shared_draws(tmp_path):
    """The alternating variant with diff-core's exact mixture as teacher (closed over) and
    share_draws runs; a resumed run with another teacher is refused naming the field."""
    cfg = _config("alternating", 4, share_draws=True, aux_steps_per_student_step=2)
    kw = dict(data=_data(), schedule=PROB.schedule, progress=False, student=_mlp(2))
    tr = make_trainer(cfg, teacher=exact_mixture("ring8").denoiser("x"), out_dir=tmp_path, **kw)
    tr.run()
    rec = tr.step(next(_data()))
    assert {"aux0/loss", "aux1/loss", "student/moment_gap"} <= set(rec)
    assert np.isfinite(rec["student/moment_gap"])
    with pytest.raises(ValueError, match="teacher"):
        make_trainer(cfg, teacher=_mlp(3), out_dir=tmp_path, **kw)


def test_param_space_with_the_exact_mixture_as_parametric_teacher(tmp_path):
    """ParametricTeacher.from_mixture is the exact denoiser (32 parameters on ring8) and drives
    the parameter-space variant."""
    mix = PROB.mixture
    teacher = ParametricTeacher.from_mixture(mix)
    z = jnp.asarray(np.random.default_rng(0).standard_normal((64, 2)), jnp.float32)
    lam = jnp.linspace(-6.0, 6.0, 64)
    ref = exact_mixture("ring8").denoiser("x")(z, lam)
    np.testing.assert_allclose(np.asarray(teacher(z, lam)), np.asarray(ref), atol=2e-4)
    tr = make_trainer(
        _config("param_space", 3),
        teacher=teacher,
        data=_data(),
        out_dir=tmp_path,
        student=_mlp(5),
        schedule=PROB.schedule,
        progress=False,
    )
    tr.run()
    rec = tr.step(next(_data()))
    assert np.isfinite(rec["g_norm2"]) and rec["g_norm2"] > 0 and np.isfinite(rec["g_dot_ab"])


def test_module_restores_through_the_registry(tmp_path):
    from diff_pixel.train import Trainer

    teacher = _mlp(4)
    make_trainer(
        _config("alternating", 2),
        teacher=teacher,
        data=_data(),
        out_dir=tmp_path,
        schedule=PROB.schedule,
        progress=False,
    ).run()
    with pytest.raises(ValueError, match=r"differing fields: .*k"):  # another k: refused
        make_trainer(
            _config("alternating", 2, k=4),
            teacher=teacher,
            data=_data(),
            out_dir=tmp_path,
            schedule=PROB.schedule,
            progress=False,
        )
    model, ema, config = Trainer.restore(tmp_path)
    assert isinstance(model, MomentMatchingModule)
    assert config["recipe"]["method"] == "diff-distill"
    z = jnp.ones((3, 2))
    np.testing.assert_array_equal(model(z, jnp.zeros(3)), model.student(z, jnp.zeros(3)))


# -- check 12: validation ------------------------------------------------------------------------
def test_validation_messages():
    x = jnp.zeros((4, 2))
    w = jnp.ones((4,))
    cases = [
        (lambda: MomentMatchingConfig(k=0), "k must be a positive integer, got 0"),
        (lambda: MomentMatchingConfig(eta_posterior=1.5), r"eta_posterior must be in \[0, 1\]"),
        (lambda: MomentMatchingConfig(weighting="snr"), "weighting must be one of uniform"),
        (lambda: MomentMatchingConfig(normalize="l1"), "normalize must be one of none"),
        (lambda: MomentMatchingConfig(precond="shampoo"), "precond must be one of identity, adam"),
        (lambda: MomentMatchingConfig.from_dict({"k": 8, "kk": 1}), "unknown key 'kk'"),
        (lambda: MomentMatchingConfig.preset("nope"), "name must be one of"),
        (lambda: sample_time_pairs(jax.random.key(0), 4, 0), "k must be a positive integer"),
        (lambda: moment_weight(jnp.zeros(3), "cubic"), "kind must be one of uniform"),
        (lambda: aux_loss(x, jnp.zeros((4, 3)), x, w), "student_x must have the shape of aux_x"),
        (lambda: aux_loss(x, x, x, jnp.ones((3,))), r"weight must have shape \(4,\)"),
        (lambda: aux_loss(x, x, x, w.at[0].set(jnp.nan)), "weight must be finite"),
        (lambda: student_surrogate(x, x, jnp.zeros((5, 2)), w), "teacher_x must have the shape"),
        (lambda: normalize_direction(x, x, x, mode="max"), "mode must be one of none"),
        (lambda: param_space_direction({"a": x}, precond="adam"), "needs nu"),
        (lambda: param_space_direction({"a": x}, precond="x"), "precond must be one of"),
        (lambda: posterior_sample(x, x, jnp.zeros(4), jnp.ones(4), x, eta=2.0), "eta"),
        (lambda: ParametricTeacher.from_mixture(object()), "mixture must be a diff-core"),
        (lambda: MomentMatchingModule(object()), "student must be a callable nnx.Module"),
    ]
    for fn, pattern in cases:
        with pytest.raises((ValueError, TypeError)) as err:
            fn()
        assert re.search(pattern, str(err.value)), (pattern, str(err.value))


def test_param_space_refuses_a_plain_denoiser_and_tiny_batches(tmp_path):
    cfg = _config("param_space", 2)
    with pytest.raises(ValueError, match="teacher must be an NNX network"):
        make_trainer(
            cfg,
            teacher=exact_mixture("ring8").denoiser("x"),
            data=_data(),
            out_dir=tmp_path,
            student=_mlp(),
            schedule=PROB.schedule,
        )
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        make_trainer(
            cfg.replace(batch_size=1),
            teacher=_mlp(),
            data=_data(1),
            out_dir=tmp_path / "b",
            schedule=PROB.schedule,
        )
    with pytest.raises(ValueError, match="precond 'adam' needs"):
        make_trainer(
            cfg.replace(precond="adam"),
            teacher=_mlp(),
            data=_data(),
            out_dir=tmp_path / "c",
            schedule=PROB.schedule,
        )


def _denoising_loss(model, batch, key, aux):
    """½ x-MSE of the MLP at one logsnr: enough to give the run an Adam state."""
    x = batch["x"]
    z = 0.8 * x + 0.6 * jax.random.normal(key, x.shape)
    err = jnp.mean((model(z, jnp.full((x.shape[0],), 0.5)) - x) ** 2)
    return 0.5 * err, {}


def test_teacher_adam_nu_is_the_runs_second_moment(tmp_path):
    """precond='adam' (MM Algorithm 3): the teacher's Adam ν read from its diff-pixel run is the
    run's live ν bitwise, laid out as the ParametricTeacher's parameters; another architecture
    is refused naming precond."""
    import optax

    from diff_distill import teacher_adam_nu
    from diff_pixel.train import TrainConfig, Trainer

    net = _mlp()
    cfg = TrainConfig(steps=3, batch_size=64, lr=1e-3, out_dir=str(tmp_path / "t"), progress=False)
    trainer = Trainer(net, _denoising_loss, cfg, _data())
    trainer.run()
    teacher = ParametricTeacher.from_nnx(trainer.ema_model())
    nu = teacher_adam_nu(tmp_path / "t", teacher.params)
    live = optax.tree_utils.tree_get(trainer.state.opt["model"], "nu")
    got, want = nnx.to_flat_state(nu), nnx.to_flat_state(live)
    assert (
        [p for p, _ in got]
        == [p for p, _ in want]
        == [p for p, _ in nnx.to_flat_state(teacher.params)]
    )
    for (p, a), (_, b) in zip(got, want, strict=True):
        assert np.asarray(a.get_value()).tobytes() == np.asarray(b.get_value()).tobytes(), p
    assert jax.tree.structure(nu) == jax.tree.structure(teacher.params)
    assert all(float(jnp.min(v)) >= 0 for v in jax.tree.leaves(nu))
    assert any(float(jnp.max(v)) > 0 for v in jax.tree.leaves(nu))
    v = param_space_direction(teacher.params, precond="adam", nu=nu)  # the direction's shape
    assert jax.tree.structure(v) == jax.tree.structure(teacher.params)
    wide = diff_pixel.MLPDenoiser(2, width=16, depth=2, rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"^precond: the teacher's Adam second moment of .* has shape"
    ):
        teacher_adam_nu(tmp_path / "t", nnx.state(wide, nnx.Param))
    deep = diff_pixel.MLPDenoiser(2, width=32, depth=3, rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"^precond: the teacher run .* keeps no Adam second moment"
    ):
        teacher_adam_nu(tmp_path / "t", nnx.state(deep, nnx.Param))
    with pytest.raises(
        ValueError, match=r"^precond: 'adam' needs the teacher's Adam second moment"
    ):
        teacher_adam_nu(tmp_path / "none", teacher.params)


def test_config_round_trip_and_presets():
    for name in ("mm-alternating", "mm-param-space", "one-step", "toy-2d", "toy-64d", "digits"):
        cfg = MomentMatchingConfig.preset(name)
        assert MomentMatchingConfig.from_dict(cfg.to_dict()) == cfg
        assert MomentMatchingConfig.from_json(cfg.to_json()) == cfg
    assert MomentMatchingConfig.preset("mm-param-space").variant == "param_space"
    assert MomentMatchingConfig.preset("one-step").k == 1
    from diff_distill import UNCONFIRMED

    assert {"teacher_reg", "weighting", "precond", "share_draws", "normalize"} <= set(UNCONFIRMED)
