"""Checks that downstream packages run on their own models and trainers.

Each ``assert_*`` raises ``AssertionError`` with the measured numbers when a property fails.
They use only the public model interface: ``model(z, logsnr, cond, *, dropout_key)`` and, for the
identity check, ``model.features``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_pixel.models.cond import Cond
from diff_pixel.models.config import UViTConfig

__all__ = [
    "assert_drop_ignores_condition",
    "assert_example_independent",
    "assert_identity_at_init",
    "assert_resume_bitwise",
    "forward_fn",
    "jit_forward",
    "perturb",
    "random_cond",
    "random_inputs",
    "run_sharded_equality",
]


def perturb(model: nnx.Module, seed: int = 0, scale: float = 0.05) -> None:
    """Add ``scale``·N(0, 1) (host numpy draws from ``seed``) to every ``nnx.Param`` of ``model`` in
    place: moves zero-initialised layers away from zero so that conditioning and dropout act."""
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    new = [
        jnp.asarray(np.asarray(x) + scale * rng.standard_normal(x.shape), x.dtype) for x in leaves
    ]
    nnx.update(model, jax.tree.unflatten(treedef, new))


@functools.lru_cache(maxsize=64)
def forward_fn(graphdef: Any) -> Callable[..., Any]:
    """The jitted ``(state, z, logsnr, cond, dropout_key) -> (output, features, skips_left)`` of a
    backbone graphdef; cached per graphdef so models of one architecture share compilations."""

    @jax.jit
    def forward(state: Any, z: Any, lam: Any, cond: Any, key: Any) -> Any:
        return nnx.merge(graphdef, state)._forward(z, lam, cond, key)

    return forward


def random_cond(
    config: UViTConfig,
    batch: int,
    seed: int = 0,
    *,
    frames: int | None = None,
    tokens: int = 4,
    per_frame_vector: bool = False,
) -> Cond | None:
    """A valid random :class:`Cond` for every condition ``config`` declares (None if it has none);
    host numpy draws from ``seed``."""
    rng = np.random.default_rng(seed)
    fields: dict[str, Any] = {}
    if config.num_classes:
        fields["label"] = jnp.asarray(rng.integers(0, config.num_classes, batch), jnp.int32)
    if config.vector_dim:
        lead = (batch, frames) if per_frame_vector and frames else (batch,)
        fields["vector"] = jnp.asarray(
            rng.standard_normal(lead + (config.vector_dim,)), jnp.float32
        )
    if config.token_dim:
        fields["tokens"] = jnp.asarray(
            rng.standard_normal((batch, tokens, config.token_dim)), jnp.float32
        )
        fields["token_lengths"] = jnp.asarray(rng.integers(1, tokens + 1, batch), jnp.int32)
    if config.spatial_channels:
        lead = (batch, frames) if frames else (batch,)
        shape = lead + (config.height, config.width, config.spatial_channels)
        fields["spatial"] = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    return Cond(**fields) if fields else None


def random_inputs(
    config: UViTConfig, batch: int, seed: int = 0, *, frames: int | None = None
) -> tuple[jax.Array, jax.Array, Cond | None]:
    """(z, logsnr, cond) for ``config``: z standard normal, logsnr uniform in [−10, 10] (numpy
    draws from ``seed``; ``frames`` for frame models, default 3)."""
    rng = np.random.default_rng(seed)
    if config.frame_axis:
        frames = frames or 3
        lead: tuple[int, ...] = (batch, frames)
    else:
        frames, lead = None, (batch,)
    z = jnp.asarray(
        rng.standard_normal(lead + (config.height, config.width, config.in_channels)), jnp.float32
    )
    lam = jnp.asarray(rng.uniform(-10.0, 10.0, batch), jnp.float32)
    return z, lam, random_cond(config, batch, seed + 1, frames=frames)


def jit_forward(model: nnx.Module) -> Callable[..., jax.Array]:
    """``f(z, logsnr, cond=None, dropout_key=None)``: the model's forward pass under ``jax.jit``
    with the parameters as arguments (a snapshot of the model's current state)."""
    graphdef, state = nnx.split(model)
    if hasattr(model, "_forward"):
        fwd = forward_fn(graphdef)

        def call(z: Any, logsnr: Any, cond: Any = None, dropout_key: Any = None) -> jax.Array:
            return fwd(state, z, logsnr, cond, dropout_key)[0]

        return call

    @jax.jit
    def plain(state: Any, z: Any, lam: Any, cond: Any, key: Any) -> jax.Array:
        return nnx.merge(graphdef, state)(z, lam, cond, dropout_key=key)

    def call_plain(z: Any, logsnr: Any, cond: Any = None, dropout_key: Any = None) -> jax.Array:
        return plain(state, z, logsnr, cond, dropout_key)

    return call_plain


def _config(model: nnx.Module, fn: str) -> UViTConfig:
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, UViTConfig):
        raise TypeError(
            f"{fn}: model must have a UViTConfig `config` attribute, got {type(cfg).__name__}"
        )
    return cfg


