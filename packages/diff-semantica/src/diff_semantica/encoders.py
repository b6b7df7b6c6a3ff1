r"""Frozen image encoders: the condition of Semantica (arXiv 2405.14857).

Semantica conditions a diffusion model on the tokens of a pretrained, *frozen* image encoder
(the paper compares DINOv2, arXiv 2304.07193, and CLIP, arXiv 2103.00020). No pretrained
weights can be fetched here, so this module ships small encoders fitted or trained on the
offline data and loads a user's own weights:

* :class:`PCAEncoder` — principal components of the flattened image (one global token) and,
  with ``patch``, of non-overlapping patches with a shared basis (one token per patch after the
  global token). Fitted by an SVD in float64: deterministic.
* :class:`ConvEncoder` — three stride-2 conv blocks; tokens are the final feature-map positions
  after a mean-pooled token, projected to ``dim``. Trained by :func:`train_encoder` with SimCLR
  (Chen et al., arXiv 2002.05709; InfoNCE at temperature 0.2) or a group classifier.
* :class:`RandomProjectionEncoder` — a fixed Gaussian projection: the weakest baseline.
* :class:`CallableEncoder` — any user function ``images -> tokens`` (for example a JAX port of
  DINOv2 with locally stored weights).

Every encoder maps ``(B, H, W, C)`` images in [−1, 1] to tokens ``(B, K, D)`` under
``jax.lax.stop_gradient``; :meth:`FrozenEncoder.pooled` is the L2-normalised first token.
Their weights are :class:`diff_pixel.train.Frozen` variables (a trained
:class:`ConvEncoder` is frozen by :func:`diff_pixel.freeze` when it joins a model), so
diff-pixel's trainer gives them no gradient, optimiser state, weight decay or EMA copy.
:func:`save_encoder` / :func:`load_encoder` use ``config.json`` + ``params.safetensors``; nothing
is ever unpickled.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diff_pixel import Frozen, freeze
from diff_protocol import jax_normal, jax_uniform
from diff_protocol.io import atomic_write

__all__ = [
    "CallableEncoder",
    "ConvEncoder",
    "EmbeddingCache",
    "FrozenEncoder",
    "ImageEncoder",
    "PCAEncoder",
    "RandomProjectionEncoder",
    "encoder_from_config",
    "load_encoder",
    "save_encoder",
    "train_encoder",
]


@runtime_checkable
class ImageEncoder(Protocol):
    """What the conditioning needs from an encoder."""

    name: str
    num_tokens: int
    dim: int

    def __call__(self, images: jax.Array) -> jax.Array: ...  # (B, H, W, C) -> (B, K, D)

    def pooled(self, images: jax.Array) -> jax.Array: ...  # (B, D), L2-normalised


def _shape3(func: str, shape: Any) -> tuple[int, int, int]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{func}: image_shape must be (H, W, C), got {shape!r}") from None
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"{func}: image_shape must be (H, W, C) of positive ints, got {shape!r}")
    return out  # type: ignore[return-value]


def _pos_int(func: str, name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{func}: {name} must be a positive int, got {v!r}")
    return int(v)


class FrozenEncoder(nnx.Module):
    """Base class of the in-package encoders (the :class:`ImageEncoder` interface).

    Subclasses set ``kind`` (ClassVar), ``name``, ``num_tokens``, ``dim``, ``image_shape`` and
    implement the abstract ``_tokens(images)`` and ``config()`` (nnx modules are ``ABCMeta``
    classes, so a subclass missing either cannot be instantiated).
    """

    kind: ClassVar[str] = ""
    name: str
    num_tokens: int
    dim: int
    image_shape: tuple[int, int, int]

    @abc.abstractmethod
    def _tokens(self, images: jax.Array) -> jax.Array:
        """Token features ``(B, num_tokens, dim)`` of checked float32 images."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this encoder (saved with checkpoints)."""

    def check_images(self, func: str, images: Any) -> jax.Array:
        """``images`` as float32, ``ValueError`` unless shaped ``(B, *image_shape)``."""
        shape = tuple(getattr(images, "shape", ()))
        if len(shape) != 4 or shape[1:] != tuple(self.image_shape):
            raise ValueError(
                f"{func}: images must have shape (B, {', '.join(map(str, self.image_shape))}) "
                f"for the {self.name} encoder, got {shape}"
            )
        return jnp.asarray(images, jnp.float32)

    def __call__(self, images: Any) -> jax.Array:
        """Tokens ``(B, K, D)`` under ``stop_gradient``."""
        x = self.check_images(f"{type(self).__name__}", images)
        return jax.lax.stop_gradient(self._tokens(x))

    def pooled(self, images: Any) -> jax.Array:
        """The first (global) token, L2-normalised: ``(B, D)``."""
        t = self(images)[:, 0, :]
        return t / jnp.maximum(jnp.linalg.norm(t, axis=-1, keepdims=True), 1e-12)

    def fingerprint(self) -> str:
        """SHA-256 of the configuration and every weight (keys :class:`EmbeddingCache`)."""
        h = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode())
        for path, var in sorted(_flat_arrays(self).items()):
            h.update(path.encode())
            h.update(np.ascontiguousarray(var).tobytes())
        return h.hexdigest()[:16]


