"""Evaluation protocols of Semantica (arXiv 2405.14857, adapted to the offline digits).

Generating "from a dataset" D means conditioning on images of D: every conditioning image gets
``n_per_image`` guided variations, and the generated set stands for D.

* :func:`seen_groups_heldout_images` — condition on the 360 held-out test digits (classes seen
  in training, images not).
* :func:`subset_adaptation` — condition only on held-out digits of a class subset ({0, 1, 2});
  the generated classes should cover exactly that subset, without any fine-tuning.
* held-out groups (train on 0–6, condition on 7–9) is ``benchmarks/heldout_groups.py``:
  reported, not gated.

The classifier is diff-pixel's digits CNN (``train_digits_classifier(8)``); its test accuracy
must be ≥ 0.95 before any metric uses it. FD-digits is never FID.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from diff_semantica.data import GroupedImages, digits_groups
from diff_semantica.metrics import (
    class_agreement,
    copy_distance,
    copy_rate,
    diversity,
    memorisation_rate,
    reference_pair_rmse,
    set_fd,
    subset_tv,
)
from diff_semantica.sampling import sample_variations

__all__ = [
    "check_classifier",
    "evaluate_adaptation",
    "seen_groups_heldout_images",
    "subset_adaptation",
]

MIN_CLASSIFIER_ACCURACY = 0.95


def check_classifier(classifier: Any) -> Any:
    """``ValueError`` unless the classifier's held-out accuracy is ≥ 0.95."""
    acc = getattr(classifier, "test_accuracy", None)
    if acc is None or acc < MIN_CLASSIFIER_ACCURACY:
        raise ValueError(
            f"evaluate: classifier test_accuracy must be >= {MIN_CLASSIFIER_ACCURACY} before it "
            f"measures anything, got {acc}"
        )
    return classifier


def evaluate_adaptation(
    model: Any,
    cond_set: GroupedImages,
    classifier: Any,
    *,
    train: GroupedImages,
    n_per_image: int = 4,
    guidance_scales: Sequence[float] = (1.0, 2.0, 4.0),
    steps: int = 25,
    seed: int = 0,
    subset: Sequence[int] | None = None,
    reference: float | None = None,
    group_reference: GroupedImages | None = None,
    return_samples: bool = False,
    **sample_kw: Any,
) -> dict[str, Any] | tuple[dict[str, Any], dict[float, np.ndarray]]:
    """Every metric of :mod:`diff_semantica.metrics` per guidance scale.

    ``group_reference``: the real images whose per-group nearest-neighbour RMSE sets
    ``copy_rate``'s threshold (default ``train``); it must hold every conditioning group, so
    conditioning on groups left out of training needs a set that has them (e.g. the whole
    training split).

    Returns ``{"n_cond", "n_per_image", "steps", "chance", "reference_pair_rmse",
    "scales": {"1.0": {...}, ...}}`` (and the samples per scale with ``return_samples``).
    """
    check_classifier(classifier)
    ref = reference if reference is not None else reference_pair_rmse(train)
    classes = sorted({int(g) for g in cond_set.groups})
    out: dict[str, Any] = {
        "n_cond": len(cond_set),
        "n_per_image": n_per_image,
        "steps": steps,
        "chance": 1.0 / 10,
        "reference_pair_rmse": ref,
        "scales": {},
    }
    samples_by_scale = {}
    for g in guidance_scales:
        s = sample_variations(
            model,
            cond_set.images,
            n_per_image=n_per_image,
            guidance=float(g),
            steps=steps,
            seed=seed,
            **sample_kw,
        )
        m = {
            "agreement": class_agreement(s, cond_set.groups, classifier),
            "copy_distance": copy_distance(s, cond_set.images, ref),
            "copy_rate": copy_rate(
                s,
                cond_set.images,
                cond_set.groups,
                train if group_reference is None else group_reference,
            ),
            "diversity": diversity(s, ref) if n_per_image > 1 else None,
            "memorisation_rate": memorisation_rate(s, train.images),
            "fd_digits": set_fd(s, cond_set.images, classifier.features),
            "subset_tv": subset_tv(s, classifier, subset if subset is not None else classes),
        }
        out["scales"][str(float(g))] = m
        if return_samples:
            samples_by_scale[float(g)] = s
    return (out, samples_by_scale) if return_samples else out


def seen_groups_heldout_images(model: Any, classifier: Any, **kw: Any) -> dict[str, Any]:
    """Condition on the held-out test digits (all classes)."""
    return evaluate_adaptation(
        model, digits_groups("test"), classifier, train=digits_groups("train"), **kw
    )


def subset_adaptation(
    model: Any, classifier: Any, classes: Sequence[int] = (0, 1, 2), **kw: Any
) -> dict[str, Any]:
    """Condition only on held-out digits of ``classes``; ``subset_tv`` measures how evenly the
    generated classes cover exactly that subset."""
    test = digits_groups("test").of_groups(classes)
    return evaluate_adaptation(
        model, test, classifier, train=digits_groups("train"), subset=classes, **kw
    )
