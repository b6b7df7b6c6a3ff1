"""The digits demo: distil a diff-pixel digits teacher into S = 1, 2, 4, 8 step students on CPU.

1. Teacher: ``--teacher RUN`` or a ``tiny-16`` digits run of diff-pixel's SiD2 recipe trained
   here with ``diff_pixel.sid.cli.train_run`` (run preset ``digits``), cached in ``OUT/teacher``
   (a finished run there is reused; an interrupted one resumes).
2. Students: multistep consistency distillation (preset ``digits``: aDDIM teacher steps with the
   analytic variance, teacher steps 64 → 512 over the first half, batch 64, lr 1e-4, EMA 0.999),
   one run per S in ``OUT/student_S{S}``, each initialised from the teacher's EMA weights.
3. Evaluation with diff-pixel's digits classifier: class accuracy and DFD (digits feature
   distance, not FID; its floor and noise level printed beside it) of the teacher's DDIM with S
   steps, the S-step student, and the teacher's 32-step ancestral sampler, all from the same
   labels and noise.

Writes ``S{S}.png`` (one row per class: six of the teacher's DDIM-S samples left, the S-step
student's from the same noise right, a blank tile between), ``metrics.json`` (figures,
``glossary`` and ``meta``; diff-core's figure convention), ``results.md`` and each student's
``loss.png``.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEMO_BUDGET", "DEMO_OUTPUTS", "demo_glossary", "run_demo"]

#: Training budget of the two demo sizes (teacher steps at batch 128, student steps at batch 64,
#: evaluation samples per class) and the measured wall time on the 2-core development machine.
DEMO_BUDGET = {
    "quick": {"teacher_steps": 200, "student_steps": 40, "per_class": 10, "expected_s": 240},
    "full": {"teacher_steps": 1500, "student_steps": 600, "per_class": 36, "expected_s": 900},
}
STUDENT_S = (1, 2, 4, 8)
DEMO_OUTPUTS = ("metrics.json", "results.md", *(f"S{s}.png" for s in STUDENT_S))


def demo_glossary(quick: bool) -> dict[str, dict[str, str]]:
    """What each figure means, which direction is better, and the range expected at the budget."""
    from diff_core.figures import entry

    if quick:
        dfd = (
            "20 to 300 at this budget: the quick demo only shows the pipeline (measured: teacher "
            "DDIM-1/2/4/8 282 / 89 / 71 / 50, students 92 / 48 / 60 / 50)"
        )
        acc = "0.05 to 0.6 at this budget (the 200-step teacher has not learned the digits)"
    else:
        dfd = (
            "students 5 to 12, below the teacher's DDIM with the same steps (measured S = 1/2/4/8: "
            "students 9.2 / 7.2 / 5.7 / 6.3, teacher DDIM 44.8 / 12.2 / 7.1 / 6.7)"
        )
        acc = "students 0.85 to 1.0 (measured 0.91 to 0.98); the teacher's DDIM 0.95 to 1.0"
    return {
        "S": entry(
            "student sampling steps = network evaluations per sample", "neither", "1, 2, 4, 8"
        ),
        "teacher_ddim.class_accuracy": entry(
            "class accuracy of the teacher sampled with S DDIM steps (the baseline at equal cost)",
            "higher",
            acc,
        ),
        "teacher_ddim.dfd": entry(
            "DFD of the teacher's S-step DDIM samples (Frechet distance of the digits "
            "classifier's 64-d features against 360 test digits; not FID)",
            "lower",
            dfd,
        ),
        "student.class_accuracy": entry(
            "class accuracy of the S-step consistency student's samples", "higher", acc
        ),
        "student.dfd": entry("DFD of the S-step student's samples (same noise)", "lower", dfd),
        "teacher_32_ancestral.dfd": entry(
            "DFD of the teacher's own 32-step ancestral sampler (diff-pixel's default)",
            "lower",
            "3 to 8 for the full 1500-step teacher (measured 4.31)" if not quick else "20 to 150",
        ),
        "dfd_floor": entry(
            "DFD of 360 real training digits: what a perfect generator scores", "neither", "4 to 7"
        ),
        "dfd_noise": entry(
            "DFD of clipped Gaussian noise: what a generator that learned nothing scores",
            "neither",
            "200 to 400",
        ),
        "student_final_loss": entry(
            "consistency loss (pseudo-Huber of the v-space error) over the last logged steps",
            "lower",
            "0.01 to 0.2",
        ),
    }


def _teacher(out: Path, teacher: str | None, steps: int, progress: bool) -> Any:
    from diff_consistency.runs import load_run

    if teacher is not None:
        return load_run(teacher)
    run_dir = out / "teacher"
    from diff_pixel.sid.cli import train_run

    train_run(data="digits", steps=steps, out=str(run_dir), progress=progress, checkpoint_every=500)
    return load_run(run_dir)


def _evaluate(model, schedule, classifier, baselines, *, steps, sampler, per_class) -> tuple:
    from diff_pixel.metrics import evaluate_digits_model

    metrics, images, labels = evaluate_digits_model(
        model,
        schedule,
        classifier,
        steps=steps,
        sampler=sampler,
        per_class=per_class,
        seed=0,
        baselines=baselines,
    )
    return (
        {"class_accuracy": metrics["class_accuracy"], "dfd": metrics["digits_feature_distance"]},
        images,
        labels,
    )


def _pair_grid(path: Path, teacher_images, student_images, labels, per_row: int = 6):
    """One row per class: ``per_row`` teacher DDIM-S samples, a blank tile, then the student's
    samples from the same noise and labels."""
    from diff_pixel.images import save_grid

    blank = np.ones((1, *teacher_images.shape[1:]), teacher_images.dtype)  # white
    tiles = []
    for c in range(10):
        rows = np.nonzero(labels == c)[0][:per_row]
        tiles += [teacher_images[rows], blank, student_images[rows]]
    save_grid(
        str(path),
        np.concatenate(tiles),
        nrow=2 * per_row + 1,
        row_labels=[str(c) for c in range(10)],
        scale=3,
    )


def run_demo(
    out: str | Path,
    *,
    quick: bool = False,
    teacher: str | None = None,
    student_steps: tuple[int, ...] = STUDENT_S,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the demo (module docstring) into ``out`` and return the figures.

    Existing outputs are refused with a ``FileExistsError`` before any work unless ``overwrite``
    (which also retrains the students; a cached teacher in ``out/teacher`` is kept).
    """
    import jax

    from diff_consistency.config import ConsistencyConfig
    from diff_consistency.driver import train_consistency
    from diff_pixel.data import Loader, digits
    from diff_pixel.images import LossCurveHook
    from diff_pixel.metrics import dfd_baselines, train_digits_classifier
    from diff_pixel.train import read_metrics
    from diff_protocol.io import atomic_write, dumps_json

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    present = [n for n in DEMO_OUTPUTS if (out / n).exists()]
    if present and not overwrite:
        raise FileExistsError(
            f"{out} already holds {', '.join(present)} of an earlier demo; pass --overwrite to "
            "replace them, or choose another --out"
        )
    budget = DEMO_BUDGET["quick" if quick else "full"]
    start = time.time()
    print(
        f"diff-consistency demo: teacher {budget['teacher_steps']} steps (tiny-16, batch 128), "
        f"students S = {', '.join(map(str, student_steps))} with {budget['student_steps']} CD "
        f"steps each (batch 64); expected about {budget['expected_s'] // 60} minutes on 2 CPU "
        "cores",
        file=sys.stderr,
        flush=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    teach = _teacher(out, teacher, budget["teacher_steps"], progress)
    if teach.is_student or teach.num_classes < 10:
        raise ValueError(
            f"--teacher: {teach.path} must be a class-conditional digits diffusion run"
        )
    classifier = train_digits_classifier(seed=0)
    levels = dfd_baselines(classifier)
    per_class = budget["per_class"]
    ref, _, _ = _evaluate(
        teach.ema, teach.schedule, classifier, levels, steps=32, sampler="ddpm", per_class=per_class
    )
    rows = []
    for s in student_steps:
        run_dir = out / f"student_S{s}"
        if overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        n = budget["student_steps"]
        cfg = ConsistencyConfig.preset(
            "digits",
            student_steps=s,
            num_steps=n,
            anneal_steps=max(1, n // 2),
            warmup_steps=min(100, n // 4),
        )
        trainer = train_consistency(
            cfg,
            data=Loader(digits(16), cfg.batch_size, seed=0),
            out_dir=str(run_dir),
            init=teach.ema,
            schedule=teach.schedule,
            teacher=teach.ema,
            hooks=[LossCurveHook()],
            progress=progress,
            log_every=max(1, min(50, n // 4)),
            checkpoint_every=max(1, n // 2),
        )
        student = trainer.ema_model()
        t_metrics, t_images, labels = _evaluate(
            teach.ema,
            teach.schedule,
            classifier,
            levels,
            steps=s,
            sampler="ddim",
            per_class=per_class,
        )
        s_metrics, s_images, _ = _evaluate(
            student,
            teach.schedule,
            classifier,
            levels,
            steps=s,
            sampler="multistep_consistency",
            per_class=per_class,
        )
        _pair_grid(out / f"S{s}.png", t_images, s_images, labels)
        records = read_metrics(str(run_dir / "metrics.jsonl"))
        rows.append(
            {
                "S": s,
                "teacher_ddim": t_metrics,
                "student": s_metrics,
                "student_final_loss": float(records[-1]["loss"]) if records else float("nan"),
            }
        )
        print(
            f"S = {s}: teacher DDIM-{s} DFD {t_metrics['dfd']:.2f} "
            f"(acc {t_metrics['class_accuracy']:.3f})"
            f" | student DFD {s_metrics['dfd']:.2f} (acc {s_metrics['class_accuracy']:.3f})   "
            "[DFD lower is better]",
            file=sys.stderr,
            flush=True,
        )
        jax.clear_caches()
    figures = {
        "rows": rows,
        "teacher_32_ancestral": ref,
        "dfd_floor": levels["dfd_floor"],
        "dfd_noise": levels["dfd_noise"],
        "classifier_test_accuracy": classifier.test_accuracy,
    }
    glossary = demo_glossary(quick)
    wall = time.time() - start
    meta = {
        "expected_s": budget["expected_s"],
        "wall_s": round(wall, 1),
        "budget": (
            f"teacher {budget['teacher_steps']} steps; {budget['student_steps']} CD steps per "
            f"student; {10 * per_class} evaluation samples"
        ),
    }
    atomic_write(
        out / "metrics.json",
        dumps_json({**figures, "meta": meta, "glossary": glossary}, indent=2) + "\n",
    )
    atomic_write(out / "results.md", _markdown(figures, meta))
    _print_figures(figures, glossary)
    return figures


def _markdown(fig: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# diff-consistency digits demo",
        "",
        f"{meta['budget']}; wall {meta['wall_s']} s. DFD = digits feature distance (lower is "
        f"better; floor {fig['dfd_floor']:.2f}, noise {fig['dfd_noise']:.1f}); not FID.",
        "",
        "| S | teacher DDIM-S DFD | teacher DDIM-S acc | student DFD | student acc |",
        "|---|---|---|---|---|",
    ]
    for r in fig["rows"]:
        t, s = r["teacher_ddim"], r["student"]
        lines.append(
            f"| {r['S']} | {t['dfd']:.2f} | {t['class_accuracy']:.3f} | {s['dfd']:.2f} | "
            f"{s['class_accuracy']:.3f} |"
        )
    ref = fig["teacher_32_ancestral"]
    lines.append(
        f"| teacher, 32 ancestral steps | {ref['dfd']:.2f} | {ref['class_accuracy']:.3f} | | |"
    )
    return "\n".join(lines) + "\n"


def _print_figures(fig: dict[str, Any], glossary: dict[str, dict[str, str]]) -> None:
    from diff_core.figures import describe

    flat: dict[str, Any] = {
        "dfd_floor": fig["dfd_floor"],
        "dfd_noise": fig["dfd_noise"],
        "teacher_32_ancestral.dfd": fig["teacher_32_ancestral"]["dfd"],
    }
    print(describe(glossary, flat), file=sys.stderr)
