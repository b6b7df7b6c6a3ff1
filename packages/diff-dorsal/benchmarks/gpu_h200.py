"""One prepared GPU run of DORSal (≤ 8 min on one H200; dorsal.md §10, GPU items 1–3).

Phases (each time-capped; a global deadline ``--budget-s`` shrinks later phases so the script
ends in time; every phase writes one JSON line to ``$OUT/results.jsonl`` and stdout, and a phase
that fails records its error and the script goes on):

1. ``render``: ``jax.jit(jax.vmap(render_jax))`` throughput at 64², 10 views (scenes/s; compile
   separate), then the training set (default 20 000 scenes, 10 views at 32²) generated on the
   device: scenes and cameras drawn on the host (``SceneDataset.scene/cameras``, the same items
   as the dataset; worker processes), rays and images on the device; parity with the numpy
   ``SceneDataset`` items on the first scenes.
2. ``msn_step``: the ``msn`` DORSal decoder (≈ 120 M) train step in bf16 with cuDNN attention,
   batch 32 of 5 views at 64² with 32 slot tokens: step time, FLOPs from XLA's cost analysis,
   TFLOP/s and its share of the 990 TFLOP/s dense-bf16 datasheet (and of the ≈ 490 TFLOP/s an
   external plain-JAX transformer step reached on this card; target ≥ 30 % of datasheet).
3. ``train_*`` then ``compare``: OSRT-lite (stage 1, batch 32, 90 s) and DORSal-lite with
   OSRT-lite slots (120 s) and with oracle slots (120 s) at 32², time caps including compile;
   then ``benchmarks/compare_osrt.py``'s comparison (the package's ``evaluate_run``) on 256 test
   scenes at guidance 1 (both runs) then 2: PSNR, SSIM, sharpness ratio, scene-feature
   distances, FG-ARI of the mixer and from edits, edit locality and its random-slot control.
   The ``gates`` line checks the spec's defaults (oracle locality ≥ 0.5 and ≥ 2× its control;
   OSRT-lite-slot locality ≥ 1.3× its control; DORSal sharpness ratio in [0.5, 2] while
   OSRT-lite's is < 0.3); the DORSal − OSRT-lite PSNR is reported, not gated.

The spec's 90 + 120 + 120 s of training and the evaluation do not all fit in 8 minutes after
phases 1–2, so the three caps are scaled by one factor (≤ 1) to leave ``--eval-reserve-s`` for
the evaluation; evaluation combinations not started ``--eval-start-margin-s`` before the
deadline are listed as skipped. Training step counts are the caps × ``--s1-rate`` /
``--s2-rate`` (steps/s guesses, so the cosine schedule ends near the cap); the cap stops the run
if the guess was too high. The measured rates are reported, to set the guesses of the next run.
Short stage-2 runs use the EMA decay ``min(0.999, 1 − 10/steps)`` (``compare_osrt.ema_decay_for``).

    OUT=/tmp/gpu-out python packages/diff-dorsal/benchmarks/gpu_h200.py            # the device
    OUT=/tmp/gpu-dry python packages/diff-dorsal/benchmarks/gpu_h200.py --dry-run  # CPU, toy

``--dry-run`` runs every phase at toy size (16² scenes, tiny networks, 30 trained steps per stage)
on CPU: about three minutes on the shared 2-core machine (mostly XLA compilation on one core).

DORSal: Jabri et al., arXiv 2306.08068; OSRT: Sajjadi et al., arXiv 2206.06922.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from diff_pixel.train import Hook

DATASHEET_BF16_TFLOPS = 990.0
PLAIN_JAX_TRANSFORMER_TFLOPS = 490.0  # external measurement on an H200 (AMENDMENTS B)
T_START = time.perf_counter()


# --------------------------------------------------------------------------------------------------
# output


class Log:
    """JSON lines to ``$OUT/results.jsonl`` (appended and flushed per line) and stdout."""

    def __init__(self, out: Path) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "results.jsonl"
        self.lines: list[dict[str, Any]] = []

    def __call__(self, phase: str, **fields: Any) -> dict[str, Any]:
        rec = _compare_module().clean_json(
            {"phase": phase, "t_s": round(time.perf_counter() - T_START, 2), **fields}
        )
        self.lines.append(rec)
        text = json.dumps(rec, allow_nan=False)
        with open(self.path, "a") as f:
            f.write(text + "\n")
            f.flush()
        print(text, flush=True)
        return rec


@functools.cache
def _compare_module():
    """``benchmarks/compare_osrt.py`` beside this file, imported as a module (once)."""
    path = Path(__file__).with_name("compare_osrt.py")
    spec = importlib.util.spec_from_file_location("dorsal_compare_osrt", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


class TimeCap(Hook):
    """Trainer hook: stop (checkpointed) once ``seconds`` have passed since the run started
    (compile included)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.t0 = None
        self.first_step_s = None
        self.steps = 0
        self.capped = False

    def on_start(self, trainer: Any) -> None:
        self.t0 = time.perf_counter()

    def on_step(self, trainer: Any, step: int, metrics: Any) -> bool:
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = now
        self.steps += 1
        if self.first_step_s is None:
            self.first_step_s = now - self.t0  # compile + first step
        self.capped = now - self.t0 >= self.seconds
        return self.capped

    def figures(self) -> dict[str, Any]:
        wall = time.perf_counter() - (self.t0 or time.perf_counter())
        steady = wall - (self.first_step_s or 0.0)
        return {
            "steps": self.steps,
            "wall_s": wall,
            "compile_and_first_step_s": self.first_step_s,
            "steps_per_s_after_first": (self.steps - 1) / steady if steady > 0 else None,
            "stopped_by_cap": self.capped,
        }


