"""Reranking a search: rerank_result over a SearchResult, the reranker stored in _meta, and
hybrid_search(rerank=...) against the test server."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from es_semantic.cli.main import cli
from es_semantic.config import SemanticConfig
from es_semantic.embedding.stats import EmbedStats
from es_semantic.errors import InvalidValue
from es_semantic.mappings import read_config
from es_semantic.rerank import Reranker, es_rerank_retriever, rerank_result, resolve_rerank
from es_semantic.rerank.results import check_window
from es_semantic.search import Hit, SearchResult


class WordCountReranker(Reranker):
    """Scores a document by how often it holds the query's first word: easy to recompute here."""

    backend = "local"

    def __init__(self) -> None:
        self.model_id = "word-count"
        self.stats = EmbedStats()
        self.calls: list[list[str]] = []

    def _score(self, query: str, documents: list[str]) -> np.ndarray:
        self.calls.append(documents)
        word = query.split()[0]
        return np.array([d.split().count(word) for d in documents], dtype=np.float32)


CONFIG = SemanticConfig(model="/models/m", dims=3, text_fields=("question", "answer"))


def fused(texts: list[str]) -> SearchResult:
    hits = [Hit(id=f"d{i}", score=1.0 - i / 100, source={"question": t, "answer": ""}, bm25_score=float(i))
            for i, t in enumerate(texts)]
    return SearchResult(hits, "cat", "linear", "client", 100, params={"k": len(texts)})


TEXTS = ["dog", "cat cat", "cat", "cat cat cat", "bird", "cat", "cat cat"]


def test_window_reordered_by_rerank_score_ties_keep_the_fused_order():
    reranker = WordCountReranker()
    result = rerank_result(fused(TEXTS), reranker, "cat", 7, text=CONFIG.build_text, k=7)
    assert [h.id for h in result] == ["d3", "d1", "d6", "d2", "d5", "d0", "d4"]
    assert [h.rerank_score for h in result] == [3.0, 2.0, 2.0, 1.0, 1.0, 0.0, 0.0]
    assert result[0].score == 0.97 and result[0].bm25_score == 3.0  # fused and leg scores stay beside it
    assert result.params["rerank"] == "word-count" and result.params["rerank_window"] == 7
    assert reranker.calls == [TEXTS]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_pages_are_cut_from_the_reranked_window(k):
    whole = rerank_result(fused(TEXTS), WordCountReranker(), "cat", 5, text=CONFIG.build_text, k=5)
    pages = [rerank_result(fused(TEXTS), WordCountReranker(), "cat", 5, text=CONFIG.build_text, from_=start, k=k)
             for start in range(0, 5, k)]
    assert [h.id for page in pages for h in page][:5] == [h.id for h in whole]
    assert [h.id for h in whole] == ["d3", "d1", "d2", "d0", "d4"]  # only the top 5 of the fused list


def test_min_score_applies_to_the_rerank_score():
    result = rerank_result(fused(TEXTS), WordCountReranker(), "cat", 7, text=CONFIG.build_text, k=7, min_score=2.0)
    assert [h.id for h in result] == ["d3", "d1", "d6"] and not result.no_match and result.min_score == 2.0
    none = rerank_result(fused(TEXTS), WordCountReranker(), "cat", 7, text=CONFIG.build_text, min_score=5.0)
    assert len(none) == 0 and none.no_match


def test_window_checks():
    assert check_window(50, 100, 0, 10) == 50
    with pytest.raises(InvalidValue, match=r"rerank_window must be at most the fusion window \(100\), got 200"):
        check_window(200, 100, 0, 10)
    with pytest.raises(InvalidValue, match=r"rerank_window must be at least from \+ k \(60\).*got 50"):
        check_window(50, 100, 50, 10)
    with pytest.raises(InvalidValue, match="rerank_window must be a whole number, 1 or more"):
        check_window(0, 100, 0, 10)


def test_resolve_rerank():
    reranker = WordCountReranker()
    assert resolve_rerank(reranker, CONFIG) is reranker

    class Own:  # any object with a model_id and score() (the TextReranker protocol)
        model_id = "own"

        def score(self, query, documents):
            return np.zeros(len(documents), dtype=np.float32)

    own = Own()
    assert resolve_rerank(own, CONFIG) is own
    assert rerank_result(fused(TEXTS), own, "cat", 3, text=CONFIG.build_text, k=3).params["rerank"] == "own"
    assert resolve_rerank(None, CONFIG) is None
    assert resolve_rerank("index", CONFIG) is None  # no reranker stored
    assert resolve_rerank("es:my-rerank", CONFIG) == "es:my-rerank"
    with pytest.raises(InvalidValue, match="with the id of an inference endpoint"):
        resolve_rerank("es:", CONFIG)
    with pytest.raises(InvalidValue, match="rerank must be a Reranker"):
        resolve_rerank(3, CONFIG)


def test_es_rerank_retriever_body():
    inner = {"linear": {"retrievers": [], "rank_window_size": 100}}
    body = es_rerank_retriever(inner, inference_id="my-rerank", field="answer", text="cat", window=50, min_score=0.5)
    assert body == {"text_similarity_reranker": {
        "retriever": inner, "field": "answer", "inference_id": "my-rerank", "inference_text": "cat",
        "rank_window_size": 50, "min_score": 0.5}}


def test_reranker_in_meta():
    config = SemanticConfig(model="/models/m", dims=3, reranker="Qwen/Qwen3-Reranker-0.6B")
    assert config.to_meta()["reranker"] == "Qwen/Qwen3-Reranker-0.6B"
    assert SemanticConfig.from_meta(config.to_meta()) == config
    assert "reranker" not in CONFIG.to_meta()
    with pytest.raises(InvalidValue, match="reranker must be a model id or path"):
        SemanticConfig(reranker=" ")


def test_cli_install_mappings_stores_and_removes_the_reranker(es_server, es_client, tiny_model):
    def run(*args):
        result = CliRunner().invoke(cli, ["--es-url", es_server.url, "install-mappings", "--index", "faq",
                                          "--model", str(tiny_model), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    run()
    assert "update _meta (reranker)" in run("--reranker", "/models/reranker")
    assert read_config(es_client, "faq").reranker == "/models/reranker"
    assert "nothing changed" in run()  # left out: kept
    run("--reranker", "none")
    config = read_config(es_client, "faq")
    assert config.reranker is None and config.model == str(tiny_model)


def test_rerank_run_reorders_each_querys_top_with_texts_from_the_index(es_client):
    from es_semantic.rerank.evaluation import rerank_run

    for i, text in enumerate(TEXTS):
        es_client.index(index="docs", id=f"d{i}", document={"question": text, "answer": "cat" if i == 4 else ""})
    es_client.indices.refresh(index="docs")
    run = {"q1": [f"d{i}" for i in range(7)], "q2": ["d4", "d0", "d3", "missing"]}
    reranker = WordCountReranker()
    reranked = rerank_run(es_client, "docs", CONFIG, {"q1": "cat", "q2": "cat"}, run, reranker, window=5)
    # q1: top 5 reordered (d4 has 'cat' in its answer), the rest as it was
    assert reranked["q1"] == ["d3", "d1", "d2", "d4", "d0", "d5", "d6"]
    assert reranked["q2"] == ["d3", "d4", "d0", "missing"]  # a missing document scores as empty text
    assert reranker.calls[0][4] == "bird\ncat"  # the text the document was embedded from
