"""Connection settings and the semantic configuration stored in the index mapping ``_meta``.

The index itself is the one source of truth: ``install-mappings`` writes a ``SemanticConfig`` into
``mappings._meta.es_semantic``; ``reindex``, ``status``, ``search``, ``eval`` and ``hybrid_search``
read it back with ``SemanticConfig.from_mapping``. Application code never repeats the model name,
and a scheduled job cannot embed with another model than the one searches use.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import ConfigError, InvalidIndexName, InvalidValue, NotConfigured

DEFAULT_MODEL = "Qwen/Qwen3-Embedding-0.6B"
DEFAULT_DIMS = 1024
DEFAULT_VECTOR_FIELD = "embedding"
DEFAULT_TEXT_FIELDS = ("question", "answer")
DEFAULT_ES_URL = "http://localhost:9200"

#: Key under the mapping ``_meta`` that holds our configuration; other ``_meta`` keys are kept.
META_KEY = "es_semantic"
#: Bumped when the stored layout changes incompatibly; readers refuse newer versions.
SCHEMA_VERSION = 1

SIMILARITIES = ("cosine", "dot_product", "l2_norm", "max_inner_product")
INDEX_OPTION_TYPES = (
    "hnsw",
    "int8_hnsw",
    "int4_hnsw",
    "bbq_hnsw",
    "flat",
    "int8_flat",
    "int4_flat",
    "bbq_flat",
)
MAX_DIMS = 4096
#: The settings a calibrated ``min_score`` depends on: change one and the query-document
#: similarities move, so a threshold calibrated before no longer means what it did.
SIMILARITY_DEFINING = (
    "model", "dims", "similarity", "vector_field", "text_fields", "text_template", "query_instruction",
)
#: What a calibrated ``fusion`` depends on besides: the BM25 leg's analysis.
FUSION_DEFINING = (*SIMILARITY_DEFINING, "languages")
_FIELD_NAME = re.compile(r"^[^_.\s][^\s]*$")
#: Characters Elasticsearch refuses in an index or alias name (MetadataCreateIndexService).
INVALID_INDEX_CHARS = '\\/*?"<>| ,#:'


#: How deep a JSON query (``--query``, ``--filter``) may nest; real queries stay far below it.
MAX_JSON_DEPTH = 100


def parse_json_object(text: str, option: str) -> dict[str, Any]:
    """``text`` as a JSON object (query DSL), or ``ConfigError`` naming ``option``: not JSON, not an
    object, or nested deeper than ``MAX_JSON_DEPTH`` levels."""
    import json

    if json_nesting(text) > MAX_JSON_DEPTH:
        raise ConfigError(f"{option} nests deeper than {MAX_JSON_DEPTH} levels", option=option)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{option} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                          option=option) from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option} must be a JSON object of query DSL, e.g. {{\"term\": {{\"tag\": \"a\"}}}}",
                          option=option)
    return value


def check_json_depth(value: Any, option: str) -> Any:
    """``value`` (dicts and lists, as ``json.loads`` makes them), or ``ConfigError`` naming ``option``
    where it nests deeper than ``MAX_JSON_DEPTH`` levels (the client could not serialise it)."""
    level = [value]
    for _ in range(MAX_JSON_DEPTH + 1):
        level = [item for node in level if isinstance(node, (dict, list))
                 for item in (node.values() if isinstance(node, dict) else node)]
        if not level:
            return value
    raise ConfigError(f"{option} nests deeper than {MAX_JSON_DEPTH} levels", option=option)


def json_nesting(text: str) -> int:
    """How deep the brackets of the JSON ``text`` nest (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def check_index_name(index: Any) -> str:
    """``index`` if it names one index or alias as Elasticsearch allows, else ``InvalidIndexName``:
    not a string, empty, a wildcard, a list, ``_all``, a path (``../b``), a leading ``-_+``, over 255 bytes."""
    if not isinstance(index, str):
        raise InvalidIndexName(index, "give the name of one index or alias as a string")
    why = None
    if not index:
        why = "it is empty"
    elif any(ch in index for ch in INVALID_INDEX_CHARS):
        why = f"it contains {next(ch for ch in index if ch in INVALID_INDEX_CHARS)!r}"
    elif index.startswith(("-", "_", "+")):
        why = f"it starts with {index[0]!r}"
    elif index in (".", ".."):
        why = f"it is {index!r}"
    elif len(index.encode("utf-8")) > 255:
        why = "it is over 255 bytes long"
    if why:
        raise InvalidIndexName(index, why)
    return index


def _check_field_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _FIELD_NAME.match(name) or name.endswith("."):
        raise ConfigError(
            f"invalid {what} {name!r}: field names must be non-empty, contain no spaces, "
            "and not start with '_' or '.'"
        )


def parse_index_options(
    kind: str, *, m: int | None = None, ef_construction: int | None = None
) -> dict[str, Any]:
    """Build a ``dense_vector`` ``index_options`` mapping, validating what Elasticsearch would refuse."""
    if kind not in INDEX_OPTION_TYPES:
        raise ConfigError(
            f"unknown index options type {kind!r}; use one of {', '.join(INDEX_OPTION_TYPES)}"
        )
    options: dict[str, Any] = {"type": kind}
    graph = kind.endswith("_hnsw") or kind == "hnsw"
    for name, value in (("m", m), ("ef_construction", ef_construction)):
        if value is None:
            continue
        if not graph:
            raise ConfigError(f"{name} applies to HNSW index options, not {kind!r}", option=name, value=value)
        if not isinstance(value, int) or value < 2:
            raise InvalidValue(name, value, "an integer >= 2")
        options[name] = value
    return options


@dataclass(frozen=True)
class SemanticConfig:
    """What ``install-mappings`` records in the index and every other command reads back.

    ``query_instruction`` None means "the model's own default" (Qwen3-Embedding's retrieval task, a
    sentence-transformers ``query`` prompt, or nothing); an empty string means no instruction.
    ``text_template`` None means the configured text fields joined with a newline, empty ones
    skipped; otherwise a ``str.format`` template over the field names, e.g. ``"Q: {question}\\nA: {answer}"``.
    ``min_score`` is the "no good match" threshold on the query-document cosine similarity that
    ``hybrid_search`` applies by default (set by ``eval --calibrate --save`` or by hand); None for none.
    It belongs to the vectors: any change of a ``SIMILARITY_DEFINING`` setting drops it.
    ``max_length`` is the number of tokens a text is cut to before embedding (``reindex
    --max-length``); None means the model's own limit. It is left out of ``to_meta()`` while None.
    ``reranker`` is the model ``hybrid_search`` reranks with by default (``install-mappings
    --reranker``); None for none, and then left out of ``to_meta()``.
    ``languages`` are the language codes whose sub-fields (``.cjk``, ``.english``) the text fields
    have and BM25 searches (:mod:`es_semantic.languages`); None: not recorded. ``fusion`` is how
    ``hybrid_search`` fuses the legs by default on this index, chosen by ``eval --calibrate --save``
    (:func:`es_semantic.calibration.check_fusion`); None: the library defaults. A change of a
    ``FUSION_DEFINING`` setting drops it. Both are left out of ``to_meta()`` while None.
    """

    model: str = DEFAULT_MODEL
    dims: int = DEFAULT_DIMS
    similarity: str = "cosine"
    vector_field: str = DEFAULT_VECTOR_FIELD
    text_fields: tuple[str, ...] = DEFAULT_TEXT_FIELDS
    text_template: str | None = None
    query_instruction: str | None = None
    index_options: Mapping[str, Any] = field(default_factory=lambda: {"type": "int8_hnsw"})
    min_score: float | None = None
    max_length: int | None = None
    reranker: str | None = None
    languages: tuple[str, ...] | None = None
    fusion: Mapping[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.model, os.PathLike):  # a local folder given as a Path
            object.__setattr__(self, "model", os.fspath(self.model))
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("model must be a non-empty model id or local path")
        if isinstance(self.dims, bool) or not isinstance(self.dims, int) or not 1 <= self.dims <= MAX_DIMS:
            raise ConfigError(f"dims must be an integer between 1 and {MAX_DIMS}, got {self.dims!r}")
        if self.similarity not in SIMILARITIES:
            raise ConfigError(
                f"unknown similarity {self.similarity!r}; use one of {', '.join(SIMILARITIES)}"
            )
        _check_field_name(self.vector_field, "vector field")
        text_fields = self._checked_text_fields()
        object.__setattr__(self, "text_fields", text_fields)
        if self.text_template is not None:
            if not isinstance(self.text_template, str):
                raise ConfigError(f"text template must be a string such as '{{question}}', got {self.text_template!r}")
            self._check_template(self.text_template, text_fields)
        if not isinstance(self.index_options, Mapping):
            raise ConfigError(f"index_options must be a mapping such as {{'type': 'int8_hnsw'}}, "
                              f"got {self.index_options!r}")
        options = dict(self.index_options)
        parse_index_options(
            options.get("type", ""), m=options.get("m"), ef_construction=options.get("ef_construction")
        )
        object.__setattr__(self, "index_options", options)
        if self.min_score is not None:
            object.__setattr__(self, "min_score", check_min_score(self.min_score))
        if self.max_length is not None and (
                isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 1):
            raise InvalidValue("max_length", self.max_length, "a whole number of tokens >= 1")
        if self.reranker is not None and (not isinstance(self.reranker, str) or not self.reranker.strip()):
            raise InvalidValue("reranker", self.reranker, "a model id or path")
        self._check_search_settings()
        if self.schema_version > SCHEMA_VERSION:
            raise ConfigError(
                f"this index was configured by a newer es-semantic (schema {self.schema_version}, "
                f"this version reads up to {SCHEMA_VERSION}); upgrade es-semantic"
            )

    def _checked_text_fields(self) -> tuple[str, ...]:
        """The text fields as a tuple of distinct names, none of them es-semantic's own fields."""
        if isinstance(self.text_fields, str) or not isinstance(self.text_fields, (list, tuple)):
            raise ConfigError(f"text_fields must be a list of field names, e.g. ['question', 'answer'], "
                              f"got {self.text_fields!r}")
        text_fields = tuple(self.text_fields)
        if not text_fields:
            raise ConfigError("at least one text field is needed", option="text_fields", value=self.text_fields)
        for name in text_fields:
            _check_field_name(name, "text field")
        for name in text_fields:
            for own in (self.vector_field, self.info_field):
                if name == own or name.startswith(own + "."):
                    raise ConfigError(
                        f"text field {name!r} is es-semantic's own {'vector' if own == self.vector_field else 'bookkeeping'} "
                        f"field {own!r}; name the fields that hold the documents' text"
                    )
        if len(set(text_fields)) != len(text_fields):
            raise ConfigError(f"text fields repeat a name: {', '.join(text_fields)}")
        return text_fields

    def _check_search_settings(self) -> None:
        """``languages`` and ``fusion`` in their checked, normalised form (modules loaded only when set)."""
        if self.languages is not None:
            from .languages import check_languages

            object.__setattr__(self, "languages", check_languages(self.languages))
        if self.fusion is not None:
            from .calibration import check_fusion

            object.__setattr__(self, "fusion", check_fusion(self.fusion))

    @staticmethod
    def _check_template(template: str, text_fields: tuple[str, ...]) -> None:
        for _, name in template_parts(template):
            if name is not None and name not in text_fields:
                raise ConfigError(
                    f"text template {template!r} names {name!r}; it may only use the text fields: "
                    f"{', '.join(text_fields)}"
                )

    @property
    def info_field(self) -> str:
        """The object field the reindex job writes next to each vector (model, fingerprint, time)."""
        return f"{self.vector_field}_info"

    def build_text(self, source: Mapping[str, Any], skipped: set[str] | None = None) -> str:
        """The text to embed for a document, built the same way every time.

        Each text field contributes its value: a string as it is; a number or boolean as its JSON form
        (``3``, ``2.5``, ``true``); a list as its items joined by newlines; missing, null and object
        values nothing. The names of the fields whose value held an object are added to ``skipped``
        (when given), so a run can say which documents lost text that way. Dotted field names read
        nested objects. With ``text_template`` each ``{field}`` is replaced by the field's text.
        """
        values = {name: _field_text(source, name, skipped) for name in self.text_fields}
        if not any(value.strip() for value in values.values()):
            return ""  # no text at all: nothing to embed, not the template's own words
        if self.text_template is not None:
            return "".join(literal + (values[name] if name is not None else "")
                           for literal, name in template_parts(self.text_template))
        return "\n".join(value for value in values.values() if value.strip())

    def to_meta(self) -> dict[str, Any]:
        data = asdict(self)
        data["text_fields"] = list(self.text_fields)
        data["index_options"] = dict(self.index_options)
        for optional in ("max_length", "reranker", "languages", "fusion"):
            if data[optional] is None:
                # Not written until set: _meta stored before the setting existed compares equal, and
                # older versions of es-semantic can still read the index.
                del data[optional]
        if self.languages is not None:
            data["languages"] = list(self.languages)
        return data

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], *, index: str = "?") -> SemanticConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(meta) - known
        if unknown:
            raise ConfigError(
                f"index {index!r} has unknown es-semantic settings {sorted(unknown)} in its _meta; "
                "it was probably configured by a newer es-semantic: upgrade"
            )
        data = dict(meta)
        for name in ("text_fields", "languages"):
            if isinstance(data.get(name), list):
                data[name] = tuple(data[name])
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"index {index!r} has a malformed es-semantic _meta: {exc}") from None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, index: str = "?") -> SemanticConfig:
        """Read the configuration from one index's mapping body (``{"properties":..., "_meta":...}``)."""
        meta = (mapping.get("_meta") or {}).get(META_KEY)
        if not meta:
            raise NotConfigured(index)
        return cls.from_meta(meta, index=index)

    def with_overrides(self, **changes: Any) -> SemanticConfig:
        """A copy with the given non-None settings replaced (command-line overrides).

        A calibrated ``min_score`` is dropped when a setting it depends on changes (unless the
        overrides give a new one): a threshold measured for one model means nothing for another."""
        new = replace(self, **{k: v for k, v in changes.items() if v is not None})
        if changes.get("min_score") is None and not self.same_similarities(new):
            new = replace(new, min_score=None)
        if changes.get("fusion") is None and not self.same_fusion_inputs(new):
            new = replace(new, fusion=None)
        return new

    def same_fusion_inputs(self, other: SemanticConfig) -> bool:
        """Whether a fusion calibrated under this configuration holds under ``other`` (same model and
        text, same BM25 analysis: the ``FUSION_DEFINING`` settings)."""
        return all(getattr(self, name) == getattr(other, name) for name in FUSION_DEFINING)

    def same_similarities(self, other: SemanticConfig) -> bool:
        """Whether query-document similarities under ``other`` equal those under this configuration
        (same ``SIMILARITY_DEFINING`` settings), so a threshold calibrated for one holds for the other."""
        return all(getattr(self, name) == getattr(other, name) for name in SIMILARITY_DEFINING)


