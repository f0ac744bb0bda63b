"""Local rerankers on tiny random models (CPU, fp32): Qwen3-Reranker against the published formula,
cross-encoders against sentence-transformers' CrossEncoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from es_semantic import Reranker
from es_semantic.errors import ModelLoadError, RerankError
from es_semantic.rerank.local import LocalReranker
from es_semantic.rerank.remote import RemoteReranker
from es_semantic.testing.models import make_tiny_qwen3
from es_semantic.testing.rerank_models import make_cross_encoder, make_tiny_qwen3_reranker

QUERY = "what is the capital of France"
DOCS = [
    "Paris is the capital of France.",
    "x",
    "",
    "Proteins fold into three-dimensional structures that determine their function. " * 12,
    "yes",
    "保险 理赔 需要 哪些 材料",
    "A cat sat on the mat while the dog slept in the sun.",
]


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    return make_tiny_qwen3_reranker(tmp_path_factory.mktemp("qwen3-reranker") / "model")


@pytest.fixture(scope="module")
def qwen3(qwen3_dir):
    return Reranker(qwen3_dir, device="cpu")


def reference_qwen3(model_dir, query, documents, instruction=None, max_length=8192):
    """The model card's code: prefix + tokens of the user text (cut to fit) + suffix, one pair at a time
    (no padding), P(yes) = softmax over the "no" and "yes" logits at the last position."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prefix = ('<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the '
              'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n')
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    prefix_ids = tok.encode(prefix, add_special_tokens=False)
    suffix_ids = tok.encode(suffix, add_special_tokens=False)
    instruction = instruction or "Given a web search query, retrieve relevant passages that answer the query"
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    scores = []
    for doc in documents:
        text = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}"
        middle = tok.encode(text, add_special_tokens=False)[: max_length - len(prefix_ids) - len(suffix_ids)]
        ids = torch.tensor([prefix_ids + middle + suffix_ids])
        with torch.inference_mode():
            last = model(input_ids=ids).logits[0, -1]
        scores.append(torch.log_softmax(torch.stack([last[no], last[yes]]), dim=0)[1].exp().item())
    return np.array(scores)


def test_qwen3_scores_are_p_yes_of_the_published_prompt(qwen3, qwen3_dir):
    scores = qwen3.score(QUERY, DOCS)
    assert isinstance(qwen3, LocalReranker) and qwen3.kind == "causal"
    assert scores.dtype == np.float32 and scores.shape == (len(DOCS),)
    np.testing.assert_allclose(scores, reference_qwen3(qwen3_dir, QUERY, DOCS), atol=1e-4)
    assert len(set(np.round(scores, 6))) == len(DOCS)  # the documents really are told apart


@pytest.mark.parametrize(("batch_tokens", "max_batch_size"), [(1, 1), (200, 2), (700, 3), (100_000, 256)])
def test_qwen3_scores_do_not_depend_on_batching_or_padding(qwen3_dir, qwen3, batch_tokens, max_batch_size):
    expected = qwen3.score(QUERY, DOCS)
    small = Reranker(qwen3_dir, device="cpu", batch_tokens=batch_tokens, max_batch_size=max_batch_size)
    np.testing.assert_allclose(small.score(QUERY, DOCS), expected, atol=1e-5)
    alone = np.array([qwen3.score(QUERY, [d])[0] for d in DOCS])
    np.testing.assert_allclose(alone, expected, atol=1e-5)
    if max_batch_size < len(DOCS):
        assert small.stats.batches >= -(-len(DOCS) // max_batch_size)


def test_qwen3_instruction_and_max_length(qwen3_dir, qwen3):
    custom = Reranker(qwen3_dir, device="cpu", instruction="Find the city named in the question")
    scores = custom.score(QUERY, DOCS)
    np.testing.assert_allclose(
        scores, reference_qwen3(qwen3_dir, QUERY, DOCS, instruction="Find the city named in the question"), atol=1e-4)
    assert not np.allclose(scores, qwen3.score(QUERY, DOCS), atol=1e-4)
    short = Reranker(qwen3_dir, device="cpu", max_length=90)
    np.testing.assert_allclose(short.score(QUERY, DOCS), reference_qwen3(qwen3_dir, QUERY, DOCS, max_length=90),
                               atol=1e-4)
    assert short.stats.truncated >= 1


def test_oom_halves_the_batch(qwen3, monkeypatch):
    expected = qwen3.score(QUERY, DOCS)
    real = qwen3.head.scores
    calls = []

    def scores(model, inputs):
        calls.append(inputs["input_ids"].shape[0])
        if inputs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, inputs)

    monkeypatch.setattr(qwen3.head, "scores", scores)
    before = qwen3.stats.oom_retries
    np.testing.assert_allclose(qwen3.score(QUERY, DOCS), expected, atol=1e-5)
    assert qwen3.stats.oom_retries > before and max(calls) > 2


