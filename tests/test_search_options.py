"""Search options: declared once (``SearchOptions``), checked before any request or model load, and
refused with a typed error naming the option and value (issue 13 item 7), as flags on the command line."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import re

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from es_semantic.cli.main import cli
from es_semantic.client import ServerInfo
from es_semantic.config import SemanticConfig
from es_semantic.errors import ConfigError
from es_semantic.search import SearchOptionError, SearchOptions, async_hybrid_search, hybrid_search
from es_semantic.search.hybrid import IndexInfo, bm25_fields, index_info, make_plan


@pytest.fixture
def faq_index(es_client, es_server):
    """An index 'faq' configured for a model never loaded here: a search that got as far as
    embedding the query would fail with ModelLoadError, so a SearchOptionError proves the check came first."""
    from es_semantic.mappings import install_mappings
    from es_semantic.search import clear_caches

    install_mappings(es_client, "faq", SemanticConfig(model="org/not-loaded", dims=4))
    clear_caches()
    yield es_server.url
    clear_caches()


# ---------------------------------------------------------------- one declaration


def test_the_entry_points_take_exactly_the_options_of_the_dataclass():
    names = [f.name for f in dataclasses.fields(SearchOptions)]
    for entry in (hybrid_search, async_hybrid_search):
        params = inspect.signature(entry).parameters
        # the options are not written out again: keywords map onto SearchOptions
        assert not set(names) & set(params), entry
        assert params["options"].annotation in ("SearchOptions | None",) and "keywords" in params
    assert SearchOptions.of(k=5) == SearchOptions(k=5)
    assert SearchOptions.of(SearchOptions(k=5, method="rrf"), from_=5) == SearchOptions(k=5, from_=5, method="rrf")
    with pytest.raises(TypeError, match="unknown search option bogus; the options are: k, from_"):
        SearchOptions.of(bogus=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SearchOptions().k = 3  # type: ignore[misc]


def test_checks_that_need_a_default_wait_for_it():
    from es_semantic.search import Defaults

    SearchOptions(rank_constant=20)  # the method is not known yet: the index may default to rrf
    assert SearchOptions(rank_constant=20).resolved(Defaults(method="rrf")).rank_constant == 20
    with pytest.raises(SearchOptionError, match="method linear does not use it"):
        SearchOptions(rank_constant=20).resolved()
    assert SearchOptions(k=150).resolved(Defaults(window=200)).window == 200
    with pytest.raises(SearchOptionError, match="make the window 150 or more"):
        SearchOptions(k=150).resolved()
    with pytest.raises(SearchOptionError, match="both legs would weigh 0"):
        SearchOptions(knn_weight=0).resolved(Defaults(linear_weights={"bm25": 0.0, "knn": 1.0}))


def test_resolved_fills_only_what_the_method_uses():
    assert SearchOptions(method="rrf").resolved() == SearchOptions(
        method="rrf", window=100, num_candidates=200, rank_constant=5, bm25_weight=1.0, knn_weight=1.0)
    linear = SearchOptions(window=300, bm25_weight=0.2).resolved()
    assert (linear.method, linear.normalizer, linear.rank_constant, linear.num_candidates) == ("linear", "minmax",
                                                                                               None, 600)
    assert linear.weights == {"bm25": 0.2, "knn": 0.5}
    bm25 = SearchOptions(method="bm25").resolved()
    assert bm25.num_candidates is None and bm25.weights == {} and bm25.normalizer is None


@pytest.mark.parametrize("keywords, option, reason", [
    # issue 13 item 7: numbers that used to be accepted, or advised wrongly
    ({"min_score": 2}, "min_score", "is a cosine similarity, between -1 and 1"),
    ({"min_score": -1.5}, "min_score", "between -1 and 1"),
    ({"bm25_weight": 0, "knn_weight": 0}, "bm25_weight", "both legs would weigh 0"),
    ({"method": "rrf", "knn_weight": 0.0, "bm25_weight": 0.0}, "bm25_weight", "both legs would weigh 0"),
    ({"k": 10**9}, "k", ("the page would end at 1000000000 (from + k), beyond 10000, the most hits a kNN search "
                        "returns (and the default index.max_result_window)")),
    ({"from_": 9_995, "k": 10, "window": 10_000}, "from_", "the page would end at 10005 (from + k), beyond 10000"),
    ({"k": 20, "from_": 90}, "window", ("the page ends at 110 (from + k), beyond the fusion window; make the "
                                       "window 110 or more")),
    ({"window": 20_000}, "window", "must be between 1 and 10000"),
    ({"num_candidates": 10_001, "window": 10_000}, "num_candidates", "must be between 1 and 10000"),
    # fields: the boost and the name, before the index is read
    ({"fields": ["question^-1"]}, "fields", "the boost '-1' is not a finite number >= 0"),
    ({"fields": ["question^-0"]}, "fields", "the boost '-0' is not a finite number >= 0"),
    ({"fields": ["question^NaN"]}, "fields", "the boost 'NaN' is not a finite number >= 0"),
    ({"fields": ["question^inf"]}, "fields", "the boost 'inf' is not a finite number >= 0"),
    ({"fields": ["question^"]}, "fields", "the boost '' is not a finite number >= 0"),
    ({"fields": ["", "answer"]}, "fields", "the field name is empty"),
    ({"fields": ["^2"]}, "fields", "the field name is empty"),
    ({"fields": []}, "fields", "give a list of field names"),
    ({"fields": [3]}, "fields", "a field is a name"),
    # options the method does not use
    ({"method": "rrf", "normalizer": "zscore"}, "normalizer", "method rrf does not use it"),
    ({"rank_constant": 20}, "rank_constant", "method linear does not use it"),
    ({"method": "knn", "fields": ["question"]}, "fields", "method knn does not use it"),
    ({"method": "bm25", "min_score": 0.5}, "min_score", "thresholds the kNN similarity, which method bm25 has not"),
    ({"method": "bm25", "execution": "server"}, "execution", "method bm25 is one leg alone"),
    ({"method": "max"}, "method", "use one of rrf, linear, bm25, knn"),
    ({"k": True}, "k", "must be a whole number"),
    ({"filter": "category:billing"}, "filter", "must be a query DSL object"),
])
def test_bad_options_are_refused_naming_option_and_value(keywords, option, reason):
    with pytest.raises(SearchOptionError) as caught:
        SearchOptions(**keywords).resolved()  # what needs a default is checked when the defaults are known
    error = caught.value
    assert isinstance(error, ConfigError) and error.option == option and reason in error.reason, str(error)
    assert str(error) == f"{option}={error.value!r}: {error.reason}" and "\n" not in str(error)


def test_one_field_as_a_string_and_boosts_that_elasticsearch_takes():
    assert SearchOptions(fields="question^2").fields == ("question^2",)
    assert SearchOptions(fields=["question^0", " answer^1.5 "]).fields == ("question^0", "answer^1.5")


# ---------------------------------------------------------------- fields checked against the index


@pytest.mark.parametrize("fields, reason", [
    (["questoin"], ("index 'faq' has no field 'questoin' (did you mean 'question' or 'question.cjk'?); its text "
                   "fields: question")),
    (["embedding"], "'embedding' is a field of type dense_vector in index 'faq', which BM25 cannot search"),
    (["embedding_info.model"], "'embedding_info.model' is a field of type keyword"),
    (["category^2"], "'category' is a field of type keyword"),
    (["nothing*"], "matches no text field of index 'faq'"),
])
def test_hybrid_search_refuses_fields_bm25_cannot_search(es_client, faq_index, fields, reason):
    for method in ("linear", "bm25"):
        with pytest.raises(SearchOptionError) as caught:
            hybrid_search(es_client, "password", index="faq", fields=fields, method=method)
        error = caught.value
        assert (error.option, error.value, error.index) == ("fields", fields[0], "faq")
        assert reason in error.reason, error.reason


@pytest.mark.parametrize("fields", [["question^-1"], ["question^NaN"], [""], ["embedding"]])
def test_async_search_refuses_the_same_fields(es_server, faq_index, fields):
    from elasticsearch import AsyncElasticsearch

    async def search():
        async with AsyncElasticsearch(es_server.url) as client:
            return await async_hybrid_search(client, "password", index="faq", fields=fields)

    with pytest.raises(SearchOptionError) as caught:
        asyncio.run(search())
    assert caught.value.option == "fields" and caught.value.value == fields[0]


def test_mapped_fields_multi_fields_and_patterns_are_accepted(es_client, faq_index):
    info = index_info(es_client, "faq")
    given = ["question^2", "answer", "question.english", "ques*"]
    assert bm25_fields(SearchOptions(fields=given), info, "faq") == given
    assert bm25_fields(SearchOptions(), info, "faq") == ["question", "answer", "question.cjk", "question.english",
                                                         "answer.cjk", "answer.english"]


def test_server_side_refusal_names_execution():
    info = IndexInfo(SemanticConfig(dims=4), {})
    with pytest.raises(SearchOptionError) as caught:
        make_plan("q", info, ServerInfo((9, 3, 0)), SearchOptions(normalizer="zscore", execution="server"), index="faq")
    assert caught.value.option == "execution" and "no 'zscore' normaliser" in caught.value.reason


def test_the_test_server_refuses_negative_and_non_finite_field_boosts(es_client, faq_index):
    from elasticsearch import BadRequestError

    for boost in ("-1", "-0.0", "NaN", "Infinity"):
        with pytest.raises(BadRequestError) as caught:
            es_client.search(index="faq", query={"multi_match": {"query": "x", "fields": [f"question^{boost}"]}})
        assert caught.value.meta.status == 400
        assert f"boost must be a positive float, got {boost}" in str(caught.value)
    es_client.search(index="faq", query={"multi_match": {"query": "x", "fields": ["question^0", "answer^2"]}})


# ---------------------------------------------------------------- the command line names the flag


def invoke(url, *args):
    return CliRunner().invoke(cli, ["--es-url", url, "search", "--index", "faq", *args, "password"])


@pytest.mark.parametrize("args, expected", [
    (["--from", "200", "--k", "5"],
     "'--window': 100: the page ends at 205 (from + k), beyond the fusion window; make the window 205 or more"),
    (["--window", "50", "--num-candidates", "20"], "'--num-candidates': 20: must be at least the window (50)"),
    (["--method", "rrf", "--rank-constant", "0"], "'--rank-constant': 0: must be 1 or more"),
    (["--method", "bm25", "--min-score", "0.5"], "'--min-score': 0.5: thresholds the kNN similarity"),
    (["--min-score", "2"], "'--min-score': 2.0: is a cosine similarity, between -1 and 1"),
    (["--bm25-weight", "0", "--knn-weight", "0"], "'--bm25-weight': 0.0: both legs would weigh 0"),
    (["--window", "20000"], "'--window': 20000: must be between 1 and 10000"),
    (["--k", "1000000000"], "'--k': 1000000000: the page would end at 1000000000 (from + k), beyond 10000"),
    (["--method", "knn", "--fields", "question"], "'--fields': 'question': method knn does not use it"),
    (["--method", "bm25", "--knn-weight", "2"], "'--knn-weight': 2.0: method bm25 does not use it"),
    (["--method", "knn", "--bm25-weight", "2"], "'--bm25-weight': 2.0: method knn does not use it"),
    (["--method", "bm25", "--execution", "server"], "'--execution': 'server': method bm25 is one leg alone"),
    (["--method", "bm25", "--num-candidates", "50"], "'--num-candidates': 50: method bm25 does not use it"),
    (["--method", "rrf", "--normalizer", "zscore"], "'--normalizer': 'zscore': method rrf does not use it"),
    (["--rank-constant", "20"], "'--rank-constant': 20: method linear does not use it"),
    (["--normalizer", "zscore", "--execution", "server"], "'--execution': 'server': cannot fuse server-side"),
    (["--fields", "questoin^2,answer"],
     "'--fields': 'questoin^2': index 'faq' has no field 'questoin' (did you mean 'question' or 'question.cjk'?)"),
    (["--fields", "question^-1"], "'--fields': 'question^-1': the boost '-1' is not a finite number >= 0"),
    (["--fields", "question^abc"], "the boost 'abc' is not a finite number >= 0"),
    (["--fields", "embedding"], "'embedding' is a field of type dense_vector in index 'faq'"),
    (["--method", "bm25", "--fields", "nothing*"], "'--fields': 'nothing*': matches no text field of index 'faq'"),
])
def test_search_errors_name_the_flag(faq_index, args, expected):
    result = invoke(faq_index, *args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "Error" in line or "error" in line]
    assert len(errors) == 1 and "Error: Invalid value for '--" in errors[0] and expected in errors[0], result.output
    assert not re.search(r"\w=\S", errors[0]) and "from_" not in errors[0], errors[0]


# ---------------------------------------------------------------- any input: a typed error or a plan

_ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.text(max_size=8), max_size=3),
)
_FIELD = st.one_of(st.sampled_from(["question", "answer^2", "question.english", "ques*", "embedding", "category",
                                    "nope", "", "^", "question^-1", "question^NaN", "answer^0", "answer^1e400"]),
                   st.text(max_size=10))
_OPTIONS = {
    "k": st.one_of(st.integers(-5, 20_000), _ANY), "from_": st.one_of(st.integers(-5, 20_000), _ANY),
    "method": st.one_of(st.sampled_from(["rrf", "linear", "bm25", "knn", None]), _ANY),
    "fields": st.one_of(st.none(), st.lists(_FIELD, max_size=3), _ANY),
    "filter": st.one_of(st.none(), st.just({"term": {"category": "billing"}}), _ANY),
    "num_candidates": st.one_of(st.integers(-5, 20_000), _ANY), "window": st.one_of(st.integers(-5, 20_000), _ANY),
    "rank_constant": _ANY, "bm25_weight": _ANY, "knn_weight": _ANY,
    "normalizer": st.one_of(st.sampled_from(["minmax", "l2_norm", "zscore", "none"]), _ANY),
    "min_score": st.one_of(st.sampled_from(["index", None, 0.5, 2]), _ANY),
    "explain": _ANY, "execution": st.one_of(st.sampled_from(["auto", "server", "client"]), _ANY),
}
_INFO = IndexInfo(SemanticConfig(model="m", dims=3, text_fields=("question", "answer")),
                  {"question": ("english",), "answer": ()},
                  field_types={"question": "text", "question.english": "text", "answer": "text",
                               "category": "keyword", "embedding": "dense_vector"})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=_OPTIONS), st.sampled_from([None, (8, 17, 0), (9, 3, 0)]))
def test_any_options_give_a_typed_error_or_a_sound_request(keywords, version):
    from es_semantic.search.hybrid import msearch_body

    try:
        options = SearchOptions(**keywords)
        plan = make_plan("q", _INFO, ServerInfo(version) if version else None, options, index="faq")
    except SearchOptionError as exc:
        assert exc.option in keywords or exc.option == "window", (exc.option, keywords)
        return
    plan.vector = [0.0, 0.0, 1.0]
    body = json.dumps(msearch_body(plan), allow_nan=False)  # nothing Elasticsearch would refuse as JSON
    options = plan.options
    assert 1 <= options.k and 0 <= options.from_ and options.from_ + options.k <= options.window <= 10_000
    assert options.method != "bm25" or options.num_candidates is None
    assert options.num_candidates is None or options.window <= options.num_candidates <= 10_000
    assert plan.min_score is None or -1 <= plan.min_score <= 1
    assert all(w >= 0 for w in options.weights.values()) and (not options.weights or any(options.weights.values()))
    for entry in plan.fields:
        assert entry in body and "^-" not in entry and "nan" not in entry.lower()
