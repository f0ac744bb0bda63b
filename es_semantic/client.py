"""Building the official client from settings, and detecting what the server supports.

The version is read once per client (``info``) and turned into feature flags, so later code asks
``server_info(es).supports_linear_retriever`` instead of comparing version numbers everywhere.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

from elasticsearch import (
    ApiError,
    AuthenticationException,
    AuthorizationException,
    ConnectionTimeout,
    Elasticsearch,
)
from elasticsearch import (
    ConnectionError as EsConnectionError,
)
from elasticsearch import (
    SSLError as EsSSLError,
)

from .config import ConnectionSettings, redact
from .errors import ConnectionFailed


@dataclass(frozen=True)
class ServerInfo:
    """What the connected server is, and which features es-semantic may use with it."""

    version: tuple[int, int, int]
    distribution: str = "elasticsearch"

    @property
    def version_string(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def supports_rrf_retriever(self) -> bool:
        # Retrievers, rrf among them, became generally available in 8.16.
        return self.version >= (8, 16, 0)

    @property
    def supports_linear_retriever(self) -> bool:
        # The linear retriever arrived in 8.18 / 9.0.
        return self.version >= (8, 18, 0)

    @property
    def supports_base64_vectors(self) -> bool:
        # dense_vector accepts base64-encoded big-endian float32 strings from 9.3.
        return self.version >= (9, 3, 0)

    @property
    def excludes_source_vectors(self) -> bool:
        # From 9.2, dense_vector values are left out of _source unless a read asks for them.
        return self.version >= (9, 2, 0)

    @classmethod
    def from_info(cls, body: Any) -> ServerInfo:
        version = (body or {}).get("version", {})
        number = str(version.get("number", "0.0.0"))
        parts = []
        for piece in number.split("-")[0].split(".")[:3]:
            parts.append(int(piece) if piece.isdigit() else 0)
        while len(parts) < 3:
            parts.append(0)
        return cls(version=(parts[0], parts[1], parts[2]), distribution=version.get("distribution", "elasticsearch"))


_INFO_CACHE: weakref.WeakKeyDictionary[Any, ServerInfo] = weakref.WeakKeyDictionary()
_INFO_LOCK = threading.Lock()


def server_info(es: Elasticsearch) -> ServerInfo:
    """The server's version and features, asked once per client transport and cached."""
    transport = es.transport
    with _INFO_LOCK:
        cached = _INFO_CACHE.get(transport)
    if cached is not None:
        return cached
    info = ServerInfo.from_info(es.info().body)
    with _INFO_LOCK:
        _INFO_CACHE[transport] = info
    return info


def make_client(settings: ConnectionSettings, **client_options: Any) -> Elasticsearch:
    """An ``Elasticsearch`` client for ``settings``; makes no request."""
    kwargs = settings.client_kwargs()
    kwargs.update(client_options)
    return Elasticsearch(**kwargs)


def connect(settings: ConnectionSettings, **client_options: Any) -> Elasticsearch:
    """A client that has been checked to reach the cluster, with its version detected.

    Raises ``ConnectionFailed`` with one line saying what failed (``reason`` "unreachable",
    "timeout" or "tls"; ``status`` where the cluster answered). Secrets never appear in the message.
    """
    es = make_client(settings, **client_options)
    where = settings.describe()
    try:
        server_info(es)
    except AuthenticationException:
        raise ConnectionFailed(f"{where} rejected the credentials (401)", status=401) from None
    except AuthorizationException:
        raise ConnectionFailed(
            f"{where} refused access (403): the user or API key lacks the 'monitor' cluster privilege "
            "needed to read the server version", status=403,
        ) from None
    except EsSSLError as exc:
        if _plain_http_answer(exc) and settings.url.startswith("https://") and not settings.cloud_id:
            raise ConnectionFailed(
                f"TLS handshake with {where} failed ({_plain_http_answer(exc)}): the server may be speaking plain "
                f"http; try {redact(settings.url, settings).replace('https://', 'http://', 1)}"
            ) from None
        raise ConnectionFailed(f"TLS handshake with {where} failed ({redact(str(exc), settings)[:200]})",
                               reason="tls") from None
    except ConnectionTimeout:
        raise ConnectionFailed(f"cannot reach Elasticsearch at {where} (timed out after "
                               f"{settings.request_timeout:g}s)", reason="timeout") from None
    except EsConnectionError as exc:
        raise ConnectionFailed(f"cannot reach Elasticsearch at {where} ({_short_reason(exc, settings)})",
                               reason="unreachable") from None
    except ApiError as exc:
        raise ConnectionFailed(
            f"{where} answered {exc.meta.status} to GET /: {redact(str(exc.message), settings)}", status=exc.meta.status
        ) from None
    except Exception as exc:  # noqa: BLE001 - e.g. UnsupportedProductError from a non-Elasticsearch server
        raise ConnectionFailed(
            f"{where} did not answer like Elasticsearch: {redact(str(exc), settings)[:200]}"
        ) from None
    return es


def _plain_http_answer(exc: Exception) -> str | None:
    """The OpenSSL reason that means the other end answered TLS with something else (plain http), or None."""
    text = str(getattr(exc, "message", "") or exc).lower()
    for marker in ("wrong version number", "record layer failure", "http request", "unknown protocol"):
        if marker in text:
            return marker
    return None


def _short_reason(exc: Exception, settings: ConnectionSettings) -> str:
    text = str(getattr(exc, "message", "") or exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "No route to host"):
        if marker.lower() in text.lower():
            return marker.lower()
    return redact(text, settings)[:160]
