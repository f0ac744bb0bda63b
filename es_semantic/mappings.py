"""Mapping templates, rendering, conflict detection and ``install-mappings``.

Templates are JSON files in the top-level ``mappings/`` folder, installed in the wheel as the
``es_semantic.templates`` package. Rendering is a pure function of a ``SemanticConfig``; the
installer compares the rendered fields with what the index has and either creates the index,
adds the fields, does nothing, or refuses with nothing changed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from .config import META_KEY, SemanticConfig, check_index_name
from .errors import ConfigError, EsSemanticError, IndexNotFound, MappingConflict, ModelLoadError, NotConfigured

#: Settings of an existing vector field that cannot change in place.
_FIXED_VECTOR_PARAMS = ("type", "dims", "similarity", "element_type")
#: Settings of the stored configuration that, if changed, make the existing vectors wrong.
_VECTOR_DEFINING_META = ("model", "dims", "similarity", "vector_field")


def available_templates() -> list[str]:
    """Names of the index templates shipped with the package (``faq``, ...)."""
    names = []
    for entry in resources.files("es_semantic.templates").iterdir():
        if entry.name.endswith(".json") and entry.name != "semantic_fields.json":
            names.append(entry.name[: -len(".json")])
    return sorted(names)


def load_template(name: str) -> dict[str, Any]:
    """Load a JSON template by name, without its ``_description``."""
    try:
        text = resources.files("es_semantic.templates").joinpath(f"{name}.json").read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"unknown mapping template {name!r}; available: {', '.join(available_templates())}"
        ) from None
    data = json.loads(text)
    data.pop("_description", None)
    return data


def render_semantic_fields(config: SemanticConfig) -> dict[str, Any]:
    """The ``properties`` entries for the vector field and its bookkeeping object."""
    template = load_template("semantic_fields")
    vector = dict(template["vector"])
    vector["dims"] = config.dims
    vector["similarity"] = config.similarity
    vector["index_options"] = dict(config.index_options)
    return {config.vector_field: vector, config.info_field: template["info"]}


def render_index_body(config: SemanticConfig, template: str = "faq") -> dict[str, Any]:
    """The full ``indices.create`` body for a new index: template, text fields, vector fields, ``_meta``."""
    body = copy.deepcopy(load_template(template))
    mappings = body.setdefault("mappings", {})
    properties = mappings.setdefault("properties", {})
    for name in config.text_fields:
        _ensure_text_property(properties, name)
    _add_language_subfields(properties, config)
    properties.update(render_semantic_fields(config))
    mappings["_meta"] = {**mappings.get("_meta", {}), META_KEY: config.to_meta()}
    return body


def _add_language_subfields(properties: dict[str, Any], config: SemanticConfig) -> None:
    """Give each configured text field of a new index the sub-fields of ``config.languages`` (every
    language sub-field where none are given)."""
    from .languages import SUBFIELD_MAPPINGS, subfields_for

    for name in config.text_fields:
        prop = lookup_property(properties, name)
        if prop is not None and prop.get("type") in TEXT_TYPES:
            subs = prop.setdefault("fields", {})
            for sub in subfields_for(config.languages):
                subs.setdefault(sub, dict(SUBFIELD_MAPPINGS[sub]))


def _ensure_text_property(properties: dict[str, Any], dotted: str) -> None:
    parts = dotted.split(".")
    node = properties
    for part in parts[:-1]:
        node = node.setdefault(part, {"properties": {}}).setdefault("properties", {})
    node.setdefault(parts[-1], {"type": "text"})


@dataclass
class InstallResult:
    """What ``install_mappings`` did (or, with ``dry_run``, would do) to each concrete index."""

    index: str
    action: str  # "create" | "update" | "unchanged"
    concrete_indices: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)  # the body sent (or that would be sent)
    dry_run: bool = False
    #: For a created index: the alias (``index``) it was created behind, or None for a plain index.
    alias: str | None = None

    def summary(self) -> str:
        verb = {"create": "would create", "update": "would update"}.get(self.action, "")
        if not self.dry_run:
            verb = {"create": "created", "update": "updated"}.get(self.action, "")
        if self.action == "unchanged":
            return f"index {self.index!r} already has this configuration; nothing changed"
        detail = "; ".join(self.changes)
        if self.action == "create" and self.alias:
            return (f"{verb} index {self.concrete_indices[0]!r} behind alias {self.alias!r} (ready for a blue/green "
                    f"reindex --new-index): {detail}")
        return f"{verb} index {self.index!r}: {detail}"


def _get_mappings(es: Elasticsearch, index: str) -> dict[str, dict[str, Any]] | None:
    """Concrete index name -> mapping body, or None when nothing by that name exists."""
    check_index_name(index)  # a wildcard or _all would read, and then change, other indices
    try:
        response = es.indices.get_mapping(index=index)
    except NotFoundError:
        return None
    return {name: body.get("mappings", {}) for name, body in response.body.items()}


def config_from_mappings(mappings: Mapping[str, Mapping[str, Any]] | None, index: str) -> SemanticConfig:
    """The one configuration of ``index`` from its concrete indices' mapping bodies (name -> body).

    Raises ``IndexNotFound`` when there are none, ``NotConfigured`` when one lacks the ``_meta``,
    and ``ConfigError`` when an alias points at indices configured differently.
    """
    check_index_name(index)
    if not mappings:
        raise IndexNotFound(index)
    configs = {name: SemanticConfig.from_mapping(body, index=name) for name, body in mappings.items()}
    distinct = {json.dumps(c.to_meta(), sort_keys=True) for c in configs.values()}
    if len(distinct) > 1:
        raise ConfigError(
            f"{index!r} points at indices with different es-semantic configurations "
            f"({', '.join(sorted(configs))}); point it at one index"
        )
    return next(iter(configs.values()))


def read_config(es: Elasticsearch, index: str) -> SemanticConfig:
    """The configuration ``install-mappings`` stored in the index (or alias) ``_meta``.

    Raises ``IndexNotFound`` or ``NotConfigured``; with an alias over several indices configured
    differently, raises ``ConfigError``.
    """
    return config_from_mappings(_get_mappings(es, index), index)


def lookup_property(properties: Mapping[str, Any], dotted: str) -> Mapping[str, Any] | None:
    """The mapping of a (dotted) field inside ``properties``, or None."""
    node: Any = {"properties": properties}
    for part in dotted.split("."):
        node = (node.get("properties") or {}).get(part)
        if node is None:
            return None
    return node


#: Configuration keys a blue/green ``reindex --new-index`` can change (its --model, --dims, ...).
_REINDEX_CHANGEABLE = ("model", "dims", "similarity", "index_options")


def _new_index_advice(given: str, concrete: bool, stored: Mapping[str, Any], config: SemanticConfig,
                      aliases: Sequence[str] = ()) -> str:
    """The blue/green command that gets ``given`` from its stored configuration to ``config``."""
    from .reindexing.bluegreen import new_index_command

    if concrete and aliases:
        # The index behind an alias (install-mappings' own layout): the alias is what moves.
        concrete, given = False, aliases[0]
    wanted = config.to_meta()
    changed: dict[str, Any] = {}
    for key in _REINDEX_CHANGEABLE:
        have, want = stored.get(key), wanted[key]
        if key == "index_options":
            if (have or {}).get("type") != want.get("type"):
                changed[key] = want
        elif have != want:
            changed[key] = want
    command = new_index_command(given, concrete=concrete, options=changed)
    advice = f"existing vectors cannot be changed in place; build a new index instead with a blue/green reindex: {command}"
    if concrete:
        # short: the full story (concrete_explanation) is in `reindex --help` and the README
        advice += (f" ({given!r} is an index, not an alias: --delete-old copies it, then deletes the index "
                   f"{given!r} and puts an alias {given!r} over the copy; writes get 403 during the swap, retry them)")
    others = sorted(k for k, v in wanted.items()
                    if stored.get(k) != v and k not in (*_REINDEX_CHANGEABLE, "min_score", "vector_field", "languages",
                                                            "fusion"))
    if others:
        advice += (f"; the other changes ({', '.join(others)}) apply in place: run install-mappings with them "
                   "once the reindex is done")
    return advice


def _free_field(properties: Mapping[str, Any], field: str, first: object) -> str:
    """``<field>_<first>`` (else ``_2``, ``_3``...): the first such name the mapping does not have."""
    return next(f"{field}_{n}" for n in (first, *range(2, 100)) if lookup_property(properties, f"{field}_{n}") is None)


def _foreign_vector_refusal(name: str, properties: Mapping[str, Any], config: SemanticConfig) -> MappingConflict:
    """The refusal for a field that is there but not es-semantic's (no stored configuration names it)."""
    return MappingConflict(
        f"index {name!r} already has a field {config.vector_field!r} that es-semantic did not create (no "
        f"es-semantic configuration names it), so its values are never written: choose another --vector-field, "
        f"e.g. --vector-field {_free_field(properties, config.vector_field, 'semantic')}; or, to have reindex "
        "replace the vectors it holds, add --replace-existing-vectors (replace_existing_vectors=True)"
    )


