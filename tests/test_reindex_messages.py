"""What ``reindex`` and ``status`` tell the user beyond the counts: documents without text and the
text fields the index has instead, a calibrated threshold that stops applying, what a rerun after
Ctrl-C does, and the configuration in ``status``'s text form."""

from __future__ import annotations

import json

from click.testing import CliRunner
from test_reindex_support import DIMS, add_docs, make_index

from es_semantic.cli.main import cli
from es_semantic.config import SemanticConfig
from es_semantic.mappings import install_mappings, set_min_score
from es_semantic.reindexing import ReindexOptions, index_status, reindex


def cli_run(url, *args):
    return CliRunner().invoke(cli, ["--es-url", url, *args])


def test_documents_without_text_name_the_text_fields_the_index_has(es_client, es_server, tiny_model):
    es = es_client
    install_mappings(es, "kb", SemanticConfig(model=str(tiny_model), dims=DIMS, text_fields=("question", "answer")))
    for i in range(3):
        es.index(index="kb", id=str(i), document={"title": f"shipping {i}", "body": "we ship worldwide"})
    es.indices.refresh(index="kb")
    result = cli_run(es_server.url, "reindex", "--index", "kb", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "3 of the 3 documents read have no text in question, answer" in result.output
    assert "also has the text fields body, title" in result.output
    assert "es-semantic install-mappings --index kb --text-fields question,answer,body,title" in result.output

    # documents that have text: no such warning
    add_docs(es, "kb", range(3, 10))
    again = cli_run(es_server.url, "reindex", "--index", "kb", "--no-progress")
    assert again.exit_code == 0 and "have no text" not in again.output


def test_a_threshold_that_stops_applying_is_said_with_what_to_do(es_client, tiny_model, embedder, small_embedder):
    es = es_client
    install_mappings(es, "faq", SemanticConfig(model=str(tiny_model), dims=DIMS))
    add_docs(es, "faq", range(6))
    reindex(es, "faq", embedder=embedder)
    set_min_score(es, "faq", 0.27)
    same = reindex(es, "faq", embedder=embedder)  # same vectors: the threshold still holds
    assert same.warnings == []
    report = reindex(es, "faq", embedder=small_embedder, options=ReindexOptions(dims=32, new_index=True))
    assert report.blue_green["alias_swapped"]
    assert len(report.warnings) == 1
    assert "min_score 0.27 of 'faq' is not carried to the new index" in report.warnings[0]
    assert "es-semantic eval --index faq" in report.warnings[0] and "--calibrate --save" in report.warnings[0]
    assert index_status(es, "faq", embedder=small_embedder).config.get("min_score") is None


def test_install_mappings_says_when_it_drops_the_threshold(es_client, es_server, tiny_model):
    es = es_client
    install_mappings(es, "faq", SemanticConfig(model=str(tiny_model), dims=DIMS))
    set_min_score(es, "faq", 0.31)
    result = cli_run(es_server.url, "install-mappings", "--index", "faq", "--model", str(tiny_model),
                     "--query-instruction", "Find the FAQ entry answering this question")
    assert result.exit_code == 0, result.output
    assert "drop min_score 0.31" in result.output and "--calibrate --save" in result.output


def test_ctrl_c_says_how_to_carry_on(es_client, es_server, tiny_model, monkeypatch):
    make_index(es_client, "faq", tiny_model, 3)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("es_semantic.reindexing.reindex", interrupted)
    plain = cli_run(es_server.url, "reindex", "--index", "faq", "--no-progress")
    assert plain.exit_code == 130
    assert "interrupted: stopped cleanly" in plain.output and "rerun to carry on" in plain.output
    assert "stopped reindexing 'faq'" in plain.output
    full = cli_run(es_server.url, "reindex", "--index", "faq", "--no-progress", "--full")
    assert full.exit_code == 130 and "rerun without --full to carry on" in full.output


def test_status_text_shows_the_whole_configuration(es_client, es_server, tiny_model):
    es = es_client
    install_mappings(es, "faq", SemanticConfig(model=str(tiny_model), dims=DIMS, max_length=128,
                                               query_instruction="Find the answer"))
    add_docs(es, "faq", range(4))
    reindex(es, "faq")  # the embedder of the configuration (max_length 128)
    es.update(index="faq", id="0", doc={"answer": "edited"}, refresh=True)
    result = cli_run(es_server.url, "status", "--index", "faq")
    assert result.exit_code == 0, result.output
    assert "index: faq (alias of faq-v1)" in result.output
    assert "max_length: 128" in result.output and "query instruction: Find the answer" in result.output
    assert f"(by stored model: {tiny_model}: 1)" in result.output
    data = json.loads(cli_run(es_server.url, "status", "--index", "faq", "--json").output)
    assert data["concrete"] == ["faq-v1"]