def assert_identity_at_init(
    model: nnx.Module,
    z: jax.Array | None = None,
    logsnr: jax.Array | None = None,
    cond: Cond | None = None,
    *,
    dropout_key: jax.Array | None = None,
    seed: int = 0,
    eval_pass: bool = True,
) -> None:
    """Assert ``features()["pre_unembed"] == features()["embed"]`` bitwise (a freshly initialised
    residual backbone is the identity between stem and head), with and without dropout, and that
    no skip tensor is left on the stack. ``eval_pass=False`` checks with dropout active only (one
    compilation instead of two)."""
    cfg = _config(model, "assert_identity_at_init")
    if z is None:
        z, logsnr, cond = random_inputs(cfg, 2, seed)
    keys = [None] if eval_pass else []
    keys.append(jax.random.key(seed + 1) if dropout_key is None else dropout_key)
    graphdef, state = nnx.split(model)
    forward = forward_fn(graphdef)
    for k in keys:
        out, feats, left = forward(state, z, logsnr, cond, k)
        left = int(left)
        diff = float(jnp.max(jnp.abs(feats["pre_unembed"] - feats["embed"])))
        if diff != 0.0:
            raise AssertionError(
                f"assert_identity_at_init: pre_unembed != embed (max |diff| = {diff:.3e}, "
                f"dropout_key={'set' if k is not None else 'None'})"
            )
        if left:
            raise AssertionError(f"assert_identity_at_init: {left} skip tensors left on the stack")
        if not bool(jnp.all(jnp.isfinite(out))):
            raise AssertionError("assert_identity_at_init: non-finite output")


def _perturb_example(
    z: jax.Array,
    logsnr: jax.Array,
    cond: Cond | None,
    index: int,
    fields: Sequence[str],
    seed: int,
    num_classes: int,
) -> tuple[jax.Array, jax.Array, Cond | None]:
    rng = np.random.default_rng(seed)

    def bump(a: jax.Array) -> jax.Array:
        a = np.array(a)
        a[index] += rng.standard_normal(a.shape[1:]).astype(a.dtype)
        return jnp.asarray(a)

    if "z" in fields:
        z = bump(z)
    if "logsnr" in fields:
        shape = z.shape[:1] if jnp.ndim(logsnr) <= 1 else jnp.shape(logsnr)
        lam = np.array(np.broadcast_to(np.asarray(logsnr, np.float32), shape))
        lam[index] += 1.5
        logsnr = jnp.asarray(lam)
    if cond is not None:
        changes: dict[str, Any] = {}
        if "label" in fields and cond.label is not None:
            label = np.array(cond.label)
            label[index] = (label[index] + 1) % max(num_classes, 1)
            changes["label"] = jnp.asarray(label)
        for name in ("vector", "tokens", "spatial"):
            if name in fields and getattr(cond, name) is not None:
                changes[name] = bump(getattr(cond, name))
        if cond.extra:
            extra = dict(cond.extra)
            for key, v in cond.extra.items():
                floating = jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)
                if floating and ("extra" in fields or f"extra[{key}]" in fields):
                    extra[key] = bump(v)
            changes["extra"] = extra
        cond = cond.replace(**changes)
    return z, logsnr, cond