def _vector_field_changes(name: str, properties: Mapping[str, Any], config: SemanticConfig, advice: str) -> list[str]:
    """What adding ``config``'s vector field needs; ``MappingConflict`` (ending in ``advice``) when a field
    by that name has settings Elasticsearch cannot change in place."""
    current = lookup_property(properties, config.vector_field)
    if current is None:
        return [(f"add {config.vector_field} (dense_vector, {config.dims} dims, {config.similarity}, "
                 f"{config.index_options['type']})")]
    wanted = render_semantic_fields(config)[config.vector_field]
    for param in _FIXED_VECTOR_PARAMS:
        have = current.get(param, "float" if param == "element_type" else None)
        if have != wanted.get(param) and not (param == "dims" and have is None):
            raise MappingConflict(f"index {name!r} already has field {config.vector_field!r} with {param} "
                                  f"{have!r}, not {wanted.get(param)!r}; {advice}")
    have_type = (current.get("index_options") or {}).get("type")
    if have_type and have_type != config.index_options["type"]:
        raise MappingConflict(f"index {name!r} already indexes {config.vector_field!r} as {have_type!r}, not "
                              f"{config.index_options['type']!r}; {advice}")
    return []


def _vectorless_advice(name: str, properties: Mapping[str, Any], config: SemanticConfig) -> str:
    """What to do when an index with no vector yet asks for settings its existing field cannot take."""
    free = _free_field(properties, config.vector_field, config.dims)
    return (f"Elasticsearch cannot change that in place, but {name!r} holds no vector yet, so a new field loses "
            f"nothing: add --vector-field {free} (or delete the index and run install-mappings again)")


