"""es-semantic: semantic and hybrid search for an existing Elasticsearch index.

``install-mappings`` adds ``dense_vector`` fields and records the configuration in the index
``_meta``; ``reindex`` embeds the documents with a local transformer model; ``hybrid_search``
blends BM25 and kNN. Heavy modules (torch, transformers) are imported only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    ConnectionFailed,
    EmbeddingError,
    EsSemanticError,
    IndexNotFound,
    InvalidIndexName,
    InvalidValue,
    LockHeld,
    MappingConflict,
    ModelLoadError,
    NotConfigured,
    RerankError,
)

__version__ = "0.1.0"

# Public name -> module that defines it. Imported on first use so that `import es_semantic`
# and the CLI start fast without loading torch.
_LAZY = {
    "Embedder": "es_semantic.embedding",
    "LocalEmbedder": "es_semantic.embedding",
    "RemoteEmbedder": "es_semantic.embedding",
    "TextEmbedder": "es_semantic.embedding",
    "Reranker": "es_semantic.rerank",
    "LocalReranker": "es_semantic.rerank",
    "RemoteReranker": "es_semantic.rerank",
    "hybrid_search": "es_semantic.search",
    "async_hybrid_search": "es_semantic.search",
    "reindex": "es_semantic.reindexing",
    "ReindexOptions": "es_semantic.reindexing",
    "install_mappings": "es_semantic.mappings",
    "read_config": "es_semantic.mappings",
    "SemanticConfig": "es_semantic.config",
    "ConnectionSettings": "es_semantic.config",
    "connect": "es_semantic.client",
    "Hit": "es_semantic.search",
    "SearchResult": "es_semantic.search",
    "SearchOptions": "es_semantic.search",
}

__all__ = [
    "ConfigError",
    "ConnectionFailed",
    "ConnectionSettings",
    "Embedder",
    "EmbeddingError",
    "EsSemanticError",
    "Hit",
    "IndexNotFound",
    "InvalidIndexName",
    "InvalidValue",
    "LocalEmbedder",
    "LocalReranker",
    "LockHeld",
    "MappingConflict",
    "ModelLoadError",
    "NotConfigured",
    "ReindexOptions",
    "RemoteEmbedder",
    "RemoteReranker",
    "RerankError",
    "Reranker",
    "SearchOptions",
    "SearchResult",
    "SemanticConfig",
    "TextEmbedder",
    "__version__",
    "async_hybrid_search",
    "connect",
    "hybrid_search",
    "install_mappings",
    "read_config",
    "reindex",
]

if TYPE_CHECKING:  # pragma: no cover
    from .client import connect
    from .config import ConnectionSettings, SemanticConfig
    from .embedding import Embedder, LocalEmbedder, RemoteEmbedder, TextEmbedder
    from .mappings import install_mappings, read_config
    from .reindexing import ReindexOptions, reindex
    from .rerank import LocalReranker, RemoteReranker, Reranker
    from .search import Hit, SearchOptions, SearchResult, async_hybrid_search, hybrid_search


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'es_semantic' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
