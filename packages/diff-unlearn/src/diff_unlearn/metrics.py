r"""The retention (integrity) metric and the forgetting / alignment stand-ins.

**Retention** (our default form of the metric of arXiv 2411.02068, whose perceptual distance is not
confirmed):

.. math::
    I_d(\theta) = \frac{1}{|C|\,n} \sum_{c \in C} \sum_{j<n}
        d\big(S(\theta_0, c, \mathrm{noise}_{c,j}),\; S(\theta, c, \mathrm{noise}_{c,j})\big),

S the same sampler with the same initial and per-step noise, guidance and grid
(:func:`~diff_unlearn.sampling.same_noise_samples`), C the retain conditions. Three distances d:

* **CFD** (classifier-feature distance): LPIPS-style with unit weights on the two conv layers of
  diff-pixel's digits classifier, ``Σ_l mean_{h,w} ‖φ̂_l(a) − φ̂_l(b)‖²`` with φ̂ the
  channel-normalised post-ReLU feature vector at each position. Named CFD everywhere; it is not
  LPIPS (no pretrained perceptual network is used).
* **RMSE** in [−1, 1] pixel units.
* **1 − SSIM** (scikit-image ``structural_similarity``, ``data_range=2``): images with a short side
  ≥ 11 px use the Gaussian window (σ = 1.5, ``use_sample_covariance=False``); smaller images,
  such as 8×8 digits, scikit-image's default uniform 7×7 window. Reports state the window.

Identical models give exactly 0 under all three (same compiled sampler, same noise).

Stand-ins for what the paper calls insufficient: **classifier alignment** (share of retain samples
the classifier assigns to their condition; the CLIPScore-like number) and **FD-digits** (Fréchet
distance of the classifier's penultimate features between retain samples and held-out retain
digits, diff-pixel's DFD; the FID-like number). **Forget efficacy**: the classifier's mean
probability of the forgotten class, and the share classified as it, on samples conditioned on
the forgotten class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_pixel import DigitsClassifier, digits_feature_distance
from diff_unlearn.sampling import ORIGINAL_CACHE, SamplingSpec, check_conds, same_noise_samples

__all__ = [
    "DISTANCES",
    "RetentionReport",
    "cfd",
    "check_same_architecture",
    "forget_efficacy",
    "one_minus_ssim",
    "pixel_rmse",
    "retain_alignment",
    "retain_fd",
    "retention",
    "retention_from_samples",
    "ssim_window",
]

DISTANCES = ("cfd", "rmse", "1-ssim")
_CLASSIFIER_SIZE = 16


def _pairs(func: str, a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.ndim == 3:
        a, b = a[None], b[None] if b.ndim == 3 else b
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(
            f"{func}: a and b must be image batches of one shape (N, H, W, C), got {a.shape} and "
            f"{b.shape}"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError(f"{func}: images must be finite, got NaN or inf values")
    return a, b


def pixel_rmse(a: Any, b: Any) -> np.ndarray:
    """Per-pair RMSE ``sqrt(mean((a − b)²))`` over pixels, in [−1, 1] units: shape (N,)."""
    a, b = _pairs("pixel_rmse", a, b)
    d = a.astype(np.float64) - b.astype(np.float64)
    return np.sqrt(np.mean(d * d, axis=(1, 2, 3)))


def ssim_window(image_shape: Sequence[int]) -> str:
    """The SSIM window used for images of ``image_shape`` (H, W, ...), as reports state it."""
    return "gaussian σ=1.5" if min(image_shape[:2]) >= 11 else "uniform 7×7"


def one_minus_ssim(a: Any, b: Any) -> np.ndarray:
    """Per-pair ``1 − SSIM(a, b)`` (scikit-image, ``data_range=2``; window by
    :func:`ssim_window`): shape (N,)."""
    from skimage.metrics import structural_similarity

    a, b = _pairs("one_minus_ssim", a, b)
    gaussian = min(a.shape[1:3]) >= 11
    kw: dict[str, Any] = {"data_range": 2.0}
    if gaussian:
        kw.update(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    if a.shape[-1] > 1:
        kw["channel_axis"] = -1
    out = np.empty(a.shape[0], np.float64)
    for i in range(a.shape[0]):
        x = a[i].astype(np.float64)
        y = b[i].astype(np.float64)
        if a.shape[-1] == 1:
            x, y = x[..., 0], y[..., 0]
        out[i] = 1.0 - structural_similarity(x, y, **kw)
    return out


@jax.jit
def _feature_maps(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array) -> list[jax.Array]:
    net = nnx.merge(graphdef, state)
    h1 = jax.nn.relu(net.conv1(x))
    h2 = jax.nn.relu(net.conv2(nnx.avg_pool(h1, (2, 2), strides=(2, 2))))
    return [h1, h2]


def _normalised_maps(images: np.ndarray, classifier: DigitsClassifier) -> list[np.ndarray]:
    x = jnp.asarray(images, jnp.float32)
    if x.shape[-1] == 3:
        x = x.mean(axis=-1, keepdims=True)
    if x.shape[1:3] != (_CLASSIFIER_SIZE, _CLASSIFIER_SIZE):
        # the classifier's own input convention: bilinear, anti-aliased resize to 16×16
        x = jax.image.resize(x, (x.shape[0], 16, 16, 1), "linear", antialias=True)
    maps = _feature_maps(classifier.graphdef, classifier.state, x)
    out = []
    for f in maps:
        f = np.asarray(f, np.float64)
        norm = np.sqrt(np.sum(f * f, axis=-1, keepdims=True))
        out.append(f / (norm + 1e-10))
    return out


def cfd(a: Any, b: Any, classifier: DigitsClassifier) -> np.ndarray:
    """Per-pair CFD (see the module docstring): shape (N,); ``cfd(a, a) = 0`` exactly and
    symmetric."""
    if not isinstance(classifier, DigitsClassifier):
        raise TypeError(
            "cfd: classifier must be a diff_pixel DigitsClassifier, got "
            f"{type(classifier).__name__}"
        )
    a, b = _pairs("cfd", a, b)
    total = np.zeros(a.shape[0], np.float64)
    for fa, fb in zip(_normalised_maps(a, classifier), _normalised_maps(b, classifier)):
        d = fa - fb
        total += np.mean(np.sum(d * d, axis=-1), axis=(1, 2))
    return total


def check_same_architecture(func: str, m0: nnx.Module, m1: nnx.Module) -> None:
    """``ValueError`` naming the first parameter whose path or shape differs."""
    f0 = {"/".join(map(str, p)): tuple(v.shape) for p, v in nnx.to_flat_state(nnx.state(m0))}
    f1 = {"/".join(map(str, p)): tuple(v.shape) for p, v in nnx.to_flat_state(nnx.state(m1))}
    for k in sorted(set(f0) | set(f1)):
        if f0.get(k) != f1.get(k):
            raise ValueError(
                f"{func}: model0 and model1 must share the architecture; parameter {k!r} has "
                f"shape {f0.get(k)} vs {f1.get(k)}"
            )


@dataclass
class RetentionReport:
    """Retention of model 1 against model 0 on the retain conditions.

    Attributes:
      distances: ``{name: mean over every (condition, sample) pair}``.
      per_condition: ``{name: {condition: mean over its samples}}``.
      labels_kept: share of pairs the classifier labels the same (None without a classifier).
      samples0, samples1: the two sample sets, (conditions, n, H, W, C).
      conds: the condition ids. ssim_window: the SSIM window used. sampling: the settings.
    """

    distances: dict[str, float]
    per_condition: dict[str, dict[int, float]]
    labels_kept: float | None
    samples0: np.ndarray = field(repr=False)
    samples1: np.ndarray = field(repr=False)
    conds: tuple[int, ...] = ()
    ssim_window: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)


def retention_from_samples(
    samples0: np.ndarray,
    samples1: np.ndarray,
    conds: Sequence[int],
    classifier: DigitsClassifier | None,
    distances: Sequence[str] = DISTANCES,
) -> RetentionReport:
    """The :class:`RetentionReport` of two same-noise sample sets (conditions, n, H, W, C)."""
    unknown = [d for d in distances if d not in DISTANCES]
    if unknown or not distances:
        raise ValueError(f"retention: distances must be among {DISTANCES}, got {tuple(distances)}")
    if "cfd" in distances and classifier is None:
        raise ValueError("retention: classifier must be given for the 'cfd' distance, got None")
    k, n = samples0.shape[:2]
    a = samples0.reshape(k * n, *samples0.shape[2:])
    b = samples1.reshape(k * n, *samples1.shape[2:])
    fns = {
        "cfd": lambda: cfd(a, b, classifier),
        "rmse": lambda: pixel_rmse(a, b),
        "1-ssim": lambda: one_minus_ssim(a, b),
    }
    means, per = {}, {}
    for name in distances:
        d = fns[name]().reshape(k, n)
        means[name] = float(d.mean())
        per[name] = {int(c): float(row.mean()) for c, row in zip(conds, d)}
    kept = None
    if classifier is not None:
        kept = float(np.mean(classifier.predict(a) == classifier.predict(b)))
    return RetentionReport(
        means,
        per,
        kept,
        samples0,
        samples1,
        tuple(int(c) for c in conds),
        ssim_window(samples0.shape[2:]),
    )


def retention(
    model0: nnx.Module,
    model1: nnx.Module,
    retain_conds: Sequence[int],
    *,
    schedule: Any,
    classifier: DigitsClassifier | None = None,
    n_per_cond: int = 100,
    seed: int = 0,
    sampler: str = "ddim",
    steps: int = 50,
    guidance: float = 2.0,
    distances: Sequence[str] = DISTANCES,
    batch: int = 256,
    cache: bool = True,
    prompts: Any = None,
) -> RetentionReport:
    """Same-noise retention of ``model1`` against ``model0`` on ``retain_conds`` (class labels,
    or prompt ids of the :class:`~diff_unlearn.data.PromptTable` ``prompts``).

    Model 0's samples are cached by (fingerprint, conditions, sampling settings), so many
    unlearned models are compared against one set.

    Example:
      >>> report = retention(
      ...     theta0, theta, (0, 1, 2), schedule=recipe.schedule(), classifier=clf, n_per_cond=20
      ... )  # doctest: +SKIP
      >>> report.distances["rmse"]  # doctest: +SKIP
    """
    spec = SamplingSpec(
        schedule,
        n_per_cond=n_per_cond,
        seed=seed,
        sampler=sampler,
        steps=steps,
        guidance=guidance,
        batch=batch,
        func="retention",
        prompts=prompts,
    )
    unknown = [d for d in distances if d not in DISTANCES]
    if unknown or not distances:
        raise ValueError(f"retention: distances must be among {DISTANCES}, got {tuple(distances)}")
    if "cfd" in distances and classifier is None:
        raise ValueError("retention: classifier must be given for the 'cfd' distance, got None")
    check_same_architecture("retention", model0, model1)
    known = len(prompts) if prompts is not None else getattr(model0.config, "num_classes", None)
    conds = check_conds("retention", retain_conds, known or None)
    s0 = (
        ORIGINAL_CACHE.get(model0, conds, spec)
        if cache
        else same_noise_samples(model0, conds, spec)
    )
    s1 = same_noise_samples(model1, conds, spec)
    report = retention_from_samples(s0, s1, conds, classifier, distances)
    report.sampling = spec.describe()
    return report


def forget_efficacy(samples: np.ndarray, forget_conds: Sequence[int], classifier: DigitsClassifier):
    """``{"forget_prob", "forget_acc"}``: mean classifier probability of the conditioning
    (forgotten) class and the share classified as it, on samples (conditions, n, H, W, C)
    conditioned on ``forget_conds``. Lower is better forgetting."""
    k, n = samples.shape[:2]
    logits = classifier.logits(samples.reshape(k * n, *samples.shape[2:]))
    target = np.repeat(np.asarray(forget_conds), n)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return {
        "forget_prob": float(np.mean(p[np.arange(k * n), target])),
        "forget_acc": float(np.mean(np.argmax(logits, axis=1) == target)),
    }


def retain_alignment(
    samples: np.ndarray, retain_conds: Sequence[int], classifier: DigitsClassifier
) -> float:
    """Classifier alignment: share of retain samples (conditions, n, ...) classified as their
    condition."""
    k, n = samples.shape[:2]
    pred = classifier.predict(samples.reshape(k * n, *samples.shape[2:]))
    return float(np.mean(pred == np.repeat(np.asarray(retain_conds), n)))


def retain_fd(samples: np.ndarray, reference: np.ndarray, classifier: DigitsClassifier) -> float:
    """FD-digits: diff-pixel's DFD between retain samples (conditions, n, ...) and real held-out
    retain images ``reference`` (N, H, W, C)."""
    k, n = samples.shape[:2]
    return digits_feature_distance(
        samples.reshape(k * n, *samples.shape[2:]), classifier, reference
    )
