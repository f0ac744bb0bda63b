"""Cross-encoders: a ``*ForSequenceClassification`` model over the (query, document) pair.

Scores equal sentence-transformers' ``CrossEncoder.predict``: the pair is tokenised as two
segments (``longest_first`` truncation), and the activation is read where sentence-transformers
reads it: ``config_sentence_transformers.json`` ``activation_fn`` (in a folder with ``modules.json``), else ``config.json``
``sentence_transformers.activation_fn`` (the 4.x layout), else ``sbert_ce_default_activation_function``
(before 4.0), else sigmoid for one label. Only ``torch.*`` activations are taken, as
sentence-transformers does without ``trust_remote_code``.
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from es_semantic.errors import ModelLoadError

log = logging.getLogger(__name__)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def activation_path(folder: Path, config: dict[str, Any], model_id: str) -> str | None:
    """The dotted name of the activation the model folder configures, or None for the default."""
    st_config: dict[str, Any] = {}
    if (folder / "modules.json").is_file():  # a 5.x+ CrossEncoder.save layout
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules if isinstance(m, dict)]
        if kinds != ["Transformer"]:
            raise ModelLoadError(f"cross-encoder {model_id!r} has sentence-transformers modules {kinds}; "
                                 "only a Transformer with its classification head is reproduced here")
        st_config = _read_json(folder / "config_sentence_transformers.json")
    for path in (st_config.get("activation_fn"),
                 (config.get("sentence_transformers") or {}).get("activation_fn"),
                 config.get("sbert_ce_default_activation_function")):
        if path:
            return str(path)
    return None


def load_activation(path: str | None, model_id: str) -> torch.nn.Module:
    """The activation module for ``path`` (sigmoid when None)."""
    if path is None:
        return torch.nn.Sigmoid()
    if not path.startswith("torch."):
        log.warning("reranker %s: activation %s is not a torch one; using sigmoid, as sentence-transformers "
                    "does without trust_remote_code", model_id, path)
        return torch.nn.Sigmoid()
    module_name, _, class_name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)()
    except (ImportError, AttributeError, TypeError) as exc:
        raise ModelLoadError(f"reranker {model_id!r}: cannot build its activation {path!r}: {exc}") from None


class CrossEncoderHead:
    """Tokenises pairs as two segments and turns a classifier's logit into a score."""

    left_pad = False

    def __init__(self, tokenizer: Any, model_id: str, folder: Path, config: dict[str, Any], *, max_length: int) -> None:
        # transformers leaves id2label out of config.json for its default of two labels
        labels = len(config["id2label"]) if config.get("id2label") else int(config.get("num_labels") or 2)
        if labels != 1:
            raise ModelLoadError(f"cross-encoder {model_id!r} has {labels} labels; a reranker needs one relevance "
                                 "score per pair (num_labels=1)")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.activation = load_activation(activation_path(folder, config, model_id), model_id)

    def encode(self, query: str, documents: list[str]) -> tuple[list[list[int]], list[list[int]] | None, int]:
        """Token ids and token type ids per pair (None where the model has none); truncation is not counted."""
        enc = self.tokenizer([query] * len(documents), documents, truncation="longest_first",
                             max_length=self.max_length)
        return enc["input_ids"], enc.get("token_type_ids"), 0

    def scores(self, model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(**inputs).logits.float()
        return self.activation(logits).reshape(-1)