def check_min_score(value: Any) -> float:
    """A ``min_score`` as a float in [-1, 1] (a cosine similarity), or a ConfigError saying why not."""
    import math

    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"min_score must be a number (a cosine similarity), got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or not -1.0 <= number <= 1.0:
        raise ConfigError(f"min_score is a cosine similarity threshold between -1 and 1, got {value!r}")
    return number


def _field_text(source: Any, name: str, skipped: set[str] | None = None, dotted: str | None = None) -> str:
    """The text of a (dotted) field: a literal dotted key, nested objects, and arrays of objects
    (``body.text`` over ``body: [{"text": ..}, {"text": ..}]``), as Elasticsearch flattens them."""
    dotted = dotted or name
    if isinstance(source, list):
        return "\n".join(t for t in (_field_text(item, name, skipped, dotted) for item in source) if t)
    if not isinstance(source, Mapping):
        return ""
    if name in source:  # the whole (possibly dotted) name as one key
        return _leaf_text(source[name], skipped, dotted)
    head, dot, rest = name.partition(".")
    while dot:
        if head in source:
            return _field_text(source[head], rest, skipped, dotted)
        more, dot, rest = rest.partition(".")  # a key that itself contains dots: "a.b" in {"a.b": {...}}
        head = f"{head}.{more}"
    return ""


