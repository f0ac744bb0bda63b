"""es-semantic: semantic and hybrid search for an existing Elasticsearch index."""

__version__ = "0.1.0"
