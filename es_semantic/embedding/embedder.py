"""The one entry point: ``Embedder(model)`` turns texts into unit vectors.

``Embedder(model)`` gives a :class:`LocalEmbedder` (torch/transformers), ``Embedder(model,
base_url=...)`` a :class:`RemoteEmbedder` (an OpenAI-compatible ``POST {base_url}/embeddings``
server); both implement :class:`~es_semantic.embedding.protocol.TextEmbedder`. Input checks,
Matryoshka truncation, normalisation, counters and the settings fingerprint live in the shared
base class, so both behave the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from es_semantic.embedding.digest import weights_digest
from es_semantic.embedding.model_config import (
    DEFAULT_QUERY_TASK,
    QWEN_INSTRUCTION_TEMPLATE,
    ModelSpec,
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


def _instruction_prompt(task: str) -> str:
    return "" if task == "" else QWEN_INSTRUCTION_TEMPLATE.format(task=task)


def _check_positive(**values: Any) -> None:
    """Refuse sizes that are not positive whole numbers (None: not given)."""
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}.")


class Embedder(ABC):
    """Text -> vector engine used by the reindex job and by ``hybrid_search``.

    >>> emb = Embedder()                                 # Qwen/Qwen3-Embedding-0.6B, auto device
    >>> docs = emb.embed_documents(["Paris is the capital of France."])   # (1, 1024) float32
    >>> q = emb.embed_query("capital of France")                          # (1024,)

    ``Embedder(model, ...)`` returns a :class:`LocalEmbedder` (``model`` a hub id or a local folder;
    see it for the options); ``Embedder(model, base_url=...)`` a :class:`RemoteEmbedder` (an
    OpenAI-compatible ``/embeddings`` server: vLLM, SGLang, TEI, Infinity). This base class holds
    what both share: input checks, prompts, Matryoshka truncation, normalisation, counters
    (``stats``) and the settings fingerprint. Empty or whitespace-only strings are embedded as they
    are (as sentence-transformers does).
    """

    model_id: str
    max_length: int
    normalize: bool
    pooling: str
    _dims: int | None

    # Embedder(...) gives one of the two subclasses (sentence-transformers style: one entry point)
    def __new__(  # noqa: PYI034
            cls, model: Any = DEFAULT_MODEL, *args: Any, base_url: str | None = None, **kwargs: Any) -> Embedder:
        chosen = (RemoteEmbedder if base_url else LocalEmbedder) if cls is Embedder else cls
        return super().__new__(chosen)

    def _init_common(self, model: str | os.PathLike[str], dims: int | None, query_instruction: str | None,
                     query_prompt: str | None, document_prompt: str | None) -> None:
        _check_positive(dims=dims)
        self.model_id = os.fspath(model) if isinstance(model, os.PathLike) else model
        self.query_instruction = query_instruction
        self._query_prompt = query_prompt
        self._document_prompt = document_prompt
        self.stats = EmbedStats()

    # ------------------------------------------------------------------ what subclasses provide
    @property
    @abstractmethod
    def dims(self) -> int:
        """Output dimensions (after Matryoshka truncation)."""

    @property
    def native_dims(self) -> int | None:
        """The dims the model makes before Matryoshka truncation; None when unknown (a server)."""
        return None

    @property
    def weights_digest(self) -> str | None:
        """sha256 over the model's files (``embedding.digest``); None without files here (a server)."""
        return None

    @property
    def length_limit(self) -> int | None:
        """The most tokens the model takes; None when unknown."""
        return None

    @property
    @abstractmethod
    def chunk_size_hint(self) -> int:
        """How many texts to hand :meth:`embed_documents` per call for full batches."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Everything that changes document vectors (what :meth:`settings_fingerprint` hashes)."""

    @abstractmethod
    def describe(self) -> str:
        """One line naming the model and where it runs, with no credential in it."""

    @abstractmethod
    def _pooled(self, inputs: list[str], prompt: str,
                progress: Callable[[int], None] | None) -> tuple[np.ndarray, int]:
        """Raw vectors of ``inputs`` (prompt included) and how many were truncated."""

    @abstractmethod
    def _model_query_prefix(self) -> str:
        """The query prompt the model itself defines (its config), used when none is given."""

    def _model_document_prefix(self) -> str:
        return ""

    def __repr__(self) -> str:
        return self.describe()

    # ------------------------------------------------------------------ prompts
    def query_prefix(self, instruction: str | None = None) -> str:
        """The text put in front of every query (``""`` when none)."""
        if instruction is not None:
            return _instruction_prompt(instruction)
        if self.query_instruction is not None:
            return _instruction_prompt(self.query_instruction)
        if self._query_prompt is not None:
            return self._query_prompt
        return self._model_query_prefix()

    @property
    def document_prefix(self) -> str:
        """The text put in front of every document (``""`` for most models)."""
        return self._document_prompt if self._document_prompt is not None else self._model_document_prefix()

    # ------------------------------------------------------------------ embedding
    def _embed(self, texts: list[str], *, prompt: str, count: bool = True, show_progress: bool = False,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        start = time.perf_counter()
        inputs = [prompt + t for t in texts] if prompt else texts
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(inputs), unit="text", desc="embedding")
            progress = _both(bar.update, progress)
        try:
            pooled, truncated = self._pooled(inputs, prompt, progress)
        finally:
            if bar is not None:
                bar.close()
        if truncated:  # counted; the reindex job reports them once, at the end
            self.stats.add(truncated=truncated)
            log.debug("%d of %d texts were longer than max_length=%d tokens and were truncated",
                      truncated, len(texts), self.max_length)
        if count:
            self.stats.add(seconds=time.perf_counter() - start)
        dims = self._dims or pooled.shape[1]
        if pooled.shape[1] < dims:
            raise EmbeddingError(f"the embedding model returned {pooled.shape[1]} dimensions, fewer than dims={dims}; "
                                 "lower dims or check the model name.")
        if self.normalize:
            return truncate_dims(pooled, dims, True)
        return np.ascontiguousarray(pooled[:, :dims], dtype=np.float32)

    def embed_documents(self, texts: Sequence[str], *, show_progress: bool = False,
                        progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed documents: float32 array (len(texts), dims), unit rows, input order kept.
        ``progress`` is called with the number of texts of each batch done."""
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dims), dtype=np.float32)
        return self._embed(items, prompt=self.document_prefix, show_progress=show_progress, progress=progress)

    def embed_queries(self, texts: Sequence[str], *, instruction: str | None = None) -> np.ndarray:
        """Embed search queries with the query instruction/prompt (``instruction=""``: none)."""
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dims), dtype=np.float32)
        return self._embed(items, prompt=self.query_prefix(instruction))

    def embed_query(self, text: str, *, instruction: str | None = None) -> np.ndarray:
        """Embed one query: float32 array (dims,)."""
        if not isinstance(text, str):
            raise EmbeddingError(f"query must be a str, got {'None' if text is None else type(text).__name__}.")
        return self.embed_queries([text], instruction=instruction)[0]

    def settings_fingerprint(self) -> str:
        """``"<family>-<dims>-<12 hex>"`` over :meth:`settings`; the reindex job stores it with each
        vector and re-embeds when it changes. Device, dtype and batch size are left out: they change
        vectors only by rounding."""
        s = self.settings()
        digest = hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:12]
        family = s.get("model_type") or re.sub(r"[^a-z0-9.]+", "-", self.model_id.lower().rsplit("/", 1)[-1])
        return f"{family}-{s['dims']}-{digest}"


def _both(first: Callable[[int], Any], second: Callable[[int], None] | None) -> Callable[[int], None]:
    def call(n: int) -> None:
        first(n)
        if second is not None:
            second(n)
    return call


class LocalEmbedder(Embedder):
    """Runs a transformers model here (torch). ``model``: a hub id or a local folder.

    Pooling, normalisation, max length and prompts come from the model's sentence-transformers
    files and can be overridden: ``pooling``, ``normalize`` (True: unit vectors; None: follow the
    model's ``Normalize`` module; False: raw pooled vectors), ``max_length`` (capped at the model's
    own limit), ``query_prompt``/``document_prompt`` (raw prefixes), ``query_instruction``.
    Also: ``devices`` (one replica each), ``revision`` (hub revision), ``attn_implementation``,
    ``batch_tokens`` (token budget per batch), ``max_batch_size`` (rows per batch cap).
    """

    def __init__(self, model: str | os.PathLike[str] = DEFAULT_MODEL, *, dims: int | None = None,
                 device: str | None = None, dtype: str | None = None, max_length: int = DEFAULT_MAX_LENGTH,
                 pooling: str | None = None, normalize: bool | None = True, batch_tokens: int | None = None,
                 query_instruction: str | None = None, trust_remote_code: bool = False,
                 devices: Sequence[str] | None = None, revision: str | None = None, query_prompt: str | None = None,
                 document_prompt: str | None = None, attn_implementation: str | None = None,
                 max_batch_size: int = 4096, base_url: None = None) -> None:
        if base_url:
            raise ConfigError("LocalEmbedder runs the model here; for a server use Embedder(model, base_url=...).")
        _check_positive(max_length=max_length, max_batch_size=max_batch_size, batch_tokens=batch_tokens)
        self._init_common(model, dims, query_instruction, query_prompt, document_prompt)
        from es_semantic.embedding.local import LocalBackend  # torch is imported only here

        path, self.revision = resolve_model_dir(self.model_id, revision=revision)
        self.spec: ModelSpec = read_model_spec(path, self.model_id, self.revision)
        self.pooling = _normalise_pooling(pooling) if pooling else self.spec.pooling
        self.normalize = self.spec.normalize if normalize is None else bool(normalize)
        limit = self.length_limit
        self.max_length = min(int(max_length), limit) if limit else int(max_length)
        self._backend = LocalBackend(
            self.spec, pooling=self.pooling, max_length=self.max_length, device=device, devices=devices,
            dtype=dtype, batch_tokens=batch_tokens, trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation, max_batch_size=max_batch_size,
        )
        native = self.native_dims
        if dims is not None and int(dims) > native:
            raise ConfigError(f"dims={dims} is more than model {self.model_id!r} produces ({native}); use dims <= "
                              f"{native} (smaller values truncate, Matryoshka-style).")
        self._dims = int(dims) if dims is not None else native
        self._digest = weights_digest(path)

    @property
    def dims(self) -> int:
        assert self._dims is not None
        return self._dims

    @property
    def native_dims(self) -> int:
        return int(self._backend.output_dims)

    @property
    def weights_digest(self) -> str | None:
        """sha256 over every byte of the model folder's weight, config and tokenizer files: the same
        for a copy of the model wherever it lies, another one after any edit of them."""
        return self._digest

    @property
    def length_limit(self) -> int | None:
        """The model's ``max_seq_length`` (sentence-transformers), else its position embeddings."""
        return self.spec.max_seq_length or self.spec.position_limit

    @property
    def device(self) -> str:
        return ",".join(str(d) for d in self._backend.devices)

    @property
    def batch_tokens(self) -> int:
        return int(self._backend.batch_tokens)

    @property
    def chunk_size_hint(self) -> int:
        """A few hundred on CPU, thousands on a big GPU: each call sorts and batches only its own
        texts, so it should hold several token-budget batches' worth."""
        replicas = len(self._backend.devices)
        return int(min(16384, max(256, self._backend.batch_tokens * replicas // 64)))

    def describe(self) -> str:
        return (f"LocalEmbedder(model={self.model_id!r}, device={self.device!r}, dims={self._dims}, "
                f"pooling={self.pooling!r}, normalize={self.normalize}, max_length={self.max_length})")

    def _model_query_prefix(self) -> str:
        if "query" in self.spec.prompts:
            return self.spec.prompts["query"]
        # decoder embedding models are instruction-tuned (Qwen3, gte-Qwen, e5-mistral)
        if self.spec.is_decoder and not self.spec.prompts:
            return _instruction_prompt(DEFAULT_QUERY_TASK)
        return ""

    def _model_document_prefix(self) -> str:
        prompts = self.spec.prompts
        for name in ("document", "passage", "corpus", self.spec.default_prompt_name):
            if name and name in prompts:
                return prompts[name]
        return ""

    def _pooled(self, inputs: list[str], prompt: str,
                progress: Callable[[int], None] | None) -> tuple[np.ndarray, int]:
        prompt_length = None
        if prompt and not self.spec.include_prompt:
            prompt_length = self._backend.prompt_length(prompt)
        return self._backend.embed(inputs, self.stats, prompt_length=prompt_length, progress=progress)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model sees it (special tokens included, before truncation)."""
        return self._backend.count_tokens(check_texts(texts))

    def settings(self) -> dict[str, Any]:
        return {
            "backend": "local",
            # content digest, not the path or hub id: the same weights fingerprint the same
            # wherever they are loaded from; edited weights do not
            "weights": self._digest, "model_type": self.spec.model_type, "dims": self.dims,
            "pooling": self.pooling, "include_prompt": self.spec.include_prompt, "normalize": self.normalize,
            "max_length": self.max_length, "lower_case": self.spec.do_lower_case,
            "document_prompt": self.document_prefix,
        }


class RemoteEmbedder(Embedder):
    """Asks an OpenAI-compatible ``POST {base_url}/embeddings`` server (vLLM, SGLang, TEI, Infinity)
    for the vectors of ``model``. ``api_key`` (else ``ES_SEMANTIC_EMBEDDING_API_KEY`` or
    ``OPENAI_API_KEY``) goes in the Authorization header and never into a message, a log line or
    ``repr``; neither does a password in ``base_url``. Also: ``timeout``, ``max_retries``,
    ``request_batch_size``, ``concurrency``. ``max_length`` is the server's business: it truncates or
    refuses by its own limit."""

    pooling = "server"

    def __init__(self, model: str = DEFAULT_MODEL, *, base_url: str, api_key: str | None = None,
                 dims: int | None = None, max_length: int = DEFAULT_MAX_LENGTH, normalize: bool | None = True,
                 query_instruction: str | None = None, query_prompt: str | None = None,
                 document_prompt: str | None = None, timeout: float = 60.0, max_retries: int = 6,
                 request_batch_size: int = 32, concurrency: int = 4) -> None:
        from es_semantic.embedding.remote import RemoteBackend

        if not base_url:
            raise ConfigError("RemoteEmbedder needs base_url, the embedding server's URL.")
        _check_positive(max_length=max_length)
        self._init_common(model, dims, query_instruction, query_prompt, document_prompt)
        self.normalize = normalize is not False
        self.max_length = int(max_length)
        self._backend = RemoteBackend(base_url, self.model_id, api_key=api_key, timeout=timeout,
                                      max_retries=max_retries, request_batch_size=request_batch_size,
                                      concurrency=concurrency)
        if self.max_length != DEFAULT_MAX_LENGTH:
            log.warning("max_length=%d is not applied with a remote embedding server (%s): the server enforces its "
                        "model's own limit; an input over it is an EmbeddingError naming the input, unless the "
                        "server is started with its truncation option", self.max_length, self._backend.display_url)
        self._dims = int(dims) if dims is not None else None

    @property
    def dims(self) -> int:
        if self._dims is None:  # not given: ask the server once
            self._dims = int(self._embed(["dimension probe"], prompt="", count=False).shape[1])
        return self._dims

    @property
    def chunk_size_hint(self) -> int:
        return self._backend.request_batch_size * self._backend.concurrency * 2

    def describe(self) -> str:
        return (f"RemoteEmbedder(model={self.model_id!r}, url={self._backend.display_url!r}, dims={self._dims}, "
                f"normalize={self.normalize})")

    def _model_query_prefix(self) -> str:
        # no config files to read: models known to expect a Qwen-style instruction on queries
        return _instruction_prompt(DEFAULT_QUERY_TASK) if _INSTRUCTION_MODELS.search(self.model_id) else ""

    def _pooled(self, inputs: list[str], prompt: str,
                progress: Callable[[int], None] | None) -> tuple[np.ndarray, int]:
        return self._backend.embed(inputs, self.stats, dims=self._dims, progress=progress)

    def settings(self) -> dict[str, Any]:
        return {"backend": "remote", "model": self.model_id, "dims": self.dims, "normalize": self.normalize,
                "document_prompt": self.document_prefix}

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
