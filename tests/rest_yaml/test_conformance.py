"""Elasticsearch's own YAML REST tests (``../shared/es-rest-tests``, plus the folder ``ES_REST_TESTS_EXTRA``
names, see ``EXTRA_TESTS.md``) against the test server.

One pytest case per YAML test case. Cases listed in ``KNOWN_DIFFERENCES.md`` are xfail(strict) or
skipped with the reason given there. With ``ES_URL`` set, the same cases run against that real
node instead (and the known-differences list is ignored).
"""

from __future__ import annotations

import os

import pytest

from tests.rest_yaml.known import load_known
from tests.rest_yaml.runner import (
    CaseSkipped,
    Runner,
    load_cases,
    run_all,
    shared_root,
    summary_line,
    yaml_roots,
)

ROOTS = yaml_roots()
REAL = os.environ.get("ES_URL")
KNOWN = {} if REAL else load_known()
TARGET_RATIO = 0.90


def _params() -> list[object]:
    if not ROOTS:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"REST tests not found at {shared_root()}"),
                             id="absent")]
    params = []
    for case in load_cases(ROOTS):
        known = KNOWN.get(case.id)
        marks = []
        if known is not None and known.kind == "xfail":
            marks.append(pytest.mark.xfail(strict=True, reason=known.reason))
        elif known is not None:
            marks.append(pytest.mark.skip(reason=known.reason))
        params.append(pytest.param(case, marks=marks, id=case.id))
    return params


def _features() -> frozenset[str]:
    from es_semantic.testing.server import CLUSTER_FEATURES

    return frozenset(CLUSTER_FEATURES)


@pytest.fixture(scope="module")
def yaml_runner(request: pytest.FixtureRequest) -> Runner:
    from elasticsearch import Elasticsearch

    if REAL:
        return Runner(Elasticsearch(REAL, request_timeout=60), features=_features())
    server = request.getfixturevalue("es_server")
    return Runner(Elasticsearch(server.url, request_timeout=60), features=_features(), wipe=server.reset)


@pytest.mark.parametrize("case", _params())
def test_rest_case(case, yaml_runner: Runner) -> None:
    try:
        yaml_runner.run(case)
    except CaseSkipped as exc:
        if case.id in KNOWN:  # listed as xfail but skipped by selection: still a difference
            raise AssertionError(f"skipped: {exc.reason}") from None
        pytest.skip(exc.reason)


def test_conformance_summary(es_server, capsys: pytest.CaptureFixture[str]) -> None:
    """Prints "passed X of Y cases whose version requirements 9.3.0 meets" and holds the 90% target."""
    if not ROOTS:
        pytest.skip(f"REST tests not found at {shared_root()}")
    from elasticsearch import Elasticsearch

    if REAL:
        result = run_all(Elasticsearch(REAL, request_timeout=60), ROOTS, features=_features())
    else:
        result = run_all(Elasticsearch(es_server.url, request_timeout=60), ROOTS, features=_features(),
                         wipe=es_server.reset)
    line = summary_line(result)
    with capsys.disabled():
        print("\n" + line)
    failing = {case for case, outcome in result["outcomes"].items() if outcome != "passed"}
    if not REAL:
        unlisted = sorted(failing - set(KNOWN))
        assert not unlisted, f"cases failing or skipped but not in KNOWN_DIFFERENCES.md: {unlisted}"
        stale = sorted((set(KNOWN) & set(result["outcomes"])) - failing)  # rows of absent files do not count
        assert not stale, f"cases in KNOWN_DIFFERENCES.md that now pass: {stale}"
    assert result["passed"] >= TARGET_RATIO * result["applicable"], line