# --------------------------------------------------------------------------------------------------
# phase 1: rendering on the device


def _host_scenes(args: tuple[dict, dict, int, int, int]) -> dict[str, np.ndarray]:
    """Worker: padded scenes, poses and intrinsics of items ``lo .. hi-1`` of a split."""
    from diff_dorsal.cameras import CameraConfig
    from diff_dorsal.scenes import SceneConfig, SceneDataset

    sc, cc, seed, lo, hi = args
    ds = SceneDataset(SceneConfig(**sc), CameraConfig(**cc), size=hi, seed=seed)
    rows = []
    for i in range(lo, hi):
        s, c = ds.scene(i), ds.cameras(i)
        rows.append(
            {
                **s.padded(ds.scene_config.max_objects),
                "poses": c.poses,
                "intrinsics": c.intrinsics,
                "n_objects": np.int32(s.n_objects),
            }
        )
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def host_scenes(n: int, resolution: int, views: int, seed: int, workers: int):
    import dataclasses

    from diff_dorsal.cameras import CameraConfig
    from diff_dorsal.scenes import SceneConfig

    sc = dataclasses.asdict(SceneConfig())
    cc = dataclasses.asdict(CameraConfig(n_views=views, resolution=resolution))
    sc = {k: tuple(v) if isinstance(v, list) else v for k, v in sc.items()}
    cc = {k: tuple(v) if isinstance(v, list) else v for k, v in cc.items()}
    per = max(1, math.ceil(n / max(1, workers * 4)))
    jobs = [(sc, cc, seed, lo, min(n, lo + per)) for lo in range(0, n, per)]
    if workers <= 1 or len(jobs) == 1:
        parts = [_host_scenes(j) for j in jobs]
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            parts = list(ex.map(_host_scenes, jobs))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _device_fns():
    import jax
    import jax.numpy as jnp

    from diff_dorsal.scenes import SCENE_KEYS, render_jax

    def rays_of(poses, intrinsics, res):
        pix = jnp.arange(res, dtype=jnp.float32) + 0.5
        x = (pix - intrinsics[0, 2]) / intrinsics[0, 0]
        y = (pix - intrinsics[1, 2]) / intrinsics[1, 1]
        d_cam = jnp.stack(jnp.broadcast_arrays(x[None, :], y[:, None], jnp.ones((1, 1))), -1)
        d = jnp.einsum("vij,hwj->vhwi", poses[:, :, :3], d_cam)
        d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
        o = jnp.broadcast_to(poses[:, None, None, :, 3], d.shape)
        return o, d

    def one(scene, poses, intrinsics, res):
        o, d = rays_of(poses, intrinsics, res)
        rgb, inst = render_jax(scene, o, d)
        return rgb, inst, o, d

    fn = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None)), static_argnums=3)
    return fn, SCENE_KEYS


