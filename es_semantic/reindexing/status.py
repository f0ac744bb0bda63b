"""``status``: how many documents have a current vector, a stale one, or none.

Current means the stored fingerprint equals the one the document would get now (same embedder
settings, same text). That needs the model's settings fingerprint; when the model cannot be
loaded here, the check falls back to comparing the stored model id with the configured one,
which cannot see text edits, and says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..config import SemanticConfig
from ..mappings import read_config
from .fingerprint import Fingerprinter, stored_info
from .reader import read_pages

#: ``stale_models`` key for vectors whose bookkeeping names no model.
NO_MODEL_RECORDED = "no model recorded"


@dataclass
class IndexStatus:
    """Counts of documents by the state of their vector."""

    index: str
    config: dict[str, Any]
    method: str  # "fingerprint" | "model-id"
    total: int = 0
    current: int = 0
    stale: int = 0
    missing: int = 0  # have text, no vector
    empty: int = 0  # no text to embed, no vector
    note: str = ""
    stale_models: dict[str, int] = field(default_factory=dict)  # stored model -> stale count
    #: the concrete indices behind ``index`` (itself when it is one)
    concrete: list[str] = field(default_factory=list)
    #: tokens a text is cut to: the loaded model's (its limit, or the stored max_length below it);
    #: without a model, the stored one (None: the model's limit, unknown here)
    max_length: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        cfg = self.config
        behind = [c for c in self.concrete if c != self.index]
        by_model = ", ".join(f"{model}: {count}" for model, count in
                             sorted(self.stale_models.items(), key=lambda kv: (-kv[1], kv[0])))
        out = [
            f"index: {self.index}" + (f" (alias of {', '.join(behind)})" if behind else ""),
            (f"model: {cfg['model']}  dims: {cfg['dims']}  similarity: {cfg['similarity']}  "
             f"index_options: {cfg['index_options'].get('type')}  "
             f"max_length: {self.max_length or 'the model limit (model not loaded)'}"),
            (f"vector field: {cfg['vector_field']}  text fields: {', '.join(cfg['text_fields'])}"
             + (f"  template: {cfg['text_template']!r}" if cfg.get("text_template") else "")),
            f"query instruction: {cfg.get('query_instruction') or 'the model default'}",
            ("no-good-match threshold (min_score): "
             + ("none" if cfg.get("min_score") is None else f"{cfg['min_score']:g}")),
            f"documents: {self.total}",
            f"  current vector: {self.current}",
            f"  stale vector:   {self.stale}" + (f"  (by stored model: {by_model})" if self.stale_models else ""),
            f"  no vector:      {self.missing}",
            f"  no text:        {self.empty}",
            f"checked by: {self.method}" + (f" ({self.note})" if self.note else ""),
        ]
        return out


def index_status(es: Any, index: str, *, embedder: Any = None, model: str | None = None,
                 load_model: bool = True, page_size: int = 1000, embedding_url: str | None = None,
                 embedding_api_key: str | None = None) -> IndexStatus:
    """Count documents of ``index`` by vector state. ``model`` loads the configured model from a
    local path; ``load_model=False`` (or a model that fails to load) compares model ids only."""
    config: SemanticConfig = read_config(es, index)
    fp: Fingerprinter | None = None
    note = ""
    if embedder is None and load_model:
        try:
            from .job import build_embedder
            from .options import ReindexOptions

            # an embedding server: its settings fingerprint the vectors it wrote (no request made)
            remote = ReindexOptions(embedding_url=embedding_url, embedding_api_key=embedding_api_key)
            embedder = build_embedder(replace(config, max_length=None) if embedding_url else config,
                                      model or config.model, remote)
        except Exception as exc:  # noqa: BLE001 - any load failure falls back, and is reported
            note = (f"model {model or config.model!r} could not be loaded ({type(exc).__name__}: "
                    f"{str(exc)[:160]}); compared stored model ids only, text edits are not detected")
    elif embedder is None:
        note = "model not loaded; compared stored model ids only, text edits are not detected"
    if embedder is not None:
        fp = Fingerprinter(embedder.settings_fingerprint(), config)
    status = IndexStatus(index=index, config=config.to_meta(), method="fingerprint" if fp else "model-id", note=note,
                         concrete=sorted(es.indices.get(index=index).body),
                         max_length=int(embedder.max_length) if embedder is not None else config.max_length)
    for page in read_pages(es, index, source_includes=[*config.text_fields, config.info_field],
                           vector_field=config.vector_field, page_size=page_size):
        for doc in page:
            status.total += 1
            info = stored_info(doc.source, config)
            text = config.build_text(doc.source)
            if not doc.has_vector:
                if text.strip():
                    status.missing += 1
                else:
                    status.empty += 1
                continue
            if fp is None:
                ok = info.get("model") == config.model
            else:
                ok = info.get("fingerprint") == fp(text)
            if ok:
                status.current += 1
            else:
                status.stale += 1
                key = str(info["model"]) if info.get("model") else NO_MODEL_RECORDED
                status.stale_models[key] = status.stale_models.get(key, 0) + 1
    return status
