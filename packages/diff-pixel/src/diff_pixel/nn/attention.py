"""Multi-head self- and cross-attention through ``jax.nn.dot_product_attention``.

Going through :func:`jax.nn.dot_product_attention` lets XLA use cuDNN's fused flash attention on
GPU (``implementation="cudnn"``) and its own fused softmax elsewhere, with one code path.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_pixel.nn import init as _init
from diff_pixel.nn.dropout import dropout
from diff_pixel.nn.norm import layer_norm
from diff_pixel.nn.rope import rope as apply_rope

__all__ = ["Attention", "CrossAttention", "force_attention_impl", "resolve_attention_impl"]

AttentionImpl = Literal["auto", "xla", "cudnn"]
_IMPLS = ("auto", "xla", "cudnn")
_FORCED: contextvars.ContextVar[str | None] = contextvars.ContextVar("attention_impl", default=None)


@contextlib.contextmanager
def force_attention_impl(impl: Literal["xla", "cudnn"]) -> Iterator[None]:
    """Within the context, every :class:`Attention` traced uses ``impl`` (e.g. XLA for cost
    analysis)."""
    if impl not in ("xla", "cudnn"):
        raise ValueError(f"force_attention_impl: impl must be 'xla' or 'cudnn', got {impl!r}")
    token = _FORCED.set(impl)
    try:
        yield
    finally:
        _FORCED.reset(token)


def resolve_attention_impl(impl: str, dtype: jnp.dtype, head_dim: int) -> str:
    """Pick the attention implementation.

    ``"auto"`` is ``"cudnn"`` when the default backend is GPU, ``dtype`` is bf16/fp16 and
    ``head_dim`` is at most 128 and a multiple of 8; otherwise ``"xla"``. ``"cudnn"`` off GPU is
    an error.
    """
    forced = _FORCED.get()
    if forced is not None:
        impl = forced
    if impl not in _IMPLS:
        raise ValueError(f"Attention: impl must be one of {_IMPLS}, got {impl!r}")
    on_gpu = jax.default_backend() == "gpu"
    if impl == "cudnn" and not on_gpu:
        raise ValueError(
            f"Attention: impl must be 'auto' or 'xla' on backend {jax.default_backend()!r}, "
            "got 'cudnn' (cuDNN attention needs a GPU)"
        )
    if impl == "auto":
        half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
        ok = on_gpu and half and head_dim <= 128 and head_dim % 8 == 0
        return "cudnn" if ok else "xla"
    return impl


def _check_dims(name: str, dim: int, head_dim: int) -> None:
    if head_dim <= 0 or dim <= 0 or dim % head_dim:
        raise ValueError(
            f"{name}: dim must be a positive multiple of head_dim={head_dim}, got dim={dim}"
        )


class Attention(nnx.Module):
    r"""Multi-head self-attention :math:`\mathrm{softmax}(QK^\top/\sqrt{d})V`.

    qkv Linear(C → 3C); optional RoPE on q and k; attention over (B, T, N, head_dim); dropout on the
    attention output; out Linear(C → C). The output projection is zero-initialised when
    ``zero_out=True`` (used where a branch must start as the identity).
    """

    def __init__(
        self,
        dim: int,
        head_dim: int = 64,
        *,
        impl: AttentionImpl = "auto",
        zero_out: bool = False,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        _check_dims("Attention", dim, head_dim)
        if impl not in _IMPLS:
            raise ValueError(f"Attention: impl must be one of {_IMPLS}, got {impl!r}")
        self.dim, self.head_dim, self.impl = dim, head_dim, impl
        self.dtype = dtype
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.qkv = nnx.Linear(dim, 3 * dim, **_init.dense_inits(), **kw)
        self.out = nnx.Linear(dim, dim, **_init.dense_inits(zero=zero_out), **kw)

    def __call__(
        self,
        x: jax.Array,
        *,
        rope: jax.Array | np.ndarray | None = None,
        dropout_key: jax.Array | None = None,
        rate: float = 0.0,
    ) -> jax.Array:
        """x: (B, T, C); rope: (T, A) token positions or None; returns (B, T, C)."""
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"Attention: x must have shape (B, T, {self.dim}), got {x.shape}")
        b, t, _ = x.shape
        n = self.dim // self.head_dim
        qkv = self.qkv(x).reshape(b, t, 3, n, self.head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        impl = resolve_attention_impl(self.impl, q.dtype, self.head_dim)
        o = jax.nn.dot_product_attention(q, k, v, implementation=impl)
        o = dropout(o.reshape(b, t, self.dim), rate, dropout_key)
        return self.out(o)


class CrossAttention(nnx.Module):
    r"""Cross-attention from x to a token sequence with a learned null token.

    q = Linear(x); k, v = Linear(LayerNorm(context)) with a learned null token prepended to the
    normalised context. Keys beyond ``1 + context_lengths`` are masked through
    ``key_value_seq_lengths`` (the form cuDNN accepts), so ``context_lengths = 0`` attends to the
    null token only. The output projection is zero-initialised.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        head_dim: int = 64,
        *,
        impl: AttentionImpl = "auto",
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        _check_dims("CrossAttention", dim, head_dim)
        if context_dim <= 0:
            raise ValueError(f"CrossAttention: context_dim must be positive, got {context_dim}")
        self.dim, self.context_dim, self.head_dim, self.impl = dim, context_dim, head_dim, impl
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q = nnx.Linear(dim, dim, **_init.dense_inits(), **kw)
        self.kv = nnx.Linear(context_dim, 2 * dim, **_init.dense_inits(), **kw)
        self.null = nnx.Param(_init.normal(1.0)(rngs.params(), (1, context_dim), param_dtype))
        self.out = nnx.Linear(dim, dim, **_init.dense_inits(zero=True), **kw)

    def __call__(
        self, x: jax.Array, context: jax.Array, context_lengths: jax.Array | None = None
    ) -> jax.Array:
        """x: (B, T, C); context: (B, K, D); context_lengths: (B,) int (default K)."""
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"CrossAttention: x must have shape (B, T, {self.dim}), got {x.shape}")
        if (
            context.ndim != 3
            or context.shape[0] != x.shape[0]
            or context.shape[2] != self.context_dim
        ):
            raise ValueError(
                f"CrossAttention: context must have shape ({x.shape[0]}, K, {self.context_dim}), "
                f"got {context.shape}"
            )
        b, t, _ = x.shape
        k_len = context.shape[1]
        if context_lengths is None:
            context_lengths = jnp.full((b,), k_len, jnp.int32)
        n = self.dim // self.head_dim
        ctx = layer_norm(context)
        null = jnp.broadcast_to(self.null[...].astype(ctx.dtype), (b, 1, self.context_dim))
        ctx = jnp.concatenate([null, ctx], axis=1)
        q = self.q(x).reshape(b, t, n, self.head_dim)
        kv = self.kv(ctx).reshape(b, k_len + 1, 2, n, self.head_dim)
        impl = resolve_attention_impl(self.impl, q.dtype, self.head_dim)
        o = jax.nn.dot_product_attention(
            q,
            kv[:, :, 0],
            kv[:, :, 1],
            key_value_seq_lengths=(1 + context_lengths).astype(jnp.int32),
            implementation=impl,
        )
        return self.out(o.reshape(b, t, self.dim))
