"""Fingerprints: when a document's vector is current.

A fingerprint hashes everything that decides a document's vector: the embedder's settings
fingerprint (model, pooling, dims, max length, ...), how text is built from the document
(text fields, template), and the text itself. The reindex job stores it in
``<vector_field>_info.fingerprint`` next to the vector; a later run recomputes it from the
current document and skips the document when both agree. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..config import SemanticConfig

#: Bumped if the way fingerprints are computed ever changes (forces a re-embed of everything).
FINGERPRINT_VERSION = 1
#: Hex characters kept from the sha256 digest: 128 bits is plenty to tell texts apart.
FINGERPRINT_CHARS = 32


def text_settings(config: SemanticConfig) -> dict[str, Any]:
    """The configuration that decides which text a document turns into."""
    return {"text_fields": list(config.text_fields), "text_template": config.text_template}


class Fingerprinter:
    """Computes fingerprints for one (embedder settings, text settings) pair.

    The settings part is hashed once; each document only adds its text, so computing a
    fingerprint costs one sha256 over the text.
    """

    def __init__(self, settings_fingerprint: str, config: SemanticConfig) -> None:
        self.settings_fingerprint = settings_fingerprint
        prefix = json.dumps(
            {"v": FINGERPRINT_VERSION, "embedder": settings_fingerprint, "text": text_settings(config)},
            sort_keys=True,
            ensure_ascii=False,
        )
        self._base = hashlib.sha256(prefix.encode("utf-8") + b"\x00")

    def __call__(self, text: str) -> str:
        digest = self._base.copy()
        digest.update(text.encode("utf-8"))
        return digest.hexdigest()[:FINGERPRINT_CHARS]


def fingerprint(settings_fingerprint: str, config: SemanticConfig, text: str) -> str:
    """The fingerprint of ``text`` embedded with these embedder and text settings."""
    return Fingerprinter(settings_fingerprint, config)(text)


def stored_info(source: Mapping[str, Any], config: SemanticConfig) -> Mapping[str, Any]:
    """The ``<vector_field>_info`` object of a document's ``_source`` (empty when absent)."""
    info = source.get(config.info_field)
    return info if isinstance(info, Mapping) else {}
