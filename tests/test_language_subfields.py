"""Language sub-fields: detection, install-mappings on an existing index (mapping change, documents
filled in place with _update_by_query as a task), the BM25 fields hybrid_search uses, and the test
server's faithfulness (a multi-field added later holds nothing for documents written before)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from es_semantic.cli.main import cli
from es_semantic.config import SemanticConfig
from es_semantic.errors import ConfigError, MappingConflict
from es_semantic.languages import bm25_fields, detect_languages, parse_languages
from es_semantic.mappings import install_mappings, read_config, render_index_body
from es_semantic.search import SearchOptions
from es_semantic.search.hybrid import index_info, make_plan

DOCS = {
    "1": {"question": "户口不在本地如何办医疗保险", "answer": "可以在工作地参加职工医疗保险。"},
    "2": {"question": "汽车保险理赔需要什么材料", "answer": "需要行驶证、驾驶证和事故认定书。"},
    "3": {"question": "How do I reset my password?", "answer": "Use the link on the login page."},
}


def _plain_index(es, name="plain"):
    es.indices.create(index=name, mappings={"properties": {"question": {"type": "text"},
                                                            "answer": {"type": "text", "analyzer": "standard"}}})
    for doc_id, doc in DOCS.items():
        es.index(index=name, id=doc_id, document=doc)
    es.indices.refresh(index=name)


def _config(**changes):
    return SemanticConfig(model="m", dims=4, index_options={"type": "flat"}, **changes)


def test_detect_languages_by_script():
    assert detect_languages(["户口不在本地如何办医疗保险"] * 3) == ("zh",)
    assert detect_languages(["東京タワーに行きました。ひらがなとカタカナ"]) == ("ja",)
    assert detect_languages(["서울특별시 강남구에 있습니다"]) == ("ko",)
    assert detect_languages(["The claim is supported by the evidence in this study"]) == ("en",)
    # a few Latin brand names in Chinese text are no English
    assert detect_languages(["您好，小额快赔服务是HUTS保险针对3000元金额以内小额理赔的绿色快速通道"]) == ("zh",)
    assert detect_languages(["保险理赔 the claim of the insured is paid"]) == ("en", "zh")
    assert detect_languages(["12345 !!!", ""]) == ()


def test_parse_languages_names_the_unknown_one():
    assert parse_languages("zh, EN") == ("en", "zh")
    with pytest.raises(ConfigError, match="'fr'"):
        parse_languages("zh,fr")


def test_bm25_fields_follow_the_recorded_languages():
    subfields = {"question": ("cjk", "english", "keyword"), "answer": ("english",)}
    assert bm25_fields(("question", "answer"), subfields, ("zh",)) == ["question", "answer", "question.cjk"]
    assert bm25_fields(("question", "answer"), subfields, ("en", "zh")) == [
        "question", "answer", "question.cjk", "question.english", "answer.english"]
    # nothing recorded: whichever language sub-fields the mapping has
    assert bm25_fields(("question", "answer"), subfields, None) == [
        "question", "answer", "question.cjk", "question.english", "answer.english"]


def test_new_index_text_fields_get_the_language_subfields():
    body = render_index_body(_config(text_fields=("question", "answer", "extra"), languages=("zh",)))
    props = body["mappings"]["properties"]
    assert props["extra"]["fields"] == {"cjk": {"type": "text", "analyzer": "cjk"}}
    assert set(props["question"]["fields"]) == {"cjk", "english"}  # the faq template has both


def test_test_server_multi_field_added_later_is_empty_until_documents_are_written_again(es_client):
    _plain_index(es_client)
    es_client.indices.put_mapping(index="plain", properties={
        "question": {"type": "text", "fields": {"cjk": {"type": "text", "analyzer": "cjk"}}}})

    def hits(query):
        return sorted(h["_id"] for h in es_client.search(index="plain", query=query)["hits"]["hits"])

    assert hits({"match": {"question.cjk": "保险"}}) == []
    assert hits({"exists": {"field": "question.cjk"}}) == []
    es_client.index(index="plain", id="2", document=DOCS["2"], refresh=True)  # written again: indexed with it
    assert hits({"match": {"question.cjk": "保险"}}) == ["2"]
    assert hits({"exists": {"field": "question.cjk"}}) == ["2"]
    es_client.update_by_query(index="plain", refresh=True, conflicts="proceed")
    assert hits({"match": {"question.cjk": "保险"}}) == ["1", "2"]


def test_install_mappings_detects_adds_and_fills_the_subfields(es_client):
    _plain_index(es_client)
    before = {h["_id"]: h["_source"] for h in es_client.search(index="plain")["hits"]["hits"]}
    result = install_mappings(es_client, "plain", _config())
    assert any("add language sub-fields answer.cjk, answer.english, question.cjk, question.english for en, zh"
               in change for change in result.changes), result.changes
    assert any("index the 3 documents" in change for change in result.changes)
    config = read_config(es_client, "plain")
    assert config.languages == ("en", "zh")
    mapping = es_client.indices.get_mapping(index="plain")["plain"]["mappings"]["properties"]
    assert mapping["answer"] == {"type": "text", "analyzer": "standard", "fields": {
        "cjk": {"type": "text", "analyzer": "cjk"}, "english": {"type": "text", "analyzer": "english"}}}
    # the documents hold the sub-fields now, their content unchanged
    found = es_client.search(index="plain", query={"match": {"question.cjk": "理赔"}})["hits"]["hits"]
    assert [h["_id"] for h in found] == ["2"]
    after = {h["_id"]: h["_source"] for h in es_client.search(index="plain")["hits"]["hits"]}
    assert after == before
    # a second run has nothing to do
    assert install_mappings(es_client, "plain", _config()).action == "unchanged"
    # and searches sum the field with its sub-fields
    plan = make_plan("保险", index_info(es_client, "plain", fresh=True), None, SearchOptions(method="bm25"),
                     index="plain")
    assert plan.fields == ["question", "answer", "question.cjk", "question.english", "answer.cjk",
                           "answer.english"]
    assert plan.multi_match_type == "sum_per_field"


def test_install_mappings_resumes_filling_documents_left_without_subfields(es_client, monkeypatch):
    from es_semantic import mappings

    _plain_index(es_client)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # the mapping changed, then the fill stopped before it started

    monkeypatch.setattr(mappings, "fill_subfields", interrupted)
    with pytest.raises(KeyboardInterrupt):
        install_mappings(es_client, "plain", _config(languages=("zh",)))
    monkeypatch.undo()
    es_client.index(index="plain", id="4", document={"question": "新文档", "answer": "新的回答"}, refresh=True)
    assert es_client.search(index="plain", query={"match": {"answer.cjk": "职工"}})["hits"]["hits"] == []
    # the next run finds the three documents from before the change (4 was written with the sub-fields)
    result = install_mappings(es_client, "plain", _config(languages=("zh",)))
    assert result.action == "update"
    assert result.changes == [("index the 3 documents without answer.cjk, question.cjk again in place "
                              "(_update_by_query, their content unchanged)")]
    found = es_client.search(index="plain", query={"match": {"answer.cjk": "职工"}})["hits"]["hits"]
    assert [h["_id"] for h in found] == ["1"]
    assert install_mappings(es_client, "plain", _config(languages=("zh",))).action == "unchanged"


def test_install_mappings_refuses_a_subfield_of_that_name_defined_otherwise(es_client):
    es_client.indices.create(index="odd", mappings={"properties": {
        "question": {"type": "text", "fields": {"cjk": {"type": "keyword"}}}, "answer": {"type": "text"}}})
    with pytest.raises(MappingConflict, match="'question'.*sub-field 'cjk' exists"):
        install_mappings(es_client, "odd", _config(languages=("zh",)))
    assert "_meta" not in es_client.indices.get_mapping(index="odd")["odd"]["mappings"]  # nothing changed


def test_cli_languages_option_and_dry_run(es_client, es_server, tiny_model):
    _plain_index(es_client)
    runner = CliRunner()
    args = ["--es-url", es_server.url, "install-mappings", "--index", "plain", "--model", str(tiny_model),
            "--index-options", "flat", "--languages", "en"]
    dry = runner.invoke(cli, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would update index 'plain'" in dry.output and "question.english" in dry.output
    assert "cjk" not in es_client.indices.get_mapping(index="plain")["plain"]["mappings"]["properties"]["question"].get(
        "fields", {})
    done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert read_config(es_client, "plain").languages == ("en",)
    bad = runner.invoke(cli, [*args[:-1], "klingon"])
    assert bad.exit_code == 2 and "'klingon'" in bad.output


def test_summed_per_field_sums_sub_fields_and_takes_the_best_field():
    from es_semantic.languages import summed_per_field

    def mm(*fields):
        return {"multi_match": {"query": "q", "fields": list(fields), "type": "most_fields"}}

    assert summed_per_field("q", ["text", "text.cjk"]) == mm("text", "text.cjk")
    # .english competes with its field (stems of the same words), as the text fields do with each other
    assert summed_per_field("q", ["title", "text", "title.cjk", "text.english"]) == {"dis_max": {"queries": [
        mm("title", "title.cjk"), mm("text"), mm("text.english")]}}
    # boosts kept; a dotted field whose parent is not searched is a field of its own
    assert summed_per_field("q", ["question^2", "meta.cjk", "question.cjk"]) == {"dis_max": {"queries": [
        mm("question^2", "question.cjk"), mm("meta.cjk")]}}
