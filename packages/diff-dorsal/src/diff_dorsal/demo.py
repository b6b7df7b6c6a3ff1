"""The DORSal pipeline behind ``diff-dorsal``: data, pictures of both stages, sampling, edits,
camera paths, evaluation, and the demo that runs them all on a tiny budget.

Every command of :mod:`diff_dorsal.cli` is a thin argument parser over one function here, so the
demo and the command line write the same files. Conventions (our defaults): the input views of a
scene are views ``0 .. input_views−1`` and the targets the next ``target_views`` (5 and 5); test
scenes are the ``"test"`` split of the configuration recorded in the data file (``data_config``);
an edit re-uses the noise of the original sample (DORSal, Jabri et al., arXiv 2306.08068).

Evaluation (:func:`evaluate_run`) measures DORSal samples, OSRT-lite reconstructions (arXiv
2206.06922) and three baselines (dataset-mean image, nearest input view, empty-scene render) on
the same target views: PSNR, SSIM, scene-feature distance, Fréchet scene-feature distance,
sharpness ratio; and for DORSal edit locality against a random-slot control, FG-ARI of
segmentation from edits, FG-ARI of the OSRT-lite slot mixer. The feature figures come from the
in-package :class:`~diff_dorsal.features.SceneFeatureNet` (never called LPIPS or FID).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diff_dorsal import viz
from diff_dorsal.batches import pad_rows
from diff_dorsal.stage1 import render_views
from diff_protocol.io import atomic_write

__all__ = [
    "DATA_CONFIG_KEY",
    "GLOSSARY",
    "RUN_FILE",
    "Run",
    "data_config_of",
    "edit_scene",
    "evaluate_run",
    "held_out_scenes",
    "load_run",
    "make_data",
    "metrics_markdown",
    "orbit",
    "quick_configs",
    "run_demo",
    "sample_scenes",
    "scene_slots",
    "stage1_pictures",
    "stage2_pictures",
    "write_metrics",
]

#: Key of the JSON description (scene/camera configs, split, seed) stored in a data ``.npz``.
DATA_CONFIG_KEY = "data_config"
#: The file ``diff-dorsal train`` writes beside C's ``dorsal.json``: data file and encoder.
RUN_FILE = "run.json"


# --------------------------------------------------------------------------------------------------
# data


def _tuples(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def make_data(
    out: str | Path,
    *,
    scenes: int,
    resolution: int = 32,
    views: int = 10,
    shadows: bool = False,
    seed: int = 0,
    split: str = "train",
    min_objects: int = 2,
    max_objects: int = 5,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Render ``scenes`` scenes of ``split`` to ``out`` (``.npz``, atomic) with the configuration
    recorded under :data:`DATA_CONFIG_KEY`, and ``<out stem>_preview.png`` (8 scenes × views with
    the instance overlay). Returns the arrays."""
    from diff_dorsal.cameras import CameraConfig
    from diff_dorsal.scenes import SceneConfig, SceneDataset, save_scenes

    sc = SceneConfig(min_objects=min_objects, max_objects=max_objects, shadows=shadows)
    cc = CameraConfig(n_views=views, resolution=resolution)
    arrays = SceneDataset(sc, cc, split=split, size=scenes, seed=seed).arrays(progress=progress)
    info = {
        "scene_config": dataclasses.asdict(sc),
        "camera_config": dataclasses.asdict(cc),
        "split": split,
        "seed": seed,
        "size": scenes,
    }
    arrays[DATA_CONFIG_KEY] = np.array(json.dumps(info))
    out = Path(out)
    save_scenes(out, arrays)
    viz.data_preview(
        arrays["images"][:8], arrays["instance"][:8], out.with_name(out.stem + "_preview.png")
    )
    return arrays


def data_config_of(arrays: Mapping[str, Any]) -> dict[str, Any] | None:
    """The recorded data configuration of a data file's arrays (``None`` for user data)."""
    if DATA_CONFIG_KEY not in arrays:
        return None
    return json.loads(str(np.asarray(arrays[DATA_CONFIG_KEY])))


def held_out_scenes(
    train_arrays: Mapping[str, Any], n: int, *, progress: bool = False
) -> dict[str, np.ndarray]:
    """The first ``n`` scenes of the ``"test"`` split of the configuration recorded in a data
    file (a ``ValueError`` for data without one: pass a test ``.npz`` instead)."""
    from diff_dorsal.cameras import CameraConfig
    from diff_dorsal.scenes import SceneConfig, SceneDataset

    info = data_config_of(train_arrays)
    if info is None:
        raise ValueError(
            "held_out_scenes: train_arrays must carry the data_config written by "
            "'diff-dorsal data', got a file without it (pass a test .npz with --test-data)"
        )
    sc = SceneConfig(**_tuples(info["scene_config"]))
    cc = CameraConfig(**_tuples(info["camera_config"]))
    return SceneDataset(sc, cc, split="test", size=n, seed=int(info["seed"])).arrays(
        progress=progress
    )


