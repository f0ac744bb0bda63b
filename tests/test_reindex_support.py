"""Shared helpers for the reindex/status tests (no tests here): a tiny random Qwen3 model built
once per session, its embedder, and FAQ-like documents with fields of every JSON type."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from es_semantic.config import SemanticConfig
from es_semantic.mappings import install_mappings

DIMS = 64  # the tiny model's hidden size
_BUILD_LOCK = threading.Lock()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from es_semantic.testing.models import make_tiny_qwen3

    with _BUILD_LOCK:
        return make_tiny_qwen3(tmp_path_factory.mktemp("models") / "tiny-qwen3")


@pytest.fixture(scope="session")
def embedder(tiny_model: Path) -> Any:
    from es_semantic.embedding import Embedder

    return Embedder(str(tiny_model), dims=DIMS, device="cpu")


@pytest.fixture(scope="session")
def small_embedder(tiny_model: Path) -> Any:
    """The same model truncated to 32 dims (Matryoshka): a configuration change needing a new index."""
    from es_semantic.embedding import Embedder

    return Embedder(str(tiny_model), dims=32, device="cpu")


def make_doc(i: int) -> dict[str, Any]:
    """A document with every JSON type, so round trips can be checked exactly."""
    return {
        "question": f"How do I change setting number {i}? 第{i}个问题",
        "answer": f"Open the settings page and pick option {i % 7}. Then save.",
        "category": ["billing", "account", "privacy"][i % 3],
        "views": i * 1000,
        "score": i + 0.5,
        "ratio": 1.0,
        "big": 2**53 + i,
        "active": i % 2 == 0,
        "nothing": None,
        "tags": [f"t{i}", "faq"],
        "meta": {"author": {"name": "Zoë", "id": i}, "langs": ["en", "zh"]},
        "updated_at": "2024-05-01T10:00:00Z",
    }


def make_index(es: Any, index: str, model: Path, n: int, *, dims: int = DIMS,
               text_fields: tuple[str, ...] = ("question", "answer"), start: int = 0,
               **config: Any) -> SemanticConfig:
    """Create the index ``index`` (exactly that concrete index, no alias) configured for ``model``
    and fill it with ``n`` documents (ids start..)."""
    cfg = SemanticConfig(model=str(model), dims=dims, text_fields=text_fields, **config)
    install_mappings(es, index, cfg, alias=False)
    add_docs(es, index, range(start, start + n))
    return cfg


def add_docs(es: Any, index: str, ids: Any) -> None:
    ops: list[Any] = []
    for i in ids:
        ops += [{"index": {"_index": index, "_id": str(i)}}, make_doc(i)]
    if ops:
        resp = es.bulk(operations=ops, refresh=True)
        assert not resp["errors"]


def all_sources(es: Any, index: str) -> dict[str, dict[str, Any]]:
    """Every document's full ``_source`` by id (vectors included)."""
    es.indices.refresh(index=index)
    resp = es.search(index=index, size=10000, query={"match_all": {}}, source={"exclude_vectors": False})
    return {hit["_id"]: hit["_source"] for hit in resp["hits"]["hits"]}


def stored_vector(value: Any) -> np.ndarray:
    from es_semantic.vector_codec import decode_vector

    return decode_vector(value) if isinstance(value, str) else np.asarray(value, dtype=np.float32)


def assert_vectors_match(sources: dict[str, dict[str, Any]], config: SemanticConfig, embedder: Any,
                         ids: Any = None) -> None:
    """Each document's stored vector equals the embedder's vector of its current text."""
    ids = sorted(sources) if ids is None else [str(i) for i in ids]
    texts = [config.build_text(sources[i]) for i in ids]
    expected = embedder.embed_documents(texts)
    for doc_id, want in zip(ids, expected, strict=True):
        got = stored_vector(sources[doc_id][config.vector_field])
        assert got.shape == (config.dims,), doc_id
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"doc {doc_id}")


def without(source: dict[str, Any], *fields: str) -> str:
    """Canonical JSON of a source minus some fields: equal strings mean equal values AND types."""
    return json.dumps({k: v for k, v in source.items() if k not in fields}, sort_keys=True, ensure_ascii=False)