def _check_text_fields(name: str, properties: Mapping[str, Any], config: SemanticConfig) -> None:
    """Refuse text fields the index does not have (an index with no mapping yet takes any)."""
    missing = [f for f in config.text_fields if lookup_property(properties, f) is None]
    if not missing or not properties:
        return
    known = nearest_first(text_fields_in(properties, config), missing)
    # the names given, each missing one replaced by the nearest text field not given already
    left = [f for f in known if f not in config.text_fields]
    example = [f if f not in missing else (left.pop(0) if left else None) for f in config.text_fields]
    example = [f for f in example if f] or known[:2]
    raise MappingConflict(
        f"index {name!r} has no field {', '.join(map(repr, missing))} to take text from; its text fields "
        f"are: {', '.join(known) or 'none'}. Pass the ones to embed, e.g. --text-fields "
        f"{','.join(example) or 'title,body'}"
    )


def _info_field_changes(name: str, properties: Mapping[str, Any], config: SemanticConfig) -> list[str]:
    current = lookup_property(properties, config.info_field)
    if current is None:
        return [f"add {config.info_field} (bookkeeping: model, fingerprint, embedded_at)"]
    if current.get("type", "object") != "object":
        raise MappingConflict(f"index {name!r} already has a field {config.info_field!r} of type "
                              f"{current.get('type')!r}; choose another --vector-field")
    return []


def _meta_changes(name: str, stored: Mapping[str, Any] | None, config: SemanticConfig, advice: str,
                  vectorless: bool) -> list[str]:
    """What changes in the stored configuration; ``MappingConflict`` when it would mix the vectors of
    two configurations (which cannot happen while the index holds none: ``vectorless``)."""
    wanted = config.to_meta()
    if stored is None:
        return ["record the configuration in _meta"]
    if not vectorless:
        for key in _VECTOR_DEFINING_META:
            if stored.get(key) != wanted[key]:
                raise MappingConflict(f"index {name!r} is configured for {key} {stored.get(key)!r}, not "
                                      f"{wanted[key]!r}; vectors of the two would be mixed. {advice}")
    if stored == wanted:
        return []
    changes = [f"update _meta ({', '.join(sorted(k for k, v in wanted.items() if stored.get(k) != v))})"]
    if stored.get("min_score") is not None and config.min_score is None:
        changes.append(
            f"drop min_score {stored['min_score']:g}: it was chosen for the similarities these settings "
            "change; searches run without a threshold until a new one is chosen (es-semantic eval "
            f"--index {name} --queries Q.jsonl --qrels QRELS.tsv --calibrate --save)")
    return changes