def _leaf_text(value: Any, skipped: set[str] | None, name: str) -> str:
    """A field value as text (see ``SemanticConfig.build_text``): objects are left out, noted in ``skipped``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (_leaf_text(v, skipped, name) for v in value) if t)
    if isinstance(value, Mapping):
        if skipped is not None:
            skipped.add(name)
        return ""
    return json.dumps(value)  # numbers and booleans as they are written in the document


@functools.lru_cache(maxsize=64)
def template_parts(template: str) -> tuple[tuple[str, str | None], ...]:
    """``text_template`` as (literal text, field name or None) pairs.

    Only plain field references are accepted (``{title}``, ``{meta.title}``): a ``ConfigError``
    names any placeholder with a format spec (``{title:>9}``), a conversion (``{title!r}``), an
    index (``{tags[0]}``) or no name (``{}``), and a template ``str.format`` could not read.
    """
    import string

    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"text template {template!r} is not a valid format string: {exc}") from None
    parts = []
    for literal, name, spec, conversion in parsed:
        if name is None:
            parts.append((literal, None))
            continue
        written = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if spec or conversion or not name or "[" in name or "]" in name or name.isdigit():
            raise ConfigError(
                f"text template placeholder {written!r} is not a plain field reference: use "
                f"{{field}} (or {{object.field}}) only, without format specs, conversions, indexes or positions"
            )
        parts.append((literal, name))
    return tuple(parts)


_SECRET_FIELDS = frozenset({"api_key", "password"})


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach the cluster. Secrets never appear in ``repr()`` or ``describe()``."""

    url: str = DEFAULT_ES_URL
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cloud_id: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout: float = 30.0

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            missing = "password" if self.password is None else "username"
            raise ConfigError(f"basic authentication needs both a username and a password; the {missing} is missing",
                              option=missing)
        if self.api_key and self.username:
            raise ConfigError("give either an API key or a username and password, not both")
        if self.cloud_id:
            _check_cloud_id(self.cloud_id)
            if self.url and self.url != DEFAULT_ES_URL:
                raise ConfigError(_BOTH_URL_AND_CLOUD, option="cloud_id")
        if not self.cloud_id:
            object.__setattr__(self, "url", _check_es_url(self.url))
        if self.ca_certs and not os.path.exists(self.ca_certs):
            raise ConfigError(f"CA certificate file {self.ca_certs!r} does not exist", option="ca_certs",
                              value=self.ca_certs)
        if not (isinstance(self.request_timeout, (int, float)) and 0 < self.request_timeout < float("inf")):
            raise InvalidValue("request_timeout", self.request_timeout, "a number of seconds > 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ConnectionSettings:
        """Settings from ``ES_URL``, ``ES_API_KEY``, ``ES_USERNAME``/``ES_PASSWORD``, ``ES_CLOUD_ID``,
        ``ES_CA_CERTS``; keyword arguments that are not None win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "url": env.get("ES_URL") or DEFAULT_ES_URL,
            "api_key": env.get("ES_API_KEY") or None,
            "username": env.get("ES_USERNAME") or None,
            "password": env.get("ES_PASSWORD") or None,
            "cloud_id": env.get("ES_CLOUD_ID") or None,
            "ca_certs": env.get("ES_CA_CERTS") or None,
        }
        given = {k: v for k, v in overrides.items() if v is not None}
        values.update(given)
        if values["cloud_id"] and ((env.get("ES_URL") and "url" not in given) or given.get("url")):
            raise ConfigError(_BOTH_URL_AND_CLOUD, option="cloud_id")
        return cls(**values)

    def __repr__(self) -> str:
        # The URL may carry user:password@; the API key and password are never shown.
        shown = [f"url={redact_url(self.url)!r}"]
        for name in ("username", "cloud_id", "ca_certs"):
            if getattr(self, name) is not None:
                shown.append(f"{name}={getattr(self, name)!r}")
        if self.api_key:
            shown.append("api_key='***'")
        if self.password is not None:
            shown.append("password='***'")
        shown += [f"verify_certs={self.verify_certs}", f"request_timeout={self.request_timeout}"]
        return f"ConnectionSettings({', '.join(shown)})"

    def describe(self) -> str:
        """Where we connect, for messages: the URL or cloud id with any user:password@ removed."""
        if self.cloud_id:
            return f"Elastic Cloud deployment {self.cloud_id.split(':', 1)[0]!r}"
        return redact_url(self.url)

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"request_timeout": self.request_timeout}
        if self.cloud_id:
            kwargs["cloud_id"] = self.cloud_id
        else:
            kwargs["hosts"] = [self.url]
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if self.username is not None:
            kwargs["basic_auth"] = (self.username, self.password)
        if self.ca_certs:
            kwargs["ca_certs"] = self.ca_certs
        if not self.verify_certs:
            kwargs["verify_certs"] = False
            kwargs["ssl_show_warn"] = False
        return kwargs


_BOTH_URL_AND_CLOUD = "both an Elasticsearch URL and an Elastic Cloud id are set; set one of them and unset the other"


def _check_cloud_id(cloud_id: str) -> None:
    """Refuse a cloud id the client could not decode (``name:base64(host$es-uuid$kibana-uuid)``)."""
    from elastic_transport.client_utils import parse_cloud_id

    try:
        if parse_cloud_id(cloud_id).es_address is None:
            raise ValueError("no Elasticsearch host in the cloud id")
    except (ValueError, TypeError, UnicodeError):
        name = cloud_id.split(":", 1)[0] if ":" in cloud_id else "?"
        raise ConfigError(
            f"invalid Elastic Cloud id (deployment {name!r}): expected 'NAME:BASE64' as copied from the deployment "
            "page of the Elastic Cloud console", option="cloud_id", value=name,
        ) from None


def _bad_url(shown: str, what: str) -> ConfigError:
    return ConfigError(f"invalid Elasticsearch URL {shown!r}: {what}", option="url", value=shown)


def _check_es_url(url: str | None) -> str:
    """``url`` with its scheme lower-cased, or ``ConfigError`` saying what is wrong (the client would
    fail later with "Could not parse URL", printing the URL with its password)."""
    shown = redact_url(url or "")
    hint = "expected http(s)://host[:port], e.g. http://localhost:9200"
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url or "")
    if not match or match.group(1).lower() not in ("http", "https"):
        raise _bad_url(shown, hint)
    url = match.group(1).lower() + url[len(match.group(1)):]
    if "," in url:
        raise _bad_url(shown, "give one URL, not a comma-separated list")
    rest = url[url.index("://") + 3:]
    if any(c in rest[: rest.rfind("@")] for c in "/?#"):
        raise _bad_url(shown, "the user:password before '@' holds '/', '?' or '#'; percent-encode them "
                             "(%2F, %3F, %23) or give the username and password apart")
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        what = "unclosed '[' of an IPv6 address" if "IPv6" in str(exc) else (
            "the port must be a number from 1 to 65535")
        raise _bad_url(shown, f"{what}; {hint}") from None
    if not parts.hostname or any(c.isspace() for c in url):
        raise _bad_url(shown, f"no host; {hint}")
    if port is not None and not 1 <= port <= 65535:
        raise _bad_url(shown, f"the port must be a number from 1 to 65535; {hint}")
    return url


_TOKEN = re.compile(r"""[^\s'"<>]+""")


def _redact_token(token: str) -> str:
    if "://" in token:
        cut = token.index("://") + 3
        head, rest = token[:cut], token[cut:]
    elif "@" in token and ":" in token[: token.rfind("@")]:
        head, rest = "", token  # user:password@host without a scheme
    else:
        return token
    at = rest.rfind("@")  # the password may hold '@', '/', ':' ...: everything up to the last '@' goes
    if at >= 0:
        rest = "***" + rest[at:]
    if "?" in rest:
        path, query = rest.split("?", 1)
        query = re.sub(r"(^|[&;])([^=&;#]*)=[^&;#]*", r"\1\2=***", query)
        rest = f"{path}?{query}"
    return head + rest


def redact_url(url: str) -> str:
    """Remove credentials from a URL, or from every URL in a text (``https://user:pw@host`` ->
    ``https://***@host``; ``user:pw@host`` -> ``***@host``; query-string values -> ``***``)."""
    return _TOKEN.sub(lambda m: _redact_token(m.group(0)), url)


def redact(text: str, settings: ConnectionSettings | None) -> str:
    """Replace every secret of ``settings`` found in ``text`` by ``***``."""
    text = redact_url(text)
    if settings is None:
        return text
    for name in _SECRET_FIELDS:
        secret = getattr(settings, name)
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text
