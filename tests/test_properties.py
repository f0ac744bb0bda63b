"""Property-based: for any input to the CLI's options or the public API's arguments, a typed error or a
result. Never a traceback, never exit 70 (an unexpected error), never a change to the indices when
the input is refused. Bounded (a few dozen examples per property) so the file runs in well under a minute.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_reindex_support import DIMS, add_docs

from es_semantic.cli.main import cli
from es_semantic.config import SemanticConfig
from es_semantic.errors import EsSemanticError
from es_semantic.mappings import install_mappings

BOUNDED = settings(max_examples=25, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

#: Texts that have broken option parsing before: empty, wildcards, paths, braces, huge numbers, NaN.
AWKWARD = st.sampled_from(["", " ", "*", "_all", "../b", "faq,docs", "FAQ", "-x", "{title}", "{question:>9}",
                           "{question!r}", "{}", "{0}", "nan", "inf", "-1", "0", "1e300", "9" * 30, "é", "\x00",
                           "question,,answer", '{"match_all": {}}', "[1]", "null"])
TEXT = st.one_of(AWKWARD, st.text(max_size=12))
#: A query nested 3,000 levels deep (as text and as a dict): past Python's recursion limit.
DEEP_TEXT = '{"bool": {"must": [' * 3000 + "{}" + "]}}" * 3000
DEEP: dict[str, Any] = {}
for _ in range(3000):
    DEEP = {"bool": {"must": [DEEP]}}
NUMBER_TEXT = st.one_of(st.integers(-5, 10**6).map(str), st.floats(allow_nan=True).map(str), AWKWARD)


def _state(es: Any) -> str:
    """Every index's mapping, aliases and documents (vectors included), the lock index left out."""
    es.indices.refresh(index="*")
    indices = {name: body for name, body in es.indices.get(index="*").body.items() if name != "es-semantic-locks"}
    docs = {}
    for name in sorted(indices):
        hits = es.search(index=name, size=100, source={"exclude_vectors": False}, sort=["_doc"])["hits"]["hits"]
        docs[name] = [(h["_id"], h["_source"]) for h in hits]
    return json.dumps([indices, docs], sort_keys=True, default=str)


@pytest.fixture
def world(es_client, es_server, tiny_model, embedder):
    """A configured index 'faq' (the tiny model, with vectors) and an application's index 'app' with a
    vector field of its own."""
    from es_semantic.reindexing import reindex

    install_mappings(es_client, "faq", SemanticConfig(model=str(tiny_model), dims=DIMS))
    add_docs(es_client, "faq", range(4))
    reindex(es_client, "faq", embedder=embedder)
    es_client.indices.create(index="app", mappings={"properties": {"question": {"type": "text"}, "embedding": {
        "type": "dense_vector", "dims": DIMS, "similarity": "cosine"}}})
    es_client.index(index="app", id="1", document={"question": "q", "embedding": [0.125] * DIMS}, refresh=True)
    return es_client, es_server.url, str(tiny_model)


def _invoke(url: str, args: list[str]) -> Any:
    return CliRunner().invoke(cli, ["--es-url", url, *args], env={"HF_HUB_OFFLINE": "1"})


