"""A small CNN trained here on the digits train split: the yardstick of the digits metrics.

Architecture (16×16×1 input): Conv3×3(16) → ReLU → AvgPool2 → Conv3×3(32) → ReLU → AvgPool2 →
Dense(64) → ReLU (the 64-d *features*) → Dense(10). Trained with AdamW
(lr 2e−3, weight decay 1e−4), batch 64, random ±1-pixel shifts (background padding −1), for
``epochs`` passes over the 1437 training digits; everything is seeded, so the same seed gives
the same classifier. Images of other sizes are resized to 16×16 (bilinear, anti-aliased) first.

No pretrained network is involved: the classifier is trained in the package in about 20 CPU
seconds, and metrics computed with it are named for what they are (class accuracy, DFD), never
FID.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diff_pixel.data.digits import digits
from diff_pixel.nn.init import jax_lecun_normal
from diff_protocol.io import atomic_write

__all__ = ["DigitsCNN", "DigitsClassifier", "train_digits_classifier"]

_SIZE = 16


class DigitsCNN(nnx.Module):
    """The classifier network (see the module docstring)."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        # Flax's default kernel values, drawn flat (compile time; diff_pixel.nn.init)
        self.conv1 = nnx.Conv(
            1, 16, (3, 3), padding="SAME", kernel_init=jax_lecun_normal(), rngs=rngs
        )
        self.conv2 = nnx.Conv(
            16, 32, (3, 3), padding="SAME", kernel_init=jax_lecun_normal(), rngs=rngs
        )
        self.dense1 = nnx.Linear(4 * 4 * 32, 64, rngs=rngs)
        self.dense2 = nnx.Linear(64, 10, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """64-d features (the hidden dense layer after its ReLU) of (B, 16, 16, 1) images."""
        h = jax.nn.relu(self.conv1(x))
        h = nnx.avg_pool(h, (2, 2), strides=(2, 2))
        h = jax.nn.relu(self.conv2(h))
        h = nnx.avg_pool(h, (2, 2), strides=(2, 2))
        return jax.nn.relu(self.dense1(h.reshape(h.shape[0], -1)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dense2(self.features(x))


def _prepare(images: Any, func: str) -> jax.Array:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.shape[0] == 0:
        raise ValueError(
            f"{func}: images must have shape (N, H, W, 1) (or 3 channels), got {np.shape(images)}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{func}: images must be finite, got NaN or inf values")
    if x.shape[-1] == 3:
        x = x.mean(axis=-1, keepdims=True)
    if x.shape[1:3] != (_SIZE, _SIZE):
        x = np.asarray(
            jax.image.resize(
                jnp.asarray(x), (x.shape[0], _SIZE, _SIZE, 1), "linear", antialias=True
            )
        )
    return jnp.asarray(x)


@jax.jit
def _apply(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    model = nnx.merge(graphdef, state)
    f = model.features(x)
    return f, model.dense2(f)


class DigitsClassifier:
    """A trained :class:`DigitsCNN` with its test accuracy; saved and loaded as ``.npz``."""

    def __init__(self, model: DigitsCNN, test_accuracy: float, meta: dict[str, Any]) -> None:
        self.graphdef, self.state = nnx.split(model)
        self.test_accuracy = float(test_accuracy)
        self.meta = dict(meta)

    def _run(self, images: Any, func: str, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
        x = _prepare(images, func)
        feats, logits = [], []
        for i in range(0, x.shape[0], batch):
            f, lg = _apply(self.graphdef, self.state, x[i : i + batch])
            feats.append(np.asarray(f))
            logits.append(np.asarray(lg))
        return np.concatenate(feats), np.concatenate(logits)

    def features(self, images: Any) -> np.ndarray:
        """(N, 64) float32 features of images in [−1, 1]."""
        return self._run(images, "DigitsClassifier.features")[0]

    def logits(self, images: Any) -> np.ndarray:
        """(N, 10) class logits."""
        return self._run(images, "DigitsClassifier.logits")[1]

    def predict(self, images: Any) -> np.ndarray:
        """(N,) int predicted digit."""
        return np.argmax(self.logits(images), axis=-1)

    def save(self, path: str | os.PathLike) -> Path:
        """Write parameters and metadata to ``path`` (``.npz``, no pickle; atomic)."""
        import io

        path = Path(path)
        flat = {
            "/".join(str(k) for k in key): np.asarray(v) for key, v in nnx.to_flat_state(self.state)
        }
        meta = json.dumps({**self.meta, "test_accuracy": self.test_accuracy})
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.array(meta), **{f"param:{k}": v for k, v in flat.items()})
        atomic_write(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> DigitsClassifier:
        """Read a classifier written by :meth:`save` (``allow_pickle=False``)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(
                f"DigitsClassifier.load: path must be an existing .npz file, got {str(path)!r}"
            )
        with np.load(path, allow_pickle=False) as data:
            if "__meta__" not in data.files:
                raise ValueError(
                    "DigitsClassifier.load: path must hold a digits classifier, "
                    f"got a file without metadata: {str(path)!r}"
                )
            meta = json.loads(str(data["__meta__"]))
            arrays = {
                k[len("param:") :]: np.asarray(data[k])
                for k in data.files
                if k.startswith("param:")
            }
        model = DigitsCNN(nnx.Rngs(0))
        graphdef, state = nnx.split(model)
        flat = []
        for key, v in nnx.to_flat_state(state):
            name = "/".join(str(k) for k in key)
            if name not in arrays or arrays[name].shape != np.shape(v):
                raise ValueError(
                    "DigitsClassifier.load: path must hold a digits classifier, "
                    f"got a file without a matching {name!r}"
                )
            flat.append((key, jnp.asarray(arrays[name])))
        nnx.update(model, nnx.from_flat_state(flat))
        test_accuracy = float(meta.pop("test_accuracy"))
        return cls(model, test_accuracy, meta)

    def __repr__(self) -> str:
        return f"DigitsClassifier(test_accuracy={self.test_accuracy:.4f}, {self.meta})"


def _shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random ±1-pixel shifts per image, background (−1) padding."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    dy = rng.integers(0, 3, n)
    dx = rng.integers(0, 3, n)
    rows = dy[:, None] + np.arange(h)[None]
    cols = dx[:, None] + np.arange(w)[None]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def train_digits_classifier(
    image_size: int = 16, seed: int = 0, epochs: int = 30, batch_size: int = 64
) -> DigitsClassifier:
    """Train the digits CNN on the train split and measure its test accuracy.

    Args:
      image_size: resolution of the digits it is trained on (resized to 16×16 internally).
      seed: parameter init, batch order and shift augmentation.
      epochs: passes over the 1437 training digits.
      batch_size: minibatch size (the last partial batch of an epoch is dropped).

    Returns:
      A :class:`DigitsClassifier`; ``test_accuracy`` on the 360 test digits (≥ 0.98 expected).

    Example:
      >>> clf = train_digits_classifier()
      >>> clf.test_accuracy > 0.98
      True
    """
    for name, v in (
        ("image_size", image_size),
        ("seed", seed),
        ("epochs", epochs),
        ("batch_size", batch_size),
    ):
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, np.integer))
            or v < (0 if name == "seed" else 1)
        ):
            raise ValueError(f"train_digits_classifier: {name} must be a positive int, got {v!r}")
    train, test = digits(image_size, "train"), digits(image_size, "test")
    x_train = np.asarray(_prepare(train.images, "train_digits_classifier"))
    y_train = train.labels.astype(np.int32)
    model = DigitsCNN(nnx.Rngs(seed))
    tx = optax.adamw(2e-3, weight_decay=1e-4)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    @jax.jit
    def step(state: nnx.State, x: jax.Array, y: jax.Array) -> nnx.State:
        m, opt = nnx.merge(graphdef, state)

        def loss(m: DigitsCNN) -> jax.Array:
            return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

        grads = nnx.grad(loss)(m)
        opt.update(m, grads)
        return nnx.state((m, opt))

    rng = np.random.default_rng([seed, 1])
    n = x_train.shape[0]
    per_epoch = n // batch_size
    for _ in range(epochs):
        perm = rng.permutation(n)
        xs = _shift(x_train[perm], rng)
        for b in range(per_epoch):
            sl = slice(b * batch_size, (b + 1) * batch_size)
            state = step(state, jnp.asarray(xs[sl]), jnp.asarray(y_train[perm][sl]))
    model, _ = nnx.merge(graphdef, state)
    clf = DigitsClassifier(
        model, 0.0, {"image_size": int(image_size), "seed": int(seed), "epochs": int(epochs)}
    )
    clf.test_accuracy = float(np.mean(clf.predict(test.images) == test.labels))
    return clf
