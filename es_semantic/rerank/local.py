"""Local rerankers: a transformers model on this machine, scored in token-budget batches.

The device and dtype are chosen as for the embedder (``embedding.devices``), pairs are batched by
padded tokens (``embedding.batching``), and a batch that runs out of memory is halved until it
fits. What the model is asked and how its output becomes a score lives in a *head*: Qwen3-Reranker
(``*ForCausalLM``, :mod:`.qwen3`) or a cross-encoder (``*ForSequenceClassification``, :mod:`.cross_encoder`).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from es_semantic.embedding.batching import plan_batches
from es_semantic.embedding.devices import default_batch_tokens, empty_cache, is_oom, resolve_devices, resolve_dtype
from es_semantic.embedding.local import pad_batch
from es_semantic.embedding.model_config import resolve_model_dir
from es_semantic.embedding.stats import EmbedStats
from es_semantic.errors import InvalidValue, ModelLoadError, RerankError
from es_semantic.rerank import qwen3
from es_semantic.rerank.base import Reranker, model_name
from es_semantic.rerank.cross_encoder import CrossEncoderHead

log = logging.getLogger(__name__)

_MAX_BATCH_ROWS = 256


def _architecture(folder: Path, model_id: str) -> tuple[str, dict[str, Any]]:
    """``"causal"`` or ``"classifier"``, and the model's config.json."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the config.json of reranker {model_id!r} in {folder}: {exc}") from None
    architectures = config.get("architectures") or []
    if any(a.endswith("ForCausalLM") for a in architectures):
        return "causal", config
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "classifier", config
    raise ModelLoadError(
        f"reranker {model_id!r} has architectures {architectures}; use a *ForCausalLM checkpoint scored by its "
        f"yes/no logits (Qwen3-Reranker) or a *ForSequenceClassification cross-encoder"
    )


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No "Loading weights" bar and load report from transformers (noise in every CLI command)."""
    from transformers.utils import logging as hf_logging

    bar_was_on, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_was_on:
            hf_logging.enable_progress_bar()


def _load_model(kind: str, folder: Path, model_id: str, device: torch.device, dtype: torch.dtype,
                trust_remote_code: bool) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
    try:
        with _quiet_transformers():
            model = auto.from_pretrained(str(folder), dtype=dtype, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - many loader error types, one message
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ModelLoadError(f"cannot load the weights of reranker {model_id!r} from {folder}: "
                             f"{type(exc).__name__}: {first}") from None
    model.eval()
    model.requires_grad_(False)
    return model.to(device)


class LocalReranker(Reranker):
    """A reranker run here with torch. See :class:`~es_semantic.rerank.Reranker`.

    ``device``/``dtype`` as for the embedder (automatic by default: CUDA bf16/fp16, else CPU fp32);
    ``max_length`` tokens per pair (default: the model's limit, at most 8192); ``batch_tokens`` padded
    tokens per forward pass; ``instruction`` the Qwen3-Reranker task (default: web search).
    """

    backend = "local"

    def __init__(self, model: str | os.PathLike[str], *, device: str | None = None, dtype: str | None = None,
                 max_length: int | None = None, batch_tokens: int | None = None,
                 max_batch_size: int = _MAX_BATCH_ROWS, instruction: str | None = None,
                 trust_remote_code: bool = False, revision: str | None = None) -> None:
        from transformers import AutoTokenizer

        self.model_id = model_name(model)
        for name, value in (("max_length", max_length), ("batch_tokens", batch_tokens),
                            ("max_batch_size", max_batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidValue(name, value, "a whole number, 1 or more")
        folder, self.revision = resolve_model_dir(self.model_id, revision=revision)
        self.kind, config = _architecture(folder, self.model_id)
        self.device = resolve_devices(device)[0]
        self.dtype = resolve_dtype(dtype, self.device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        except Exception as exc:  # noqa: BLE001 - one clear message
            raise ModelLoadError(f"cannot load the tokenizer of reranker {self.model_id!r} from {folder}: "
                                 f"{type(exc).__name__}: {str(exc).strip()[:300]}") from None
        self.max_length = max_length or self._model_limit(tokenizer, config)
        self.head: qwen3.YesNoHead | CrossEncoderHead
        if self.kind == "causal":
            self.head = qwen3.YesNoHead(tokenizer, self.model_id, instruction=instruction, max_length=self.max_length)
        else:
            self.head = CrossEncoderHead(tokenizer, self.model_id, folder, config, max_length=self.max_length)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad_id or 0)
        self.model = _load_model(self.kind, folder, self.model_id, self.device, self.dtype, trust_remote_code)
        self._takes_token_types = "token_type_ids" in inspect.signature(self.model.forward).parameters
        hidden = int(config.get("hidden_size") or 0) or None
        self.batch_tokens = batch_tokens or default_batch_tokens(self.device, self.dtype, hidden)
        self.max_batch_size = max_batch_size
        self.stats = EmbedStats()

    def _model_limit(self, tokenizer: Any, config: dict[str, Any]) -> int:
        """Tokens per pair: the tokenizer's and the position embeddings' limit (where sentence-transformers
        saves a CrossEncoder's max_length), at most 8192 for a causal LM."""
        limits = [n for n in (tokenizer.model_max_length, config.get("max_position_embeddings"))
                  if isinstance(n, int) and 0 < n < 1_000_000]
        limit = min(limits) if limits else qwen3.DEFAULT_MAX_LENGTH
        return min(limit, qwen3.DEFAULT_MAX_LENGTH) if self.kind == "causal" else limit

    def __repr__(self) -> str:
        return (f"LocalReranker(model={self.model_id!r}, kind={self.kind}, device={str(self.device)!r}, "
                f"max_length={self.max_length})")

    def _score(self, query: str, documents: list[str]) -> np.ndarray:
        ids, types, truncated = self.head.encode(query, documents)
        if truncated:
            self.stats.add(truncated=truncated)
            log.warning("%d of %d documents were cut to max_length=%d tokens for reranking",
                        truncated, len(documents), self.max_length)
        out = np.zeros(len(documents), dtype=np.float32)
        lengths = [len(row) for row in ids]
        with torch.inference_mode():
            for batch in plan_batches(lengths, self.batch_tokens, max_batch_size=self.max_batch_size):
                self._run(batch, ids, types, out)
        self.stats.add(texts=len(documents), tokens=sum(lengths))
        return out

    def _inputs(self, rows: list[int], ids: list[list[int]], types: list[list[int]] | None) -> dict[str, torch.Tensor]:
        input_ids, mask = pad_batch([ids[r] for r in rows], self.pad_id, self.head.left_pad)
        inputs = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        if types is not None and self._takes_token_types:
            inputs["token_type_ids"] = torch.from_numpy(pad_batch([types[r] for r in rows], 0, self.head.left_pad)[0])
        return {name: t.to(self.device) for name, t in inputs.items()}

    def _run(self, rows: list[int], ids: list[list[int]], types: list[list[int]] | None, out: np.ndarray) -> None:
        """Score one batch into ``out``, halving it on out-of-memory until it fits."""
        inputs = self._inputs(rows, ids, types)
        try:
            scores = self.head.scores(self.model, inputs)
        except Exception as exc:
            if not is_oom(exc):
                raise
            empty_cache(self.device)
            if len(rows) == 1:
                raise RerankError(f"out of memory on {self.device} reranking one pair of "
                                  f"{inputs['input_ids'].shape[1]} tokens; lower max_length") from None
            self.batch_tokens = max(1, inputs["input_ids"].numel() // 2)
            self.stats.add(oom_retries=1)
            log.warning("out of memory on %s with %d pairs; halving the batch", self.device, len(rows))
            half = len(rows) // 2
            self._run(rows[:half], ids, types, out)
            self._run(rows[half:], ids, types, out)
            return
        out[rows] = scores.cpu().numpy()
        self.stats.add(batches=1, padded_tokens=inputs["input_ids"].numel())
