"""Reads (and regenerates) ``KNOWN_DIFFERENCES.md``: the cases that fail or skip on the test server.

Rows look like ``| `file.yml::case name` | xfail | reason |``. ``xfail`` cases run and must fail
(strict: a fix that makes one pass turns red until the row is removed); ``skip`` cases do not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

KNOWN_FILE = Path(__file__).with_name("KNOWN_DIFFERENCES.md")
_ROW = re.compile(r"^\|\s*`(?P<case>.+?)`\s*\|\s*(?P<kind>xfail|skip)\s*\|\s*(?P<reason>.*?)\s*\|\s*$")


@dataclass(frozen=True)
class Known:
    case: str
    kind: str  # "xfail" or "skip"
    reason: str


def load_known(path: Path = KNOWN_FILE) -> dict[str, Known]:
    if not path.is_file():
        return {}
    known = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if m:
            known[m["case"]] = Known(m["case"], m["kind"], m["reason"])
    return known


# Why a case differs, by case id prefix/substring. Cases without an entry get the runner's outcome text.
REASONS: dict[str, str] = {
    "indices.create/10_basic.yml::Create lookup index": "needs the `capabilities` runner feature (index.mode lookup); not supported",
    "indices.create/10_basic.yml::Poorly formatted request": "needs the `capabilities` runner feature; not supported",
    "indices.create/10_basic.yml::Create index with hunspell": "needs the `capabilities` runner feature (hunspell); not supported",
    "Vector rescoring": "needs the `capabilities` runner feature (rescore_vector); not supported",
    "enabling synthetic source from explicit": "server does not claim cluster feature mapper.source.mode_from_index_setting (synthetic _source not modelled)",
    "subobjects:false": "server does not claim cluster feature mapper.subobjects_false_mapping_update_fix (subobjects: false not modelled)",
    "skip.version": "legacy case: its skip.version range covers 9.3.0 (Elasticsearch skips it too)",
    "_knn_search endpoint": "deprecated `_knn_search` API: removed in 9.x and absent from the 9.x Python client",
    "Exclude sparse embeddings": "the case re-creates index `test` that its own setup already created (fails on a real node too); sparse_vector search not modelled",
    "script_score": "Painless beyond the test server's subset (see es_semantic/testing/painless.py)",
    "test size=-1 is deprecated": "runner: the Python client sends `size` in the body, where Elasticsearch refuses -1 "
                                  "too (only the URL parameter -1 is the deprecated 'not set')",
    "175_knn_query_hex_encoded_byte_vectors.yml::Knn search with hex string for byte field - dimensions mismatch":
        "the stored file is an 8.13 revision expecting the old wording; 9.x says 'The query vector has a different "
        "number of dimensions [4] than the document vectors [3]' (as 170_knn_search_hex_encoded_byte_vectors checks)",
    "hits.hits.0._type": "the stored file is a 7.x revision asserting `_type` in hits, removed in 8.0 (fails on a 9.x "
                         "node too)",
    "Function score": "`function_score` query not implemented by the search engine",
    "dis_max query with knn": "search engine: `dis_max` over knn queries not Elasticsearch-compatible (hits.total / ordering)",
    "collapse": "field collapsing (`collapse`, inner_hits) not implemented by the search engine",
    "collapsing results": "field collapsing (`collapse`, inner_hits) not implemented by the search engine",
    "explain should provide": "search engine: `explain: true` does not produce Elasticsearch's _explanation text",
    "custom sort for nested": "`function_score` with `script_score` inside nested retrievers not implemented",
    "min score": "standard retriever `min_score` test uses `script_score` (Painless), out of scope",
    "41_knn_search_byte_quantized.yml::KNN Vector similarity search only": "kNN is exact float scoring here: doc 2 is at l2 distance 10.44 > similarity 10.3; Elasticsearch's int8 quantization error lets it in",
    "80_knn_similarity_search.yml::Vector similarity search": "`vector_similarity` query (test-only in Elasticsearch) not implemented by the search engine",
}


def reason_for(case_id: str, outcome: str) -> str:
    for key, reason in REASONS.items():
        if key in case_id or key in outcome:
            return reason
    return outcome.replace("|", "/")[:300]


def _notes(path: Path) -> str:
    """The hand-written sections after the table (from its first ``## `` heading), kept on regeneration."""
    if not path.is_file():
        return ""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for n, line in enumerate(lines):
        if line.startswith("## "):
            return "".join(lines[n:])
    return ""


def write_known(outcomes: dict[str, str], path: Path = KNOWN_FILE, summary: str = "") -> None:
    """Regenerate the file from a run's outcomes, keeping reasons already written by hand and the
    ``## `` sections after the table."""
    existing = load_known(path)
    notes = _notes(path)
    rows = []
    for case_id, outcome in outcomes.items():
        if outcome == "passed":
            continue
        kind = "skip" if outcome.startswith("skipped") else "xfail"
        previous = existing.get(case_id)
        reason = previous.reason if previous is not None and previous.kind == kind else reason_for(case_id, outcome)
        rows.append(f"| `{case_id}` | {kind} | {reason} |")
    header = (
        "# Known differences from Elasticsearch in the YAML REST conformance run\n\n"
        "Every case of `../shared/es-rest-tests` and of the files `EXTRA_TESTS.md` lists\n"
        "(provenance in its MANIFEST.md) that fails (`xfail`, strict) or is skipped (`skip`) against the\n"
        "es-semantic test server, with the reason. `tests/rest_yaml/test_conformance.py` reads this table;\n"
        "`python -m tests.rest_yaml.known` regenerates it from a fresh run (reasons already here are kept).\n"
        "Regenerate it whenever the search engine changes: a case that starts passing turns its strict\n"
        "xfail red.\n\n"
        + (f"Last run: {summary}.\n\n" if summary else "") +
        "| case | outcome | reason |\n|---|---|---|\n"
    )
    path.write_text(header + "\n".join(rows) + "\n" + ("\n" + notes if notes else ""), encoding="utf-8")


if __name__ == "__main__":
    from elasticsearch import Elasticsearch

    from es_semantic.testing import start_server
    from es_semantic.testing.server import CLUSTER_FEATURES
    from tests.rest_yaml.runner import run_all, summary_line, yaml_roots

    with start_server() as server:
        result = run_all(Elasticsearch(server.url), yaml_roots(), features=frozenset(CLUSTER_FEATURES), wipe=server.reset)
    write_known(result["outcomes"], summary=summary_line(result))
    print(summary_line(result))
