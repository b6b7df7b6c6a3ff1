"""GPU script (one prepared run, ≤ 8 minutes on one H200): train the ``base`` codec at q2 on
256×256 crops (batch 16) for a time budget, then the diffusion decoder at 128×128 crops, then
evaluate on the held-out photos (MSE vs diffusion decoding at several step counts, JPEG at matched
bpp) and write ``rd_curve.png`` / ``comparison.png``; prints one JSON object with step times and
TFLOP/s (XLA cost analysis FLOPs / step time) against the H200 dense bf16 datasheet figure.

``--dry-run`` runs the whole pipeline on the CPU with tiny sizes and a few steps (validates the
script without a GPU).

    python benchmarks/gpu_hfd.py --out runs/gpu_hfd            # on the GPU machine
    python benchmarks/gpu_hfd.py --dry-run --out /tmp/gpu_dry   # anywhere
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

H200_BF16_TFLOPS = 990.0


def _flops_per_step(trainer) -> float | None:
    """XLA's flop count of the trainer's next step (diff-pixel's ``Trainer.step_cost``)."""
    return trainer.step_cost(trainer.data.batch_at(0)).get("flops") or None


class _Budget:
    """Stop a run after ``seconds`` of wall time (a diff-pixel Hook)."""

    def __init__(self, seconds: float) -> None:
        from diff_pixel.train import Hook

        class H(Hook):
            def __init__(s) -> None:
                s.t0 = s.t_first = s.t_last = None
                s.steps = 0

            def on_start(s, trainer) -> None:
                s.t0 = time.perf_counter()

            def on_step(s, trainer, step, metrics) -> bool:
                jax.block_until_ready(metrics)
                now = time.perf_counter()
                s.steps += 1
                if s.steps == 1:  # the first step includes compilation
                    s.t_first = now
                s.t_last = now
                return now - s.t0 > seconds

        self.hook = H()

    def step_s(self) -> float | None:
        h = self.hook
        if h.steps < 2:
            return None
        return (h.t_last - h.t_first) / (h.steps - 1)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dry-run", action="store_true", help="tiny CPU run of the whole script")
    p.add_argument("--codec-seconds", type=float, default=120.0, help="codec training budget")
    p.add_argument("--decoder-seconds", type=float, default=180.0, help="decoder training budget")
    a = p.parse_args()
    from diff_compress import CodecConfig, DiffusionDecoderConfig, train_codec, train_decoder
    from diff_compress.cli import _images
    from diff_compress.evaluate import evaluate

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.dry_run:
        cfg = CodecConfig.named("tiny", "q2")
        crop, batch, dcrop, dbatch, cs, ds = 32, 2, 16, 2, 3, 3
        codec_seconds = decoder_seconds = 1e9
        images = {k: v[:64, :64] for k, v in _images(None, "offline-test", None).items()}  # type: ignore[arg-type]
        steps_eval = (2,)
    else:
        cfg = CodecConfig.named("base", "q2")
        crop, batch, dcrop, dbatch, cs, ds = 256, 16, 128, 32, 100_000, 100_000
        codec_seconds, decoder_seconds = a.codec_seconds, a.decoder_seconds
        images = _images(None, "offline-test", None)  # type: ignore[arg-type]
        steps_eval = (4, 16, 64)
    report: dict = {"figure": "gpu_hfd", "device": str(jax.devices()[0]), "dry_run": a.dry_run}
    budget = _Budget(codec_seconds)
    t0 = time.perf_counter()
    tr = train_codec(
        cfg,
        "offline",
        out / "model",
        cs,
        crop=crop,
        batch=batch,
        checkpoint_every=0,
        hooks=[budget.hook],
        progress=False,
    )
    wall = time.perf_counter() - t0
    flops = _flops_per_step(tr)
    step_s = budget.step_s() or wall / max(tr.step_count, 1)  # compile excluded
    report["codec"] = {
        "steps": tr.step_count,
        "step_s": step_s,
        "tflops": None if flops is None else flops / step_s / 1e12,
    }
    if tr.stopped_at is not None:  # the budget stopped it: finish the run (exports the tables)
        tr = train_codec(
            cfg,
            "offline",
            out / "model",
            tr.step_count,
            crop=crop,
            batch=batch,
            checkpoint_every=0,
            progress=False,
        )
    dcfg = DiffusionDecoderConfig.for_crop(dcrop)
    budget = _Budget(decoder_seconds)
    t0 = time.perf_counter()
    td = train_decoder(
        dcfg,
        out / "model",
        "offline",
        ds,
        batch=dbatch,
        checkpoint_every=0,
        hooks=[budget.hook],
        progress=False,
    )
    wall = time.perf_counter() - t0
    flops = _flops_per_step(td)
    step_s = budget.step_s() or wall / max(td.step_count, 1)  # compile excluded
    report["decoder"] = {
        "steps": td.step_count,
        "step_s": step_s,
        "tflops": None if flops is None else flops / step_s / 1e12,
    }
    if td.stopped_at is not None:
        td = train_decoder(
            dcfg,
            out / "model",
            "offline",
            td.step_count,
            batch=dbatch,
            checkpoint_every=0,
            progress=False,
        )
    for part in ("codec", "decoder"):
        tf = report[part]["tflops"]
        report[part]["fraction_of_h200_bf16"] = None if tf is None else tf / H200_BF16_TFLOPS
    res = evaluate([out / "model"], images, out / "eval", steps=steps_eval, progress=False)
    rows = res["models"]["model"]
    report["eval"] = {
        "bpp": float(np.mean([r["bpp"] for r in rows.values()])),
        "psnr_mse": float(np.mean([r["mse"]["psnr"] for r in rows.values()])),
        "psnr_jpeg_matched": float(np.mean([r["jpeg_matched"]["psnr"] for r in rows.values()])),
        "hf_ratio_mse": float(np.mean([r["mse"]["hf_ratio"] for r in rows.values()])),
    }
    for s in steps_eval:
        report["eval"][f"psnr_diffusion_{s}"] = float(
            np.mean([r[f"diffusion_{s}"]["psnr"] for r in rows.values()])
        )
        report["eval"][f"hf_ratio_diffusion_{s}"] = float(
            np.mean([r[f"diffusion_{s}"]["hf_ratio"] for r in rows.values()])
        )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