def assert_example_independent(
    model: nnx.Module,
    z: jax.Array,
    logsnr: jax.Array,
    cond: Cond | None = None,
    *,
    index: int = 0,
    fields: Sequence[str] | None = None,
    atol: float = 1e-6,
    min_change: float = 1e-6,
    seed: int = 0,
) -> float:
    """Assert that changing example ``index``'s inputs (``fields`` among z, logsnr, label, vector,
    tokens, spatial, extra (every floating entry) or ``extra[<key>]``; default all given) changes
    only that example's output: the others stay within
    ``atol`` (no coupling across the batch, e.g. through batch statistics), and the changed example
    moves by more than ``min_change``. Returns the largest change seen in the other examples."""
    fields = (
        tuple(fields)
        if fields is not None
        else ("z", "logsnr", "label", "vector", "tokens", "spatial", "extra")
    )
    fwd = jit_forward(model)
    num_classes = getattr(getattr(model, "config", None), "num_classes", 0)
    base = np.asarray(fwd(z, logsnr, cond))
    z2, l2, c2 = _perturb_example(z, logsnr, cond, index, fields, seed, num_classes)
    new = np.asarray(fwd(z2, l2, c2))
    others = np.delete(np.abs(new - base), index, axis=0)
    other_max = float(others.max()) if others.size else 0.0
    own = float(np.abs(new[index] - base[index]).max())
    if other_max > atol:
        raise AssertionError(
            f"assert_example_independent: changing example {index} ({', '.join(fields)}) moved "
            f"other "
            f"examples by {other_max:.3e} > atol {atol:.1e}"
        )
    if own <= min_change:
        raise AssertionError(
            f"assert_example_independent: changing example {index} ({', '.join(fields)}) moved "
            f"its own "
            f"output by only {own:.3e} <= {min_change:.1e}: the inputs are ignored"
        )
    return other_max


def assert_drop_ignores_condition(
    model: nnx.Module,
    z: jax.Array,
    logsnr: jax.Array,
    cond: Cond,
    *,
    seed: int = 0,
) -> None:
    """Assert that with ``drop=True`` the output is bitwise independent of the contents of every
    condition (label, vector, tokens, token_lengths, spatial and every ``extra`` entry: floating
    entries redrawn, integer ones permuted across the batch)."""
    if not isinstance(cond, Cond):
        raise TypeError(
            f"assert_drop_ignores_condition: cond must be a Cond, got {type(cond).__name__}"
        )
    b = cond.batch_size()
    dropped = cond.replace(drop=jnp.ones((b,), bool))
    rng = np.random.default_rng(seed)
    changes: dict[str, Any] = {}
    num_classes = getattr(getattr(model, "config", None), "num_classes", 0)
    if cond.label is not None:
        changes["label"] = jnp.asarray(
            rng.integers(0, max(num_classes, 1) + 1, cond.label.shape), cond.label.dtype
        )
    for name in ("vector", "tokens", "spatial"):
        v = getattr(cond, name)
        if v is not None:
            changes[name] = jnp.asarray(3.0 * rng.standard_normal(v.shape), v.dtype)
    if cond.token_lengths is not None:
        k = cond.tokens.shape[1]
        changes["token_lengths"] = jnp.asarray(rng.integers(0, k + 1, b), jnp.int32)
    if cond.extra:
        extra = {}
        for key, v in cond.extra.items():
            v = np.asarray(v)
            if np.issubdtype(v.dtype, np.floating):
                extra[key] = jnp.asarray(3.0 * rng.standard_normal(v.shape), v.dtype)
            else:
                extra[key] = jnp.asarray(v[rng.permutation(b)])
        changes["extra"] = extra
    fwd = jit_forward(model)
    a = np.asarray(fwd(z, logsnr, dropped))
    other = np.asarray(fwd(z, logsnr, dropped.replace(**changes)))
    if not np.array_equal(a, other):
        raise AssertionError(
            "assert_drop_ignores_condition: with drop=True the output depends on the condition "
            f"contents (max |diff| = {float(np.abs(a - other).max()):.3e}, fields "
            f"{sorted(changes)})"
        )


def _leaves_equal(a: Any, b: Any) -> list[str]:
    bad = []
    la, lb = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
    if len(la) != len(lb):
        return [f"tree sizes differ: {len(la)} vs {len(lb)}"]
    for (path, x), (_, y) in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            bad.append(jax.tree_util.keystr(path))
    return bad


