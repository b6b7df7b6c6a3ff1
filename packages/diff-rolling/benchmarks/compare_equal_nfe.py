"""Rolling vs standard diffusion at equal network calls per frame on Kolmogorov flow (``cpu``).

For each seed, trains the ``tiny`` frame-axis U-ViT twice on the same data (``mode="rolling"``:
the β-mixture objective; ``mode="standard"``: one noise level per clip), rolls both out from the
first K frames of every test trajectory with S calls per generated frame (rolling: S steps per
shift, init S·W; standard: blocks of W frames with N = S·W steps), and reports nMSE and vorticity
correlation per lead time with persistence as the reference, mean ± std over seeds. Prints one
JSON object (ratios rolling/standard measured in the same run) and writes ``curves.png``,
``result.json`` and a GIF of the first test trajectory into ``--out``. Runs resume (re-running
the command reuses finished trainings).

    python benchmarks/compare_equal_nfe.py --out docs/headline --steps 300 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--data",
        default=None,
        help="a .npz written by `diff-rolling generate-data` "
        "(default: generate the cpu preset into --cache)",
    )
    p.add_argument(
        "--cache", default="rolling-cache", help="cache folder for the generated cpu preset"
    )
    p.add_argument("--out", default="compare-equal-nfe", help="output folder")
    p.add_argument("--steps", type=int, default=300, help="training steps per run")
    p.add_argument("--batch", type=int, default=8, help="batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds")
    p.add_argument(
        "--calls-per-frame", type=int, default=4, help="S: network calls per generated frame"
    )
    p.add_argument("--frames", type=int, default=16, help="frames to forecast")
    p.add_argument("--test", type=int, default=32, help="test trajectories")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    from diff_rolling.data.kolmogorov import kolmogorov_dataset, load_kolmogorov, preset
    from diff_rolling.evaluate import forecast, forecast_metrics
    from diff_rolling.train import RollingTrainConfig, load_run, train
    from diff_rolling.viz import save_curves, save_gif

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = (
        load_kolmogorov(args.data) if args.data else kolmogorov_dataset(preset("cpu"), args.cache)
    )
    train_frames, test = data.train, data.test[: args.test]
    dt = float(data.config.get("save_every", 1.0))
    results: dict[str, list] = {"rolling": [], "standard": []}
    t0 = time.perf_counter()
    for seed in args.seeds:
        for mode in ("rolling", "standard"):
            cfg = RollingTrainConfig(
                mode=mode,
                steps=args.steps,
                batch=args.batch,
                lr=args.lr,
                seed=seed,
                warmup=min(100, args.steps // 5),
                checkpoint_every=100,
            )
            run_dir = out / f"{mode}_seed{seed}"
            train(cfg, train_frames, run_dir, progress=not args.no_progress)
            tag = f"forecast_S{args.calls_per_frame}_n{args.frames}_t{int(test.shape[0])}"
            cached = run_dir / f"{tag}.npz"
            if cached.exists():  # a rerun (e.g. to merge seeds run in parallel) reuses forecasts
                with np.load(cached) as f:
                    fc = {k: f[k] for k in ("frames", "truth", "context")} | {"nfe": int(f["nfe"])}
            else:
                net, cfg, _ = load_run(run_dir)
                fc = forecast(
                    net,
                    cfg,
                    test,
                    n_frames=args.frames,
                    steps_per_shift=args.calls_per_frame,
                    seed=seed,
                )
                np.savez(cached, **{k: fc[k] for k in ("frames", "truth", "context", "nfe")})
            m = forecast_metrics(fc["frames"], fc["truth"], fc["context"], dt)
            m["nfe_per_frame"] = fc["nfe"] / args.frames
            m["nfe"] = fc["nfe"]
            results[mode].append(m)
            if seed == args.seeds[0]:
                np.savez(
                    out / f"{mode}_forecast.npz",
                    frames=fc["frames"],
                    truth=fc["truth"],
                    context=fc["context"],
                )
            print(
                f"{mode} seed {seed}: lead-1 nMSE {m['model']['nmse'][0]:.3f}, mean nMSE "
                f"{np.mean(m['model']['nmse']):.3f}, nfe {fc['nfe']}",
                file=sys.stderr,
            )
    summary: dict = {
        "figure": "rolling_vs_standard_equal_nfe",
        "preset": "cpu",
        "steps": args.steps,
        "batch": args.batch,
        "seeds": args.seeds,
        "calls_per_frame": args.calls_per_frame,
        "frames": args.frames,
        "test_trajectories": int(test.shape[0]),
        "dt": dt,
    }
    curves = {}
    for mode in ("rolling", "standard"):
        nm = np.array([r["model"]["nmse"] for r in results[mode]])
        cr = np.array([r["model"]["correlation"] for r in results[mode]])
        summary[mode] = {
            "nmse_mean": nm.mean(0).tolist(),
            "nmse_std": nm.std(0).tolist(),
            "corr_mean": cr.mean(0).tolist(),
            "lead1_nmse": [float(v) for v in nm[:, 0]],
            "mean_nmse_over_leads": [float(v) for v in nm.mean(1)],
            "late_nmse": [float(v) for v in nm[:, nm.shape[1] // 2 :].mean(1)],
            "time_to_0.8": [r["model"]["time_to_0.8"] for r in results[mode]],
            "time_to_0.5": [r["model"]["time_to_0.5"] for r in results[mode]],
            "spectrum_error": [r["model"]["spectrum_error"] for r in results[mode]],
            "sample_std": np.array([r["model"]["sample_std"] for r in results[mode]])
            .mean(0)
            .tolist(),
            "nfe_per_frame": results[mode][0]["nfe_per_frame"],
        }
        curves[f"{mode} (S={args.calls_per_frame})"] = (nm.mean(0), nm.std(0))
    pers = np.array(results["rolling"][0]["persistence"]["nmse"])
    summary["persistence_nmse"] = pers.tolist()
    curves["persistence"] = pers
    r, s = summary["rolling"], summary["standard"]
    summary["ratio_rolling_over_standard"] = {
        "lead1_nmse": float(np.mean(r["lead1_nmse"]) / np.mean(s["lead1_nmse"])),
        "mean_nmse_over_leads": float(
            np.mean(r["mean_nmse_over_leads"]) / np.mean(s["mean_nmse_over_leads"])
        ),
        "late_nmse": float(np.mean(r["late_nmse"]) / np.mean(s["late_nmse"])),
    }
    summary["wall_s"] = time.perf_counter() - t0
    save_curves(
        out / "curves.png",
        curves,
        dt=dt,
        ylabel="nMSE (vorticity, normalised)",
        title=f"Kolmogorov cpu preset, {len(args.seeds)} seeds, {args.calls_per_frame} calls/frame",
        references={"mean regressor": 1.0, "independent sample": 2.0},
    )
    fr = np.load(out / "rolling_forecast.npz")
    fs = np.load(out / "standard_forecast.npz")
    save_gif(
        out / "rollout.gif",
        {"truth": fr["truth"][0], "rolling": fr["frames"][0], "standard": fs["frames"][0]},
    )
    (out / "result.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