# --------------------------------------------------------------------------------------------------
# a trained run


@dataclass
class Run:
    """A stage-2 run folder loaded for sampling: the EMA decoder, its config and meta, the
    frozen OSRT-lite (``None`` for oracle slots without a stage-1 run) and the data file."""

    workdir: Path
    denoiser: Any
    config: Any
    meta: dict[str, Any]
    encoder: Any
    data_path: Path | None

    @property
    def oracle(self) -> bool:
        return self.config.slots == "oracle"

    @property
    def input_views(self) -> list[int]:
        return list(range(self.config.input_views))

    @property
    def target_views(self) -> list[int]:
        vi = self.config.input_views
        return list(range(vi, vi + self.config.target_views))


def load_run(workdir: str | Path) -> Run:
    """Load a stage-2 run folder (``dorsal.json`` + checkpoints; ``run.json`` if the command line
    wrote it). A ``ValueError`` names what is missing."""
    from diff_dorsal.stage1 import load_encoder
    from diff_dorsal.stage2 import load_dorsal

    workdir = Path(workdir)
    _, ema, meta = load_dorsal(workdir)
    info = json.loads((workdir / RUN_FILE).read_text()) if (workdir / RUN_FILE).is_file() else {}
    enc_dir = info.get("encoder") if info.get("encoder") not in (None, "oracle") else None
    enc_dir = enc_dir or meta.get("encoder_dir")
    encoder = None
    if enc_dir is not None and Path(enc_dir).exists():
        encoder, _ = load_encoder(enc_dir)
    elif meta["config"].slots == "osrt":
        raise ValueError(
            f"load_run: the stage-1 run {enc_dir!r} that {str(workdir)!r} was trained with "
            "must exist, got no such folder"
        )
    data = info.get("data")
    return Run(workdir, ema, meta["config"], meta, encoder, Path(data) if data else None)


def _encode_fn():
    import jax
    from flax import nnx

    global _ENCODE
    if _ENCODE is None:

        def run(graphdef, state, im, o, d):
            return nnx.merge(graphdef, state).encode(im, o, d)

        _ENCODE = jax.jit(run, static_argnums=0)
    return _ENCODE


_ENCODE = None


def _jit_encode(encoder: Any):
    from flax import nnx

    graphdef, state = nnx.split(encoder)
    fn = _encode_fn()
    return lambda im, o, d: np.asarray(fn(graphdef, state, im, o, d))