def _check_existing_index(name: str, mapping: Mapping[str, Any], config: SemanticConfig, *,
                          given: str | None = None, aliases: Sequence[str] = (), vectorless: bool = False,
                          replace_existing_vectors: bool = False) -> list[str]:
    """What must be added to this index; raises ``MappingConflict`` for what cannot change in place.

    ``given`` is the name the user gave (an alias over ``name``, or ``name`` itself), which the
    advice names: a command that works from there; ``aliases`` are the aliases over ``name`` when
    ``given`` is the index itself (a blue/green reindex then runs on one of them). ``vectorless``:
    no document of the index has a vector in the configured field, so the model, dims, similarity and
    vector field may change in place. A vector field the stored configuration does not name is not
    es-semantic's and is refused unless ``replace_existing_vectors``."""
    given = given or name
    properties = mapping.get("properties") or {}
    stored = ((mapping.get("_meta") or {}).get(META_KEY)) or None
    stored = stored if isinstance(stored, Mapping) else None
    ours = stored is not None and stored.get("vector_field") == config.vector_field
    if stored is not None and not ours and not vectorless:
        raise MappingConflict(
            f"index {name!r} keeps its vectors in {stored.get('vector_field')!r}, not {config.vector_field!r}, and "
            f"es-semantic cannot move them to another field. Leave out --vector-field (the stored one is kept), "
            f"or configure a new index for {config.vector_field!r} (es-semantic install-mappings --index NEW_NAME "
            f"--vector-field {config.vector_field}) and load the documents into it"
        )
    if not ours and not replace_existing_vectors and lookup_property(properties, config.vector_field) is not None:
        raise _foreign_vector_refusal(name, properties, config)
    if vectorless and ours:
        advice = _vectorless_advice(name, properties, config)
    elif ours:  # the vectors are es-semantic's, and a blue/green reindex can change them
        advice = _new_index_advice(given, given == name, stored, config, aliases)
    else:  # a field es-semantic did not make, taken over (replace_existing_vectors): reindex cannot help
        advice = (f"that field is not es-semantic's, so it stays as it is: choose another --vector-field, e.g. "
                  f"--vector-field {_free_field(properties, config.vector_field, 'semantic')}")
    changes = _vector_field_changes(name, properties, config, advice)
    _check_text_fields(name, properties, config)
    changes += _info_field_changes(name, properties, config)
    return changes + _meta_changes(name, stored, config, advice, vectorless)


def _with_stored_min_score(config: SemanticConfig, mapping: Mapping[str, Any]) -> SemanticConfig:
    """``config`` carrying the index's stored ``min_score`` when it still applies (see install_mappings)."""
    if config.min_score is not None:
        return config
    try:
        stored = SemanticConfig.from_mapping(mapping)
    except EsSemanticError:  # no or unreadable configuration yet: nothing to carry
        return config
    if stored.min_score is not None and stored.same_similarities(config):
        return replace(config, min_score=stored.min_score)
    return config


def stored_config(es: Elasticsearch, index: str) -> SemanticConfig | None:
    """The configuration stored in ``index``, or None where there is none (or none that reads)."""
    try:
        return read_config(es, index)
    except (IndexNotFound, NotConfigured, ConfigError):  # missing, not configured yet, or inconsistently
        return None


def configure(es: Elasticsearch, index: str, **settings: Any) -> SemanticConfig:
    """The configuration an install on ``index`` should apply: the one stored in the index with the
    given (not None) ``settings`` changed, or, where nothing is stored yet, the defaults with them.

    So running ``install-mappings`` again with one option changes that option only: settings left
    out are never reset to defaults behind the user's back (a reset of the text fields would have the
    next reindex drop every vector).
    """
    if _get_mappings(es, index) is None:  # (which checks the name is one index's or alias's)
        check_new_index_name(index)  # before the model is looked for: the name is what is wrong
    given = {k: v for k, v in settings.items() if v is not None}
    no_template = given.get("text_template") == ""  # '' asks for the default joining (no template)
    if no_template:
        del given["text_template"]
    stored = stored_config(es, index)
    config = stored.with_overrides(**given) if stored is not None else SemanticConfig(**given)
    if no_template and config.text_template is not None:
        config = replace(config, text_template=None)
        if stored is not None and not stored.same_similarities(config):
            config = replace(config, min_score=None)
    return config


def set_min_score(es: Elasticsearch, index: str, min_score: float | None, *, dry_run: bool = False) -> SemanticConfig:
    """Store (or, with None, remove) the "no good match" threshold in the ``_meta`` of ``index``.

    ``hybrid_search`` applies it by default. Every concrete index behind an alias is updated; the
    other configuration and other tools' ``_meta`` keys stay as they are. Returns the new configuration.
    """
    return update_stored_config(es, index, dry_run=dry_run, min_score=min_score)


def update_stored_config(es: Elasticsearch, index: str, *, dry_run: bool = False, **changes: Any) -> SemanticConfig:
    """Replace settings of the configuration stored in the ``_meta`` of ``index`` (``min_score``,
    ``fusion``...: None removes one), on every concrete index behind an alias, other ``_meta`` keys
    kept. Returns the new configuration."""
    existing = _get_mappings(es, index)
    config = replace(config_from_mappings(existing, index), **changes)
    if not dry_run:
        for name, mapping in (existing or {}).items():
            es.indices.put_mapping(index=name, _meta={**(mapping.get("_meta") or {}), META_KEY: config.to_meta()})
    return config


