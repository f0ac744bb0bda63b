"""``status``: documents with a current, stale or no vector; fallback when the model cannot load."""

from __future__ import annotations

from click.testing import CliRunner
from test_reindex_support import make_index

from es_semantic.reindexing import ReindexOptions, index_status, reindex


def _prepare(es, tiny_model, embedder):
    make_index(es, "faq", tiny_model, 12)
    reindex(es, "faq", embedder=embedder, options=ReindexOptions(limit=10))
    es.update(index="faq", id="0", doc={"question": "edited after embedding"})  # stale by text
    es.update(index="faq", id="1", doc={"embedding_info": {"model": "old/model", "fingerprint": "0" * 32}})  # old model
    es.index(index="faq", id="empty", document={"question": "", "category": "x"})
    es.indices.refresh(index="faq")


def test_status_counts_by_fingerprint(es_client, tiny_model, embedder):
    es = es_client
    _prepare(es, tiny_model, embedder)
    status = index_status(es, "faq", embedder=embedder)
    assert status.method == "fingerprint" and status.note == ""
    assert (status.total, status.current, status.stale, status.missing, status.empty) == (13, 8, 2, 2, 1)
    assert status.stale_models == {str(tiny_model): 1, "old/model": 1}
    text = "\n".join(status.lines())
    assert "current vector: 8" in text and f"model: {tiny_model}" in text and "dims: 64" in text


def test_status_loads_the_configured_model_itself(es_client, tiny_model, embedder):
    es = es_client
    _prepare(es, tiny_model, embedder)
    status = index_status(es, "faq")  # the _meta names the local tiny model: it loads
    assert status.method == "fingerprint" and (status.current, status.stale) == (8, 2)


def test_status_falls_back_to_model_ids_and_says_so(es_client, tiny_model, embedder):
    es = es_client
    _prepare(es, tiny_model, embedder)
    status = index_status(es, "faq", model="/no/such/model")
    assert status.method == "model-id" and "could not be loaded" in status.note
    # Without the model the text edit of doc 0 cannot be seen; the model change of doc 1 can.
    assert (status.current, status.stale, status.missing, status.empty) == (9, 1, 2, 1)
    quick = index_status(es, "faq", load_model=False)
    assert quick.method == "model-id" and "not loaded" in quick.note and quick.current == 9


def test_status_command_json(es_client, es_server, tiny_model, embedder):
    import json

    from es_semantic.cli.main import cli

    es = es_client
    _prepare(es, tiny_model, embedder)
    result = CliRunner().invoke(cli, ["--es-url", es_server.url, "status", "--index", "faq", "--no-model", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["config"]["model"] == str(tiny_model) and data["current"] == 9 and data["method"] == "model-id"
    text = CliRunner().invoke(cli, ["--es-url", es_server.url, "status", "--index", "faq", "--no-model"])
    assert "checked by: model-id" in text.output and "no vector:      2" in text.output
    missing = CliRunner().invoke(cli, ["--es-url", es_server.url, "status", "--index", "nope"])
    assert missing.exit_code == 2 and "not found" in missing.output