def _flat_arrays(module: nnx.Module) -> dict[str, np.ndarray]:
    """``{"a/b/c": array}`` of every variable of ``module``."""
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(module)):
        out["/".join(map(str, path))] = np.asarray(var.get_value())
    return out


# -------------------------------------------------------------------------------- PCA


def _patches(x: jax.Array, p: int) -> jax.Array:
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


class PCAEncoder(FrozenEncoder):
    """Principal-component tokens: ``[(x − μ) V_g] + [(patch_k − μ_p) V_p for each patch]``.

    Build with :meth:`fit`. ``V_g`` holds the top ``dim`` right singular vectors of the centred
    flattened images; with ``patch`` the patch tokens share one basis ``V_p`` fitted on every
    non-overlapping ``patch × patch`` patch of every image.
    """

    kind: ClassVar[str] = "pca"

    def __init__(self, image_shape: Any, dim: int = 24, patch: int | None = None) -> None:
        self.image_shape = _shape3("PCAEncoder", image_shape)
        self.dim = _pos_int("PCAEncoder", "dim", dim)
        h, w, c = self.image_shape
        if dim > h * w * c:
            raise ValueError(f"PCAEncoder: dim must be <= H*W*C = {h * w * c}, got {dim}")
        if patch is not None:
            patch = _pos_int("PCAEncoder", "patch", patch)
            if h % patch or w % patch or dim > patch * patch * c:
                raise ValueError(
                    f"PCAEncoder: patch must divide H and W and patch*patch*C >= dim, got "
                    f"patch={patch} for image_shape {self.image_shape}, dim={dim}"
                )
        self.patch = patch
        self.num_tokens = 1 + (0 if patch is None else (h // patch) * (w // patch))
        self.name = f"pca{dim}" + ("" if patch is None else f"-p{patch}")
        self.mean = Frozen(jnp.zeros((h * w * c,), jnp.float32))
        self.basis = Frozen(jnp.zeros((h * w * c, dim), jnp.float32))
        if patch is not None:
            self.patch_mean = Frozen(jnp.zeros((patch * patch * c,), jnp.float32))
            self.patch_basis = Frozen(jnp.zeros((patch * patch * c, dim), jnp.float32))

    @staticmethod
    def _pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
        mu = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
        v = vt[:dim].T
        # a fixed sign per component (largest |entry| positive): the fit is deterministic
        signs = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
        return mu, v * np.where(signs == 0, 1.0, signs)

    @classmethod
    def fit(cls, images: Any, dim: int = 24, patch: int | None = None) -> PCAEncoder:
        """Fit on ``images`` ``(n, H, W, C)`` (float64 SVD)."""
        x = np.asarray(images, np.float64)
        if x.ndim != 4 or x.shape[0] < 2:
            raise ValueError(f"PCAEncoder.fit: images must be (n >= 2, H, W, C), got {x.shape}")
        enc = cls(x.shape[1:], dim, patch)
        if dim > x.shape[0]:
            raise ValueError(f"PCAEncoder.fit: dim must be <= n = {x.shape[0]}, got {dim}")
        mu, v = cls._pca(x.reshape(x.shape[0], -1), dim)
        enc.mean[...] = jnp.asarray(mu, jnp.float32)
        enc.basis[...] = jnp.asarray(v, jnp.float32)
        if patch is not None:
            pt = np.asarray(_patches(jnp.asarray(x), patch), np.float64)
            pmu, pv = cls._pca(pt.reshape(-1, pt.shape[-1]), dim)
            enc.patch_mean[...] = jnp.asarray(pmu, jnp.float32)
            enc.patch_basis[...] = jnp.asarray(pv, jnp.float32)
        return enc

    def _tokens(self, images: jax.Array) -> jax.Array:
        b = images.shape[0]
        g = (images.reshape(b, -1) - self.mean[...]) @ self.basis[...]
        tokens = g[:, None, :]
        if self.patch is not None:
            pt = (_patches(images, self.patch) - self.patch_mean[...]) @ self.patch_basis[...]
            tokens = jnp.concatenate([tokens, pt], axis=1)
        return tokens

    def config(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape), "dim": self.dim, "patch": self.patch}


# -------------------------------------------------------------------------------- random


class RandomProjectionEncoder(FrozenEncoder):
    """``x ↦ x_flat W`` with a fixed ``W ~ N(0, 1/(HWC))`` from ``seed``: one token."""

    kind: ClassVar[str] = "random"

    def __init__(self, image_shape: Any, dim: int = 24, seed: int = 0) -> None:
        self.image_shape = _shape3("RandomProjectionEncoder", image_shape)
        self.dim = _pos_int("RandomProjectionEncoder", "dim", dim)
        self.seed = int(seed)
        self.num_tokens = 1
        self.name = f"random{dim}"
        n = math.prod(self.image_shape)
        w = np.random.default_rng(self.seed).standard_normal((n, self.dim)) / math.sqrt(n)
        self.weight = Frozen(jnp.asarray(w, jnp.float32))

    def _tokens(self, images: jax.Array) -> jax.Array:
        return (images.reshape(images.shape[0], -1) @ self.weight[...])[:, None, :]

    def config(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape), "dim": self.dim, "seed": self.seed}


