"""Test server: the Painless subset of script_score (statements, locals, Math, vector functions)."""

from __future__ import annotations

import math

import pytest
from elasticsearch import ApiError, Elasticsearch


@pytest.fixture
def es(es_client: Elasticsearch) -> Elasticsearch:
    es_client.indices.create(index="p", mappings={"properties": {
        "vec": {"type": "dense_vector", "dims": 2, "similarity": "dot_product"}, "n": {"type": "integer"}}})
    es_client.index(index="p", id="1", document={"vec": [0.6, 0.8], "n": 3}, refresh=True)
    return es_client


def _score(es: Elasticsearch, source: str, **params: object) -> float:
    query = {"script_score": {"query": {"match_all": {}}, "script": {"source": source, "params": params}}}
    return es.search(index="p", query=query)["hits"]["hits"][0]["_score"]


@pytest.mark.parametrize(("source", "expected"), [
    # what Elasticsearch's vector store helper and LangChain send
    ("double value = dotProduct(params.query_vector, 'vec'); return sigmoid(1, Math.E, -value);",
     1 / (1 + math.exp(-0.6))),
    ("cosineSimilarity(params.query_vector, doc['vec']) + 1.0", 1.0 + 0.6),
    ("double x = doc['n'].value; x += 2; return x * Math.PI;", 5 * math.pi),
    ("def d = l2norm(params.query_vector, 'vec'); return 1 / (1 + d);", 1 / (1 + math.sqrt(0.4**2 + 0.8**2))),
    ("saturation(doc['n'].value, 1)", 0.75),
    ("Math.max(Math.log1p(doc['n'].value), 0.5)", math.log1p(3)),
])
def test_scripts_of_several_statements(es: Elasticsearch, source: str, expected: float) -> None:
    assert _score(es, source, query_vector=[1.0, 0.0]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("source", "what"), [
    ("if (doc['n'].value > 1) { return 1; } return 2;", "blocks"),
    ("doc['n'].value > 1 ? 1 : 2", "ternary"),
    ("x = 1; return x;", "undeclared [x]"),
    ("double x = 1; return y;", "unknown name [y]"),
    ("double x = 1;", "no return value"),
])
def test_painless_beyond_the_subset_is_refused_by_name(es: Elasticsearch, source: str, what: str) -> None:
    with pytest.raises(ApiError) as err:
        _score(es, source)
    assert err.value.meta.status == 400
    assert err.value.body["error"]["type"] == "unsupported_by_test_server"
    assert what in err.value.body["error"]["reason"]
