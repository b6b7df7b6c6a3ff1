"""SceneFeatureNet: a small CNN trained in the package on procedural scene renders, and the two
feature metrics computed with it.

No pretrained perceptual network can be fetched here, so the yardstick of the feature metrics is
trained in-package (about a minute on 2 CPU cores) and saved with the run. The figures computed with
it are named for what they are, **scene-feature distance** and **Fréchet scene-feature
distance**; they are neither LPIPS nor FID and are not comparable with published values of those.

Network (images ``(N, h, w, 3)`` in [0, 1], ``h`` and ``w`` multiples of 8; ``x ↦ 2x − 1``): four
stages, each one 3×3 convolution + ReLU, with 32, 64, 128, 128 channels and strides 1, 2, 2, 2
(at 32²: 32², 16², 8², 4²). Heads, trained jointly on ``SceneDataset`` views:

* the number of visible objects (classes ``0 .. max_count``; cross-entropy) from the pooled last
  stage;
* the colour of the largest visible object (RGB in [0, 1], sigmoid; squared error, only on views
  that show an object) from the pooled last stage;
* a coarse instance-occupancy map: the share of each 4×4 pixel block covered by objects
  (instance id ≥ 1), ``h/4 × w/4`` (8×8 at 32²), predicted by a 1×1 convolution on stage 3
  (sigmoid cross-entropy).

``feature_distance(net, a, b)`` is the LPIPS-like form (Zhang et al., arXiv 1801.03924) without
learned layer weights: each stage's activations are normalised to unit length over channels at
every pixel, the squared difference is summed over channels and averaged over pixels, and the four
stage values are averaged. It is exactly 0 for identical images and exactly symmetric.
``frechet_feature_distance(net, a, b)`` is ``diff_core.metrics.frechet_distance`` between the
spatially averaged last-stage features (128-d) of two image sets (Heusel et al.'s form, arXiv
1706.08500, on this network).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diff_pixel.nn.init import jax_lecun_normal
from diff_protocol.errors import arg_error
from diff_protocol.io import atomic_write

__all__ = [
    "FeatureNetConfig",
    "SceneFeatureNet",
    "feature_distance",
    "feature_targets",
    "frechet_feature_distance",
    "load_feature_net",
    "pooled_features",
    "save_feature_net",
    "stage_features",
    "train_feature_net",
]

FEATURE_FILE = "feature_net.npz"


@dataclass(frozen=True)
class FeatureNetConfig:
    """Architecture and training of :class:`SceneFeatureNet` (all our defaults).

    ``steps`` 2000 at ``batch`` 32 (Adam ``lr`` 1e-3, constant) is the spec's budget; tests use
    1000. ``max_count`` is the largest visible-object count class (counts above are clipped).
    """

    channels: tuple[int, ...] = (32, 64, 128, 128)
    max_count: int = 7
    steps: int = 2000
    batch: int = 32
    lr: float = 1e-3
    colour_weight: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        ch = tuple(self.channels)
        if len(ch) != 4 or not all(isinstance(c, int) and c >= 1 for c in ch):
            raise arg_error("FeatureNetConfig", "channels", "four positive ints", repr(ch))
        object.__setattr__(self, "channels", ch)
        for name in ("max_count", "steps", "batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise arg_error("FeatureNetConfig", name, "an int >= 1", repr(v))
        for name in ("lr", "colour_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise arg_error("FeatureNetConfig", name, "a positive number", repr(v))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureNetConfig:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "channels" in kw:
            kw["channels"] = tuple(kw["channels"])
        return cls(**kw)


class SceneFeatureNet(nnx.Module):
    """The 4-stage CNN (see the module docstring). ``stages(x)`` gives the four activations,
    ``__call__(x)`` the head outputs ``(count_logits, colour, occupancy_logits)``."""

    def __init__(self, config: FeatureNetConfig | None = None, *, rngs: nnx.Rngs) -> None:
        self.config = config = config or FeatureNetConfig()
        ch = config.channels
        ins = (3, *ch[:-1])
        self.convs = nnx.List(
            [
                nnx.Conv(
                    ci,
                    co,
                    (3, 3),
                    strides=(1, 1) if i == 0 else (2, 2),
                    padding="SAME",
                    kernel_init=jax_lecun_normal(),
                    rngs=rngs,
                )
                for i, (ci, co) in enumerate(zip(ins, ch))
            ]
        )
        self.count_head = nnx.Linear(ch[3], config.max_count + 1, rngs=rngs)
        self.colour_head = nnx.Linear(ch[3], 3, rngs=rngs)
        self.occupancy_head = nnx.Conv(ch[2], 1, (1, 1), kernel_init=jax_lecun_normal(), rngs=rngs)

    def stages(self, x: jax.Array) -> list[jax.Array]:
        """The four stage activations (after ReLU) of images ``(N, h, w, 3)`` in [0, 1]."""
        h = 2.0 * x - 1.0
        out = []
        for conv in self.convs:
            h = jax.nn.relu(conv(h))
            out.append(h)
        return out

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        s = self.stages(x)
        pooled = s[3].mean(axis=(1, 2))
        occ = self.occupancy_head(s[2])[..., 0]
        return self.count_head(pooled), jax.nn.sigmoid(self.colour_head(pooled)), occ


# --------------------------------------------------------------------------------------------------
# inputs


def _check_net(func: str, net: Any) -> SceneFeatureNet:
    if not isinstance(net, SceneFeatureNet):
        raise arg_error(func, "net", "a SceneFeatureNet", type(net).__name__, TypeError)
    return net


def _views(func: str, name: str, images: Any) -> np.ndarray:
    try:
        x = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError):
        raise arg_error(func, name, "images shaped (..., h, w, 3)", images) from None
    if x.ndim < 4 or x.shape[-1] != 3:
        raise arg_error(func, name, "images shaped (..., h, w, 3) (ndim >= 4)", f"{x.shape}")
    if x.shape[-3] % 8 or x.shape[-2] % 8 or x.shape[-3] == 0:
        raise arg_error(func, name, "images whose height and width are multiples of 8", x.shape)
    if x.size == 0:
        raise arg_error(func, name, "a non-empty array", f"shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise arg_error(func, name, "finite", f"{int(np.sum(~np.isfinite(x)))} non-finite values")
    return x.reshape(-1, *x.shape[-3:])


@jax.jit
def _stages_fn(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array) -> list[jax.Array]:
    return nnx.merge(graphdef, state).stages(x)


def _normalised_stages(net: SceneFeatureNet, x: np.ndarray, chunk: int) -> list[np.ndarray]:
    graphdef, state = nnx.split(net)
    outs: list[list[np.ndarray]] = [[], [], [], []]
    for i in range(0, x.shape[0], chunk):
        xb = x[i : i + chunk]
        n = xb.shape[0]
        if n < chunk and x.shape[0] > chunk:  # keep one compiled shape
            xb = np.concatenate([xb, np.zeros((chunk - n, *xb.shape[1:]), xb.dtype)])
        for k, f in enumerate(_stages_fn(graphdef, state, jnp.asarray(xb))):
            f = np.asarray(f, np.float64)[:n]
            norm = np.sqrt(np.sum(f * f, axis=-1, keepdims=True))
            outs[k].append(f / (norm + 1e-10))
    return [np.concatenate(o) for o in outs]


def stage_features(net: SceneFeatureNet, images: Any, *, chunk: int = 256) -> list[np.ndarray]:
    """The four stage activations of ``images (..., h, w, 3)`` as numpy arrays ``(N, h_k, w_k,
    C_k)`` (leading axes flattened), unnormalised."""
    net = _check_net("stage_features", net)
    x = _views("stage_features", "images", images)
    graphdef, state = nnx.split(net)
    outs: list[list[np.ndarray]] = [[], [], [], []]
    for i in range(0, x.shape[0], chunk):
        for k, f in enumerate(_stages_fn(graphdef, state, jnp.asarray(x[i : i + chunk]))):
            outs[k].append(np.asarray(f))
    return [np.concatenate(o) for o in outs]


def feature_distance(
    net: SceneFeatureNet, a: Any, b: Any, *, per_image: bool = False, chunk: int = 256
) -> Any:
    """Scene-feature distance between image sets ``a`` and ``b`` of the same shape
    ``(..., h, w, 3)`` in [0, 1], pairing image ``i`` of ``a`` with image ``i`` of ``b``.

    ``mean_k mean_pixels Σ_c (â_k − b̂_k)²`` with ``â_k`` the stage-``k`` activations normalised to
    unit length over channels at each pixel. Returns the mean over images (float64), or the
    ``(...)`` array of per-image values with ``per_image=True``. Not LPIPS (no learned weights, a
    network trained on procedural scenes); ``feature_distance(net, x, x) = 0`` exactly.
    """
    net = _check_net("feature_distance", net)
    x = _views("feature_distance", "a", a)
    y = _views("feature_distance", "b", b)
    if np.shape(a) != np.shape(b):
        raise arg_error("feature_distance", "b", f"shaped like a {np.shape(a)}", np.shape(b))
    fa = _normalised_stages(net, x, chunk)
    fb = _normalised_stages(net, y, chunk)
    per_stage = [np.mean(np.sum((p - q) ** 2, axis=-1), axis=(1, 2)) for p, q in zip(fa, fb)]
    d = np.mean(np.stack(per_stage), axis=0)
    if per_image:
        return d.reshape(np.shape(a)[:-3])
    return float(np.mean(d))


def pooled_features(net: SceneFeatureNet, images: Any, *, chunk: int = 256) -> np.ndarray:
    """Spatially averaged last-stage activations ``(N, 128)`` (float64) of ``images``."""
    net = _check_net("pooled_features", net)
    last = stage_features(net, images, chunk=chunk)[3]
    return last.astype(np.float64).mean(axis=(1, 2))


def frechet_feature_distance(net: SceneFeatureNet, set_a: Any, set_b: Any) -> float:
    """Fréchet scene-feature distance: ``diff_core.metrics.frechet_distance`` between Gaussians
    fitted to the pooled last-stage features of two image sets (each ``(..., h, w, 3)``, at least
    2 images; the sets may differ in size). Not FID: the network is :class:`SceneFeatureNet`."""
    from diff_core.metrics import frechet_distance

    net = _check_net("frechet_feature_distance", net)
    fa = pooled_features(net, _views("frechet_feature_distance", "set_a", set_a))
    fb = pooled_features(net, _views("frechet_feature_distance", "set_b", set_b))
    for name, f in (("set_a", fa), ("set_b", fb)):
        if f.shape[0] < 2:
            raise arg_error("frechet_feature_distance", name, "at least 2 images", f.shape[0])
    return float(frechet_distance(fa, fb))


# --------------------------------------------------------------------------------------------------
# training


def feature_targets(arrays: Mapping[str, Any], max_count: int = 7) -> dict[str, np.ndarray]:
    """Training targets of every view of a stacked ``SceneDataset`` batch.

    ``arrays`` needs ``images (N, V, h, w, 3)``, ``instance (N, V, h, w)`` and ``colours (N, K,
    3)``. Returns flat per-view arrays: ``images (M, h, w, 3)``, ``count (M,)`` (visible objects,
    clipped to ``max_count``), ``colour (M, 3)`` and ``has_object (M,)`` (the largest visible
    object's colour; zeros where none is visible), ``occupancy (M, h/4, w/4)`` (object share of
    each 4×4 block).
    """
    func = "feature_targets"
    missing = [k for k in ("images", "instance", "colours") if k not in arrays]
    if missing:
        raise arg_error(func, "arrays", "a dict with images, instance and colours", missing)
    images = np.asarray(arrays["images"], np.float32)
    inst = np.asarray(arrays["instance"])
    colours = np.asarray(arrays["colours"], np.float32)
    if images.ndim != 5 or inst.shape != images.shape[:-1]:
        raise arg_error(
            func, "arrays", "images (N, V, h, w, 3) and instance (N, V, h, w)", images.shape
        )
    n, v, h, w, _ = images.shape
    if h % 8 or w % 8:
        raise arg_error(func, "arrays['images']", "height and width multiples of 8", (h, w))
    if colours.ndim != 3 or colours.shape[0] != n:
        raise arg_error(func, "arrays['colours']", f"shape ({n}, K, 3)", colours.shape)
    k = colours.shape[1]
    counts = np.zeros((n, v, k), np.int64)  # visible pixels of each object, in scene chunks
    flat = inst.reshape(n, v, -1)
    for s in range(0, n, 256):
        for j in range(k):
            counts[s : s + 256, :, j] = (flat[s : s + 256] == j + 1).sum(axis=-1)
    visible = counts > 0
    count = np.minimum(visible.sum(-1), max_count).astype(np.int32)
    largest = np.argmax(counts, axis=-1)  # (N, V)
    colour = np.take_along_axis(colours[:, None], largest[..., None, None], axis=2)[:, :, 0]
    has = visible.any(-1)
    colour = np.where(has[..., None], colour, 0.0).astype(np.float32)
    occ = (inst >= 1).reshape(n, v, h // 4, 4, w // 4, 4).mean(axis=(3, 5)).astype(np.float32)
    return {
        "images": images.reshape(n * v, h, w, 3),
        "count": count.reshape(-1),
        "colour": colour.reshape(-1, 3),
        "has_object": has.reshape(-1),
        "occupancy": occ.reshape(n * v, h // 4, w // 4),
    }


def _loss(net: SceneFeatureNet, batch: dict[str, jax.Array], colour_weight: float):
    logits, colour, occ = net(batch["images"])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["count"]).mean()
    has = batch["has_object"].astype(jnp.float32)
    col = jnp.sum(has[:, None] * (colour - batch["colour"]) ** 2) / jnp.maximum(3 * has.sum(), 1)
    bce = optax.sigmoid_binary_cross_entropy(occ, batch["occupancy"]).mean()
    total = ce + colour_weight * col + bce
    return total, {"count_ce": ce, "colour_mse": col, "occupancy_bce": bce}


def train_feature_net(
    arrays: Mapping[str, Any],
    config: FeatureNetConfig | None = None,
    *,
    steps: int | None = None,
    progress: bool = True,
    path: str | os.PathLike | None = None,
) -> tuple[SceneFeatureNet, dict[str, Any]]:
    """Train a :class:`SceneFeatureNet` on every view of a stacked ``SceneDataset`` batch.

    Args:
      arrays: ``images``, ``instance``, ``colours`` as from ``SceneDataset.arrays()``.
      config: :class:`FeatureNetConfig` (default: the spec's 2000 steps at batch 32).
      steps: overrides ``config.steps``.
      progress: a tqdm bar.
      path: if given, :func:`save_feature_net` writes the trained net there (atomic).

    Returns ``(net, history)``; ``history`` holds per-step ``loss`` and the final figures of the
    three heads on the training views (``count_accuracy``, ``colour_rmse``, ``occupancy_mae``
    over the last 256 views seen). Deterministic for a given seed.
    """
    config = config or FeatureNetConfig()
    if steps is not None:
        config = FeatureNetConfig.from_dict({**config.to_dict(), "steps": steps})
    t = feature_targets(arrays, config.max_count)
    m = t["images"].shape[0]
    net = SceneFeatureNet(config, rngs=nnx.Rngs(config.seed))
    opt = nnx.Optimizer(net, optax.adam(config.lr), wrt=nnx.Param)
    graphdef, state = nnx.split((net, opt))
    cw = float(config.colour_weight)

    @jax.jit
    def step(state: nnx.State, batch: dict[str, jax.Array]):
        model, optimizer = nnx.merge(graphdef, state)
        (loss, aux), grads = nnx.value_and_grad(_loss, has_aux=True)(model, batch, cw)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss, aux

    rng = np.random.default_rng([config.seed, 7])
    losses = []
    iterator = range(config.steps)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="scene-feature net", unit="step", leave=False)
    for _ in iterator:
        idx = rng.integers(0, m, size=config.batch)
        batch = {k: jnp.asarray(v[idx]) for k, v in t.items()}
        state, loss, _ = step(state, batch)
        losses.append(float(loss))
    net, _ = nnx.merge(graphdef, state)
    history = {"loss": losses, **_head_figures(net, t, rng)}
    if path is not None:
        save_feature_net(net, path, meta={"history_tail": losses[-20:]})
    return net, history


def _head_figures(net: SceneFeatureNet, t: dict[str, np.ndarray], rng) -> dict[str, float]:
    idx = rng.choice(t["images"].shape[0], size=min(256, t["images"].shape[0]), replace=False)
    logits, colour, occ = net(jnp.asarray(t["images"][idx]))
    has = t["has_object"][idx]
    err = (np.asarray(colour) - t["colour"][idx])[has]
    return {
        "count_accuracy": float(np.mean(np.argmax(np.asarray(logits), -1) == t["count"][idx])),
        "colour_rmse": float(np.sqrt(np.mean(err**2))) if err.size else float("nan"),
        "occupancy_mae": float(
            np.mean(np.abs(np.asarray(jax.nn.sigmoid(occ)) - t["occupancy"][idx]))
        ),
    }


# --------------------------------------------------------------------------------------------------
# persistence


def save_feature_net(
    net: SceneFeatureNet, path: str | os.PathLike, *, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write the parameters and config to ``path`` (``.npz``, no pickle; atomic). A folder path
    gets ``feature_net.npz`` inside it."""
    net = _check_net("save_feature_net", net)
    path = Path(path)
    if path.suffix != ".npz":
        path = path / FEATURE_FILE
    _, state = nnx.split(net, nnx.Param)
    flat = {"/".join(str(k) for k in key): np.asarray(v) for key, v in nnx.to_flat_state(state)}
    info = json.dumps({"config": net.config.to_dict(), **dict(meta or {})})
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array(info), **{f"param:{k}": v for k, v in flat.items()})
    atomic_write(path, buf.getvalue())
    return path


