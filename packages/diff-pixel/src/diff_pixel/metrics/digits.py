"""Honest quality numbers for generated digits, from the classifier trained in this package.

* :func:`class_accuracy`: the fraction of generated digits that the classifier assigns to their
  conditioning label (class-conditional accuracy).
* :func:`digits_feature_distance` (**DFD**): the Fréchet distance (diff-core's
  ``frechet_distance``; Dowson & Landau, as in arXiv 1706.08500) between Gaussian fits of the
  classifier's 64-d features of the generated images and of the 360 test digits. It is *not*
  FID: the feature network is a small CNN trained here on 1437 digits, so its numbers are only
  comparable to the two baselines of :func:`dfd_baselines`, computed in the same run:
  the floor ``DFD(360 train digits, test)`` and the noise level
  ``DFD(clip(N(0, 1), −1, 1) images, test)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from diff_pixel.data.digits import DIGITS_TEST_SIZE, digits
from diff_pixel.metrics.digits_classifier import DigitsClassifier

__all__ = ["class_accuracy", "dfd_baselines", "digits_feature_distance", "evaluate_digits_model"]


def _check_classifier(func: str, classifier: Any) -> DigitsClassifier:
    if not isinstance(classifier, DigitsClassifier):
        raise TypeError(
            f"{func}: classifier must be a DigitsClassifier (train_digits_classifier()), "
            f"got {type(classifier).__name__}"
        )
    return classifier


def class_accuracy(images: Any, labels: Any, classifier: DigitsClassifier) -> float:
    """Fraction of ``images`` (N, H, W, 1) in [−1, 1] classified as their ``labels`` (N,)."""
    _check_classifier("class_accuracy", classifier)
    lab = np.asarray(labels)
    n = np.shape(images)[0] if np.ndim(images) else 0
    if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(
            f"class_accuracy: labels must be an int array of shape ({n},), "
            f"got {lab.dtype} {lab.shape}"
        )
    if lab.size and (lab.min() < 0 or lab.max() > 9):
        raise ValueError(
            f"class_accuracy: labels must lie in [0, 9], got [{lab.min()}, {lab.max()}]"
        )
    return float(np.mean(classifier.predict(images) == lab))


def _reference(reference: Any, image_size: int) -> np.ndarray:
    if isinstance(reference, str):
        if reference not in ("test", "train"):
            raise ValueError(
                f"digits_feature_distance: reference must be 'test', 'train' or an image array, "
                f"got {reference!r}"
            )
        images = digits(image_size, reference).images
        return images[:DIGITS_TEST_SIZE]
    return np.asarray(reference)


def digits_feature_distance(
    images: Any,
    classifier: DigitsClassifier,
    reference: Literal["test", "train"] | np.ndarray = "test",
) -> float:
    """DFD: Fréchet distance between classifier features of ``images`` and of ``reference``.

    Args:
      images: (N, H, W, 1) generated digits in [−1, 1] (the spec uses N = 360, 36 per class).
      classifier: from :func:`~diff_pixel.metrics.train_digits_classifier`.
      reference: ``"test"`` (the 360 test digits), ``"train"`` (the first 360 train digits) or
        an image array.

    Returns:
      ``‖μ₁ − μ₂‖² + tr C₁ + tr C₂ − 2 tr (C₁^½ C₂ C₁^½)^½`` over the 64-d features (float).
    """
    from diff_core.metrics import frechet_distance

    _check_classifier("digits_feature_distance", classifier)
    n = np.shape(images)[0] if np.ndim(images) else 0
    if n < 2:
        raise ValueError(f"digits_feature_distance: images must hold at least 2 images, got {n}")
    size = int(classifier.meta.get("image_size", 16))
    ref = _reference(reference, size)
    a = classifier.features(images).astype(np.float64)
    b = classifier.features(ref).astype(np.float64)
    return float(frechet_distance(a, b))


def dfd_baselines(classifier: DigitsClassifier, seed: int = 0) -> dict[str, float]:
    """The two reference levels printed beside every DFD.

    Returns:
      ``{"dfd_floor": DFD(first 360 train digits, test), "dfd_noise": DFD(360 images of
      clip(N(0, 1), −1, 1) drawn with default_rng(seed), test)}``.
    """
    _check_classifier("dfd_baselines", classifier)
    size = int(classifier.meta.get("image_size", 16))
    train = digits(size, "train").images[:DIGITS_TEST_SIZE]
    noise = np.clip(
        np.random.default_rng(seed).standard_normal((DIGITS_TEST_SIZE, size, size, 1)), -1.0, 1.0
    ).astype(np.float32)
    return {
        "dfd_floor": digits_feature_distance(train, classifier, "test"),
        "dfd_noise": digits_feature_distance(noise, classifier, "test"),
    }


def evaluate_digits_model(
    model: Any,
    schedule: Any,
    classifier: DigitsClassifier,
    *,
    guidance: float = 1.0,
    interval: tuple[float, float] = (-math.inf, math.inf),
    steps: int = 32,
    sampler: str = "ddpm",
    per_class: int = 36,
    seed: int = 0,
    baselines: Mapping[str, float] | None = None,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Sample ``per_class`` digits of each class and score them.

    Args:
      model: a class-conditional digits model (NNX, ``(graphdef, state)`` or protocol denoiser).
      schedule: the sampling schedule (the recipe's).
      classifier: from :func:`~diff_pixel.metrics.train_digits_classifier`.
      guidance, interval: classifier-free guidance weight and its logsnr interval [lo, hi).
      steps, sampler: sampler settings (``"ddpm"`` ancestral or ``"ddim"``).
      per_class: samples per digit (the spec uses 36 → 360 images).
      seed: sampling key ``jax.random.key(seed)``.
      baselines: precomputed :func:`dfd_baselines` (computed here when ``None``).

    Returns:
      ``(metrics, images, labels)``; metrics has ``class_accuracy``,
      ``digits_feature_distance``, ``dfd_floor``, ``dfd_noise`` and
      ``classifier_test_accuracy``.
    """
    import jax
    import jax.numpy as jnp

    from diff_pixel.models.cond import Cond
    from diff_pixel.sampling import sample

    _check_classifier("evaluate_digits_model", classifier)
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(
            f"evaluate_digits_model: per_class must be a positive int, got {per_class!r}"
        )
    config = getattr(model, "config", None)
    size = int(getattr(config, "height", classifier.meta.get("image_size", 16)))
    labels = np.repeat(np.arange(10, dtype=np.int32), per_class)
    images = sample(
        model,
        shape=(labels.size, size, size, 1),
        key=jax.random.key(seed),
        schedule=schedule,
        steps=steps,
        sampler=sampler,
        cond=Cond(label=jnp.asarray(labels)),
        guidance=guidance,
        interval=tuple(interval),
    )
    images = np.asarray(images)
    levels = dict(baselines) if baselines is not None else dfd_baselines(classifier)
    metrics = {
        "class_accuracy": class_accuracy(images, labels, classifier),
        "digits_feature_distance": digits_feature_distance(images, classifier),
        "dfd_floor": float(levels["dfd_floor"]),
        "dfd_noise": float(levels["dfd_noise"]),
        "classifier_test_accuracy": classifier.test_accuracy,
    }
    return metrics, images, labels
