"""The one entry point: :class:`Embedder` turns texts into unit vectors.

Local backend (torch/transformers, default) or remote backend (OpenAI-compatible
``POST {base_url}/embeddings``) behind the same API. Prompts, Matryoshka truncation,
normalisation, input checks, counters and the settings fingerprint live here, so both backends
behave the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from es_semantic.config import redact_url
from es_semantic.embedding.model_config import (
    DEFAULT_QUERY_TASK,
    QWEN_INSTRUCTION_TEMPLATE,
    ModelSpec,
    folder_digest,
    read_model_spec,
    resolve_model_dir,
)
from es_semantic.embedding.stats import EmbedStats
from es_semantic.errors import ConfigError, EmbeddingError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen3-Embedding-0.6B"
DEFAULT_MAX_LENGTH = 8192

_POOLING_ALIASES = {
    "last": "lasttoken", "last_token": "lasttoken", "lasttoken": "lasttoken", "eos": "lasttoken",
    "cls": "cls", "cls_token": "cls", "first": "cls",
    "mean": "mean", "avg": "mean", "average": "mean", "mean_tokens": "mean",
    "max": "max", "max_tokens": "max",
    "mean_sqrt_len_tokens": "mean_sqrt_len_tokens", "weightedmean": "weightedmean",
}
# Remote models known to expect a Qwen-style instruction on queries (no config files to read).
_INSTRUCTION_MODELS = re.compile(r"qwen3-embedding|gte-qwen|e5-mistral|sfr-embedding|instruct", re.IGNORECASE)


def _normalise_pooling(pooling: str) -> str:
    parts = []
    for p in str(pooling).split("+"):
        key = p.strip().lower()
        if key not in _POOLING_ALIASES:
            raise ConfigError(
                f"Unknown pooling {pooling!r}; use one of lasttoken, mean, cls, max, "
                f"mean_sqrt_len_tokens, weightedmean."
            )
        parts.append(_POOLING_ALIASES[key])
    return "+".join(parts)


def check_texts(texts: Any, what: str = "texts") -> list[str]:
    """Validate input: a sequence of str. Empty and whitespace-only strings are allowed.

    They are embedded as they are (the model sees only its special tokens), exactly as
    sentence-transformers does, so every input row gets a vector and positions stay aligned.
    """
    if texts is None:
        raise EmbeddingError(f"{what} is None; pass a list of strings.")
    if isinstance(texts, (str, bytes)):
        raise EmbeddingError(
            f"{what} must be a list of strings, not a single {type(texts).__name__}; "
            f"wrap it in a list, or use embed_query() for one query."
        )
    if isinstance(texts, (Mapping, set, frozenset)):
        # list() of these gives keys or an arbitrary order: vectors would not line up with anything
        raise EmbeddingError(
            f"{what} must be a list of strings, not a {type(texts).__name__}; pass e.g. list(d.values()) "
            f"in the order you want the vectors back."
        )
    try:
        items = list(texts)
    except TypeError:
        raise EmbeddingError(f"{what} must be a list of strings, got {type(texts).__name__}.") from None
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise EmbeddingError(
                f"{what}[{i}] is {'None' if t is None else type(t).__name__}, expected str; "
                f"every input must be a string (convert or drop it first)."
            )
        if not t.isascii():
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise EmbeddingError(
                    f"{what}[{i}] holds invalid Unicode (lone surrogate {t[exc.start]!r} at character "
                    f"{exc.start}); decode the source with errors='replace' or drop the character."
                ) from None
    return items


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def truncate_dims(x: np.ndarray, dims: int, normalize: bool) -> np.ndarray:
    """Matryoshka truncation: keep the first ``dims`` values, then renormalise."""
    x = np.ascontiguousarray(x[:, :dims], dtype=np.float32)
    return l2_normalize(x) if normalize else x


class Embedder:
    """Text -> vector engine used by the reindex job and by ``hybrid_search``.

    >>> emb = Embedder()                                 # Qwen/Qwen3-Embedding-0.6B, auto device
    >>> docs = emb.embed_documents(["Paris is the capital of France."])   # (1, 1024) float32
    >>> q = emb.embed_query("capital of France")                          # (1024,)

    ``model`` is a hub id or a local folder. Pooling, normalisation, max length and prompts come
    from the model's sentence-transformers files and can be overridden here. ``base_url`` selects
    the remote backend (an OpenAI-compatible ``/embeddings`` server: vLLM, SGLang, TEI, Infinity).

    Arguments beyond the common ones: ``devices`` (list of devices, one replica each),
    ``revision`` (hub revision), ``query_prompt``/``document_prompt`` (raw prefixes overriding the
    model's prompts), ``attn_implementation``, ``max_batch_size`` (rows per batch cap), and for
    the remote backend ``timeout``, ``max_retries``, ``request_batch_size``, ``concurrency``.

    ``normalize=True`` always returns unit vectors; ``None`` follows the model's ``Normalize``
    module; ``False`` returns raw pooled vectors. ``max_length`` is capped at the model's own
    limit (``sentence_bert_config.json`` max_seq_length, else its position embeddings).
    Empty or whitespace-only strings are embedded as they are (as sentence-transformers does).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        dims: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        pooling: str | None = None,
        normalize: bool | None = True,
        batch_tokens: int | None = None,
        query_instruction: str | None = None,
        trust_remote_code: bool = False,
        base_url: str | None = None,
        api_key: str | None = None,
        devices: Sequence[str] | None = None,
        revision: str | None = None,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        attn_implementation: str | None = None,
        max_batch_size: int = 4096,
        timeout: float = 60.0,
        max_retries: int = 6,
        request_batch_size: int = 32,
        concurrency: int = 4,
    ) -> None:
        if max_length is None or int(max_length) < 1:
            raise ConfigError(f"max_length must be a positive number of tokens, got {max_length!r}.")
        if dims is not None and (isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or dims < 1):
            raise ConfigError(f"dims must be a positive integer, got {dims!r}.")
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, (int, np.integer)) or max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be a positive integer, got {max_batch_size!r}.")
        if batch_tokens is not None and int(batch_tokens) < 1:
            raise ConfigError(f"batch_tokens must be a positive integer, got {batch_tokens!r}.")
        if isinstance(model, os.PathLike):  # a local folder given as a Path
            model = os.fspath(model)
        self.model_id = model
        self.query_instruction = query_instruction
        self._query_prompt = query_prompt
        self._document_prompt = document_prompt
        self.stats = EmbedStats()
        self.spec: ModelSpec | None = None
        self.revision: str | None = None
        self._backend: Any
        if base_url:
            from es_semantic.embedding.remote import RemoteBackend

            self.backend_name = "remote"
            self.pooling = "server"
            self.normalize = normalize is not False
            self.max_length = int(max_length)
            if self.max_length != DEFAULT_MAX_LENGTH:
                # no tokenizer here to cut with; the server truncates or refuses by its own limit
                log.warning(
                    "max_length=%d is not applied with a remote embedding server (%s): the server enforces its "
                    "model's own limit; an input over it is an EmbeddingError naming the input, unless the "
                    "server is started with its truncation option",
                    self.max_length, redact_url(base_url),
                )
            self._backend = RemoteBackend(
                base_url, model, api_key=api_key, timeout=timeout, max_retries=max_retries,
                request_batch_size=request_batch_size, concurrency=concurrency,
            )
            self._native_dims: int | None = None
            self._dims = int(dims) if dims is not None else None
            self._digest = None
            return

        from es_semantic.embedding.local import (
            LocalBackend,  # torch is imported only here
        )

        self.backend_name = "local"
        path, self.revision = resolve_model_dir(model, revision=revision)
        spec = read_model_spec(path, model, self.revision)
        self.spec = spec
        self.pooling = _normalise_pooling(pooling) if pooling else spec.pooling
        self.normalize = spec.normalize if normalize is None else bool(normalize)
        limit = spec.max_seq_length or spec.position_limit
        self.max_length = min(int(max_length), limit) if limit else int(max_length)
        self._backend = LocalBackend(
            spec, pooling=self.pooling, max_length=self.max_length, device=device, devices=devices,
            dtype=dtype, batch_tokens=batch_tokens, trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation, max_batch_size=max_batch_size,
        )
        self._native_dims = self._backend.output_dims
        if dims is not None and int(dims) > self._native_dims:
            raise ConfigError(
                f"dims={dims} is more than model {model!r} produces ({self._native_dims}); "
                f"use dims <= {self._native_dims} (smaller values truncate, Matryoshka-style)."
            )
        self._dims = int(dims) if dims is not None else self._native_dims
        self._digest = folder_digest(path, extra=[d.path for d in spec.dense])

    # ------------------------------------------------------------------ properties
    @property
    def dims(self) -> int:
        """Output dimensions (after Matryoshka truncation)."""
        if self._dims is None:  # remote without dims: ask the server once
            self._dims = int(self._embed_raw(["dimension probe"], prompt="", count=False).shape[1])
        return self._dims

    @property
    def weights_digest(self) -> str | None:
        """Content digest of the local model's files (config files whole, the weights sampled): the
        same for a copy of the model wherever it is loaded from, another one for other or retrained
        weights. The reindex job records it next to each vector (``<vector>_info.weights``) to tell
        whether a model is the one the stored vectors were made with. None for the remote backend
        (no files to hash)."""
        return self._digest

    @property
    def device(self) -> str:
        if self.backend_name == "remote":
            return "remote"
        return ",".join(str(d) for d in self._backend.devices)

    @property
    def batch_tokens(self) -> int | None:
        return getattr(self._backend, "batch_tokens", None)

    @property
    def chunk_size_hint(self) -> int:
        """How many texts to hand :meth:`embed_documents` per call for full batches.

        Each call sorts and batches only its own texts, so a call should hold several
        token-budget batches' worth: a few hundred on CPU, thousands on a big GPU.
        """
        if self.backend_name == "remote":
            return self._backend.request_batch_size * self._backend.concurrency * 2
        replicas = len(self._backend.devices)
        return int(min(16384, max(256, self._backend.batch_tokens * replicas // 64)))

    def __repr__(self) -> str:
        where = self._backend.base_url if self.backend_name == "remote" else self.device
        return (
            f"Embedder(model={self.model_id!r}, backend={self.backend_name}, at={where!r}, "
            f"dims={self._dims}, pooling={self.pooling!r}, normalize={self.normalize}, "
            f"max_length={self.max_length})"
        )

    # ------------------------------------------------------------------ prompts
    def _instruction_prompt(self, task: str) -> str:
        return "" if task == "" else QWEN_INSTRUCTION_TEMPLATE.format(task=task)

    def query_prefix(self, instruction: str | None = None) -> str:
        """The text put in front of every query (``""`` when none)."""
        if instruction is not None:
            return self._instruction_prompt(instruction)
        if self.query_instruction is not None:
            return self._instruction_prompt(self.query_instruction)
        if self._query_prompt is not None:
            return self._query_prompt
        if self.spec is not None:
            if "query" in self.spec.prompts:
                return self.spec.prompts["query"]
            # decoder embedding models are instruction-tuned (Qwen3, gte-Qwen, e5-mistral)
            if self.spec.is_decoder and not self.spec.prompts:
                return self._instruction_prompt(DEFAULT_QUERY_TASK)
            return ""
        return self._instruction_prompt(DEFAULT_QUERY_TASK) if _INSTRUCTION_MODELS.search(self.model_id) else ""

    @property
    def document_prefix(self) -> str:
        """The text put in front of every document (``""`` for most models)."""
        if self._document_prompt is not None:
            return self._document_prompt
        if self.spec is None:
            return ""
        prompts = self.spec.prompts
        for name in ("document", "passage", "corpus"):
            if name in prompts:
                return prompts[name]
        if self.spec.default_prompt_name and self.spec.default_prompt_name in prompts:
            return prompts[self.spec.default_prompt_name]
        return ""

    # ------------------------------------------------------------------ embedding
    def _embed_raw(self, texts: list[str], *, prompt: str, count: bool = True,
                   show_progress: bool = False) -> np.ndarray:
        start = time.perf_counter()
        inputs = [prompt + t for t in texts] if prompt else texts
        if self.backend_name == "remote":
            pooled, truncated = self._backend.embed(inputs, self.stats, dims=self._dims)
        else:
            prompt_length = None
            if prompt and self.spec is not None and not self.spec.include_prompt:
                prompt_length = self._backend.prompt_length(prompt)
            bar = None
            if show_progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(inputs), unit="text", desc="embedding")
            try:
                pooled, truncated = self._backend.embed(
                    inputs, self.stats, prompt_length=prompt_length,
                    progress=bar.update if bar is not None else None,
                )
            finally:
                if bar is not None:
                    bar.close()
        if truncated:
            self.stats.add(truncated=truncated)
            log.warning(
                "%d of %d texts were longer than max_length=%d tokens and were truncated",
                truncated, len(texts), self.max_length,
            )
        if count:
            self.stats.add(seconds=time.perf_counter() - start)
        dims = self._dims or pooled.shape[1]
        if pooled.shape[1] < dims:
            raise EmbeddingError(
                f"The embedding service returned {pooled.shape[1]} dimensions, fewer than dims={dims}; "
                f"lower dims or check the model name."
            )
        if self.normalize:
            return truncate_dims(pooled, dims, True)
        return np.ascontiguousarray(pooled[:, :dims], dtype=np.float32)

    def embed_documents(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed documents: float32 array (len(texts), dims), unit rows, input order kept."""
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dims), dtype=np.float32)
        return self._embed_raw(items, prompt=self.document_prefix, show_progress=show_progress)

    def embed_queries(self, texts: Sequence[str], *, instruction: str | None = None) -> np.ndarray:
        """Embed search queries with the query instruction/prompt (``instruction=""``: none)."""
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dims), dtype=np.float32)
        return self._embed_raw(items, prompt=self.query_prefix(instruction))

    def embed_query(self, text: str, *, instruction: str | None = None) -> np.ndarray:
        """Embed one query: float32 array (dims,)."""
        if not isinstance(text, str):
            raise EmbeddingError(
                f"query must be a str, got {'None' if text is None else type(text).__name__}."
            )
        return self.embed_queries([text], instruction=instruction)[0]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model sees it (special tokens included, before truncation)."""
        items = check_texts(texts)
        if self.backend_name == "remote":
            raise EmbeddingError(
                "count_tokens needs the model's tokenizer, which the remote backend does not have; "
                "use a local model to count tokens."
            )
        return self._backend.count_tokens(items)

    # ------------------------------------------------------------------ fingerprint
    def settings(self) -> dict[str, Any]:
        """Everything that changes document vectors (what :meth:`settings_fingerprint` hashes)."""
        if self.backend_name == "remote":
            return {
                "backend": "remote",
                "model": self.model_id,
                "dims": self.dims,
                "normalize": self.normalize,
                "document_prompt": self.document_prefix,
            }
        assert self.spec is not None
        return {
            "backend": "local",
            # content digest, not the path or hub id: the same weights fingerprint the same
            # wherever they are loaded from; retrained weights do not
            "weights": self.weights_digest,
            "model_type": self.spec.model_type,
            "dims": self.dims,
            "pooling": self.pooling,
            "include_prompt": self.spec.include_prompt,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "lower_case": self.spec.do_lower_case,
            "document_prompt": self.document_prefix,
        }

    def settings_fingerprint(self) -> str:
        """Short stable string of everything that changes document vectors.

        ``"<family>-<dims>-<12 hex>"``; the reindex job stores it and re-embeds when it changes.
        Device, dtype and batch size are left out: they change vectors only by rounding.
        """
        s = self.settings()
        digest = hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:12]
        family = s.get("model_type") or re.sub(r"[^a-z0-9.]+", "-", self.model_id.lower().rsplit("/", 1)[-1])
        return f"{family}-{s['dims']}-{digest}"


def embedder_for(config: Any, model: str | None = None, **options: Any) -> Embedder:
    """The :class:`Embedder` an index's vectors are made with: ``config`` (a ``SemanticConfig``) gives
    the dims, query instruction and stored max length; ``model`` a place to load it from other than
    ``config.model``; ``options`` (``device``, ``dtype``, ``base_url``, ``api_key``, ...) are passed on
    where not None."""
    kwargs: dict[str, Any] = {"dims": config.dims, "query_instruction": config.query_instruction}
    if config.max_length is not None:  # stored in _meta (or given as --max-length)
        kwargs["max_length"] = config.max_length
    kwargs.update({key: value for key, value in options.items() if value is not None})
    return Embedder(model or config.model, **kwargs)