def _check_cli(result: Any, before: str, es: Any) -> None:
    event(f"exit {result.exit_code}")
    assert result.exit_code in (0, 1, 2, 3), (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "unexpected" not in result.output, result.output
    if result.exit_code not in (0, 1):
        assert _state(es) == before, f"refused ({result.output.strip()}) but the indices changed"


def _options(model: str) -> st.SearchStrategy[list[str]]:
    """Some install-mappings options, each with a value that may be good or bad."""
    values = {
        "--index": st.one_of(st.sampled_from(["faq", "app", "new-one", "faq-v1"]), TEXT),
        "--dims": NUMBER_TEXT,
        "--similarity": st.one_of(st.sampled_from(["cosine", "dot_product"]), TEXT),
        "--vector-field": st.one_of(st.sampled_from(["embedding", "vec", "embedding_info"]), TEXT),
        "--text-fields": st.one_of(st.sampled_from(["question", "question,answer", "meta.author"]), TEXT),
        "--text-template": st.one_of(st.sampled_from(["{question}", "Q: {question}\\nA: {answer}"]), TEXT),
        "--model": st.one_of(st.just(model), st.sampled_from(["org/not-here", "/no/such/model"]), TEXT),
        "--index-options": st.one_of(st.sampled_from(["flat", "hnsw"]), TEXT),
        "--m": NUMBER_TEXT,
        "--query-instruction": TEXT,
    }
    pairs = st.lists(st.sampled_from(sorted(values)), max_size=4, unique=True).flatmap(
        lambda names: st.tuples(*(st.tuples(st.just(n), values[n]) for n in names)))
    flags = st.lists(st.sampled_from(["--dry-run", "--no-alias", "--replace-existing-vectors"]), max_size=2, unique=True)
    return st.tuples(pairs, flags).map(lambda pf: [x for pair in pf[0] for x in pair] + pf[1])


@BOUNDED
@given(data=st.data())
def test_install_mappings_options(world, data):
    es, url, model = world
    args = data.draw(_options(model))
    if "--index" not in args:
        args = ["--index", "faq", *args]
    before = _state(es)
    _check_cli(_invoke(url, ["install-mappings", *args]), before, es)


_REINDEX = {
    "--slices": NUMBER_TEXT, "--slice-id": NUMBER_TEXT, "--limit": NUMBER_TEXT, "--page-size": NUMBER_TEXT,
    "--keep-alive": TEXT, "--lock-ttl": NUMBER_TEXT,
    "--query": st.one_of(st.sampled_from(['{"term": {"category": "billing"}}', "{}", DEEP_TEXT]), TEXT),
    "--max-length": NUMBER_TEXT, "--index": st.one_of(st.just("faq"), st.just("app"), TEXT),
}


@BOUNDED
@given(data=st.data())
def test_reindex_dry_run_options(world, data):
    es, url, _ = world
    names = data.draw(st.lists(st.sampled_from(sorted(_REINDEX)), max_size=3, unique=True))
    args = [x for n in names for x in (n, data.draw(_REINDEX[n], label=n))]
    if "--index" not in args:
        args = ["--index", "faq", *args]
    before = _state(es)
    result = _invoke(url, ["reindex", "--dry-run", "--no-progress", *args])
    _check_cli(result, before, es)
    if result.exit_code == 0:
        assert _state(es) == before  # a dry run changes nothing either


_SEARCH = {
    "--k": NUMBER_TEXT, "--from": NUMBER_TEXT, "--method": st.one_of(st.sampled_from(["linear", "rrf", "knn"]), TEXT),
    "--fields": st.one_of(st.sampled_from(["question^2,answer", "nope", "question^-1", "question^NaN"]), TEXT),
    "--min-score": NUMBER_TEXT,
    "--window": NUMBER_TEXT, "--num-candidates": NUMBER_TEXT, "--rank-constant": NUMBER_TEXT,
    "--bm25-weight": NUMBER_TEXT, "--knn-weight": NUMBER_TEXT,
    "--filter": st.one_of(st.sampled_from(['{"term": {"category": "billing"}}', DEEP_TEXT]), TEXT),
    "--index": st.one_of(st.just("faq"), st.just("app"), TEXT),
}


@BOUNDED
@given(data=st.data(), query=TEXT)
def test_search_and_set_min_score_options(world, data, query):
    es, url, _ = world
    names = data.draw(st.lists(st.sampled_from(sorted(_SEARCH)), max_size=3, unique=True))
    args = [x for n in names for x in (n, data.draw(_SEARCH[n], label=n))]
    if "--index" not in args:
        args = ["--index", "faq", *args]
    before = _state(es)
    result = _invoke(url, ["search", *args, "--", query])
    _check_cli(result, before, es)
    if result.exit_code == 0:
        assert _state(es) == before
    value = data.draw(st.one_of(NUMBER_TEXT, st.just("none")), label="set-min-score")
    _check_cli(_invoke(url, ["set-min-score", "--index", data.draw(_SEARCH["--index"]), "--dry-run", value]),
               before, es)


def _call(before: str, es: Any, call: Any) -> Any:
    """``call()``'s result, or None when it raised a typed error (the indices then unchanged)."""
    try:
        result = call()
        event("result")
        return result
    except EsSemanticError as exc:
        event(type(exc).__name__)
        assert "\n" not in str(exc), str(exc)
        assert _state(es) == before, f"refused ({exc}) but the indices changed"
        return None


#: Values of the wrong type where a string, number or list is expected (Python callers can pass anything).
ODD = st.sampled_from([None, 5, 2.5, True, ["b"], {"a": 1}, (), float("nan")])


def _some(values: dict[str, st.SearchStrategy[Any]], most: int = 3) -> st.SearchStrategy[dict[str, Any]]:
    """Up to ``most`` of the named arguments, each with a drawn value (few at a time, so that some
    calls are valid and reach a result)."""
    return st.lists(st.sampled_from(sorted(values)), max_size=most, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({n: values[n] for n in names}))


@BOUNDED
@given(settings_=_some({
    "dims": st.one_of(st.integers(-2, 5000), ODD), "similarity": st.one_of(TEXT, ODD),
    "vector_field": st.one_of(st.sampled_from(["embedding", "vec"]), TEXT, ODD),
    "text_template": st.one_of(TEXT, ODD),
    "text_fields": st.one_of(st.lists(TEXT, max_size=3), st.just(("question", "answer")), TEXT, ODD),
    "index_options": st.one_of(st.just({"type": "flat"}), st.dictionaries(TEXT, TEXT, max_size=2), ODD),
    "min_score": st.one_of(st.floats(allow_nan=True), TEXT, ODD), "max_length": st.one_of(st.integers(-1, 10), ODD),
    "model": st.one_of(TEXT, ODD),
}), index=st.one_of(st.sampled_from(["faq", "app", "fresh"]), TEXT, ODD), dry_run=st.booleans(),
   replace_existing=st.booleans())
def test_install_mappings_api(world, settings_, index, dry_run, replace_existing):
    es, _, model = world
    before = _state(es)

    def install() -> Any:
        config = SemanticConfig(**{"model": model, "dims": DIMS, **settings_})
        return install_mappings(es, index, config, dry_run=dry_run, replace_existing_vectors=replace_existing)

    result = _call(before, es, install)
    if result is not None and dry_run:
        assert _state(es) == before


@BOUNDED
@given(options=_some({
    "slices": st.one_of(st.integers(-1, 4), ODD), "slice_id": st.integers(-1, 4),
    "limit": st.one_of(st.none(), st.integers(-2, 5), ODD), "page_size": st.one_of(st.integers(-1, 3), ODD),
    "keep_alive": st.one_of(TEXT, ODD), "max_length": st.one_of(st.none(), st.integers(-1, 8), ODD),
    "query": st.one_of(st.none(), TEXT, st.just({"term": {"category": "billing"}}), st.dictionaries(TEXT, TEXT),
                       st.just(DEEP)),
    "lock_ttl_s": st.one_of(st.floats(allow_nan=True, allow_infinity=True), ODD), "full": st.booleans(),
}), index=st.one_of(st.sampled_from(["faq", "app"]), TEXT, ODD))
def test_reindex_api(world, embedder, options, index):
    from es_semantic.reindexing import ReindexOptions, reindex

    es, _, _ = world
    before = _state(es)
    report = _call(before, es, lambda: reindex(es, index, embedder=embedder,
                                               options=ReindexOptions(dry_run=True, **options)))
    if report is not None:
        assert _state(es) == before and report.read <= 4


@BOUNDED
@given(arguments=_some({
    "k": st.integers(-2, 10**4), "from_": st.integers(-2, 20), "num_candidates": st.one_of(st.none(), st.integers(-1, 10**5)),
    "method": st.one_of(st.sampled_from(["linear", "rrf", "bm25", "knn"]), TEXT),
    "fields": st.one_of(st.none(), st.lists(st.sampled_from(["question", "answer^2", "nope", "question^x", "question^-1", "question^NaN", "embedding"]), max_size=3)),
    "window": st.one_of(st.none(), st.integers(-1, 10**4)),
    "rank_constant": st.one_of(st.none(), st.floats(min_value=-5, max_value=100)),
    "bm25_weight": st.one_of(st.none(), st.floats(min_value=-1, max_value=5)),
    "knn_weight": st.one_of(st.none(), st.floats(min_value=-1, max_value=5)),
    "normalizer": st.one_of(st.none(), st.sampled_from(["minmax", "l2_norm", "zscore", "none"]), TEXT),
    "min_score": st.one_of(st.none(), st.floats(min_value=-2, max_value=2)),
    "filter": st.one_of(st.none(), st.just({"term": {"category": "billing"}})),
}), query=TEXT, index=st.one_of(st.just("faq"), st.just("faq"), st.just("app"), TEXT, ODD))
def test_hybrid_search_api(world, embedder, arguments, query, index):
    from es_semantic.search import hybrid_search

    es, _, _ = world
    before = _state(es)
    result = _call(before, es, lambda: hybrid_search(es, query, index=index, embedder=embedder, **arguments))
    if result is not None:
        assert all(math.isfinite(hit.score) for hit in result.hits)
        assert _state(es) == before


def test_the_template_of_the_audit_is_refused_and_changes_nothing(world):
    """The audit's input (issue 13.3), which the strategies above may not draw: refused, nothing changed."""
    es, url, _ = world
    before = _state(es)
    refused = _invoke(url, ["install-mappings", "--index", "faq", "--text-template", "{question:>300000000}"])
    assert refused.exit_code == 2 and "'{question:>300000000}' is not a plain field reference" in refused.output
    assert _state(es) == before