def assert_resume_bitwise(
    make_trainer: Callable[[str, Sequence[Any]], Any], stop_at: int
) -> dict[str, Any]:
    """Assert that a run interrupted after ``stop_at`` steps and restarted with the same
    configuration ends bitwise equal to an uninterrupted run (every leaf of the final
    ``TrainState``: variables, optimiser states, EMAs, counts, step, key and ``extra``), with the
    same ``metrics.jsonl`` records (wall-clock fields aside).

    ``make_trainer(out_dir, hooks)`` must return a fresh :class:`diff_pixel.train.Trainer` for
    ``out_dir`` with ``hooks`` added to its own; the same configuration every time (its real
    ``steps`` and learning-rate schedule, cosine included). The interruption is the trainer's
    :class:`~diff_pixel.train.StopAt` hook, which checkpoints and returns, as a killed run resumes
    from its last checkpoint. The records are compared when ``stop_at`` is a multiple of
    ``log_every`` (a record averages the steps since the previous one; an interruption between
    records loses those steps' metrics, never the state). Returns
    ``{"steps", "stop_at", "leaves", "records"}``.
    """
    from diff_pixel.train import StopAt, read_metrics

    if isinstance(stop_at, bool) or not isinstance(stop_at, int) or stop_at < 1:
        raise ValueError(f"assert_resume_bitwise: stop_at must be a positive int, got {stop_at!r}")
    with tempfile.TemporaryDirectory() as tmp:
        full_dir, split_dir = os.path.join(tmp, "full"), os.path.join(tmp, "split")
        full_trainer = make_trainer(full_dir, [])
        full = full_trainer.run()
        first = make_trainer(split_dir, [StopAt(stop_at)])
        first.run()
        if first.stopped_at != stop_at:
            raise AssertionError(
                f"assert_resume_bitwise: the first run must stop at step {stop_at}, stopped at "
                f"{first.stopped_at} (config.steps = {first.config.steps})"
            )
        again = make_trainer(split_dir, [])
        if again.restored_step != stop_at:
            raise AssertionError(
                f"assert_resume_bitwise: the restart must resume from step {stop_at}, got "
                f"{again.restored_step}"
            )
        resumed = again.run()
        bad = _leaves_equal(full, resumed)
        if bad:
            raise AssertionError(
                f"assert_resume_bitwise: {len(bad)} state leaves differ after resuming, e.g. "
                f"{bad[:5]}"
            )

        def strip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            drop = ("wall_s", "examples_per_s")
            return [{k: v for k, v in r.items() if k not in drop} for r in records]

        ra = strip(read_metrics(os.path.join(full_dir, "metrics.jsonl")))
        rb = strip(read_metrics(os.path.join(split_dir, "metrics.jsonl")))
        if stop_at % full_trainer.config.log_every == 0 and ra != rb:
            raise AssertionError(
                "assert_resume_bitwise: metrics.jsonl differs between the uninterrupted and the "
                f"resumed run ({len(ra)} vs {len(rb)} records)"
            )
        return {
            "steps": int(full_trainer.config.steps),
            "stop_at": stop_at,
            "leaves": len(jax.tree.leaves(full)),
            "records": len(ra),
        }


def run_sharded_equality(
    script: str, devices: int = 8, *, timeout: float = 600.0
) -> dict[str, Any]:
    """Run ``script`` (Python source, or the path of a .py file) in a subprocess with ``devices``
    forced XLA CPU devices and return the JSON object it prints on its last stdout line.

    The script does its own comparison (e.g. a step on meshes of 1, 2 and 8 devices) and reports
    numbers; the caller asserts on them. A non-zero exit raises ``AssertionError`` with stderr.
    """
    if not isinstance(devices, int) or devices < 1:
        raise ValueError(f"run_sharded_equality: devices must be a positive int, got {devices!r}")
    if os.path.isfile(script):
        with open(script, encoding="utf-8") as fh:
            source = fh.read()
    else:
        source = script
    env = dict(os.environ)
    flags = [
        f for f in env.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f
    ]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", source], env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"run_sharded_equality: script exited {proc.returncode}; stderr "
            f"tail:\n{proc.stderr[-4000:]}"
        )
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    if not lines:
        raise AssertionError("run_sharded_equality: script printed nothing; expected a JSON object")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise AssertionError(
            f"run_sharded_equality: last stdout line is not JSON: {lines[-1][:200]!r}"
        ) from exc
