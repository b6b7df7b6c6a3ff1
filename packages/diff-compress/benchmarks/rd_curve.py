"""Rate-distortion curve and Bjøntegaard deltas of the ``cpu`` codec against Pillow's JPEG (and
WebP) on the held-out photos (spec §8, ``rd_curve.py``).

    python benchmarks/rd_curve.py --work runs/rd --out rd_curve.png       # ≈ 3 × 6–8 min on 2 cores
    python benchmarks/rd_curve.py --quick --out /tmp/rd_quick.png         # tiny steps, a check

Trains the codec at each preset (``train_codec`` with the recipe of
``benchmarks/calibrate_photo_codec.py``: 64-px crops, batch 8, 1,500 steps, seed 0; the q3 run
has that benchmark's seed-0 configuration) into ``--work/<size>-<preset>-seed<S>-steps<N>``,
resuming a run that was stopped and reusing one that finished (``--model q3=DIR`` takes an
already trained model folder instead). Each codec compresses the held-out photos
(``offline_photos("test")``) to real streams: file bpp (header included) and PSNR of the MSE
decode. The references are ``evaluate.jpeg_curve`` and ``evaluate.webp_curve`` of the same
photos (file bpp, PSNR).

Per photo and for the mean curves (bpp and PSNR averaged over photos per preset / quality):
``bd_rate`` (average % more bits than the reference at equal PSNR, over the PSNR interval both
curves cover; lower is better, 0 = as good as the reference) and ``bd_psnr`` (average dB over
the reference at equal rate, over the common log-rate interval; higher is better), both
Bjøntegaard's piecewise-cubic (PCHIP) version, with the intervals stated. A delta that is not
defined (no common interval, or a curve whose PSNR does not rise with its rate) is ``null``
with the reason. A codec trained this briefly can have a preset that another beats in both bpp
and PSNR (its PSNR then does not rise with its rate), so every delta is also given on the
codec's Pareto front (``pareto_front``: the dominated presets dropped and named). Writes
``--out`` (the curves, the intervals shaded) and prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from diff_compress import (
    PRESETS,
    SIZES,
    CodecConfig,
    Compressor,
    bd_psnr,
    bd_rate,
    bits_per_pixel,
    offline_photos,
    psnr,
    train_codec,
)
from diff_compress.evaluate import JPEG_QUALITIES, WEBP_QUALITIES, jpeg_curve, webp_curve
from diff_compress.files import write_atomic

STEPS = 1500  # benchmarks/calibrate_photo_codec.py and the slow photo-codec tests
QUICK_STEPS = 20
CROP, BATCH = 64, 8

READING = {
    "bd_rate_pct": "average % more bits than the reference for the same PSNR, over the PSNR "
    "interval both curves cover (lower is better; 0 = equal, -50 = half the bits)",
    "bd_psnr_db": "average dB above the reference at the same bpp, over the bpp interval both "
    "curves cover (higher is better)",
    "expected": "the 1500-step cpu codec is ~10 dB behind JPEG at equal bpp (README, check 8), "
    "so BD-PSNR is strongly negative and BD-rate, where JPEG's lowest-quality points (>= 0.16 "
    "bpp) reach the codec's PSNR at all, large and positive",
}


def _model_arg(text: str) -> tuple[str, Path]:
    preset, sep, folder = text.partition("=")
    if not sep or preset not in PRESETS or not folder:
        raise argparse.ArgumentTypeError(
            f"expected PRESET=DIR with PRESET one of {sorted(PRESETS)}, got {text!r}"
        )
    path = Path(folder)
    if not (path / "codec" / "coding_tables.npz").is_file():
        raise argparse.ArgumentTypeError(
            f"{folder!r} is not a trained model folder (no codec/coding_tables.npz)"
        )
    return preset, path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring (and the README's benchmark section) for the figures.",
    )
    p.add_argument(
        "--work",
        default=None,
        help="folder of the training runs, kept and resumed (default: a temporary folder, "
        "removed at the end)",
    )
    p.add_argument(
        "--out",
        default="rd_curve.png",
        help="the R-D picture (PNG) to write (default: rd_curve.png)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (default: refuse)"
    )
    p.add_argument(
        "--presets",
        nargs="+",
        default=["q1", "q3", "q5"],
        choices=sorted(PRESETS),
        metavar="PRESET",
        help="codec presets, at least 2 (CompressAI's MSE λ: "
        + ", ".join(f"{k} {v}" for k, v in PRESETS.items())
        + "; default: q1 q3 q5)",
    )
    p.add_argument("--size", default="cpu", choices=sorted(SIZES), help="codec size (default: cpu)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"training steps per preset (default: {STEPS}, or {QUICK_STEPS} with --quick)",
    )
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=500,
        help="checkpoint interval in steps (default: 500)",
    )
    p.add_argument(
        "--model",
        type=_model_arg,
        action="append",
        default=[],
        metavar="PRESET=DIR",
        help="use this trained model folder for PRESET instead of training (repeatable; default: "
        "train every preset)",
    )
    for fmt, name, qualities, what in (
        ("jpeg", "JPEG", JPEG_QUALITIES, "the reference curve"),
        ("webp", "WebP", WEBP_QUALITIES, "the second reference curve"),
    ):
        p.add_argument(
            f"--{fmt}-qualities",
            type=int,
            nargs="+",
            default=list(qualities),
            metavar="Q",
            help=f"Pillow {name} qualities of {what} (default: {' '.join(map(str, qualities))})",
        )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"validate the script: {QUICK_STEPS} steps per preset (the figures mean nothing; "
        "default: off)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="hide the progress bars (default: shown)"
    )
    return p


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = _parser()
    a = p.parse_args(argv)
    if len(set(a.presets)) < 2:
        p.error(f"--presets: need at least 2 distinct presets for a curve, got {a.presets}")
    a.presets = sorted(set(a.presets), key=lambda q: PRESETS[q])
    a.steps = (QUICK_STEPS if a.quick else STEPS) if a.steps is None else a.steps
    if a.steps < 1:
        p.error(f"--steps: expected an int >= 1, got {a.steps}")
    if a.checkpoint_every < 1:
        p.error(f"--checkpoint-every: expected an int >= 1, got {a.checkpoint_every}")
    for opt, qs, hi in (
        ("--jpeg-qualities", a.jpeg_qualities, 95),
        ("--webp-qualities", a.webp_qualities, 100),
    ):
        if len(set(qs)) < 2 or not all(0 <= q <= hi for q in qs):
            p.error(f"{opt}: expected at least 2 distinct qualities in 0..{hi}, got {qs}")
    a.model = dict(a.model)
    extra = sorted(set(a.model) - set(a.presets))
    if extra:
        p.error(f"--model: presets {extra} are not among --presets {a.presets}")
    out = Path(a.out)
    if out.suffix.lower() != ".png":
        p.error(f"--out: expected a .png path, got {a.out!r}")
    if out.exists() and not a.overwrite:
        p.error(f"--out: {a.out!r} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        p.error(f"--out: the folder {str(out.parent)!r} does not exist")
    return a


def _delta(func: Any, ref: dict[str, list[float]], test: dict[str, list[float]]) -> dict[str, Any]:
    """One Bjøntegaard delta with the interval it averages over (or why it is undefined)."""
    axis = "psnr" if func is bd_rate else "bpp"
    lo = max(min(ref[axis]), min(test[axis]))
    hi = min(max(ref[axis]), max(test[axis]))
    try:
        value = func(ref["bpp"], ref["psnr"], test["bpp"], test["psnr"])
    except ValueError as e:
        return {"value": None, "why_undefined": str(e), f"{axis}_ranges": _ranges(ref, test, axis)}
    return {"value": value, f"{axis}_overlap": [lo, hi]}


def _ranges(ref: dict[str, list[float]], test: dict[str, list[float]], axis: str) -> dict:
    return {
        "reference": [min(ref[axis]), max(ref[axis])],
        "codec": [min(test[axis]), max(test[axis])],
    }


def _deltas(refs: dict[str, dict], codec: dict[str, list[float]]) -> dict[str, Any]:
    out = {}
    for name, ref in refs.items():
        r, p = _delta(bd_rate, ref, codec), _delta(bd_psnr, ref, codec)
        out[name] = {
            "bd_rate_pct": r.pop("value"),
            "bd_rate": r,
            "bd_psnr_db": p.pop("value"),
            "bd_psnr": p,
        }
    return out


def _pareto(curve: dict[str, list]) -> tuple[dict[str, list], list[str]]:
    """The codec's Pareto front: the presets no other preset beats in both bpp and PSNR (sorted
    by bpp, a point stays if its PSNR is above every cheaper point's), and the dropped ones."""
    order = sorted(range(len(curve["bpp"])), key=lambda i: curve["bpp"][i])
    keep, best = [], -np.inf
    for i in order:
        if curve["psnr"][i] > best:
            keep.append(i)
            best = curve["psnr"][i]
    front = {k: [v[i] for i in keep] for k, v in curve.items()}
    return front, [curve["preset"][i] for i in order if i not in keep]