# -------------------------------------------------------------------------------- conv


class ConvEncoder(FrozenEncoder):
    """Three stride-2 3×3 conv blocks (GELU, LayerNorm over channels); tokens = [mean-pooled
    feature, every final position], each through ``Linear(widths[-1] → dim)``."""

    kind: ClassVar[str] = "conv"

    def __init__(
        self,
        image_shape: Any,
        widths: tuple[int, ...] = (32, 64, 128),
        dim: int = 128,
        *,
        seed: int = 0,
    ) -> None:
        self.image_shape = _shape3("ConvEncoder", image_shape)
        widths = tuple(_pos_int("ConvEncoder", "widths", w) for w in widths)
        if not widths:
            raise ValueError("ConvEncoder: widths must hold at least one width, got ()")
        self.widths = widths
        self.dim = _pos_int("ConvEncoder", "dim", dim)
        self.seed = int(seed)
        rngs = nnx.Rngs(self.seed)
        chans = (self.image_shape[2],) + widths
        self.convs = nnx.List(
            [
                nnx.Conv(a, b, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
                for a, b in zip(chans[:-1], chans[1:], strict=True)
            ]
        )
        self.norms = nnx.List([nnx.LayerNorm(w, rngs=rngs) for w in widths])
        self.proj = nnx.Linear(widths[-1], dim, rngs=rngs)
        h, w = self.image_shape[:2]
        for _ in widths:
            h, w = -(-h // 2), -(-w // 2)
        self.num_tokens = 1 + h * w
        self.name = f"conv{dim}"

    def _tokens(self, images: jax.Array) -> jax.Array:
        x = images
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = jax.nn.gelu(norm(conv(x)))
        b = x.shape[0]
        feats = x.reshape(b, -1, x.shape[-1])
        feats = jnp.concatenate([feats.mean(axis=1, keepdims=True), feats], axis=1)
        return self.proj(feats)

    def config(self) -> dict[str, Any]:
        return {
            "image_shape": list(self.image_shape),
            "widths": list(self.widths),
            "dim": self.dim,
            "seed": self.seed,
        }


# -------------------------------------------------------------------------------- callable


class CallableEncoder(FrozenEncoder):
    """Wrap any function ``images (B, H, W, C) -> tokens (B, num_tokens, dim)``.

    The function is static (its weights, if any, live inside it and are never trained).
    """

    kind: ClassVar[str] = "callable"

    def __init__(
        self,
        fn: Callable[[jax.Array], jax.Array],
        num_tokens: int,
        dim: int,
        name: str = "callable",
        *,
        image_shape: Any,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"CallableEncoder: fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.num_tokens = _pos_int("CallableEncoder", "num_tokens", num_tokens)
        self.dim = _pos_int("CallableEncoder", "dim", dim)
        self.name = str(name)
        self.image_shape = _shape3("CallableEncoder", image_shape)

    def _tokens(self, images: jax.Array) -> jax.Array:
        out = jnp.asarray(self.fn(images))
        want = (images.shape[0], self.num_tokens, self.dim)
        if tuple(out.shape) != want:
            raise TypeError(
                f"CallableEncoder: fn must return tokens of shape (B, K, D) = {want}, got "
                f"{tuple(out.shape)}"
            )
        return out.astype(jnp.float32)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_tokens": self.num_tokens,
            "dim": self.dim,
            "image_shape": list(self.image_shape),
        }


# -------------------------------------------------------------------------------- training


def _augment(key: jax.Array, x: jax.Array) -> jax.Array:
    """SimCLR-style views (our defaults): a random shift of up to 2 px (8×8) or a random resized
    crop (zoom 1–1.6 at a random position, larger images), Gaussian noise 0.05, brightness and
    contrast jitter 0.2; clipped to [−1, 1]."""
    b, h, w, c = x.shape
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    if h <= 16:
        shifts = jax.random.randint(k1, (b, 2), 0, 5)
        padded = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-1.0)
        x = jax.vmap(lambda im, s: jax.lax.dynamic_slice(im, (s[0], s[1], 0), (h, w, c)))(
            padded, shifts
        )
    else:
        zoom = jax.random.uniform(k1, (b,), minval=1.0, maxval=1.6)
        frac = jax.random.uniform(k2, (b, 2))

        def crop(im: jax.Array, s: jax.Array, f: jax.Array) -> jax.Array:
            t = jnp.stack([(h - s * h) * f[0], (w - s * w) * f[1]])
            return jax.image.scale_and_translate(
                im, (h, w, c), (0, 1), jnp.stack([s, s]), t, method="linear"
            )

        x = jax.vmap(crop)(x, zoom, frac)
    x = x + 0.05 * jax_normal(k3, x.shape)
    bright = jax_uniform(k4, (b, 1, 1, 1), minval=-0.2, maxval=0.2)
    contrast = jax_uniform(k5, (b, 1, 1, 1), minval=0.8, maxval=1.2)
    mu = x.mean(axis=(1, 2, 3), keepdims=True)
    return jnp.clip((x - mu) * contrast + mu + bright, -1.0, 1.0)


def _info_nce(z1: jax.Array, z2: jax.Array, temperature: float) -> jax.Array:
    """NT-Xent of SimCLR (arXiv 2002.05709, eq. 1) over the 2B views."""
    z = jnp.concatenate([z1, z2], axis=0)
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits = jnp.where(jnp.eye(2 * n, dtype=bool), -1e9, logits)
    target = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    return optax.softmax_cross_entropy_with_integer_labels(logits, target).mean()


class _WithHead(nnx.Module):
    def __init__(self, encoder: ConvEncoder, n_groups: int, seed: int) -> None:
        self.encoder = encoder
        self.head = nnx.Linear(encoder.dim, n_groups, rngs=nnx.Rngs(seed + 1))


def train_encoder(
    encoder: ConvEncoder,
    images: Any,
    groups: Any = None,
    *,
    kind: str = "simclr",
    steps: int = 500,
    batch_size: int = 256,
    lr: float = 1e-3,
    temperature: float = 0.2,
    seed: int = 0,
    progress: bool = False,
) -> ConvEncoder:
    """Train a :class:`ConvEncoder` and return it frozen (:func:`diff_pixel.freeze`).

    ``kind="simclr"``: InfoNCE between two augmented views of each image (temperature 0.2).
    ``kind="classifier"``: cross-entropy of a linear head on the pooled token against ``groups``
    (the head is discarded). A classifier encoder leaks the group label into the condition: the
    held-out-group protocol must use a SimCLR or PCA encoder fitted on the training groups only.
    Adam with ``lr``; batch ``b`` of step ``s`` is drawn from ``default_rng([seed, s])``.
    """
    from tqdm.auto import tqdm

    if not isinstance(encoder, ConvEncoder):
        raise TypeError(
            f"train_encoder: encoder must be a ConvEncoder, got {type(encoder).__name__}"
        )
    if kind not in ("simclr", "classifier"):
        raise ValueError(f"train_encoder: kind must be 'simclr' or 'classifier', got {kind!r}")
    steps = _pos_int("train_encoder", "steps", steps)
    batch_size = _pos_int("train_encoder", "batch_size", batch_size)
    x_all = np.asarray(images, np.float32)
    encoder.check_images("train_encoder", x_all[:1])
    n = x_all.shape[0]
    if kind == "classifier":
        if groups is None:
            raise ValueError("train_encoder: groups must be given for kind='classifier', got None")
        g_all = np.asarray(groups, np.int32)
        if g_all.shape != (n,):
            raise ValueError(f"train_encoder: groups must have shape ({n},), got {g_all.shape}")
        net: nnx.Module = _WithHead(encoder, int(g_all.max()) + 1, seed)
    else:
        g_all = np.zeros((n,), np.int32)
        net = encoder
    opt = nnx.Optimizer(net, optax.adam(lr), wrt=nnx.Param)
    graphdef, state = nnx.split((net, opt))

    @jax.jit
    def step(state: Any, x: jax.Array, g: jax.Array, key: jax.Array) -> tuple[Any, jax.Array]:
        net, opt = nnx.merge(graphdef, state)

        def loss_fn(net: nnx.Module) -> jax.Array:
            if kind == "simclr":
                k1, k2 = jax.random.split(key)
                z1 = net._tokens(_augment(k1, x))[:, 0]
                z2 = net._tokens(_augment(k2, x))[:, 0]
                return _info_nce(z1, z2, temperature)
            logits = net.head(net.encoder._tokens(_augment(key, x))[:, 0])
            return optax.softmax_cross_entropy_with_integer_labels(logits, g).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(net)
        opt.update(net, grads)
        return nnx.state((net, opt)), loss

    root = jax.random.key(seed)
    for s in tqdm(range(steps), desc=f"encoder[{kind}]", disable=not progress):
        idx = np.random.default_rng([seed, s]).integers(0, n, min(batch_size, n))
        state, _ = step(
            state, jnp.asarray(x_all[idx]), jnp.asarray(g_all[idx]), jax.random.fold_in(root, s)
        )
    net, _ = nnx.merge(graphdef, state)
    trained = net.encoder if kind == "classifier" else net
    return freeze(trained)


# -------------------------------------------------------------------------------- storage

_KINDS: dict[str, type[FrozenEncoder]] = {
    "pca": PCAEncoder,
    "random": RandomProjectionEncoder,
    "conv": ConvEncoder,
}


def encoder_from_config(description: Mapping[str, Any]) -> FrozenEncoder:
    """An encoder of the described architecture (``{"type", "config"}``) with placeholder (PCA:
    zero) or seed-initialised weights, frozen; :func:`load_encoder` then writes the weights."""
    if not isinstance(description, Mapping) or "type" not in description:
        raise ValueError(
            f"encoder_from_config: description must be a dict with 'type' and 'config', got "
            f"{description!r:.80}"
        )
    kind = description["type"]
    if kind not in _KINDS:
        raise ValueError(
            f"encoder_from_config: type must be one of {sorted(_KINDS)} (a CallableEncoder cannot "
            f"be rebuilt from a file), got {kind!r}"
        )
    cfg = dict(description.get("config", {}))
    if kind == "conv":
        cfg["widths"] = tuple(cfg.get("widths", (32, 64, 128)))
        return freeze(ConvEncoder(**cfg))
    return _KINDS[kind](**cfg)


def describe_encoder(encoder: FrozenEncoder) -> dict[str, Any]:
    """``{"type", "config"}`` of an in-package encoder."""
    if not isinstance(encoder, FrozenEncoder) or encoder.kind not in _KINDS:
        raise TypeError(
            f"save_encoder: encoder must be a PCAEncoder, ConvEncoder or RandomProjectionEncoder "
            f"(a CallableEncoder's function cannot be stored), got {type(encoder).__name__}"
        )
    return {"type": encoder.kind, "config": encoder.config()}


def save_encoder(encoder: FrozenEncoder, path: str | Path) -> Path:
    """Write ``path/config.json`` and ``path/params.safetensors`` (atomically)."""
    from safetensors.numpy import save

    desc = describe_encoder(encoder)
    path = Path(path)
    arrays = {k: np.ascontiguousarray(v) for k, v in _flat_arrays(encoder).items()}
    atomic_write(path / "params.safetensors", save(arrays, metadata={"format": "diff-semantica"}))
    atomic_write(path / "config.json", json.dumps(desc, indent=2, sort_keys=True))
    return path


def load_encoder(path: str | Path) -> FrozenEncoder:
    """Read an encoder written by :func:`save_encoder` (frozen). Pickles are never loaded."""
    from safetensors.numpy import load

    path = Path(path)
    cfg_file, params_file = path / "config.json", path / "params.safetensors"
    if not (path.is_dir() and cfg_file.is_file() and params_file.is_file()):
        raise ValueError(
            f"load_encoder: expected config.json and params.safetensors in {path}; pickles are "
            "not loaded"
        )
    try:
        desc = json.loads(cfg_file.read_text())
        arrays = load(params_file.read_bytes())
    except Exception as err:  # noqa: BLE001 - any parse failure names the file
        raise ValueError(f"load_encoder: {path} holds a damaged encoder ({err})") from None
    enc = encoder_from_config(desc)
    flat = nnx.to_flat_state(nnx.state(enc))
    by_path = {"/".join(map(str, p)): (p, v) for p, v in flat}
    if set(by_path) != set(arrays):
        raise ValueError(
            f"load_encoder: {params_file} must hold the variables {sorted(by_path)}, got "
            f"{sorted(arrays)}"
        )
    pairs = []
    for k, (p, var) in by_path.items():
        a = arrays[k]
        if tuple(a.shape) != tuple(var.shape):
            raise ValueError(
                f"load_encoder: variable {k!r} must have shape {tuple(var.shape)}, got {a.shape}"
            )
        pairs.append((p, var.replace(value=jnp.asarray(a, var.dtype))))
    nnx.update(enc, nnx.from_flat_state(pairs))
    return enc


# -------------------------------------------------------------------------------- cache


class EmbeddingCache:
    """Tokens and pooled embeddings of whole datasets, computed once per (encoder, images).

    Keyed by :meth:`FrozenEncoder.fingerprint` (or ``id`` for other encoders) and a hash of the
    image bytes; computed in batches of ``batch_size`` under one jitted function.
    """

    def __init__(self, batch_size: int = 1024) -> None:
        self.batch_size = _pos_int("EmbeddingCache", "batch_size", batch_size)
        self._store: dict[tuple[str, str, str], np.ndarray] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _key(encoder: Any) -> str:
        fp = getattr(encoder, "fingerprint", None)
        return fp() if callable(fp) else f"id{id(encoder)}"

    def _compute(self, encoder: Any, images: np.ndarray, what: str) -> np.ndarray:
        graphdef, state = nnx.split(encoder)

        @jax.jit
        def run(state: Any, x: jax.Array) -> jax.Array:
            enc = nnx.merge(graphdef, state)
            return enc.pooled(x) if what == "pooled" else enc(x)

        out = [
            np.asarray(run(state, jnp.asarray(images[a : a + self.batch_size])))
            for a in range(0, images.shape[0], self.batch_size)
        ]
        return np.concatenate(out)

    def get(self, encoder: Any, images: Any, what: str = "pooled") -> np.ndarray:
        """``encoder.pooled(images)`` (``what="pooled"``) or ``encoder(images)`` (``"tokens"``)."""
        if what not in ("pooled", "tokens"):
            raise ValueError(f"EmbeddingCache.get: what must be 'pooled' or 'tokens', got {what!r}")
        x = np.ascontiguousarray(images, np.float32)
        key = (self._key(encoder), hashlib.sha256(x.tobytes()).hexdigest()[:16], what)
        if key in self._store:
            self.hits += 1
            return self._store[key]
        self.misses += 1
        out = self._compute(encoder, x, what)
        out.setflags(write=False)
        self._store[key] = out
        return out
