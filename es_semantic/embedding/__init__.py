"""Embedding engine: :class:`Embedder` turns texts into L2-normalised float32 vectors.

Local torch/transformers backend (Qwen/Qwen3-Embedding-0.6B by default; any
sentence-transformers or transformers model folder) or a remote OpenAI-compatible
``/embeddings`` server. Importing this package does not import torch; loading a local model does.
"""

from es_semantic.embedding.embedder import DEFAULT_MODEL, Embedder, embedder_for
from es_semantic.embedding.stats import EmbedStats

__all__ = ["DEFAULT_MODEL", "EmbedStats", "Embedder", "embedder_for"]