def aliases_over(es: Elasticsearch, index: str) -> list[str]:
    """The aliases that point at the concrete index ``index`` (sorted), or none."""
    try:
        body = es.indices.get_alias(index=index).body
    except NotFoundError:
        return []
    return sorted((body.get(index) or {}).get("aliases") or {})


#: Field types holding analysed text (what is worth embedding, and what BM25 ranks).
TEXT_TYPES = ("text", "match_only_text")


def mapped_fields(properties: Mapping[str, Any], prefix: str = "", skip: Sequence[str] = ()) -> dict[str, str]:
    """Dotted name -> type of every field in a mapping's ``properties``, multi-fields included
    (``question.english``); objects are ``object`` (``skip``: top-level fields left out, e.g. es-semantic's own)."""
    out: dict[str, str] = {}
    for name, prop in properties.items():
        if not isinstance(prop, Mapping) or (not prefix and name in skip):
            continue
        full = prefix + name
        out[full] = str(prop.get("type") or "object")
        for sub, sub_prop in (prop.get("fields") or {}).items():
            if isinstance(sub_prop, Mapping):
                out[f"{full}.{sub}"] = str(sub_prop.get("type", "object"))
        if "properties" in prop:
            out.update(mapped_fields(prop["properties"], f"{full}."))
    return out


def text_fields_in(properties: Mapping[str, Any], config: SemanticConfig) -> list[str]:
    """The analysed-text fields of a mapping's ``properties`` (dotted, multi-fields included), less
    es-semantic's own vector and bookkeeping fields: what could be embedded."""
    fields = mapped_fields(properties, skip=(config.vector_field, config.info_field))
    return [name for name, kind in fields.items() if kind in TEXT_TYPES]


def nearest_first(names: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """``names`` ordered by how close each is to the closest of ``wanted`` (then by name)."""
    import difflib

    def distance(name: str) -> float:
        return -max((difflib.SequenceMatcher(None, name, w).ratio() for w in wanted), default=0.0)

    return sorted(names, key=lambda name: (distance(name), name))


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    """`` (did you mean 'faq'?)``-style hint: the close matches of ``name`` among ``candidates``, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"


#: Characters Elasticsearch refuses in an index or alias name (MetadataCreateIndexService).
_INVALID_NAME_CHARS = '\\/*?"<>| ,#:'


def check_new_index_name(name: str) -> None:
    """Refuse, before anything is created (and in a dry run too), a name Elasticsearch would refuse:
    upper case, its reserved characters, a leading ``-``, ``_`` or ``+``, ``.`` or ``..``, over 255 bytes."""
    why = None
    if name != name.lower():
        why = f"must be lowercase (try {name.lower()!r})"
    elif any(ch in name for ch in _INVALID_NAME_CHARS):
        why = f"must not contain any of {' '.join(_INVALID_NAME_CHARS)}"
    elif name.startswith(("-", "_", "+")) or name in (".", ".."):
        why = "must not start with '-', '_' or '+', nor be '.' or '..'"
    elif len(name.encode("utf-8")) > 255:
        why = "must be at most 255 bytes long"
    if why:
        raise ConfigError(f"invalid index name {name!r}: Elasticsearch index and alias names {why}")


def first_version(name: str) -> str:
    """The concrete index ``install_mappings`` creates behind a new alias ``name``: ``faq`` -> ``faq-v1``
    (a blue/green reindex then builds ``faq-v2``, ``faq-v3``... and moves the alias)."""
    return f"{name}-v1"


def native_dims(spec: Any) -> int | None:
    """The size of the vectors a model produces: its last Dense module's output, else its hidden size."""
    return spec.dense[-1].out_features if spec.dense else spec.hidden_size


def resolve_model_dims(model: str, *, base_url: str | None = None, api_key: str | None = None) -> int:
    """The size of the vectors ``model`` makes, found where reindex will find the model: read from its
    configuration in a local folder, the Hugging Face cache or the hub (only the configuration files are
    fetched into the cache, unless ``HF_HUB_OFFLINE=1``; no weights are loaded); with ``base_url``,
    asked of that embedding server.
    Raises ``ModelLoadError``, one line naming the model and where it was looked for, when none has it."""
    from .embedding.model_config import read_model_spec, resolve_model_dir

    if base_url:
        from .embedding import Embedder

        return int(Embedder(model, base_url=base_url, api_key=api_key).dims)
    folder, _ = resolve_model_dir(model, config_only=True)
    dims = native_dims(read_model_spec(folder, model))
    if not dims:
        raise ModelLoadError(f"model {model!r} in {folder}: its config.json gives no hidden_size, so the size of "
                             "its vectors is unknown")
    return dims


def check_dims_fit(config: SemanticConfig, produced: int | None) -> None:
    """Refuse ``config.dims`` above the ``produced`` size of its model (fewer truncate, Matryoshka style)."""
    if produced and config.dims > produced:
        raise ConfigError(
            f"model {config.model!r} produces {produced}-dim vectors, so --dims {config.dims} is too large; "
            f"use --dims {produced} (or fewer, which truncates Matryoshka-style)"
        )


def check_dims_against_model(config: SemanticConfig) -> None:
    """Refuse a local model folder that is not one, and ``dims`` larger than what the model
    produces (read from its config.json, no weights loaded).

    Only local folders are checked: reading a hub model's configuration could mean a download.
    """
    from .embedding.model_config import looks_like_path, read_model_spec

    folder = Path(config.model).expanduser()
    if not looks_like_path(config.model):
        return
    if not (folder / "config.json").is_file():
        what = "has no config.json" if folder.is_dir() else "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(
            f"model {config.model!r} looks like a local path but {folder} {what}; point --model at the folder "
            "holding the model's config.json and weights, or give a Hugging Face model id"
        )
    check_dims_fit(config, native_dims(read_model_spec(folder, config.model)))


