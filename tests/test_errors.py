"""The errors the Python API raises: typed, with the data they are about, one line, and the same
refusal before any index is touched, whatever the entry point."""

from __future__ import annotations

import pytest

from es_semantic import EsSemanticError, InvalidIndexName, hybrid_search
from es_semantic.config import SemanticConfig
from es_semantic.mappings import install_mappings, read_config, set_min_score
from es_semantic.reindexing import ReindexOptions, index_status, reindex


@pytest.fixture
def configured(es_client):
    install_mappings(es_client, "faq", SemanticConfig(model="org/not-loaded", dims=4))
    return es_client


@pytest.mark.parametrize("index", [["b"], None, "", "*", "_all", "../b", "faq,other"])
def test_every_entry_point_refuses_a_name_of_no_one_index(configured, index):
    es = configured
    before = es.indices.get_mapping(index="*").body
    calls = [
        lambda: reindex(es, index, options=ReindexOptions(dry_run=True)),
        lambda: reindex(es, index),
        lambda: index_status(es, index, load_model=False),
        lambda: read_config(es, index),
        lambda: set_min_score(es, index, 0.5),
        lambda: install_mappings(es, index, SemanticConfig(dims=4)),
        lambda: hybrid_search(es, "password", index=index, method="bm25"),
    ]
    for call in calls:
        with pytest.raises(InvalidIndexName) as caught:
            call()
        error = caught.value
        assert isinstance(error, EsSemanticError) and error.exit_code == 2
        assert error.option == "index" and error.index == index
        assert "es-semantic-locks" not in str(error) and "\n" not in str(error)
    assert es.indices.get_mapping(index="*").body == before
    assert not es.indices.exists(index="es-semantic-locks")


def test_missing_and_unconfigured_indices_carry_the_name(es_client):
    from es_semantic.errors import IndexNotFound, NotConfigured

    with pytest.raises(IndexNotFound) as missing:
        read_config(es_client, "nothing-here")
    assert (missing.value.index, str(missing.value)) == ("nothing-here", "index 'nothing-here' not found")
    es_client.indices.create(index="plain")
    with pytest.raises(NotConfigured) as plain:
        reindex(es_client, "plain")
    assert (plain.value.index, str(plain.value)) == ("plain", "index 'plain' has no es-semantic configuration")
