"""The digits demo: distil a diff-pixel digits teacher into a k-step moment-matching student (CPU).

1. Teacher: ``--teacher RUN`` or a ``tiny-16`` class-conditional digits run of diff-pixel's SiD2
   recipe trained here with ``diff_pixel.sid.cli.train_run`` (run preset ``digits``), cached in
   ``OUT/teacher`` (a finished run there is reused; an interrupted one resumes).
2. Students: the alternating variant (preset ``digits``: batch 64, lr 3e-5 for student and
   auxiliary, uniform weight, no guidance), one run per k in ``OUT/student_k{k}``, initialised from
   the teacher's EMA weights.
3. Evaluation with diff-pixel's digits classifier: class accuracy and DFD (digits feature
   distance: Fréchet distance of the classifier's 64-d features against the 360 test digits; not
   FID) of the teacher's 256-step ancestral sampler, the teacher's DDIM-k and DDPM-k, and the
   k-step student, all from the same labels and sampling key.

Writes ``k{k}.png`` (one row per class: the teacher with 256 ancestral steps, the teacher's DDIM-k
and the k-step student, same labels and key, blank tiles between), ``metrics.json`` (figures,
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

__all__ = ["DEMO_BUDGET", "demo_glossary", "run_demo"]

#: Training budget of the two demo sizes (teacher steps at batch 128, student iterations at
#: batch 64, evaluation samples per class) and the expected wall time on 2 quiet CPU cores.
DEMO_BUDGET = {
    "quick": {"teacher_steps": 200, "student_steps": 40, "per_class": 10, "expected_s": 300},
    "full": {"teacher_steps": 1500, "student_steps": 600, "per_class": 36, "expected_s": 1500},
}
TEACHER_FINE_STEPS = 256


def demo_outputs(ks: tuple[int, ...]) -> tuple[str, ...]:
    return ("metrics.json", "results.md", *(f"k{k}.png" for k in ks))


def demo_glossary(quick: bool) -> dict[str, dict[str, str]]:
    """What each figure means, which direction is better, and the range expected at the budget."""
    from diff_core.figures import entry

    if quick:
        dfd = "20 to 400 at this budget: the quick demo only shows the pipeline"
        acc = "0.05 to 0.6 at this budget (the 200-step teacher has not learned the digits)"
    else:
        dfd = "3 to 30 (see the README's measured table)"
        acc = "0.8 to 1.0 for the 1,500-step teacher and its students"
    return {
        "k": entry("student sampling steps = network evaluations per sample", "neither", "4, 8"),
        "teacher_ddim.dfd": entry(
            "DFD of the teacher's k-step DDIM samples (the deterministic baseline at equal cost)",
            "lower",
            dfd,
        ),
        "teacher_ddpm.dfd": entry(
            "DFD of the teacher's k-step ancestral (DDPM) samples: the student's sampler with "
            "the teacher's denoiser",
            "lower",
            dfd,
        ),
        "student.dfd": entry("DFD of the k-step moment-matching student", "lower", dfd),
        "student.class_accuracy": entry(
            "fraction of student samples the digits classifier assigns to their label",
            "higher",
            acc,
        ),
        "teacher_fine.dfd": entry(
            f"DFD of the teacher's own {TEACHER_FINE_STEPS}-step ancestral sampler",
            "lower",
            dfd,
        ),
        "dfd_floor": entry(
            "DFD of 360 real training digits: what a perfect generator scores", "neither", "4 to 7"
        ),
        "dfd_noise": entry(
            "DFD of clipped Gaussian noise: what a generator that learned nothing scores",
            "neither",
            "200 to 400",
        ),
    }


def _teacher(out: Path, teacher: str | None, steps: int, progress: bool) -> Any:
    from diff_distill.teacher import load_teacher

    if teacher is not None:
        return load_teacher(teacher)
    from diff_pixel.sid.cli import train_run

    run_dir = out / "teacher"
    train_run(data="digits", steps=steps, out=str(run_dir), progress=progress, checkpoint_every=100)
    return load_teacher(run_dir)


def _evaluate(model, schedule, classifier, levels, *, steps, sampler, per_class) -> tuple:
    from diff_pixel.metrics import evaluate_digits_model

    metrics, images, labels = evaluate_digits_model(
        model,
        schedule,
        classifier,
        steps=steps,
        sampler=sampler,
        per_class=per_class,
        seed=0,
        baselines=levels,
    )
    return (
        {"class_accuracy": metrics["class_accuracy"], "dfd": metrics["digits_feature_distance"]},
        images,
        labels,
    )


def _grid(path: Path, panels: list[np.ndarray], labels: np.ndarray, per_row: int = 4) -> None:
    """One row per class: ``per_row`` samples of each panel, a blank tile between panels."""
    from diff_pixel.images import save_grid

    blank = np.ones((1, *panels[0].shape[1:]), panels[0].dtype)
    tiles = []
    for c in range(10):
        rows = np.nonzero(labels == c)[0][:per_row]
        for i, p in enumerate(panels):
            if i:
                tiles.append(blank)
            tiles.append(p[rows])
    save_grid(
        str(path),
        np.concatenate(tiles),
        nrow=len(panels) * per_row + len(panels) - 1,
        row_labels=[str(c) for c in range(10)],
        scale=3,
    )


def run_demo(
    out: str | Path,
    *,
    quick: bool = False,
    teacher: str | None = None,
    ks: tuple[int, ...] = (8,),
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the demo (module docstring) into ``out`` and return the figures.

    Existing outputs are refused with ``FileExistsError`` before any work unless ``overwrite``
    (which also retrains the students; a cached teacher in ``out/teacher`` is kept).
    """
    import jax

    from diff_distill.config import MomentMatchingConfig
    from diff_distill.driver import make_trainer
    from diff_pixel.data import Loader, digits
    from diff_pixel.images import LossCurveHook
    from diff_pixel.metrics import dfd_baselines, train_digits_classifier
    from diff_protocol.io import atomic_write, dumps_json

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    present = [n for n in demo_outputs(ks) if (out / n).exists()]
    if present and not overwrite:
        raise FileExistsError(
            f"{out} already holds {', '.join(present)} of an earlier demo; pass --overwrite to "
            "replace them, or choose another --out"
        )
    budget = DEMO_BUDGET["quick" if quick else "full"]
    start = time.time()
    print(
        f"diff-distill demo: teacher {budget['teacher_steps']} steps (tiny-16, batch 128), "
        f"students k = {', '.join(map(str, ks))} with {budget['student_steps']} alternating "
        f"moment-matching iterations each (batch 64); expected about "
        f"{budget['expected_s'] // 60} minutes on 2 CPU cores",
        file=sys.stderr,
        flush=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    teach = _teacher(out, teacher, budget["teacher_steps"], progress)
    if teach.num_classes < 10:
        raise ValueError(f"teacher: {teach.path} must be a class-conditional digits run")
    classifier = train_digits_classifier(seed=0)
    levels = dfd_baselines(classifier)
    per_class = budget["per_class"]
    fine, fine_images, labels = _evaluate(
        teach.model,
        teach.schedule,
        classifier,
        levels,
        steps=TEACHER_FINE_STEPS,
        sampler="ddpm",
        per_class=per_class,
    )
    rows = []
    for k in ks:
        run_dir = out / f"student_k{k}"
        if overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        n = budget["student_steps"]
        cfg = MomentMatchingConfig.preset(
            "digits", k=k, num_steps=n, warmup_steps=min(100, max(n // 4, 1))
        )
        trainer = make_trainer(
            cfg,
            teacher=teach.model,
            data=Loader(digits(16), cfg.batch_size, seed=0),
            out_dir=run_dir,
            schedule=teach.schedule,
            hooks=[LossCurveHook()],
            progress=progress,
            log_every=max(1, min(50, n // 4)),
            checkpoint_every=max(1, n // 2),
        )
        trainer.run()
        student = trainer.ema_model().student
        ddim, ddim_images, _ = _evaluate(
            teach.model,
            teach.schedule,
            classifier,
            levels,
            steps=k,
            sampler="ddim",
            per_class=per_class,
        )
        ddpm, _, _ = _evaluate(
            teach.model,
            teach.schedule,
            classifier,
            levels,
            steps=k,
            sampler="ddpm",
            per_class=per_class,
        )
        stud, stud_images, _ = _evaluate(
            student,
            teach.schedule,
            classifier,
            levels,
            steps=k,
            sampler="moment_matching",
            per_class=per_class,
        )
        _grid(out / f"k{k}.png", [fine_images, ddim_images, stud_images], labels)
        rows.append({"k": k, "teacher_ddim": ddim, "teacher_ddpm": ddpm, "student": stud})
        print(
            f"k = {k}: teacher DDIM-{k} DFD {ddim['dfd']:.2f} (acc {ddim['class_accuracy']:.3f}), "
            f"DDPM-{k} {ddpm['dfd']:.2f} ({ddpm['class_accuracy']:.3f}) | student DFD "
            f"{stud['dfd']:.2f} (acc {stud['class_accuracy']:.3f}); teacher "
            f"{TEACHER_FINE_STEPS}-step {fine['dfd']:.2f}   [DFD lower is better]",
            file=sys.stderr,
            flush=True,
        )
        jax.clear_caches()
    figures = {
        "rows": rows,
        "teacher_fine": fine,
        "dfd_floor": levels["dfd_floor"],
        "dfd_noise": levels["dfd_noise"],
        "classifier_test_accuracy": classifier.test_accuracy,
    }
    glossary = demo_glossary(quick)
    meta = {
        "expected_s": budget["expected_s"],
        "wall_s": round(time.time() - start, 1),
        "budget": (
            f"teacher {budget['teacher_steps']} steps; {budget['student_steps']} moment-matching "
            f"iterations per student; {10 * per_class} evaluation samples"
        ),
    }
    atomic_write(
        out / "metrics.json",
        dumps_json({**figures, "meta": meta, "glossary": glossary}, indent=2) + "\n",
    )
    atomic_write(out / "results.md", _markdown(figures, meta))
    print(_markdown(figures, meta), file=sys.stderr)
    return figures


def _markdown(fig: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# diff-distill digits demo",
        "",
        f"{meta['budget']}; wall {meta['wall_s']} s. DFD = digits feature distance (lower is "
        f"better; floor {fig['dfd_floor']:.2f}, noise {fig['dfd_noise']:.1f}); not FID. "
        "Accuracy: digits classifier on the samples' labels (higher is better).",
        "",
        "| sampler | steps | DFD | class accuracy |",
        "|---|---|---|---|",
    ]
    f = fig["teacher_fine"]
    lines.append(
        f"| teacher, ancestral | {TEACHER_FINE_STEPS} | {f['dfd']:.2f} | "
        f"{f['class_accuracy']:.3f} |"
    )
    for r in fig["rows"]:
        for name, key in (
            ("teacher, DDIM", "teacher_ddim"),
            ("teacher, ancestral", "teacher_ddpm"),
            ("moment-matching student", "student"),
        ):
            m = r[key]
            lines.append(f"| {name} | {r['k']} | {m['dfd']:.2f} | {m['class_accuracy']:.3f} |")
    return "\n".join(lines) + "\n"