def field_holds_vectors(es: Elasticsearch, index: str, vector_field: str) -> bool:
    """Whether any document of ``index`` has a vector es-semantic wrote in ``vector_field``: one with its
    bookkeeping (``<vector_field>_info``) beside it. A vector without one is not es-semantic's (an
    application's, in a field taken over with ``replace_existing_vectors``): nothing to protect."""
    query = {"bool": {"filter": [{"exists": {"field": vector_field}},
                                 {"exists": {"field": f"{vector_field}_info.fingerprint"}}]}}
    return int(es.count(index=index, query=query).body["count"]) > 0


def install_mappings(
    es: Elasticsearch,
    index: str,
    config: SemanticConfig,
    *,
    template: str = "faq",
    dry_run: bool = False,
    alias: bool = True,
    replace_existing_vectors: bool = False,
) -> InstallResult:
    """Create the index, or add the semantic fields and ``_meta`` to an existing one.

    Where nothing named ``index`` exists, the index is created as ``<index>-v1`` behind an alias
    ``index`` (``is_write_index: true``), so that a later blue/green reindex (``--new-index``) can
    move the alias to a new version; searches and writes go through the alias as to an index.
    ``alias=False`` creates a plain index named ``index`` instead. An existing index or alias is
    updated in place, whatever ``alias`` says.

    Idempotent: a second run with the same configuration changes nothing. Raises ``MappingConflict``
    before changing anything when the index (every index behind an alias) already has the vector
    field with other dims, type or similarity, or holds vectors of another model, dims, similarity
    or vector field (while it holds none, those change in place). A field named like
    ``config.vector_field`` that es-semantic did not create (no stored configuration names it) is
    refused too, unless ``replace_existing_vectors``: reindex would then overwrite its vectors.
    The model itself is not looked up here (``resolve_model`` does, for the command line); a local
    folder is checked, and ``dims`` against what it produces.

    A ``min_score`` already stored (calibrated) is kept when ``config.min_score`` is None and the
    settings it depends on are unchanged (``set_min_score`` changes or removes it).
    """
    check_index_name(index)
    check_dims_against_model(config)
    existing = _get_mappings(es, index)
    if existing is None:
        return _create_index(es, index, config, template=template, dry_run=dry_run, alias=alias)
    languages = plan_language_subfields(es, index, config, existing)
    wanted = {name: _with_languages(_with_stored_min_score(config, mapping), languages.languages)
              for name, mapping in existing.items()}
    aliases = aliases_over(es, index) if index in existing else []
    plans = {}
    for name, mapping in existing.items():
        stored = (mapping.get("_meta") or {}).get(META_KEY)
        vectorless = isinstance(stored, Mapping) and not field_holds_vectors(es, name, str(stored.get("vector_field")))
        plans[name] = _check_existing_index(name, mapping, wanted[name], given=index, aliases=aliases,
                                            vectorless=vectorless, replace_existing_vectors=replace_existing_vectors)
    if not any(plans.values()) and not languages.added and not languages.unfilled:
        return InstallResult(index, "unchanged", sorted(existing), [], {}, dry_run)
    # Keep any _meta keys other tools put there: put_mapping replaces _meta as a whole.
    requests = {}
    for name, mapping in existing.items():
        meta = {**(mapping.get("_meta") or {}), META_KEY: wanted[name].to_meta()}
        properties = {**languages.properties.get(name, {}), **render_semantic_fields(config)}
        requests[name] = {"properties": properties, "_meta": meta}
    changes = sorted({change for plan in plans.values() for change in plan}) + languages.changes()
    result = InstallResult(index, "update", sorted(existing), changes, next(iter(requests.values())), dry_run)
    if not dry_run:
        for name, body in requests.items():
            es.indices.put_mapping(index=name, **body)
        languages.fill_documents(es, index)
    return result