def load_feature_net(path: str | os.PathLike) -> SceneFeatureNet:
    """Read a net written by :func:`save_feature_net` (a ``.npz`` or a folder holding
    ``feature_net.npz``; ``allow_pickle=False``)."""
    path = Path(path)
    if path.is_dir():
        path = path / FEATURE_FILE
    if not path.is_file():
        raise arg_error(
            "load_feature_net", "path", "an existing feature_net.npz (or its folder)", str(path)
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            arrays = {k[6:]: np.asarray(data[k]) for k in data.files if k.startswith("param:")}
    except (OSError, ValueError, KeyError) as err:
        raise arg_error(
            "load_feature_net", "path", "a file written by save_feature_net", f"{path} ({err})"
        ) from None
    net = SceneFeatureNet(FeatureNetConfig.from_dict(meta["config"]), rngs=nnx.Rngs(0))
    _, state = nnx.split(net, nnx.Param)
    flat = []
    for key, v in nnx.to_flat_state(state):
        name = "/".join(str(k) for k in key)
        if name not in arrays or arrays[name].shape != np.shape(v):
            raise arg_error(
                "load_feature_net", "path", "a file written by save_feature_net", f"no {name!r}"
            )
        flat.append((key, jnp.asarray(arrays[name])))
    nnx.update(net, nnx.from_flat_state(flat))
    return net
