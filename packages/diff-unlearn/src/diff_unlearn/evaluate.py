"""One results table: every model's forgetting, alignment, FD-digits and retention.

Every model — the original θ₀, each unlearned model and an optional independently trained
*reference* (another seed: the scale of "a different model") — is sampled once on every class
with the same noise (:func:`~diff_unlearn.sampling.same_noise_samples`); all figures come from
those samples:

* forget efficacy on the forgotten classes (``forget_acc``, ``forget_prob``; lower = forgotten);
* classifier alignment and FD-digits on the retain classes (the CLIPScore- and FID-like
  stand-ins);
* retention against θ₀ under CFD, RMSE and 1 − SSIM, and ``labels_kept`` (same-noise pairs the
  classifier labels alike).

Writes ``table.md``, ``table.json``, ``retain_grid.png`` (one row per retain class; columns θ₀
then each model, same noise, so a change is visible) and ``forget_grid.png`` (one row per model,
the forgotten class's first samples).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from diff_pixel import DigitsClassifier, save_grid, train_digits_classifier
from diff_protocol.io import atomic_write, jsonable
from diff_unlearn.data import UnlearnTask
from diff_unlearn.metrics import (
    DISTANCES,
    check_same_architecture,
    forget_efficacy,
    retain_alignment,
    retain_fd,
    retention_from_samples,
)
from diff_unlearn.sampling import ORIGINAL_CACHE, SamplingSpec, same_noise_samples

__all__ = ["COLUMNS", "ResultsTable", "digits_classifier", "evaluate_methods"]

ORIGINAL, REFERENCE = "original", "reference"

#: Columns of the table: (key, header, meaning, better).
COLUMNS = (
    (
        "forget_acc",
        "forget acc",
        "share of forget-class samples classified as the forgotten class",
        "lower",
    ),
    (
        "forget_prob",
        "forget prob",
        "mean classifier probability of the forgotten class on them",
        "lower",
    ),
    (
        "alignment",
        "retain alignment",
        "share of retain samples classified as their class",
        "higher",
    ),
    ("fd_digits", "FD-digits", "DFD of retain samples vs held-out retain digits", "lower"),
    (
        "cfd",
        "CFD(θ₀, θ)",
        "same-noise classifier-feature distance to θ₀ on retain classes",
        "lower",
    ),
    ("rmse", "RMSE(θ₀, θ)", "same-noise pixel RMSE to θ₀ on retain classes", "lower"),
    ("1-ssim", "1−SSIM(θ₀, θ)", "same-noise 1 − SSIM to θ₀ on retain classes", "lower"),
    ("labels_kept", "labels kept", "same-noise pairs the classifier labels alike", "higher"),
)


@dataclass
class ResultsTable:
    """Rows ``{model name: {column: value}}`` plus the evaluation settings."""

    rows: dict[str, dict[str, float]]
    settings: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        head = "| model | " + " | ".join(h for _, h, _, _ in COLUMNS) + " |"
        sep = "|---|" + "---|" * len(COLUMNS)
        lines = [head, sep]
        for name, row in self.rows.items():
            cells = []
            for key, *_ in COLUMNS:
                v = row.get(key)
                cells.append("–" if v is None else f"{v:.4g}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        s = self.settings
        lines.append("")
        lines.append(
            f"Same-noise samples: {s.get('n_per_cond')} per class, {s.get('sampler')}-"
            f"{s.get('steps')}, guidance {s.get('guidance')}, seed {s.get('seed')}; forget "
            f"classes {s.get('forget_classes')}; SSIM window {s.get('ssim_window')}; CFD and "
            "FD-digits use diff-pixel's digits classifier (test accuracy "
            f"{s.get('classifier_test_accuracy', float('nan')):.3f}); CFD is not LPIPS and "
            "FD-digits is not FID."
        )
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "settings": self.settings,
            "columns": {k: {"header": h, "meaning": m, "better": b} for k, h, m, b in COLUMNS},
        }

    def write(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        atomic_write(out / "table.md", self.markdown())
        atomic_write(out / "table.json", json.dumps(jsonable(self.to_json()), indent=2) + "\n")


def digits_classifier(cache_dir: str | Path, image_size: int = 8) -> DigitsClassifier:
    """diff-pixel's digits classifier, trained once (seed 0) and cached as
    ``cache_dir/digits_classifier.npz``; refused if its test accuracy is below 0.95."""
    path = Path(cache_dir) / "digits_classifier.npz"
    if path.is_file():
        return DigitsClassifier.load(path)
    clf = train_digits_classifier(image_size)
    if clf.test_accuracy < 0.95:
        raise RuntimeError(
            f"digits_classifier: test accuracy {clf.test_accuracy:.3f} < 0.95; metrics computed "
            "with it would not be trustworthy"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    clf.save(path)
    return clf


def evaluate_methods(
    original: nnx.Module,
    unlearned: Mapping[str, nnx.Module],
    task: UnlearnTask,
    *,
    schedule: Any,
    classifier: DigitsClassifier,
    reference: nnx.Module | None = None,
    n_per_cond: int = 100,
    seed: int = 0,
    sampler: str = "ddim",
    steps: int = 50,
    guidance: float = 2.0,
    batch: int = 256,
    out_dir: str | Path | None = None,
) -> ResultsTable:
    """The results table of ``unlearned`` models (name → model) against ``original``.

    Example:
      >>> table = evaluate_methods(
      ...     theta0,
      ...     {"distill": theta},
      ...     task,
      ...     schedule=recipe.schedule(),
      ...     classifier=clf,
      ...     out_dir="eval",
      ... )  # doctest: +SKIP
    """
    if not isinstance(classifier, DigitsClassifier):
        raise TypeError(
            "evaluate_methods: classifier must be a diff_pixel DigitsClassifier, got "
            f"{type(classifier).__name__}"
        )
    if not isinstance(unlearned, Mapping):
        raise TypeError(
            "evaluate_methods: unlearned must be a dict name -> model, got "
            f"{type(unlearned).__name__}"
        )
    reserved = {ORIGINAL, REFERENCE} & set(unlearned)
    if reserved:
        raise ValueError(f"evaluate_methods: unlearned names must not be {sorted(reserved)}")
    spec = SamplingSpec(
        schedule,
        n_per_cond=n_per_cond,
        seed=seed,
        sampler=sampler,
        steps=steps,
        guidance=guidance,
        batch=batch,
        prompts=task.prompts,
    )
    models: dict[str, nnx.Module] = {ORIGINAL: original, **dict(unlearned)}
    if reference is not None:
        models[REFERENCE] = reference
    for name, m in models.items():
        if m is not original:
            check_same_architecture(f"evaluate_methods ({name})", original, m)
    all_conds = tuple(range(task.num_classes))
    f_idx = [all_conds.index(c) for c in task.forget_classes]
    r_idx = [all_conds.index(c) for c in task.retain_classes]
    heldout = task.subset("retain", "heldout").images
    samples = {ORIGINAL: ORIGINAL_CACHE.get(original, all_conds, spec)}
    for name, m in models.items():
        if name != ORIGINAL:
            samples[name] = same_noise_samples(m, all_conds, spec)
    base_r = samples[ORIGINAL][r_idx]
    rows: dict[str, dict[str, float]] = {}
    window = ""
    for name, s in samples.items():
        row = dict(forget_efficacy(s[f_idx], task.class_of(task.forget_classes), classifier))
        row["alignment"] = retain_alignment(
            s[r_idx], task.class_of(task.retain_classes), classifier
        )
        row["fd_digits"] = retain_fd(s[r_idx], heldout, classifier)
        rep = retention_from_samples(base_r, s[r_idx], task.retain_classes, classifier, DISTANCES)
        row.update(rep.distances)
        row["labels_kept"] = rep.labels_kept
        window = rep.ssim_window
        rows[name] = row
    settings = {
        **spec.describe(),
        "forget_classes": list(task.forget_classes),
        "ssim_window": window,
        "classifier_test_accuracy": classifier.test_accuracy,
        "task": task.name,
    }
    table = ResultsTable(rows, settings)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        table.write(out)
        _grids(out, samples, task, r_idx, f_idx)
    return table


def _grids(
    out: Path, samples: dict[str, np.ndarray], task: UnlearnTask, r_idx: list[int], f_idx: list[int]
) -> None:
    names = list(samples)
    # retain grid: row = retain class, column = model, sample 0 (same noise across the row)
    cells = [samples[n][i, 0] for i in r_idx for n in names]
    save_grid(
        out / "retain_grid.png",
        np.stack(cells),
        len(names),
        row_labels=[str(c) for c in task.retain_classes],
        col_labels=names,
        scale=4,
    )
    k = min(8, next(iter(samples.values())).shape[1])
    cells = [samples[n][i, j] for n in names for i in f_idx for j in range(k)]
    save_grid(
        out / "forget_grid.png",
        np.stack(cells),
        k * len(f_idx),
        row_labels=names,
        scale=4,
    )