def _curve(points: list[dict[str, float]]) -> dict[str, list[float]]:
    return {
        "quality": [pt["quality"] for pt in points],
        "bpp": [pt["bpp"] for pt in points],
        "psnr": [pt["psnr"] for pt in points],
    }


def _mean_curve(curves: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    out = {k: np.mean([c[k] for c in curves], axis=0).tolist() for k in ("bpp", "psnr")}
    return {**{k: v for k, v in curves[0].items() if k not in ("bpp", "psnr")}, **out}


def _train(a: argparse.Namespace, work: Path) -> dict[str, Path]:
    dirs = {}
    for preset in a.presets:
        if preset in a.model:
            dirs[preset] = a.model[preset]
            print(f"rd_curve: {preset}: using the trained model {a.model[preset]}", file=sys.stderr)
            continue
        d = work / f"{a.size}-{preset}-seed{a.seed}-steps{a.steps}"
        done = (d / "codec" / "coding_tables.npz").is_file()
        what = "reusing the finished run" if done else f"training {a.size} for {a.steps} steps in"
        print(f"rd_curve: {preset}: {what} {d}", file=sys.stderr)
        start = time.perf_counter()
        trainer = train_codec(
            CodecConfig.named(a.size, preset),
            "offline",
            d,
            a.steps,
            crop=CROP,
            batch=BATCH,
            seed=a.seed,
            checkpoint_every=a.checkpoint_every,
            progress=not a.no_progress,
        )
        if trainer.stopped_at is not None:
            raise RuntimeError(f"training of {preset} stopped at step {trainer.stopped_at}")
        if not done:
            print(
                f"rd_curve: {preset}: trained in {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
            )
        dirs[preset] = d
    return dirs


def _evaluate(
    dirs: dict[str, Path], photos: dict[str, np.ndarray], progress: bool
) -> dict[str, dict[str, list[float]]]:
    """Per photo, the codec's curve: one (file bpp, PSNR) per preset, from real streams."""
    from tqdm.auto import tqdm

    curves: dict[str, dict[str, list]] = {n: {"preset": [], "bpp": [], "psnr": []} for n in photos}
    for preset, d in dirs.items():
        comp = Compressor.load(d)
        for name, img in tqdm(photos.items(), desc=f"evaluate {preset}", disable=not progress):
            data = comp.compress(img)
            rec = comp.decompress(data)
            curves[name]["preset"].append(preset)
            curves[name]["bpp"].append(bits_per_pixel(data, *img.shape[:2]))
            curves[name]["psnr"].append(psnr(img, rec))
    return curves


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    panels = [*result["photos"], "mean"]
    cols = 2
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 4.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, panels, strict=False):
        row = result["mean_curves"] if name == "mean" else result["photos"][name]
        jpeg, webp, codec = row["jpeg"], row["webp"], row["codec"]
        d, dropped = row["deltas"]["jpeg"], row["pareto_front"]["dropped"]
        pf = row["pareto_front"]["deltas"]["jpeg"]
        if pf["bd_rate_pct"] is not None:
            ax.axhspan(*pf["bd_rate"]["psnr_overlap"], color="C1", alpha=0.12, lw=0)
        if pf["bd_psnr_db"] is not None:
            ax.axvspan(*pf["bd_psnr"]["bpp_overlap"], color="C0", alpha=0.08, lw=0)
        ax.plot(jpeg["bpp"], jpeg["psnr"], "k--o", ms=3, label="JPEG (Pillow)")
        ax.plot(
            webp["bpp"], webp["psnr"], ":", color="gray", marker="s", ms=3, label="WebP (Pillow)"
        )
        order = np.argsort(codec["bpp"])
        ax.plot(
            np.asarray(codec["bpp"])[order],
            np.asarray(codec["psnr"])[order],
            "-o",
            color="C3",
            label=f"codec {result['size']}",
        )
        for b, q, pr in zip(codec["bpp"], codec["psnr"], codec["preset"], strict=True):
            if pr in dropped:
                ax.plot([b], [q], "o", ms=9, mfc="none", mec="k", mew=0.8)
        for b, q, pr in zip(codec["bpp"], codec["psnr"], codec["preset"], strict=True):
            ax.annotate(pr, (b, q), textcoords="offset points", xytext=(4, -10), fontsize=7)

        def fmt(x: dict[str, Any]) -> str:
            rate = "—" if x["bd_rate_pct"] is None else f"{x['bd_rate_pct']:+.0f} %"
            dpsnr = "—" if x["bd_psnr_db"] is None else f"{x['bd_psnr_db']:+.2f} dB"
            return f"BD-rate {rate}, BD-PSNR {dpsnr}"

        title = "mean over photos (curves averaged)" if name == "mean" else name
        title += f"\nvs JPEG: {fmt(d)}"
        if dropped:
            title += f"\nPareto front ({', '.join(dropped)} dominated, ringed): {fmt(pf)}"
        ax.set_title(title, fontsize=9)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([0.05, 0.1, 0.2, 0.5, 1, 2, 5]))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(xlabel="bits per pixel (file, log scale)", ylabel="PSNR (dB)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(
        f"{result['size']} codec, {result['steps']} steps, seed {result['seed']}, held-out photos\n"
        "orange band: the PSNR interval of BD-rate (lower is better), blue band: the bpp "
        "interval of BD-PSNR (higher is better), both of the codec's Pareto front",
        fontsize=9,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def _summary(per_photo: dict[str, Any], ref: str, pareto: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if pareto:
        out["dropped"] = {n: r["pareto_front"]["dropped"] for n, r in per_photo.items()}
    for key in ("bd_rate_pct", "bd_psnr_db"):
        vals = {
            n: (r["pareto_front"] if pareto else r)["deltas"][ref][key]
            for n, r in per_photo.items()
        }
        ok = [v for v in vals.values() if v is not None]
        out[key] = {
            "mean_over_photos": float(np.mean(ok)) if ok else None,
            "defined_for": [n for n, v in vals.items() if v is not None],
            "per_photo": vals,
        }
    return out


def run(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    t0, load0 = time.perf_counter(), os.getloadavg()
    dirs = _train(a, work)
    t_train = time.perf_counter() - t0
    photos = offline_photos("test")
    codec = _evaluate(dirs, photos, not a.no_progress)
    per_photo: dict[str, Any] = {}
    for name, img in photos.items():
        refs = {
            "jpeg": _curve(jpeg_curve(img, a.jpeg_qualities)),
            "webp": _curve(webp_curve(img, a.webp_qualities)),
        }
        front, dropped = _pareto(codec[name])
        per_photo[name] = {
            **refs,
            "codec": codec[name],
            "deltas": _deltas(refs, codec[name]),
            "pareto_front": {"dropped": dropped, "deltas": _deltas(refs, front)},
        }
    mean = {k: _mean_curve([r[k] for r in per_photo.values()]) for k in ("jpeg", "webp", "codec")}
    mean_refs = {"jpeg": mean["jpeg"], "webp": mean["webp"]}
    mean["deltas"] = _deltas(mean_refs, mean["codec"])
    front, dropped = _pareto(mean["codec"])
    mean["pareto_front"] = {"dropped": dropped, "deltas": _deltas(mean_refs, front)}
    import jax

    result = {
        "figure": "rd_curve",
        "size": a.size,
        "presets": a.presets,
        "steps": a.steps,
        "seed": a.seed,
        "crop": CROP,
        "batch": BATCH,
        "quick": a.quick,
        "models": {k: str(v) for k, v in dirs.items()},
        "summary": {
            "vs_jpeg": _summary(per_photo, "jpeg"),
            "vs_webp": _summary(per_photo, "webp"),
            "vs_jpeg_pareto_front": _summary(per_photo, "jpeg", pareto=True),
            "vs_webp_pareto_front": _summary(per_photo, "webp", pareto=True),
            "of_mean_curves": {
                ref: {k: mean["deltas"][ref][k] for k in ("bd_rate_pct", "bd_psnr_db")}
                for ref in ("jpeg", "webp")
            },
            "of_mean_curves_pareto_front": {
                "dropped": mean["pareto_front"]["dropped"],
                **{
                    ref: {
                        k: mean["pareto_front"]["deltas"][ref][k]
                        for k in ("bd_rate_pct", "bd_psnr_db")
                    }
                    for ref in ("jpeg", "webp")
                },
            },
        },
        "photos": per_photo,
        "mean_curves": mean,
        "reading": READING,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "load_average_start": [round(v, 2) for v in load0],
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        },
        "wall_s": {
            "train": round(t_train, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
        "picture": str(a.out),
    }
    _plot(result, Path(a.out))
    return result


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    from diff_pixel.train import TrainingInterrupted

    try:
        if a.work is None:
            with tempfile.TemporaryDirectory(prefix="rd_curve-") as tmp:
                print(
                    f"rd_curve: training in the temporary folder {tmp} (removed at the end; "
                    "pass --work DIR to keep and resume the runs)",
                    file=sys.stderr,
                )
                result = run(a, Path(tmp))
        else:
            Path(a.work).mkdir(parents=True, exist_ok=True)
            result = run(a, Path(a.work))
    except TrainingInterrupted as e:
        where = "" if a.work is None else "; run the same command to resume"
        print(
            f"rd_curve: interrupted at step {e.step}; checkpoint {e.checkpoint}{where}",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:
        print("rd_curve: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        print(f"rd_curve: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
