"""SiD2's design claims measured in miniature: one ingredient changed at a time (arXiv 2410.19324).

Every row changes one thing from the SiD2 default and is trained and evaluated at equal training
steps and equal sampler steps, over several seeds:

* loss weighting: sigmoid(b − λ) with the resolution bias (default) vs SiD's implied ε-MSE vs
  plain v-MSE vs the ELBO weighting (Kingma & Gao, arXiv 2303.00848);
* schedule: interpolated shifted cosine (default) vs SiD's shifted cosine (arXiv 2301.11093) vs
  the plain cosine (arXiv 2102.09672);
* backbone: Residual U-ViT (default) vs SiD's U-ViT at matched analytic MACs (within 5 %);
* guidance on digits: the interval (default, arXiv 2404.07724) vs everywhere vs none, at one
  weight (sampling only: these rows reuse the default rows' networks);
* prediction target: v (default) vs ε.

Datasets: class-conditional scikit-learn digits at 16×16 (class accuracy and the digits feature
distance DFD, with its floor) and 32×32 crops of the scikit-image photos (unconditional; PFD-rand,
a Fréchet distance of a fixed *untrained* conv net's features, with its floor, and the validation
ELBO in bits per dimension on fresh crops of the same photos — not held-out images — estimated
with λ uniform over the default schedule's range for every row, 16 stratified levels per crop).

Outputs in ``--out``: ``config.json`` (what the ablation runs; a rerun with other settings is
refused), ``runs/<dataset>/<network>/seed<k>/`` (each training run, resumable),
``results/<dataset>.jsonl`` (one record per evaluated row and seed, rewritten atomically after
each), ``table.md`` (mean ± std per row and the difference to the default in standard errors),
``<dataset>_<metric>.png`` (one bar chart per metric) and ``summary.json``. A killed ablation
continues where it stopped: finished evaluations are skipped, an unfinished training run resumes
from its last checkpoint (bitwise), and the table is rebuilt from the records, so it is the same
bit for bit. ``--jobs 2`` runs the two datasets in two processes side by side.

Usage::

    python benchmarks/ablate_sid2.py --jobs 2 --out ablation   # the full ablation (README figures)
    python benchmarks/ablate_sid2.py --scale toy --out /tmp/a  # a few steps: the pipeline only
    python -m diff_pixel.sid.ablation ...                      # the same, from an installed wheel

The driver lives in the package (so its test runs against the wheel too); the benchmark script
only calls :func:`main`. The bar charts need matplotlib.

Prints one JSON line per finished evaluation, then the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- what is compared


@dataclass(frozen=True)
class Row:
    """One row of the ablation: what it changes from the SiD2 default."""

    name: str
    group: str
    change: str
    datasets: tuple[str, ...] = ("digits", "photos")
    schedule_kind: str = "interpolated_cosine"
    weighting_kind: str = "sigmoid"
    arch: str = "residual_uvit"
    prediction: str = "v"
    guidance: str = "interval"

    @property
    def network(self) -> str:
        """The trained network this row evaluates (guidance rows share the default's)."""
        return "default" if self.group in ("default", "guidance") else self.name


ROWS: tuple[Row, ...] = (
    Row("default", "default", "SiD2: sigmoid weighting, interpolated cosine, Residual U-ViT, v"),
    Row("eps-mse", "weighting", "SiD's implied weighting (plain ε-MSE)", weighting_kind="eps_mse"),
    Row("v-mse", "weighting", "plain v-MSE weighting", weighting_kind="v_mse"),
    Row("elbo", "weighting", "ELBO weighting (−dλ/dt)", weighting_kind="elbo"),
    Row("shifted-cosine", "schedule", "SiD's shifted cosine", schedule_kind="shifted_cosine"),
    Row("cosine", "schedule", "plain cosine (no shift)", schedule_kind="cosine"),
    Row("uvit", "backbone", "SiD's U-ViT at matched MACs", arch="uvit"),
    Row("guidance-everywhere", "guidance", "guidance at every step", ("digits",), guidance="all"),
    Row("no-guidance", "guidance", "no guidance (w = 1)", ("digits",), guidance="none"),
    Row("eps-target", "target", "the network predicts ε", prediction="eps"),
)
ROW_NAMES = tuple(r.name for r in ROWS)
DATASETS = ("digits", "photos")

#: Which direction of each metric is better, and its name in the table.
METRICS: dict[str, dict[str, tuple[str, str]]] = {
    "digits": {
        "class_accuracy": ("higher", "class accuracy"),
        "dfd": ("lower", "DFD"),
    },
    "photos": {
        "pfd_rand": ("lower", "PFD-rand"),
        "elbo_bpd": ("lower", "validation ELBO (bpd)"),
    },
}

#: The backbones: the Residual U-ViT CPU presets and SiD U-ViTs of matched analytic MACs
#: (``count_macs``: tiny-16 7.94 M vs 8.13 M (+2.4 %); tiny-rgb-32 31.60 M vs 32.49 M (+2.8 %)).
BACKBONES = {
    ("digits", "residual_uvit"): ("tiny-16", {}),
    ("digits", "uvit"): (
        "tiny-16",
        dict(
            arch="uvit",
            channels=(16, 24, 48, 128),
            block_types=("res", "res", "res"),
            dropout=(0.0, 0.0, 0.0, 0.1),
        ),
    ),
    ("photos", "residual_uvit"): ("tiny-rgb-32", {}),
    ("photos", "uvit"): (
        "tiny-rgb-32",
        dict(
            arch="uvit",
            channels=(32, 48, 96, 256),
            block_types=("res", "res", "res"),
            dropout=(0.0, 0.0, 0.0, 0.1),
        ),
    ),
}


@dataclass(frozen=True)
class Scale:
    """Training and evaluation sizes (equal for every row of a dataset)."""

    steps: dict[str, int]
    batch_size: dict[str, int]
    checkpoint_every: int
    sampler_steps: int
    per_class: int  # digits samples per class
    photo_samples: int  # photos samples (and reference crops, and validation crops)
    elbo_time_samples: int
    classifier_epochs: int
    guidance: float
    interval: tuple[float, float]


SCALES = {
    "full": Scale(
        steps={"digits": 500, "photos": 250},
        batch_size={"digits": 64, "photos": 32},
        checkpoint_every=100,
        sampler_steps=32,
        per_class=36,
        photo_samples=256,
        elbo_time_samples=16,
        classifier_epochs=30,
        guidance=2.0,
        interval=(-3.0, 5.0),
    ),
    "toy": Scale(
        steps={"digits": 4, "photos": 4},
        batch_size={"digits": 8, "photos": 4},
        checkpoint_every=2,
        sampler_steps=4,
        per_class=2,
        photo_samples=8,
        elbo_time_samples=1,
        classifier_epochs=1,
        guidance=2.0,
        interval=(-3.0, 5.0),
    ),
}

# --------------------------------------------------------------------------- files


def _atomic_text(path: Path, text: str) -> None:
    from diff_protocol.io import atomic_write

    atomic_write(path, text)


def read_results(out: Path, datasets: Sequence[str] = DATASETS) -> list[dict[str, Any]]:
    """The finished evaluations of ``datasets``, each dataset's in the order they finished."""
    records: list[dict[str, Any]] = []
    for dataset in datasets:
        path = out / "results" / f"{dataset}.jsonl"
        if path.exists():
            text = path.read_text().splitlines()
            records += [json.loads(line) for line in text if line.strip()]
    return records


def _append_result(out: Path, record: dict[str, Any]) -> None:
    """Add one record to its dataset's file (rewritten atomically: a kill loses nothing)."""
    records = read_results(out, [record["dataset"]]) + [record]
    text = "".join(json.dumps(r) + "\n" for r in records)
    _atomic_text(out / "results" / f"{record['dataset']}.jsonl", text)


def _key(dataset: str, row: str, seed: int) -> str:
    return f"{dataset}/{row}/seed{seed}"


# --------------------------------------------------------------------------- one run


def _recipe(dataset: str, row: Row, scale: Scale) -> Any:
    from diff_pixel.sid import RUN_PRESETS, SiD2Variant

    base = RUN_PRESETS[dataset]
    return SiD2Variant.for_resolution(
        base.image_size,
        **dict(base.overrides),
        schedule_kind=row.schedule_kind,
        weighting_kind=row.weighting_kind,
    ).replace(batch_size=scale.batch_size[dataset])


def _model(dataset: str, row: Row, seed: int) -> Any:
    from diff_pixel import build_model
    from diff_pixel.models import Predicts

    preset, overrides = BACKBONES[(dataset, row.arch)]
    net = build_model(preset, seed=seed, **overrides)
    return net if row.prediction == "v" else Predicts(net, row.prediction)


def _data(dataset: str) -> Any:
    from diff_pixel import digits, photos

    return digits(16) if dataset == "digits" else photos(32)


def train(out: Path, dataset: str, row: Row, seed: int, scale: Scale) -> tuple[Any, float]:
    """Train (or resume) the network of ``row`` for ``seed``; returns (EMA model, wall seconds)."""
    from diff_pixel import Loader, TrainConfig, Trainer
    from diff_pixel.sid import recipe_loss

    recipe = _recipe(dataset, row, scale)
    run_dir = out / "runs" / dataset / row.network / f"seed{seed}"
    config = TrainConfig.from_recipe(
        recipe,
        steps=scale.steps[dataset],
        out_dir=str(run_dir),
        seed=seed,
        checkpoint_every=scale.checkpoint_every,
        log_every=max(1, scale.steps[dataset] // 10),
        keep_checkpoints=1,
        progress=sys.stderr.isatty(),
    )
    trainer = Trainer(
        _model(dataset, row, seed),
        recipe_loss(recipe),
        config,
        Loader(_data(dataset), config.batch_size, seed=seed),
        recipe=recipe,
        hooks=list(_HOOKS),
    )
    t0 = time.perf_counter()
    trainer.run()
    if trainer.step_count < config.steps:
        raise Stopped(
            f"training of {dataset}/{row.network}/seed{seed} stopped at step "
            f"{trainer.step_count} of {config.steps}; checkpoint written to {run_dir}"
        )
    return trainer.ema_model(), time.perf_counter() - t0


class Stopped(Exception):
    """A training run stopped before its last step (by a hook); rerunning resumes it."""


#: Extra trainer hooks (the resume test stops a run part-way with ``StopAt``).
_HOOKS: list[Any] = []


class _Eval:
    """What every evaluation of a dataset shares: classifier, reference crops, floors."""

    def __init__(self, out: Path, dataset: str, scale: Scale) -> None:
        self.dataset = dataset
        self.scale = scale
        if dataset == "digits":
            from diff_pixel.metrics import DigitsClassifier, dfd_baselines, train_digits_classifier

            path = out / "digits_classifier.npz"
            if path.exists():
                self.classifier = DigitsClassifier.load(path)
            else:
                self.classifier = train_digits_classifier(epochs=scale.classifier_epochs)
                self.classifier.save(path)
            self.floors = {
                "dfd": dfd_baselines(self.classifier)["dfd_floor"],
                "classifier_test_accuracy": self.classifier.test_accuracy,
            }
        else:
            from diff_pixel.metrics.photo_features import photo_feature_distance

            n = scale.photo_samples
            source = _data("photos")
            # Fixed streams, disjoint from every training stream (seeds < 1000).
            self.reference = _crops(source, n, seed=1_000_001)
            self.validation = _crops(source, n, seed=1_000_002)
            floor_set = _crops(source, n, seed=1_000_003)
            self.floors = {"pfd_rand": photo_feature_distance(floor_set, self.reference)}

    def __call__(self, model: Any, recipe: Any, row: Row, seed: int) -> dict[str, float]:
        import jax

        from diff_pixel import Cond, sample

        scale = self.scale
        key = jax.random.key(10_000 + seed)
        if self.dataset == "digits":
            from diff_pixel.metrics import class_accuracy, digits_feature_distance

            guidance, interval = {
                "interval": (scale.guidance, scale.interval),
                "all": (scale.guidance, (-math.inf, math.inf)),
                "none": (1.0, (-math.inf, math.inf)),
            }[row.guidance]
            labels = np.repeat(np.arange(10, dtype=np.int32), scale.per_class)
            x, stats = sample(
                model,
                shape=(labels.size, 16, 16, 1),
                key=key,
                schedule=recipe.schedule(),
                steps=scale.sampler_steps,
                cond=Cond(label=jax.numpy.asarray(labels)),
                guidance=guidance,
                interval=tuple(interval),
                return_stats=True,
            )
            images = np.asarray(x)
            return {
                "class_accuracy": class_accuracy(images, labels, self.classifier),
                "dfd": digits_feature_distance(images, self.classifier),
                "nfe": int(stats["evaluations"]),
            }
        from diff_pixel.metrics.elbo import elbo_bpd
        from diff_pixel.metrics.photo_features import photo_feature_distance

        x, stats = sample(
            model,
            shape=(scale.photo_samples, 32, 32, 3),
            key=key,
            schedule=recipe.schedule(),
            steps=scale.sampler_steps,
            return_stats=True,
        )
        # One bound for every row: λ over the default schedule's range ([−15, 15] at 32 px), so a
        # row whose schedule reaches further (SiD's shift: [−13.6, 16.4]) is not charged for the
        # extra stretch of λ (the estimator samples λ uniformly; only the range matters).
        elbo = elbo_bpd(
            model,
            self.validation,
            _recipe("photos", ROWS[0], scale).schedule(),
            key=jax.random.key(20_000 + seed),
            time_samples=scale.elbo_time_samples,
        )
        return {
            "pfd_rand": photo_feature_distance(np.asarray(x), self.reference),
            "elbo_bpd": elbo["bpd"],
            "elbo_bpd_stderr": elbo["bpd_stderr"],  # over images, not seeds
            "nfe": int(stats["evaluations"]),
        }


def _crops(source: Any, n: int, seed: int) -> np.ndarray:
    return np.stack([source.crop_at(i, seed)[0] for i in range(n)])


# --------------------------------------------------------------------------- the table


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def summarise(records: Sequence[dict[str, Any]], rows: Sequence[str]) -> dict[str, Any]:
    """Mean, std and seeds per (dataset, row, metric), and each row's difference to the default
    in standard errors of the difference, ``(m − m₀)/√(s²/n + s₀²/n)`` (``None`` with one seed)."""
    out: dict[str, Any] = {}
    for dataset, metrics in METRICS.items():
        by_row: dict[str, dict[str, list[float]]] = {}
        for r in records:
            if r["dataset"] == dataset:
                for m in (*metrics, "nfe"):
                    by_row.setdefault(r["row"], {}).setdefault(m, []).append(r["metrics"][m])
        if not by_row:
            continue
        table: dict[str, Any] = {}
        for name in rows:
            if name not in by_row:
                continue
            entry: dict[str, Any] = {}
            for m, values in by_row[name].items():
                mean, std = _mean_std(values)
                entry[m] = {"mean": mean, "std": std, "n": len(values), "values": values}
                base = by_row.get("default", {}).get(m)
                if name != "default" and base and len(values) > 1 and len(base) > 1:
                    b_mean, b_std = _mean_std(base)
                    se = math.sqrt(std**2 / len(values) + b_std**2 / len(base))
                    entry[m]["z_vs_default"] = (mean - b_mean) / se if se > 0 else None
            table[name] = entry
        out[dataset] = table
    return out


def _fmt(v: float) -> str:
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"


def markdown(summary: dict[str, Any], floors: dict[str, Any]) -> str:
    """The results as markdown tables (one per dataset)."""
    rows_by_name = {r.name: r for r in ROWS}
    lines: list[str] = []
    for dataset, table in summary.items():
        metrics = METRICS[dataset]
        lines.append(f"### {dataset}")
        lines.append("")
        head = ["row", "changes"]
        for better, label in metrics.values():
            head += [f"{label} ({better} is better)", "z vs default"]
        head.append("NFE")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for name, entry in table.items():
            cells = [name, rows_by_name[name].change]
            for m in metrics:
                e = entry[m]
                cells.append(f"{_fmt(e['mean'])} ± {_fmt(e['std'])}")
                z = e.get("z_vs_default")
                cells.append("—" if z is None else f"{z:+.1f}")
            nfe = entry["nfe"]["mean"]
            cells.append(str(int(nfe)) if nfe == int(nfe) else f"{nfe:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        floor = floors.get(dataset, {})
        if floor:
            text = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(floor.items()))
            lines.append("")
            lines.append(f"Floors and yardsticks measured in the same run: {text}.")
        lines.append("")
    return "\n".join(lines)


def bar_charts(out: Path, summary: dict[str, Any]) -> list[Path]:
    """One PNG bar chart per (dataset, metric): mean ± std, each seed a dot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - matplotlib is a test/demo dependency
        raise SystemExit(
            f"ablate_sid2: the bar charts need matplotlib ({e.name} is missing): "
            "pip install matplotlib"
        ) from e
    from diff_protocol.io import atomic_write

    written = []
    for dataset, table in summary.items():
        for m, (better, label) in METRICS[dataset].items():
            names = list(table)
            means = [table[n][m]["mean"] for n in names]
            stds = [table[n][m]["std"] for n in names]
            fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(names), 3.6), dpi=100)
            colors = ["#4c72b0" if n == "default" else "#999999" for n in names]
            ax.bar(range(len(names)), means, yerr=stds, color=colors, capsize=3)
            for i, n in enumerate(names):
                vals = table[n][m]["values"]
                ax.plot([i] * len(vals), vals, "k.", ms=4)
            ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
            ax.set_ylabel(f"{label} ({better} is better)", fontsize=8)
            ax.set_title(f"{dataset}: {label}, mean ± std over seeds", fontsize=9)
            fig.tight_layout()
            path = out / f"{dataset}_{m}.png"
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
            atomic_write(path, buffer.getvalue())
            plt.close(fig)
            written.append(path)
    return written


# --------------------------------------------------------------------------- the driver


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    scale = SCALES[args.scale]
    return json.loads(
        json.dumps(
            {
                "scale": args.scale,
                "sizes": dataclasses.asdict(scale),
                "seeds": args.seeds,
                "rows": list(args.rows),
            }
        )
    )  # as it reads back from config.json


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every (dataset, row, seed) not yet in ``results/``; rebuild the outputs from every
    dataset's records (those of datasets run by another process included)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(args)
    config_path = out / "config.json"
    if config_path.exists():
        before = json.loads(config_path.read_text())
        if before != settings:
            diff = sorted(k for k in settings if before.get(k) != settings[k])
            raise SystemExit(
                f"ablate_sid2: {out} holds an ablation with other settings ({', '.join(diff)}); "
                "use another --out or the same settings"
            )
    else:
        _atomic_text(config_path, json.dumps(settings, indent=1, sort_keys=True) + "\n")

    scale = SCALES[args.scale]
    rows = [r for r in ROWS if r.name in args.rows]
    done = {_key(r["dataset"], r["row"], r["seed"]) for r in read_results(out)}
    floors: dict[str, Any] = {}
    finished_now = 0
    t_start = time.perf_counter()
    for dataset in args.datasets:
        # Rows that share a network (the default and the guidance rows) run back to back.
        order: dict[str, int] = {}
        for r in rows:
            order.setdefault(r.network, len(order))
        todo = [
            (row, seed)
            for seed in range(args.seeds)
            for row in sorted(rows, key=lambda r: order[r.network])
            if dataset in row.datasets and _key(dataset, row.name, seed) not in done
        ]
        evaluate = _Eval(out, dataset, scale)
        floors[dataset] = evaluate.floors
        models: dict[tuple[str, int], Any] = {}
        for row, seed in todo:
            if args.max_evaluations is not None and finished_now >= args.max_evaluations:
                print(f"ablate_sid2: stopped after {finished_now} evaluations (--max-evaluations)")
                return {"stopped": True}
            t0 = time.perf_counter()
            cached = models.get((row.network, seed))
            if cached is None:
                model, train_s = train(out, dataset, row, seed, scale)
                models = {(row.network, seed): (model, train_s)}
            else:
                model, train_s = cached[0], 0.0
            recipe = _recipe(dataset, row, scale)
            metrics = evaluate(model, recipe, row, seed)
            record = {
                "dataset": dataset,
                "row": row.name,
                "seed": seed,
                "network": row.network,
                "metrics": metrics,
                "train_s": round(train_s, 1),
                "eval_s": round(time.perf_counter() - t0 - train_s, 1),
            }
            _append_result(out, record)
            finished_now += 1
            print(json.dumps(record), flush=True)
    records = read_results(out)
    summary = summarise(records, ROW_NAMES)
    table = markdown(summary, floors)
    _atomic_text(out / "table.md", table)
    charts = bar_charts(out, summary)
    result = {
        "summary": summary,
        "floors": floors,
        "wall_s_this_call": round(time.perf_counter() - t_start, 1),
        "wall_s_recorded": round(sum(r["train_s"] + r["eval_s"] for r in records), 1),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "charts": [p.name for p in charts],
    }
    _atomic_text(out / "summary.json", json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(table)
    return result


def _side_by_side(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Run the datasets in ``args.jobs`` child processes of this script; the first non-zero
    exit status (e.g. 130 after Ctrl-C, which reaches the children too), else 0."""
    import subprocess

    base = list(sys.argv[1:] if argv is None else argv)
    pending = list(args.datasets)
    running: list[subprocess.Popen] = []
    status = 0
    while pending or running:
        while pending and len(running) < args.jobs:
            cmd = [sys.executable, "-m", "diff_pixel.sid.ablation", *base, "--jobs", "1"]
            cmd += ["--datasets", pending.pop(0)]
            running.append(subprocess.Popen(cmd))
        done = running.pop(0)
        status = status or done.wait()
    return status


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ablate_sid2",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder (resumes what it holds)")
    p.add_argument("--scale", choices=sorted(SCALES), default="full", help="training sizes")
    p.add_argument("--seeds", type=int, default=3, help="seeds per row")
    p.add_argument(
        "--datasets", nargs="+", choices=DATASETS, default=list(DATASETS), help="datasets"
    )
    p.add_argument("--rows", nargs="+", choices=ROW_NAMES, default=list(ROW_NAMES), help="rows")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="datasets run side by side in this many processes (a tiny network's step keeps "
        "about one core busy, so 2 on 2 cores roughly halves the wall time)",
    )
    p.add_argument(
        "--max-evaluations",
        type=int,
        default=None,
        help="stop after this many evaluations (as if interrupted; a rerun continues)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if argv is None and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        # a command-line run: the rows' compiled steps are shared across seeds (and with a
        # rerun) through JAX's persistent cache (set before the first compilation)
        import jax

        jax.config.update("jax_compilation_cache_dir", str(Path(args.out) / "jax-cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if args.jobs < 1:
        parser().error(f"--jobs must be >= 1, got {args.jobs}")
    if args.seeds < 1:
        parser().error(f"--seeds must be >= 1, got {args.seeds}")
    if "default" not in args.rows:
        parser().error("--rows must include 'default' (every row is compared to it)")
    from diff_pixel.train import TrainingInterrupted

    try:
        if args.jobs > 1 and len(args.datasets) > 1:
            status = _side_by_side(args, argv)
            if status:
                return status
        run(args)
    except (Stopped, TrainingInterrupted) as e:
        print(f"ablate_sid2: {e}; run the same command to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