def _create_index(es: Elasticsearch, index: str, config: SemanticConfig, *, template: str, dry_run: bool,
                  alias: bool) -> InstallResult:
    """``install_mappings`` where nothing named ``index`` exists: a new index (behind an alias ``index``)."""
    check_new_index_name(index)  # a dry run must not promise what the real run cannot create
    body = render_index_body(config, template)
    target = index
    if alias:
        target = first_version(index)
        if es.indices.exists(index=target):
            raise ConfigError(
                f"{index!r} does not exist, and a new index is created as {target!r} behind an alias {index!r}, "
                f"but {target!r} already exists (without that alias). Configure it directly with "
                f"--index {target}, put the alias on it (curl -X POST '<ES_URL>/_aliases' -H 'Content-Type: "
                f"application/json' -d '{{\"actions\": [{{\"add\": {{\"index\": \"{target}\", \"alias\": "
                f"\"{index}\", \"is_write_index\": true}}}}]}}') and rerun, or create a plain index {index!r} "
                "with --no-alias (alias=False)"
            )
        body["aliases"] = {index: {"is_write_index": True}}
    changes = [(f"new index from template {template!r} with {config.vector_field} "
                f"({config.dims} dims, {config.similarity})")]
    result = InstallResult(index, "create", [target], changes, body, dry_run, alias=index if alias else None)
    if not dry_run:
        es.indices.create(index=target, **body)
    return result


# ---------------------------------------------------------------- language sub-fields

#: Documents read to detect the languages of an index.
LANGUAGE_SAMPLE = 200
#: How fast ``_update_by_query`` rewrites documents to fill new sub-fields (documents per second).
FILL_REQUESTS_PER_SECOND = 1000.0
#: Seconds between two looks at the fill task.
FILL_POLL_S = 1.0


@dataclass
class LanguagePlan:
    """What ``install_mappings`` does for the language sub-fields of an existing index."""

    languages: tuple[str, ...] | None  # None: unknown (no documents to detect them from)
    detected: bool  # read from a sample of the documents (not given, not stored)
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)  # concrete index -> put_mapping properties
    added: list[str] = field(default_factory=list)  # new sub-fields, dotted
    fill: list[str] = field(default_factory=list)  # the sub-fields (new or not) documents may lack
    unfilled: int = 0  # documents with text and without one of them

    def fill_documents(self, es: Elasticsearch, index: str) -> None:
        """Index the documents that lack a language sub-field again (:func:`fill_subfields`), if any."""
        if self.unfilled:
            fill_subfields(es, index, self.fill)

    def changes(self) -> list[str]:
        changes = []
        if self.added:
            origin = " (detected from a sample of the documents)" if self.detected else ""
            changes.append(f"add language sub-fields {', '.join(sorted(self.added))} for "
                           f"{', '.join(self.languages or ())}{origin}")
        if self.unfilled:
            changes.append(f"index the {self.unfilled} documents without {', '.join(self.fill)} again in place "
                           "(_update_by_query, their content unchanged)")
        return changes


def detect_index_languages(es: Elasticsearch, index: str, config: SemanticConfig,
                           size: int = LANGUAGE_SAMPLE) -> tuple[str, ...]:
    """The languages of the configured text fields, detected from the first ``size`` documents."""
    from .languages import detect_languages

    response = es.search(index=index, size=size, source=list(config.text_fields), query={"match_all": {}})
    return detect_languages(config.build_text(hit.get("_source") or {}) for hit in response["hits"]["hits"])


def _nested_property(dotted: str, value: dict[str, Any]) -> dict[str, Any]:
    """``{"a": {"properties": {"b": value}}}`` for ``a.b``: a put_mapping ``properties`` entry."""
    head, _, rest = dotted.partition(".")
    return {head: value if not rest else {"properties": _nested_property(rest, value)}}