def test_one_pair_out_of_memory_is_a_clear_error(qwen3, monkeypatch):
    def scores(model, inputs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(qwen3.head, "scores", scores)
    with pytest.raises(RerankError, match="out of memory on cpu reranking one pair of .* tokens; lower max_length"):
        qwen3.score(QUERY, ["x"])


def test_input_checks(qwen3):
    assert qwen3.score(QUERY, []).shape == (0,)
    with pytest.raises(RerankError, match="not a single str"):
        qwen3.score(QUERY, "one document")
    with pytest.raises(RerankError, match="query must be a str, got None"):
        qwen3.score(None, ["x"])
    with pytest.raises(RerankError, match=r"documents\[1\] is None"):
        qwen3.score(QUERY, ["x", None])


def test_constructor_picks_the_backend(qwen3_dir):
    served = Reranker("some-model", base_url="http://127.0.0.1:9/v1")
    assert isinstance(served, RemoteReranker) and isinstance(served, Reranker) and served.backend == "remote"
    assert served.url == "http://127.0.0.1:9/v1/rerank"


def test_base_model_is_refused(tmp_path):
    folder = make_tiny_qwen3(tmp_path / "embedder")  # a Qwen3Model: no head to score with
    with pytest.raises(ModelLoadError, match=r"architectures \['Qwen3Model'\]; use a \*ForCausalLM"):
        Reranker(folder, device="cpu")


# --------------------------------------------------------------------------- cross-encoders


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory):
    return make_cross_encoder(tmp_path_factory.mktemp("cross-encoder") / "model")


def predict(folder, query, documents):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(folder), device="cpu").predict([(query, d) for d in documents], batch_size=3)


LONG = "the history of the city and its many districts " * 80  # over 512 tokens with the query: truncated


def test_cross_encoder_equals_sentence_transformers(cross_encoder_dir):
    reranker = Reranker(cross_encoder_dir, device="cpu", batch_tokens=300)
    docs = [*DOCS, LONG]
    scores = reranker.score(QUERY, docs)
    assert reranker.kind == "classifier" and reranker.max_length == 512
    np.testing.assert_allclose(scores, predict(cross_encoder_dir, QUERY, docs), atol=1e-5)
    assert ((scores > 0) & (scores < 1)).all()  # sigmoid: the default for one label


def test_cross_encoder_configured_activation_4x_layout(tmp_path):
    folder = make_cross_encoder(tmp_path / "m", activation="torch.nn.modules.linear.Identity")
    scores = Reranker(folder, device="cpu").score(QUERY, DOCS)
    np.testing.assert_allclose(scores, predict(folder, QUERY, DOCS), atol=1e-5)
    sigmoid = Reranker(make_cross_encoder(tmp_path / "s"), device="cpu").score(QUERY, DOCS)
    np.testing.assert_allclose(1 / (1 + np.exp(-scores)), sigmoid, atol=1e-5)  # same weights, raw logits


def test_cross_encoder_saved_by_sentence_transformers(cross_encoder_dir, tmp_path):
    from sentence_transformers import CrossEncoder

    CrossEncoder(str(cross_encoder_dir), device="cpu", activation_fn=torch.nn.Tanh(), max_length=64).save(
        str(tmp_path / "saved"))
    assert json.loads((tmp_path / "saved" / "config_sentence_transformers.json").read_text())["activation_fn"] \
        == "torch.nn.modules.activation.Tanh"
    saved = Reranker(tmp_path / "saved", device="cpu")
    scores = saved.score(QUERY, [*DOCS, LONG])
    assert saved.max_length == 64
    np.testing.assert_allclose(scores, predict(tmp_path / "saved", QUERY, [*DOCS, LONG]), atol=1e-5)
    sigmoid = Reranker(cross_encoder_dir, device="cpu").score(QUERY, DOCS)
    np.testing.assert_allclose(np.tanh(np.log(sigmoid / (1 - sigmoid))), scores[:-1], atol=1e-4)  # tanh of logits


def test_cross_encoder_with_two_labels_is_refused(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "m")
    AutoTokenizer.from_pretrained(str(make_cross_encoder(tmp_path / "base"))).save_pretrained(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="has 2 labels; a reranker needs one relevance score"):
        Reranker(tmp_path / "m", device="cpu")


def test_a_model_that_cannot_be_found_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="'org/no-such-reranker'.*not in the local Hugging Face cache"):
        Reranker("org/no-such-reranker", device="cpu")
    with pytest.raises(ModelLoadError, match="does not exist"):
        Reranker(tmp_path / "missing", device="cpu")