def scene_slots(
    run: Run, batch: Mapping[str, Any], *, chunk: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """``(slots (B, S, D), mask (B, S))`` of each scene: the oracle object slots, or OSRT-lite's
    slots of the input views (all kept), ``chunk`` scenes per call (padded: one compiled
    program)."""
    if run.oracle:
        from diff_dorsal.encoder import object_slots

        return object_slots(batch, run.config.max_objects)
    encode = _jit_encode(run.encoder)
    vi = run.input_views
    out = []
    n = np.shape(batch["images"])[0]
    for s in range(0, n, chunk):
        sl = slice(s, s + chunk)
        im, o, d = (pad_rows(np.asarray(batch[k][sl], np.float32)[:, vi], chunk) for k in _VIEWS)
        out.append(encode(im, o, d)[: min(chunk, n - s)])
    slots = np.concatenate(out)
    return slots, np.ones(slots.shape[:2], bool)


_VIEWS = ("images", "origins", "directions")


def sample_scenes(
    run: Run,
    slots: np.ndarray,
    mask: np.ndarray,
    origins: np.ndarray,
    directions: np.ndarray,
    *,
    seed: int = 0,
    steps: int = 64,
    guidance: float = 1.0,
    chunk: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """DORSal samples ``(B, L, h, w, 3)`` in [0, 1], ``chunk`` scenes per call (the last chunk
    padded, so one compiled shape). Chunk ``c`` uses the noise key ``fold_in(key(seed), c)``:
    the same arguments with edited slots give an edit under fixed noise."""
    import jax

    from diff_dorsal.sampling import sample_views

    n = slots.shape[0]
    key = jax.random.key(int(seed))
    out = []
    starts = range(0, n, chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="sampling", unit="chunk", leave=False)
    for c, s in enumerate(starts):
        sl = slice(s, s + chunk)
        args = [pad_rows(np.asarray(a[sl]), chunk) for a in (slots, mask, origins, directions)]
        x = sample_views(
            run.denoiser,
            *args,
            jax.random.fold_in(key, c),
            steps=steps,
            guidance=guidance,
        )
        out.append(np.asarray(x)[: min(chunk, n - s)])
    return np.concatenate(out)


# --------------------------------------------------------------------------------------------------
# pictures written after each stage


def stage1_pictures(
    encoder: Any, arrays: Mapping[str, Any], workdir: str | Path, history: Mapping[str, Any]
) -> list[Path]:
    """``loss.png``, ``recon/step_N.png`` (ground truth / OSRT-lite of targets 5–9 of the first
    4 scenes) and ``segmentation/step_N.png`` (argmax slot of the mixer weights beside the true
    instances) of a stage-1 run at its last step."""

    workdir = Path(workdir)
    steps = np.asarray(history.get("step", []))
    step = int(steps[-1]) if steps.size else 0
    written = []
    if len(history.get("loss", [])):
        written.append(
            viz.loss_curve(
                {"ray MSE": history["loss"]},
                workdir / "loss.png",
                title="stage 1: OSRT-lite",
                ylabel="MSE",
            )
        )
    v = np.shape(arrays["images"])[1]
    vi = min(5, v // 2)
    inp, tgt = list(range(vi)), list(range(vi, min(v, 2 * vi)))
    few = {k: np.asarray(arrays[k][:4]) for k in (*_VIEWS, "instance")}
    rgb, weights = render_views(encoder, few, inp, tgt, batch_size=8, return_weights=True)
    truth = few["images"][:, tgt]
    written.append(
        viz.view_grid(
            {"truth": truth, "OSRT-lite": rgb}, workdir / "recon" / f"step_{step:06d}.png"
        )
    )
    slot = np.argmax(weights, axis=-1)
    written.append(
        viz.view_grid(
            {
                "truth": truth,
                "slots": viz.instance_colours(slot + 1),
                "instances": viz.instance_colours(few["instance"][:, tgt]),
            },
            workdir / "segmentation" / f"step_{step:06d}.png",
        )
    )
    return written


def stage2_pictures(
    run: Run,
    arrays: Mapping[str, Any],
    history: Mapping[str, Any],
    *,
    sample_steps: int = 32,
    n_scenes: int = 2,
    chunk: int = 8,
) -> list[Path]:
    """``loss.png`` and ``samples/step_N.png`` (ground truth / OSRT-lite / DORSal rows for the
    first ``n_scenes`` scenes of ``arrays``) of a stage-2 run."""

    written = []
    loss = history.get("logged_loss", history.get("loss", []))
    if len(loss):
        written.append(
            viz.loss_curve(
                {"½ v-MSE": loss}, run.workdir / "loss.png", title="stage 2: DORSal", ylabel="loss"
            )
        )
    few = {k: np.asarray(v[:n_scenes]) for k, v in arrays.items() if np.ndim(v) > 0}
    tgt = run.target_views
    slots, mask = scene_slots(run, few)
    samples = sample_scenes(
        run,
        slots,
        mask,
        few["origins"][:, tgt],
        few["directions"][:, tgt],
        steps=sample_steps,
        chunk=chunk,
    )
    rows = {"truth": few["images"][:, tgt]}
    if run.encoder is not None:
        rows["OSRT-lite"] = render_views(
            run.encoder, few, run.input_views, tgt, batch_size=8, return_weights=True
        )[0]
    rows["DORSal"] = samples
    step = int(run.meta.get("step", 0))
    written.append(viz.view_grid(rows, run.workdir / "samples" / f"step_{step:06d}.png"))
    return written


# --------------------------------------------------------------------------------------------------
# edits and paths


def _largest_object(instance: np.ndarray, n_objects: int) -> int:
    counts = [(instance == j + 1).sum() for j in range(n_objects)]
    return int(np.argmax(counts))


def _item(arrays: Mapping[str, Any], i: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[i] for k, v in arrays.items() if np.ndim(v) > 0}


def edit_scene(
    run: Run,
    arrays: Mapping[str, Any],
    scene: int,
    out: str | Path,
    *,
    remove: int | None = None,
    transfer_from: tuple[int, Sequence[int]] | None = None,
    seed: int = 0,
    steps: int = 64,
    guidance: float = 1.0,
    chunk: int = 8,
) -> dict[str, Any]:
    """Remove object ``remove`` of test scene ``scene`` (or transfer objects ``ids`` of scene
    ``transfer_from = (b, ids)`` into it) by editing the slots with the noise fixed, and write
    the panel ``out``: original, edited, ground truth after the edit, ``|Δ|`` heat map and the
    exact ground-truth change mask. Returns the edit's figures (locality inside the change mask
    dilated by 1 px, and the slots edited)."""
    from diff_dorsal.editing import edit_locality, edit_maps, match_slots, remove_slots
    from diff_dorsal.editing import transfer_slots as _transfer_slots
    from diff_dorsal.scenes import cameras_from_item, render, scene_from_item, transfer_objects

    if (remove is None) == (transfer_from is None):
        raise ValueError("edit_scene: give exactly one of remove and transfer_from")
    tgt = run.target_views
    item = _item(arrays, scene)
    sc_a = scene_from_item(item)
    cams = cameras_from_item(item).take(np.asarray(tgt))
    base = render(sc_a, cams)
    one = {k: v[None] for k, v in item.items()}
    slots, mask = scene_slots(run, one)
    if remove is not None:
        truth = render(sc_a, cams, drop=(int(remove),))  # validates the object index
        if run.oracle:
            slot = int(remove)
        else:
            _, w = render_views(
                run.encoder, one, run.input_views, tgt, batch_size=8, return_weights=True
            )
            slot = int(match_slots(w, one["instance"][:, tgt], int(remove))[0])
            if slot < 0:
                raise ValueError(
                    f"edit_scene: remove must name an object visible in the target views, "
                    f"object {remove} covers no target pixel"
                )
        new_slots, new_mask = slots, remove_slots(mask, [slot])
        title = f"scene {scene}: remove object {remove} (slot {slot})"
        edited_slots = [slot]
    else:
        b, ids = int(transfer_from[0]), [int(i) for i in transfer_from[1]]
        item_b = _item(arrays, b)
        sc_b = scene_from_item(item_b)
        union = transfer_objects(sc_a, sc_b, ids)  # ValueError on overlapping footprints
        truth = render(union, cams)
        one_b = {k: v[None] for k, v in item_b.items()}
        slots_b, mask_b = scene_slots(run, one_b)
        if run.oracle:
            src = ids
        else:
            _, w = render_views(
                run.encoder, one_b, run.input_views, tgt, batch_size=8, return_weights=True
            )
            src = [int(match_slots(w, one_b["instance"][:, tgt], j)[0]) for j in ids]
        new_slots, new_mask = _transfer_slots(slots, mask, slots_b, mask_b, [src])
        pad = new_slots.shape[1] - slots.shape[1]
        slots = np.concatenate([slots, np.zeros((1, pad, slots.shape[2]), slots.dtype)], 1)
        mask = np.concatenate([mask, np.zeros((1, pad), bool)], 1)
        title = f"scene {scene}: add objects {ids} of scene {b}"
        edited_slots = src
    o, d = (item[k][None, tgt] for k in ("origins", "directions"))
    kw = dict(seed=seed, steps=steps, guidance=guidance, chunk=chunk)
    original = sample_scenes(run, slots, mask, o, d, **kw)[0]
    edited = sample_scenes(run, new_slots, new_mask, o, d, **kw)[0]
    change = np.any(np.abs(truth.rgb - base.rgb) > 1e-6, axis=-1)
    viz.edit_panel(original, edited, out, true_mask=change, truth_edited=truth.rgb, title=title)
    delta = edit_maps(original[None], edited[None])
    inside = float(edit_locality(delta, change[None], dilate=1)[0]) if change.any() else None
    return {"scene": scene, "slots": edited_slots, "locality": inside, "panel": str(out)}


def orbit(
    run: Run,
    arrays: Mapping[str, Any],
    scene: int,
    out: str | Path,
    *,
    frames: int = 36,
    elevation: float = 0.5,
    seed: int = 0,
    steps: int = 64,
    guidance: float = 1.0,
    overlap: int = 2,
    batch: int = 1,
) -> Path:
    """A camera orbit around test scene ``scene`` generated in chunks of ``target_views`` views
    (``sample_path``; ``overlap`` views held by replacement), written as a GIF beside the exact
    render along the same path. ``batch > 1`` repeats the scene to that batch size (so the
    first chunk re-uses the compiled sampler of :func:`sample_scenes` with ``chunk=batch``)."""
    import jax

    from diff_dorsal.cameras import canonicalize, circle_path, rays
    from diff_dorsal.sampling import sample_path
    from diff_dorsal.scenes import render, scene_from_item

    item = _item(arrays, scene)
    res = int(item["images"].shape[1])
    fov = float(2 * np.degrees(np.arctan(0.5 * res / float(item["intrinsics"][0, 0]))))
    radius = float(np.linalg.norm(item["poses"][0, :, 3]))
    frame_pose = item.get("frame_pose")
    if frame_pose is not None and not np.allclose(frame_pose, np.eye(3, 4)):
        radius = float(np.linalg.norm(frame_pose[:, 3]))
    path = circle_path(frames, radius=radius, elevation=elevation, resolution=res, fov_deg=fov)
    truth = render(scene_from_item(item), path).rgb
    cams = path
    if frame_pose is not None and not np.allclose(frame_pose, np.eye(3, 4)):
        cams = canonicalize(path, frame_pose)
    o, d = rays(cams)
    slots, mask = scene_slots(run, {k: v[None] for k, v in item.items()})
    rep = max(1, int(batch))
    x = sample_path(
        run.denoiser,
        np.repeat(slots, rep, 0),
        np.repeat(mask, rep, 0),
        np.repeat(o[None], rep, 0),
        np.repeat(d[None], rep, 0),
        jax.random.key(int(seed)),
        chunk=run.config.target_views,
        overlap=min(overlap, run.config.target_views - 1),
        steps=steps,
        guidance=guidance,
    )
    return viz.path_gif({"truth": truth, "DORSal": np.asarray(x)[0]}, out, fps=8)


# --------------------------------------------------------------------------------------------------
# evaluation

_E = {
    "psnr": ("PSNR of the target views against the ground truth, dB", "higher"),
    "ssim": ("structural similarity (scikit-image, 7×7 window) of the target views", "higher"),
    "feature_distance": (
        "scene-feature distance to the ground truth (in-package SceneFeatureNet; not LPIPS)",
        "lower",
    ),
    "frechet_feature_distance": (
        "Fréchet scene-feature distance of the set of views to the ground-truth set (not FID)",
        "lower",
    ),
    "sharpness_ratio": (
        "mean squared Laplacian over the ground truth's (1 = as sharp; blurry decoders ≪ 1)",
        "closer to 1",
    ),
}


def _glossary(quick: bool) -> dict[str, dict[str, str]]:
    from diff_core.figures import entry

    if quick:  # measured: 4 test scenes, tiny networks, 10 + 10 steps, DDIM-8
        exp = {
            "psnr": "DORSal 8-10 dB (10 steps: still noise), OSRT-lite 14-16 dB, baselines "
            "16-22 dB (empty-scene render highest)",
            "ssim": "DORSal about 0, OSRT-lite about 0.1, mean image 0.1, nearest view 0.2, "
            "empty-scene render 0.75-0.8",
            "feature_distance": "0.1 (empty-scene render) to 1.3 (OSRT-lite); 0 = same features",
            "frechet_feature_distance": "0.04-120: 20 views per set make it noisy at --quick",
            "sharpness_ratio": "DORSal 20-30 (noise), OSRT-lite below 0.01, renders about 0.8-1",
        }
    else:  # measured by this demo (1000 scenes, 400 + 800 steps, OSRT-lite slots, DDIM-32)
        exp = {
            "psnr": "DORSal 14.1 dB, OSRT-lite 16.8 dB, baselines 15.3-17.5 dB (samples below "
            "the regression decoder, as in the paper)",
            "ssim": "DORSal 0.05, OSRT-lite 0.11, nearest view 0.18, empty-scene render 0.60",
            "feature_distance": "0.51 (nearest view) to 0.85 (DORSal); 0 = same features",
            "frechet_feature_distance": "DORSal 485 vs OSRT-lite 97 at 800 steps (samples still "
            "noisy: the paper's 'far better' is not reproduced at this budget)",
            "sharpness_ratio": "DORSal 1.7 (partly noise), OSRT-lite 0.002, renders 0.7-1",
        }
    g = {k: entry(m, b, exp[k]) for k, (m, b) in _E.items()}
    g["edit_locality"] = entry(
        "share of the change of a slot removal inside the removed object's exact visible mask "
        "(dilated by 1 px)",
        "higher",
        "near the control at CPU budgets (learned locality needs GPU-scale training)",
    )
    g["edit_locality_random_slot"] = entry(
        "the same share after removing a random other slot (the control)",
        "lower",
        "about the mask's share of the change; close to edit_locality at CPU budgets",
    )
    g["locality_ratio"] = entry(
        "edit_locality / edit_locality_random_slot",
        "higher",
        "about 1 at CPU budgets; ≥ 1.3 on GPU",
    )
    g["fg_ari_from_edits"] = entry(
        "FG-ARI of segmentation from edits (each pixel to the slot whose removal changed it most)",
        "higher",
        "0-0.3 at CPU budgets (1 with an exact denoiser)",
    )
    g["fg_ari_osrt_mixer"] = entry(
        "FG-ARI of OSRT-lite's argmax slot-mixer weight on the target views",
        "higher",
        "0-0.2 at CPU budgets (the mixer learns the mean scene first)",
    )
    return g


#: Glossary of the evaluation figures (``metrics.json`` format of ``tools/run_demos.py``).
GLOSSARY = _glossary(False)


def _image_figures(net, pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from diff_dorsal.features import feature_distance, frechet_feature_distance
    from diff_dorsal.metrics import psnr, sharpness_ratio, ssim

    fd = None
    if pred.reshape(-1, *pred.shape[-3:]).shape[0] >= 2:
        fd = frechet_feature_distance(net, pred, truth)
    return {
        "psnr": psnr(pred, truth),
        "ssim": ssim(pred, truth),
        "feature_distance": feature_distance(net, pred, truth),
        "frechet_feature_distance": fd,
        "sharpness_ratio": sharpness_ratio(pred, truth),
    }


def evaluate_run(
    run: Run,
    test: Mapping[str, Any],
    train: Mapping[str, Any],
    feature_net: Any,
    *,
    steps: int = 32,
    guidance: float = 1.0,
    seed: int = 0,
    edit_scenes: int = 16,
    chunk: int = 8,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Evaluate a run on the test scenes ``test``.

    Returns ``(figures, images)``: ``figures["models"]`` maps DORSal, OSRT-lite (when the run has
    an encoder), "mean image", "nearest input view" and "empty-scene render" to their PSNR, SSIM,
    scene-feature distance, Fréchet scene-feature distance and sharpness ratio;
    ``figures["edits"]`` holds edit locality of removing each of the first ``edit_scenes``
    scenes' largest visible object (matched slot) and its random-slot control, their ratio, and
    FG-ARI of segmentation from edits; ``figures["fg_ari_osrt_mixer"]`` the OSRT-lite mixer's.
    ``images`` has ``truth``, ``DORSal`` and (if any) ``OSRT-lite`` target views.
    """
    from diff_dorsal.editing import (
        edit_locality,
        edit_maps,
        locality_ratio,
        match_slots,
        random_other_slots,
        remove_slots,
        segmentation_from_edits,
    )
    from diff_dorsal.metrics import (
        empty_scene_baseline,
        fg_ari,
        mean_image_baseline,
        nearest_view_baseline,
    )

    t0 = time.perf_counter()
    vi, tgt = run.input_views, run.target_views
    truth = np.asarray(test["images"])[:, tgt]
    inst = np.asarray(test["instance"])[:, tgt]
    o = np.asarray(test["origins"])[:, tgt]
    d = np.asarray(test["directions"])[:, tgt]
    slots, mask = scene_slots(run, test)
    kw = dict(seed=seed, steps=steps, guidance=guidance, chunk=chunk)
    samples = sample_scenes(run, slots, mask, o, d, progress=progress, **kw)
    images = {"truth": truth, "DORSal": samples}
    models = {"DORSal": _image_figures(feature_net, samples, truth)}
    weights = None
    fig: dict[str, Any] = {}
    if run.encoder is not None:
        recon, weights = render_views(run.encoder, test, vi, tgt, batch_size=8, return_weights=True)
        images["OSRT-lite"] = recon
        models["OSRT-lite"] = _image_figures(feature_net, recon, truth)
        fig["fg_ari_osrt_mixer"] = fg_ari(np.argmax(weights, -1), inst, per_scene=True)
    else:
        fig["fg_ari_osrt_mixer"] = None
    base = {
        "mean image": mean_image_baseline(np.asarray(train["images"]), truth.shape),
        "nearest input view": nearest_view_baseline(
            np.asarray(test["images"])[:, vi],
            np.asarray(test["poses"])[:, vi],
            np.asarray(test["poses"])[:, tgt],
        ),
        "empty-scene render": empty_scene_baseline(test, tgt),
    }
    for name, pred in base.items():
        models[name] = _image_figures(feature_net, pred, truth)

    # edits on the first scenes: remove the largest visible object's slot vs a random other slot
    ne = min(int(edit_scenes), truth.shape[0])
    edits: dict[str, Any] = {"scenes": ne}
    if ne:
        sub = slice(0, ne)
        n_obj = np.asarray(test["n_objects"])[:ne]
        obj = np.array([_largest_object(inst[i], int(n_obj[i])) for i in range(ne)])
        if run.oracle:
            matched = obj.copy()
        else:
            matched = match_slots(weights[sub], inst[sub], obj)
        ok = matched >= 0
        control = random_other_slots(mask[sub], matched, seed)
        orig = sample_scenes(run, slots[sub], mask[sub], o[sub], d[sub], **kw)
        removed = sample_scenes(
            run, slots[sub], remove_slots(mask[sub], matched[:, None]), o[sub], d[sub], **kw
        )
        randomly = sample_scenes(
            run, slots[sub], remove_slots(mask[sub], control[:, None]), o[sub], d[sub], **kw
        )
        obj_mask = inst[sub] == (obj[:, None, None, None] + 1)
        inside = edit_locality(edit_maps(orig, removed), obj_mask, dilate=1)
        inside_r = edit_locality(edit_maps(orig, randomly), obj_mask, dilate=1)
        inside = np.where(ok, inside, np.nan)
        inside_r = np.where(control >= 0, inside_r, np.nan)
        edits["edit_locality"] = float(np.nanmean(inside)) if np.isfinite(inside).any() else None
        edits["edit_locality_random_slot"] = (
            float(np.nanmean(inside_r)) if np.isfinite(inside_r).any() else None
        )
        ratio = locality_ratio(inside, inside_r)
        edits["locality_ratio"] = ratio if np.isfinite(ratio) else None
        seg = segmentation_from_edits(
            run.denoiser,
            slots[sub],
            mask[sub],
            o[sub],
            d[sub],
            _key(seed),
            tau=0.05,
            steps=steps,
            guidance=guidance,
        )
        f = fg_ari(seg, inst[sub], per_scene=True)
        edits["fg_ari_from_edits"] = None if np.isnan(f) else f
    fig["fg_ari_osrt_mixer"] = (
        None
        if fig["fg_ari_osrt_mixer"] is None or np.isnan(fig["fg_ari_osrt_mixer"])
        else fig["fg_ari_osrt_mixer"]
    )
    figures = {
        "models": models,
        "edits": edits,
        "fg_ari_osrt_mixer": fig["fg_ari_osrt_mixer"],
        "setup": {
            "test_scenes": int(truth.shape[0]),
            "input_views": vi,
            "target_views": tgt,
            "slots": run.config.slots,
            "sampling_steps": steps,
            "guidance": guidance,
            "stage2_step": int(run.meta.get("step", 0)),
            "seconds": round(time.perf_counter() - t0, 1),
        },
    }
    return figures, images


def _key(seed: int):
    import jax

    return jax.random.key(int(seed))


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def metrics_markdown(figures: Mapping[str, Any]) -> str:
    """The evaluation as Markdown: one row per model, then the edit and segmentation figures."""
    cols = list(_E)
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, row in figures["models"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
    lines += ["", "| figure | value |", "|---|---|"]
    edits = dict(figures.get("edits", {}))
    for k in (
        "edit_locality",
        "edit_locality_random_slot",
        "locality_ratio",
        "fg_ari_from_edits",
        "scenes",
    ):
        if k in edits:
            lines.append(f"| {k if k != 'scenes' else 'edit scenes'} | {_fmt(edits[k])} |")
    lines.append(f"| fg_ari_osrt_mixer | {_fmt(figures.get('fg_ari_osrt_mixer'))} |")
    setup = figures.get("setup", {})
    if setup:
        lines += [
            "",
            f"{setup.get('test_scenes')} test scenes, inputs {setup.get('input_views')}, targets "
            f"{setup.get('target_views')}, {setup.get('slots')} slots, DDIM-"
            f"{setup.get('sampling_steps')} at guidance {setup.get('guidance')}, stage-2 step "
            f"{setup.get('stage2_step')}.",
        ]
    return "\n".join(lines) + "\n"


def write_metrics(out_json: str | Path, figures: Mapping[str, Any], md: str | Path | None = None):
    """Write ``figures`` (plus the glossary) as JSON and the Markdown table beside it."""
    from diff_protocol.io import jsonable

    out_json = Path(out_json)
    data = {**figures}
    data.setdefault("glossary", GLOSSARY)
    atomic_write(out_json, json.dumps(jsonable(data), indent=2))
    atomic_write(md or out_json.with_suffix(".md"), metrics_markdown(figures))


# --------------------------------------------------------------------------------------------------
# the demo


def quick_configs(quick: bool) -> dict[str, Any]:
    """The demo's budgets: ``--quick`` (CI: tiny networks, 16 scenes, 10 + 10 steps, DDIM-8)
    and the full demo (the ``lite`` presets, 1000 scenes, 400 + 800 steps, DDIM-32)."""
    from diff_dorsal.denoiser import DecoderConfig
    from diff_dorsal.encoder import EncoderConfig
    from diff_dorsal.features import FeatureNetConfig
    from diff_dorsal.stage1 import Stage1Config
    from diff_dorsal.stage2 import Stage2Config

    if quick:
        enc = EncoderConfig(
            "lite",
            conv_channels=(16, 16),
            dim=32,
            n_layers=1,
            heads=2,
            slot_dim=32,
            slot_iters=1,
            slot_mlp_hidden=32,
            decoder_dim=32,
            decoder_heads=2,
            decoder_hidden=(32, 32),
        )
        dec = DecoderConfig(
            token_dim=32, overrides=dict(channels=(32, 32), mid_blocks=1, head_dim=16)
        )
        return {
            "scenes": 16,
            "test_scenes": 4,
            # warm-up 2 (not the presets' 200): the 10 quick steps must move the weights
            "stage1": Stage1Config(
                encoder=enc,
                steps=10,
                batch_size=4,
                rays_per_scene=256,
                warmup_steps=2,
                checkpoint_every=0,
            ),
            "stage2": Stage2Config(
                decoder=dec, steps=10, batch_size=2, warmup_steps=2, checkpoint_every=0
            ),
            "features": FeatureNetConfig(steps=20, batch=16),
            "sampling_steps": 8,
            "edit_scenes": 2,
            "chunk": 2,
            "frames": 12,
            "expected_s": 40,
        }
    return {
        "scenes": 1000,
        "test_scenes": 64,
        "stage1": Stage1Config(steps=400),
        "stage2": Stage2Config(steps=800),
        "features": FeatureNetConfig(steps=1000),
        "sampling_steps": 32,
        "edit_scenes": 16,
        "chunk": 8,
        "frames": 36,
        "expected_s": 1200,
    }


class _Laps:
    """Prints the seconds of each demo phase."""

    def __init__(self, t0: float) -> None:
        self.last = t0

    def __call__(self, what: str) -> None:
        now = time.perf_counter()
        print(f"[{now - self.last:5.1f} s] {what}", flush=True)
        self.last = now


def run_demo(out: str | Path, *, quick: bool = False, progress: bool = True) -> int:
    """data → stage 1 → stage 2 (OSRT-lite slots) → samples, an edit panel, an orbit GIF and the
    evaluation, all in ``out``: ``data.npz`` + preview, ``stage1/``, ``stage2/``, ``samples.png``,
    ``edit_remove.png``, ``orbit.gif``, ``feature_net.npz``, ``metrics.json``, ``metrics.md``."""
    from diff_core.figures import describe
    from diff_dorsal.features import save_feature_net, train_feature_net
    from diff_dorsal.stage1 import train_encoder
    from diff_dorsal.stage2 import train_dorsal

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = quick_configs(quick)
    s1, s2 = cfg["stage1"], cfg["stage2"]
    lap = _Laps(t0)
    arrays = make_data(out / "data.npz", scenes=cfg["scenes"], progress=progress)
    test = held_out_scenes(arrays, cfg["test_scenes"])
    lap(f"data: {cfg['scenes']} train scenes, {cfg['test_scenes']} test scenes")
    enc, h1 = train_encoder(arrays, s1, out / "stage1", progress=progress)
    stage1_pictures(enc, arrays, out / "stage1", h1)
    lap(f"stage 1: {s1.steps} steps")
    _, h2 = train_dorsal(arrays, s2, out / "stage2", encoder=out / "stage1", progress=progress)
    atomic_write(
        out / "stage2" / RUN_FILE,
        json.dumps({"data": str((out / "data.npz").resolve()), "encoder": str(out / "stage1")}),
    )
    run = load_run(out / "stage2")
    lap(f"stage 2: {s2.steps} steps")
    steps = cfg["sampling_steps"]
    chunk = cfg["chunk"]
    stage2_pictures(run, arrays, h2, sample_steps=steps, n_scenes=chunk, chunk=chunk)
    net, _ = train_feature_net(arrays, cfg["features"], progress=progress)
    save_feature_net(net, out)
    lap(f"samples picture, scene-feature net ({cfg['features'].steps} steps)")
    figures, images = evaluate_run(
        run,
        test,
        arrays,
        net,
        steps=steps,
        guidance=1.0,
        edit_scenes=cfg["edit_scenes"],
        chunk=chunk,
        progress=progress,
    )
    lap("evaluation")
    rows = {"truth": images["truth"], "OSRT-lite": images["OSRT-lite"], "DORSal": images["DORSal"]}
    viz.view_grid({k: v[:4] for k, v in rows.items()}, out / "samples.png")
    item0 = _item(test, 0)
    j = _largest_object(item0["instance"][run.target_views], int(item0["n_objects"]))
    edit_scene(run, test, 0, out / "edit_remove.png", remove=j, steps=steps, chunk=chunk)
    lap("edit panel")
    orbit(
        run,
        test,
        0,
        out / "orbit.gif",
        frames=cfg["frames"],
        steps=steps,
        batch=chunk if quick else 1,
    )
    lap(f"orbit ({cfg['frames']} views)")
    glossary = _glossary(quick)
    figures["meta"] = {
        "expected_s": cfg["expected_s"],
        "budget": f"{cfg['scenes']} scenes; stage 1 {s1.steps} steps, stage 2 {s2.steps} steps "
        f"(batch {s2.batch_size}, OSRT-lite slots); DDIM-{steps}; scene-feature net "
        f"{cfg['features'].steps} steps" + ("; tiny networks" if quick else ""),
    }
    figures["glossary"] = glossary
    write_metrics(out / "metrics.json", figures, out / "metrics.md")
    print(metrics_markdown(figures))
    flat = {
        f"{k}": v
        for k, v in {
            **figures["models"]["DORSal"],
            **{k: v for k, v in figures["edits"].items() if k != "scenes"},
        }.items()
    }
    print("DORSal:\n" + describe({k: glossary[k] for k in flat if k in glossary}, flat))
    print(f"demo written to {out} in {time.perf_counter() - t0:.0f} s")
    return 0