def plan_language_subfields(es: Elasticsearch, index: str, config: SemanticConfig,
                            existing: Mapping[str, Mapping[str, Any]]) -> LanguagePlan:
    """The language sub-fields the configured text fields lack, for ``config.languages`` or, where the
    configuration has none, the languages detected from the documents (none: nothing to add).

    A text field's own definition is sent again with them (Elasticsearch adds multi-fields to an existing
    field, nothing else may change); a sub-field of that name defined otherwise is a ``MappingConflict``."""
    from .languages import missing_subfields

    languages, detected = config.languages, False
    if languages is None:
        languages = detect_index_languages(es, index, config) or None
        detected = languages is not None
    plan = LanguagePlan(languages, detected)
    if languages is None:
        return plan
    for name, mapping in existing.items():
        properties = mapping.get("properties") or {}
        for text_field in config.text_fields:
            prop = lookup_property(properties, text_field)
            if prop is None or prop.get("type", "object") not in TEXT_TYPES:
                continue
            try:
                missing = missing_subfields(prop, languages)
            except ConfigError as exc:
                raise MappingConflict(f"index {name!r} field {text_field!r}: {exc}; rename that sub-field, or leave "
                                      f"its language out of --languages") from None
            if missing:
                definition = {**prop, "fields": {**(prop.get("fields") or {}), **missing}}
                plan.properties.setdefault(name, {}).update(_nested_property(text_field, definition))
                plan.added += [f"{text_field}.{sub}" for sub in missing if f"{text_field}.{sub}" not in plan.added]
    have = {sub for mapping in existing.values()
            for sub in language_subfield_names(config.text_fields, languages, mapping.get("properties") or {})}
    plan.fill = sorted(have | set(plan.added))
    plan.unfilled = count_unfilled(es, index, plan.fill)
    return plan


def language_subfield_names(text_fields: Sequence[str], languages: Sequence[str],
                            properties: Mapping[str, Any]) -> list[str]:
    """The sub-fields (dotted) for ``languages`` that the ``text_fields`` have in ``properties``."""
    from .languages import subfields_for

    names = []
    for text_field in text_fields:
        have = (lookup_property(properties, text_field) or {}).get("fields") or {}
        names += [f"{text_field}.{sub}" for sub in subfields_for(languages) if sub in have]
    return names


def _lacking(subfields: Sequence[str]) -> dict[str, Any]:
    """Documents with text in a field and nothing in its sub-field (written before the sub-field existed)."""
    clauses = [{"bool": {"filter": [{"exists": {"field": sub.rsplit(".", 1)[0]}}],
                         "must_not": [{"exists": {"field": sub}}]}} for sub in subfields]
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


def _with_languages(config: SemanticConfig, languages: tuple[str, ...] | None) -> SemanticConfig:
    """``config`` recording ``languages``; a calibrated fusion goes when they change the BM25 analysis."""
    if languages is None or languages == config.languages:
        return config
    return replace(config, languages=languages, fusion=None)


def count_unfilled(es: Elasticsearch, index: str, subfields: Sequence[str]) -> int:
    """How many documents of ``index`` have text without its language sub-fields."""
    return int(es.count(index=index, query=_lacking(subfields))["count"]) if subfields else 0


def _task_status(es: Elasticsearch, task_id: str) -> dict[str, Any]:
    import warnings

    from elasticsearch.exceptions import GeneralAvailabilityWarning

    with warnings.catch_warnings():  # the client flags the tasks API as a preview; it has been stable for years
        warnings.simplefilter("ignore", GeneralAvailabilityWarning)
        return dict(es.tasks.get(task_id=task_id).body)


def fill_subfields(es: Elasticsearch, index: str, subfields: Sequence[str], *,
                   requests_per_second: float = FILL_REQUESTS_PER_SECOND, poll_s: float = FILL_POLL_S,
                   progress: Any = None) -> dict[str, Any]:
    """Index the documents that lack ``subfields`` again, as they are, so the new sub-fields hold them:
    Elasticsearch's ``_update_by_query`` without a script (no document changes), ``conflicts=proceed``
    (a document written meanwhile already has them), throttled, run as a task polled here. Rerun after
    an interruption, it takes up the documents still lacking them. Returns the task's response."""
    import time

    started = es.update_by_query(index=index, query=_lacking(subfields), conflicts="proceed", refresh=True,
                                 requests_per_second=requests_per_second, wait_for_completion=False)
    task_id = started["task"]
    while True:
        status = _task_status(es, task_id)
        if status.get("completed"):
            break
        if progress is not None:
            progress(status.get("task", {}).get("status", {}))
        time.sleep(poll_s)
    response = status.get("response") or {}
    failures = response.get("failures") or []
    if status.get("error") or failures:
        cause = status.get("error") or failures[0]
        raise EsSemanticError(f"filling the language sub-fields of {index!r} failed (task {task_id}): {cause}; "
                              "run install-mappings again to take up the documents left")
    return {"task": task_id, **response}
