"""Embedding engine: ``Embedder(model)`` turns texts into L2-normalised float32 vectors.

:class:`LocalEmbedder` runs a torch/transformers model here (Qwen/Qwen3-Embedding-0.6B by default;
any sentence-transformers or transformers model folder); :class:`RemoteEmbedder` asks an
OpenAI-compatible ``/embeddings`` server. Both implement :class:`TextEmbedder`. Importing this
package does not import torch; loading a local model does.
"""

from es_semantic.embedding.embedder import DEFAULT_MODEL, Embedder, LocalEmbedder, RemoteEmbedder, embedder_for
from es_semantic.embedding.protocol import TextEmbedder
from es_semantic.embedding.stats import EmbedStats

__all__ = ["DEFAULT_MODEL", "EmbedStats", "Embedder", "LocalEmbedder", "RemoteEmbedder", "TextEmbedder",
           "embedder_for"]