def render_on_device(host: dict, res: int, chunk: int) -> tuple[dict, float, float]:
    """Images, instances and rays of every scene of ``host``, rendered on the device in chunks
    (the last one padded). Returns ``(arrays, compile_s, render_s)``."""
    import jax

    fn, keys = _device_fns()
    n = host["poses"].shape[0]
    chunk = min(chunk, n)

    def call(lo):
        idx = np.minimum(np.arange(lo, lo + chunk), n - 1)
        scene = {k: host[k][idx] for k in keys}
        return fn(scene, host["poses"][idx], host["intrinsics"][idx], res)

    t0 = time.perf_counter()
    jax.block_until_ready(call(0))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    outs = []
    for lo in range(0, n, chunk):
        out = call(lo)
        outs.append([np.asarray(a)[: min(chunk, n - lo)] for a in out])
    render_s = time.perf_counter() - t0
    arrays = dict(host)
    for i, k in enumerate(("images", "instance", "origins", "directions")):
        arrays[k] = np.concatenate([o[i] for o in outs])
    arrays["frame_pose"] = np.broadcast_to(np.eye(3, 4, dtype=np.float32), (n, 3, 4)).copy()
    return arrays, compile_s, render_s


def phase_render(log: Log, a: argparse.Namespace) -> dict | None:
    import jax

    from diff_dorsal.cameras import CameraConfig
    from diff_dorsal.scenes import SceneConfig, SceneDataset

    # throughput at the GPU resolution
    host = host_scenes(a.render_scenes, a.render_resolution, 10, 1, a.workers)
    fn, keys = _device_fns()
    chunk = min(a.render_chunk, a.render_scenes)
    scene = {k: host[k][:chunk] for k in keys}
    args = (scene, host["poses"][:chunk], host["intrinsics"][:chunk], a.render_resolution)
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    calls = max(1, a.render_scenes // chunk)
    t0 = time.perf_counter()
    for c in range(calls):
        sl = slice(c * chunk, (c + 1) * chunk)
        jax.block_until_ready(
            fn(
                {k: host[k][sl] for k in keys},
                host["poses"][sl],
                host["intrinsics"][sl],
                a.render_resolution,
            )
        )
    throughput = calls * chunk / (time.perf_counter() - t0)
    log(
        "render_throughput",
        resolution=a.render_resolution,
        views=10,
        chunk=chunk,
        scenes=calls * chunk,
        scenes_per_s=throughput,
        rays_per_s=throughput * 10 * a.render_resolution**2,
        compile_s=compile_s,
    )
    # the training set, generated on the device at the training resolution
    t0 = time.perf_counter()
    host = host_scenes(a.train_scenes, a.resolution, 10, 0, a.workers)
    host_s = time.perf_counter() - t0
    train, comp_s, render_s = render_on_device(host, a.resolution, a.render_chunk)
    # parity with the numpy dataset (the same items)
    k = min(4, a.train_scenes)
    ref = SceneDataset(SceneConfig(), CameraConfig(resolution=a.resolution), size=k).arrays(
        progress=False
    )
    parity = {
        key: float(np.abs(np.asarray(train[key][:k], np.float64) - ref[key]).max())
        for key in ("images", "origins", "directions")
    }
    parity["instance_mismatch"] = int((train["instance"][:k] != ref["instance"]).sum())
    log(
        "train_data",
        scenes=a.train_scenes,
        resolution=a.resolution,
        views=10,
        host_sampling_s=host_s,
        device_compile_s=comp_s,
        device_render_s=render_s,
        scenes_per_s_device=a.train_scenes / max(render_s, 1e-9),
        total_s=time.perf_counter() - t0,
        max_abs_diff_vs_numpy_dataset=parity,
    )
    return train


# --------------------------------------------------------------------------------------------------
# phase 2: the msn decoder step


def phase_msn(log: Log, a: argparse.Namespace) -> None:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from diff_dorsal.denoiser import DecoderConfig, build_denoiser
    from diff_dorsal.stage2 import dorsal_loss

    res, views, b, s_slots, slot_dim = a.msn_resolution, 5, a.msn_batch, 32, 1536
    overrides = dict(compute_dtype=a.msn_dtype, attention_impl=a.attention)
    kw: dict[str, Any] = {}
    if a.dry_run:
        overrides.update(channels=(16, 32), mid_blocks=1, head_dim=16)
        views, s_slots, slot_dim = 2, 4, 16
        kw["token_dim"] = 32
    cfg = DecoderConfig("msn", image_size=res, views=views, overrides=overrides, **kw)
    model = build_denoiser(cfg, slot_dim, nnx.Rngs(0))
    params = sum(np.size(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    opt = nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param)
    graphdef, state = nnx.split((model, opt))
    rng = np.random.default_rng(0)
    shape = (b, views, res, res, 3)
    d = rng.normal(size=shape).astype(np.float32)
    batch = {
        "images": jnp.asarray(rng.uniform(size=shape).astype(np.float32)),
        "origins": jnp.asarray(np.broadcast_to(np.float32([0, -5, 2]), shape).copy()),
        "directions": jnp.asarray(d / np.linalg.norm(d, axis=-1, keepdims=True)),
        "slots": jnp.asarray(rng.normal(size=(b, s_slots, slot_dim)).astype(np.float32)),
        "slot_mask": jnp.asarray(np.ones((b, s_slots), bool)),
        "index": jnp.arange(b),
    }

    def step(state, batch, key):
        model, opt = nnx.merge(graphdef, state)

        def loss_fn(m):
            return dorsal_loss(m, batch, key, p_uncond=0.1)

        (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        opt.update(model, grads)
        return nnx.state((model, opt)), loss

    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=0).lower(state, batch, key).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float((cost or {}).get("flops", 0.0))
    state, loss = compiled(state, batch, key)
    jax.block_until_ready(loss)
    times = []
    deadline = time.perf_counter() + a.msn_seconds
    while len(times) < a.msn_steps and (time.perf_counter() < deadline or len(times) < 2):
        t0 = time.perf_counter()
        state, loss = compiled(state, batch, jax.random.fold_in(key, len(times)))
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    tflops = flops / step_s / 1e12
    log(
        "msn_step",
        batch=b,
        views=views,
        resolution=res,
        slot_tokens=s_slots,
        params=int(params),
        compute_dtype=a.msn_dtype,
        attention_impl=a.attention,
        compile_s=compile_s,
        timed_steps=len(times),
        step_s=step_s,
        flops_per_step=flops,
        tflops_per_s=tflops,
        share_of_datasheet_990=tflops / DATASHEET_BF16_TFLOPS,
        share_of_plain_jax_490=tflops / PLAIN_JAX_TRANSFORMER_TFLOPS,
        target_share=0.30,
        meets_target=tflops / DATASHEET_BF16_TFLOPS >= 0.30,
        loss=float(loss),
    )


# --------------------------------------------------------------------------------------------------
# phase 3: short training and the comparison


def _configs(a: argparse.Namespace, cap1: float, cap2: float):
    from diff_dorsal.demo import quick_configs
    from diff_dorsal.stage1 import Stage1Config
    from diff_dorsal.stage2 import Stage2Config

    s1, s2 = Stage1Config(), Stage2Config()
    if a.dry_run:
        q = quick_configs(True)
        s1, s2 = q["stage1"], q["stage2"]
        s2 = s2.replace(decoder=s2.decoder.replace(image_size=a.resolution))
    n1 = max(2, int(cap1 * a.s1_rate))
    n2 = max(2, int(cap2 * a.s2_rate))
    s1 = s1.replace(
        steps=n1,
        batch_size=a.batch,
        warmup_steps=min(200, max(1, n1 // 10)),
        log_every=50,
        checkpoint_every=0,
    )
    s2 = s2.replace(
        steps=n2,
        batch_size=a.batch,
        ema_decay=_compare_module().ema_decay_for(n2),
        warmup_steps=min(200, max(1, n2 // 10)),
        log_every=50,
        checkpoint_every=0,
    )
    return s1, s2


def phase_train_and_compare(log: Log, a: argparse.Namespace, train: dict, deadline: float):
    from diff_dorsal.cameras import CameraConfig
    from diff_dorsal.demo import load_run
    from diff_dorsal.features import FeatureNetConfig, train_feature_net
    from diff_dorsal.scenes import SceneConfig, SceneDataset
    from diff_dorsal.stage1 import load_encoder, novel_view_psnr, train_encoder
    from diff_dorsal.stage2 import train_dorsal

    work = Path(a.workdir or tempfile.mkdtemp(prefix="dorsal-gpu-"))
    # the time left for training, after reserving the evaluation's
    left = deadline - time.perf_counter() - a.eval_reserve_s
    want = a.s1_seconds + 2 * a.s2_seconds
    scale = max(0.1, min(1.0, left / want))
    cap1, cap2 = a.s1_seconds * scale, a.s2_seconds * scale
    s1, s2 = _configs(a, cap1, cap2)
    test = SceneDataset(
        SceneConfig(), CameraConfig(resolution=a.resolution), split="test", size=a.test_scenes
    ).arrays(progress=False)

    cap = TimeCap(cap1)
    t0 = time.perf_counter()
    enc, hist = train_encoder(train, s1, work / "stage1", progress=False, hooks=(cap,))
    loss = np.asarray(hist.get("loss", []))
    log(
        "train_osrt_lite",
        cap_s=cap1,
        planned_steps=s1.steps,
        batch=s1.batch_size,
        **cap.figures(),
        loss_first=float(loss[0]) if loss.size else None,
        loss_last=float(loss[-1]) if loss.size else None,
        test_psnr=novel_view_psnr(enc, test),
        total_s=time.perf_counter() - t0,
    )
    runs = {}
    for kind in ("oracle", "osrt"):
        cap = TimeCap(cap2)
        t0 = time.perf_counter()
        out = work / f"stage2_{kind}"
        _, hist = train_dorsal(
            train,
            s2.replace(slots=kind),
            out,
            encoder=str(work / "stage1") if kind == "osrt" else None,
            progress=False,
            hooks=(cap,),
        )
        loss = np.asarray(hist["loss"])
        tail = loss[-min(100, loss.size) :] if loss.size else loss
        log(
            f"train_dorsal_{kind}",
            cap_s=cap2,
            planned_steps=s2.steps,
            batch=s2.batch_size,
            **cap.figures(),
            loss_first20=float(loss[:20].mean()) if loss.size else None,
            loss_last100=float(tail.mean()) if tail.size else None,
            total_s=time.perf_counter() - t0,
        )
        runs[f"dorsal_{kind}"] = load_run(out)
    runs["dorsal_oracle"].encoder = load_encoder(work / "stage1")[0]  # the OSRT-lite row

    t0 = time.perf_counter()
    sub = {k: v[: a.feature_scenes] for k, v in train.items()}
    net, fh = train_feature_net(sub, FeatureNetConfig(), steps=a.feature_steps, progress=False)
    log(
        "feature_net",
        steps=a.feature_steps,
        count_accuracy=fh["count_accuracy"],
        seconds=time.perf_counter() - t0,
    )

    cmp = _compare_module()
    rows: list[dict[str, Any]] = []

    def seen(row):
        rows.append(row)
        log("compare_row", **{k: row[k] for k in ("run", "guidance", "seed", "seconds")})

    results = []
    for g in a.guidance:  # guidance 1 for both runs first: the gates need it
        results.append(
            cmp.compare_runs(
                runs,
                train,
                test,
                net,
                seeds=a.seeds,
                guidances=[g],
                steps=a.sample_steps,
                edit_scenes=a.edit_scenes,
                chunk=a.chunk,
                deadline=deadline - a.eval_start_margin_s,
                on_result=seen,
            )
        )
    summary, ratios = cmp.summarise(rows)
    skipped = [s for r in results for s in r["skipped"]]
    log(
        "compare",
        test_scenes=a.test_scenes,
        sampling_steps=a.sample_steps,
        edit_scenes=a.edit_scenes,
        per_seed=rows,
        summary=summary,
        ratios=ratios,
        skipped=skipped,
    )
    log("gates", **gates(summary))


def gates(summary: dict[str, Any]) -> dict[str, Any]:
    """The spec's GPU gates (our defaults, to be confirmed by the first device run)."""

    def get(run: str, *path: str) -> float | None:
        node: Any = summary.get(f"{run}@g1")
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        return node.get("mean") if isinstance(node, dict) else None

    out: dict[str, Any] = {}
    lo, lc = (
        get("dorsal_oracle", "edits", "edit_locality"),
        get("dorsal_oracle", "edits", "edit_locality_random_slot"),
    )
    out["oracle_locality"] = lo
    out["oracle_locality_over_control"] = lo / lc if lo is not None and lc else None
    out["oracle_locality_gate"] = (
        None if lo is None or not lc else bool(lo >= 0.5 and lo / lc >= 2.0)
    )
    so, sc = (
        get("dorsal_osrt", "edits", "edit_locality"),
        get("dorsal_osrt", "edits", "edit_locality_random_slot"),
    )
    out["osrt_locality_over_control"] = so / sc if so is not None and sc else None
    out["osrt_locality_gate"] = None if so is None or not sc else bool(so / sc >= 1.3)
    ds = get("dorsal_osrt", "models", "DORSal", "sharpness_ratio")
    osh = get("dorsal_osrt", "models", "OSRT-lite", "sharpness_ratio")
    out["dorsal_sharpness_ratio"], out["osrt_sharpness_ratio"] = ds, osh
    out["sharpness_gate"] = (
        None if ds is None or osh is None else bool(0.5 <= ds <= 2.0 and osh < 0.3)
    )
    dp = get("dorsal_osrt", "models", "DORSal", "psnr")
    op = get("dorsal_osrt", "models", "OSRT-lite", "psnr")
    out["psnr_dorsal_minus_osrt_db"] = dp - op if dp is not None and op is not None else None
    out["psnr_within_expected_pattern"] = (
        None if out["psnr_dorsal_minus_osrt_db"] is None else out["psnr_dorsal_minus_osrt_db"] <= 1
    )
    return out


# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dry-run", action="store_true", help="every phase at toy size on CPU")
    p.add_argument("--out", default=None, help="output folder (default $OUT or ./gpu-out)")
    p.add_argument("--workdir", default=None, help="run folders (default: a temp folder)")
    p.add_argument("--budget-s", type=float, default=465.0, help="global deadline (s)")
    p.add_argument("--phases", nargs="+", default=["render", "msn", "train"])
    g = p.add_argument_group("sizes (device defaults; --dry-run replaces them)")
    g.add_argument("--render-scenes", type=int, default=2048)
    g.add_argument("--render-resolution", type=int, default=64)
    g.add_argument("--render-chunk", type=int, default=512)
    g.add_argument("--train-scenes", type=int, default=20000)
    g.add_argument("--resolution", type=int, default=32)
    g.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    g.add_argument("--msn-resolution", type=int, default=64)
    g.add_argument("--msn-batch", type=int, default=32)
    g.add_argument("--msn-steps", type=int, default=10)
    g.add_argument("--msn-seconds", type=float, default=20.0)
    g.add_argument("--attention", default="cudnn", choices=("auto", "xla", "cudnn"))
    g.add_argument("--msn-dtype", default="bfloat16", choices=("bfloat16", "float32"))
    g.add_argument("--batch", type=int, default=32, help="training batch (both stages)")
    g.add_argument("--s1-seconds", type=float, default=90.0)
    g.add_argument("--s2-seconds", type=float, default=120.0)
    g.add_argument("--s1-rate", type=float, default=40.0, help="guessed stage-1 steps/s")
    g.add_argument("--s2-rate", type=float, default=15.0, help="guessed stage-2 steps/s")
    g.add_argument("--eval-reserve-s", type=float, default=95.0)
    g.add_argument("--eval-start-margin-s", type=float, default=40.0)
    g.add_argument("--feature-steps", type=int, default=2000)
    g.add_argument("--feature-scenes", type=int, default=2000)
    g.add_argument("--test-scenes", type=int, default=256)
    g.add_argument("--sample-steps", type=int, default=32)
    g.add_argument("--edit-scenes", type=int, default=64)
    g.add_argument("--chunk", type=int, default=64, help="scenes per sampling call")
    g.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0])
    g.add_argument("--seeds", type=int, nargs="+", default=[0])
    return p


DRY = dict(
    render_scenes=8,
    render_resolution=16,
    render_chunk=4,
    train_scenes=24,
    resolution=16,
    workers=2,
    msn_resolution=16,
    msn_batch=2,
    msn_steps=2,
    msn_seconds=1.0,
    attention="xla",
    batch=4,
    s1_seconds=30.0,  # compile included: a few dozen steps, ended by the step count
    s2_seconds=30.0,
    s1_rate=1.0,
    s2_rate=1.0,
    eval_reserve_s=0.0,
    eval_start_margin_s=0.0,
    feature_steps=10,
    feature_scenes=24,
    test_scenes=4,
    sample_steps=3,
    edit_scenes=2,
    chunk=2,
    budget_s=600.0,
)


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.dry_run:
        for k, v in DRY.items():
            setattr(a, k, v)
    out = Path(a.out or os.environ.get("OUT") or "./gpu-out")
    log = Log(out)
    deadline = T_START + a.budget_s
    import jax

    log(
        "start",
        dry_run=a.dry_run,
        backend=jax.default_backend(),
        device=str(jax.devices()[0].device_kind),
        devices=jax.device_count(),
        jax=jax.__version__,
        host=platform.node(),
        cpu_count=os.cpu_count(),
        budget_s=a.budget_s,
        args={k: v for k, v in vars(a).items() if k != "phases"},
    )
    if not a.dry_run and jax.default_backend() != "gpu":
        log("warning", message="no GPU backend: the figures are not the device's")
    train = None
    ok = True
    for phase in ("render", "msn", "train"):
        if phase not in a.phases:
            continue
        t0 = time.perf_counter()
        try:
            if phase == "render":
                train = phase_render(log, a)
            elif phase == "msn":
                try:
                    phase_msn(log, a)
                except Exception as err:  # noqa: BLE001 - cuDNN attention refused: XLA's
                    if a.attention != "cudnn" or deadline - time.perf_counter() < 300:
                        raise
                    log("msn_step_cudnn_failed", error=f"{type(err).__name__}: {err}"[:2000])
                    a.attention = "xla"
                    phase_msn(log, a)
            else:
                if train is None:
                    from diff_dorsal.cameras import CameraConfig
                    from diff_dorsal.scenes import SceneConfig, SceneDataset

                    train = SceneDataset(
                        SceneConfig(), CameraConfig(resolution=a.resolution), size=a.train_scenes
                    ).arrays(progress=False)
                phase_train_and_compare(log, a, train, deadline)
        except Exception as err:  # noqa: BLE001 - record and go on to the next phase
            ok = False
            log(
                f"{phase}_failed",
                error=f"{type(err).__name__}: {err}"[:2000],
                traceback=traceback.format_exc()[-4000:],
            )
        log(f"{phase}_done", seconds=time.perf_counter() - t0)
    total = time.perf_counter() - T_START
    log("end", ok=ok, total_s=total, within_budget=total <= a.budget_s + 15)
    from diff_protocol.io import atomic_write

    atomic_write(out / "summary.json", json.dumps(log.lines, allow_nan=False, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
