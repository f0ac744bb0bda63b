"""The writer adapts to the server version: float arrays before 9.3, base64 from 9.3."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch
from test_reindex_support import all_sources, assert_vectors_match, make_index

from es_semantic.reindexing import ReindexOptions, reindex
from es_semantic.testing import start_server


@pytest.mark.parametrize("version, encoded_as", [("9.2.0", list), ("9.3.0", str)])
def test_vectors_sent_in_the_form_the_server_accepts(tiny_model, embedder, version, encoded_as):
    with start_server(version=version) as server:
        es = Elasticsearch(server.url)
        cfg = make_index(es, "faq", tiny_model, 30)
        report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(embed_chunk=8, lock=False))
        assert report.embedded == 30 and report.failed == 0
        sources = all_sources(es, "faq")
        # _source keeps what the writer sent: a float list for 9.2, a base64 string for 9.3.
        assert {type(src["embedding"]) for src in sources.values()} == {encoded_as}
        assert_vectors_match(sources, cfg, embedder)
        # A chunk size left to the embedder (None) gives the same result.
        again = reindex(es, "faq", embedder=embedder, options=ReindexOptions(full=True, lock=False))
        assert again.embedded == 30
        assert_vectors_match(all_sources(es, "faq"), cfg, embedder)
        es.close()
