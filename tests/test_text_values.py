"""What non-text values contribute to the embedded text (issue 13.10), seen through a reindex run."""

from __future__ import annotations

from test_reindex_support import DIMS, add_docs

from es_semantic.config import SemanticConfig
from es_semantic.mappings import install_mappings
from es_semantic.reindexing import ReindexOptions, reindex


def test_a_run_says_which_text_fields_held_objects_and_in_how_many_documents(es_client, tiny_model, embedder):
    # make_doc: "active" a boolean, "views" a number, "meta" an object {"author": {...}, "langs": [...]}
    es_client.indices.create(index="faq")
    add_docs(es_client, "faq", range(5))  # mapped dynamically, as the application wrote them
    config = SemanticConfig(model=str(tiny_model), dims=DIMS, text_fields=("question", "active", "views", "meta"))
    install_mappings(es_client, "faq", config)
    report = reindex(es_client, "faq", embedder=embedder, options=ReindexOptions(dry_run=True))
    assert report.non_text_values == {"meta": 5}
    warning = [w for w in report.warnings if "holding an object" in w]
    assert len(warning) == 1 and "'meta' in 5" in warning[0] and "\n" not in warning[0]
    done = reindex(es_client, "faq", embedder=embedder)
    assert done.embedded == 5 and done.to_dict()["non_text_values"] == {"meta": 5}
    assert config.build_text(es_client.get(index="faq", id="2")["_source"]).endswith("\ntrue\n2000")
