"""Blue/green reindex: build a new versioned index behind the alias, then move the alias at once.

Used when vectors cannot change in place (another model, dims or similarity) or when asked with
``--new-index``. Searches keep going through the alias to the old index until one atomic
``update_aliases`` (remove old + add new) switches them. Steps:

1. ``--index`` is an alias over one index (``faq`` -> ``faq-v1``, as ``install-mappings`` creates
   it), or a concrete index ``faq``. Elasticsearch cannot put an alias ``faq`` next to an index
   ``faq``, so a concrete index is replaced by an alias of its name over the copy: that needs
   ``--delete-old`` (refused without it, with the command), and no other alias on it (they would
   be deleted with it).
2. Create ``<alias>-v<N+1>`` (or ``--new-index NAME``) with the old index's settings and full
   mapping, plus the new vector field and ``_meta``; bulk-load settings (``refresh_interval: -1``,
   ``number_of_replicas: 0``) whose original values are kept in the new index's ``_meta`` and in the
   lock document, and are always put back (in ``finally``, and by the next run after a crash).
3. Copy every document (its whole ``_source``) with its new vector. A crashed copy resumes into
   the same new index and skips documents already copied with a current fingerprint.
4. Catch-up: documents edited, added or deleted in the old index during the copy are found by
   comparing both indices and brought over (re-embedded when their text changed), pass after pass
   until one pass ran with no write reaching the old index from before it read it until after it
   ended (the primary shards' sequence numbers, from the index stats, unchanged: see
   ``_write_marker``; without them, a pass that found nothing to do) and both hold as many
   documents (at most ``CATCH_UP_PASSES``; writers that never let a pass be quiet stop the job with
   ``CopyNotConverged``, exit 75: use ``--block-writes``). Counts alone would miss an edit, or an
   addition balanced by a deletion, made during the last pass.
5. Check counts; read the old index's configuration again (query-side settings changed through the
   alias meanwhile are carried to the new index, a change the copied vectors depend on stops the
   job: ``ConfigChangedDuringCopy``, resumable); put the write block its owner set on the new index;
   then swap the alias atomically (keeping its filter/routing/write-index flags).
   The old index is kept unless ``--delete-old``, and even then while other aliases point at it.
   For a concrete index the swap is one ``update_aliases`` with ``add`` (alias ``faq`` -> the copy)
   and ``remove_index`` (``faq``): Elasticsearch runs every ``remove_index`` of a request first, so
   the name is an index until the request applies and an alias from then on, never missing.

Writes that reach the old index in the moment between the last catch-up and the swap are not
copied, and nothing copies them later: they stay in the old index only (deleted with it by
``--delete-old``). Rerunning ``--new-index`` after the swap does NOT bring them over: the alias
then points at the new index, so a rerun copies that one into yet another version and never reads
the old index again (a rerun only resumes a copy whose swap has not happened). To lose no write,
pass ``--block-writes`` or pause the writers until the swap is done. Replacing a concrete index
deletes it, so there the job always blocks its writes for the swap, as with ``--block-writes``.
With ``--block-writes`` the job closes that moment itself: after the catch-up it puts a write block
on the old index (the add-block API, which returns once writes in flight have finished), runs one
more catch-up pass (complete now: nothing can change), checks counts, swaps the alias, and lifts the
block, restoring the previous setting. Writers get 403 ``cluster_block_exception`` for that long.
The block is recorded in the lock's ``pending_restore`` before it is set, and lifted in any case:
after a failure before the error propagates (the alias then stays), after a crash by the next run.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from elasticsearch import NotFoundError

from ..config import META_KEY, SemanticConfig
from ..errors import ConfigError, EsSemanticError, IndexNotFound
from ..mappings import aliases_over, lookup_property, read_config, render_semantic_fields
from .identity import record_digest
from .pipeline import Item, Pipeline, Plan
from .reader import SourceDoc, mget_docs, read_pages, sources_by_id
from .writer import chunk_ops

log = logging.getLogger(__name__)

#: ``_meta`` key marking an unfinished blue/green copy (and what to restore when it ends).
JOB_META_KEY = "es_semantic_bluegreen"
BULK_SETTINGS = {"index.refresh_interval": "-1", "index.number_of_replicas": "0"}
WRITE_BLOCK_SETTING = "index.blocks.write"
READ_ONLY_SETTING = "index.blocks.read_only"
#: Catch-up passes (the first included) a blue/green run without a write block makes for one to be quiet.
CATCH_UP_PASSES = 5
#: Settings that only change how queries are embedded or filtered: carried to the new index when they
#: change on the old one during the copy. Any other change is one the copied vectors depend on.
QUERY_SIDE = ("query_instruction", "min_score", "languages", "fusion")
#: Settings that keep document writes out of an index already (read_only: writes and metadata;
#: read_only_allow_delete: set by the disk watermark). With any of them on, the job blocks nothing.
_WRITE_BLOCKING = (WRITE_BLOCK_SETTING, "index.blocks.read_only", "index.blocks.read_only_allow_delete")

# Settings that belong to one concrete index and must not be copied to a new one.
_NOT_COPIED = re.compile(
    r"^index\.(uuid|creation_date|creation_date_string|provided_name|version\..*|history\.uuid|"
    r"verified_before_close|verified_read_only|routing\.allocation\.initial_recovery\..*|resize\..*|blocks\..*|"
    r"lifecycle\..*|frozen|search\.throttled|store\.snapshot\..*|shrink\..*|downsample\..*|"
    r"replication\.type|format|refresh_interval|number_of_replicas)$"
)


#: ``reindex`` options that change what the vectors are, with their command-line flags.
_VECTOR_FLAGS = (("model", "--model"), ("dims", "--dims"), ("similarity", "--similarity"),
                 ("index_options", "--index-options"), ("embedding_url", "--embedding-url"))


def new_index_command(index: str, *, concrete: bool, options: Mapping[str, Any] | None = None) -> str:
    """The ``es-semantic reindex ... --new-index`` command for ``index`` with the given vector
    options (``model``, ``dims``, ``similarity``, ``index_options``; None ones left out);
    ``--delete-old`` for a concrete index, which must be replaced by an alias of its name."""
    parts = ["es-semantic", "reindex", "--index", index, "--new-index"]
    if concrete:
        parts.append("--delete-old")
    for key, flag in _VECTOR_FLAGS:
        value = (options or {}).get(key)
        if isinstance(value, Mapping):  # index_options: the flag takes the type
            value = value.get("type")
        if key == "embedding_url" and value is not None:
            from ..config import redact_url

            value = redact_url(str(value))  # credentials in a URL are never printed
        if value is not None:
            parts += [flag, str(value)]
    return " ".join(shlex.quote(part) for part in parts)


def concrete_explanation(name: str) -> str:
    """What ``--new-index --delete-old`` does to a concrete index ``name``."""
    return (f"{name!r} is a concrete index, not an alias, and Elasticsearch cannot put an alias {name!r} next to an "
            f"index {name!r}, so the index must be replaced by an alias of its name: with --delete-old the job copies "
            f"{name!r} into a new index ({name}-v1, or the next free version) with the new vectors, catches up with "
            "the writes made meanwhile and checks the counts, then in one atomic request deletes the index "
            f"{name!r} and adds the alias {name!r} over the copy, so searches and writes through {name!r} go on "
            "(writes to it are refused with 403 for the last catch-up and the swap, so that none is deleted "
            "with it: writers should retry)")


def migrate_advice(name: str, options: Mapping[str, Any] | None = None) -> str:
    """Why a blue/green reindex of the concrete index ``name`` needs ``--delete-old``, and the command."""
    return (f"{concrete_explanation(name)}. Run: {new_index_command(name, concrete=True, options=options)}")


def is_concrete_index(es: Any, name: str) -> bool:
    """Whether ``name`` is an index (not an alias)."""
    return not es.indices.exists_alias(name=name) and bool(es.indices.exists(index=name))


def new_index_advice(es: Any, index: str, changed_options: Any = None) -> str:
    """Advice ending a "cannot change in place" error: the blue/green command that works from where
    the user is, with the options they gave (``model``, ``dims``, ``similarity``, ``index_options``;
    a mapping, or an object with those attributes such as ``ReindexOptions``)."""
    if changed_options is not None and not isinstance(changed_options, Mapping):
        changed_options = {key: getattr(changed_options, key, None) for key, _ in _VECTOR_FLAGS}
    try:
        concrete = is_concrete_index(es, index)
        aliases = aliases_over(es, index) if concrete else []
    except Exception:  # noqa: BLE001 - advice only: never hide the error it explains
        concrete, aliases = False, []
    if aliases:  # the index behind an alias (install-mappings' own layout): the alias is what moves
        command = new_index_command(aliases[0], concrete=False, options=changed_options)
        return f"{index!r} is behind the alias {aliases[0]!r}: build a new index behind the alias instead: {command}"
    command = new_index_command(index, concrete=concrete, options=changed_options)
    if concrete:
        return f"Build a new index instead: {command} ({concrete_explanation(index)})"
    return f"Build a new index behind the alias instead: {command}"


def resolve_alias(es: Any, alias: str, *, concrete_ok: bool = False) -> tuple[str, dict[str, Any]]:
    """The one concrete index behind ``alias`` and the alias's own settings (filter, routing...).

    A concrete index of that name is refused with the advice to migrate, or with ``concrete_ok``
    returned as ``(alias, {})``."""
    try:
        found = es.indices.get_alias(name=alias).body
    except NotFoundError:
        found = {}
    if not found:
        if es.indices.exists(index=alias):
            if concrete_ok:
                return alias, {}
            raise ConfigError(migrate_advice(alias))
        raise IndexNotFound(alias)
    if len(found) != 1:
        raise ConfigError(
            f"alias {alias!r} points at {len(found)} indices ({', '.join(sorted(found))}); a blue/green "
            "reindex needs an alias over exactly one index"
        )
    index, body = next(iter(found.items()))
    return index, dict((body.get("aliases") or {}).get(alias) or {})


def version_of(name: str, alias: str) -> int | None:
    """``faq-v3`` -> 3 for alias ``faq``; None for other names."""
    match = re.fullmatch(re.escape(alias) + r"-v(\d+)", name)
    return int(match.group(1)) if match else None


def candidate_names(alias: str, current: str) -> list[str]:
    """Names to try for the new index, in order: the version after the current one, and on."""
    base = version_of(current, alias) or 0
    return [f"{alias}-v{n}" for n in range(base + 1, base + 50)]


def copyable_settings(flat: dict[str, Any]) -> dict[str, Any]:
    """The old index's flat settings a new index can be created with."""
    return {k: v for k, v in flat.items() if k.startswith("index.") and not _NOT_COPIED.match(k)}


def original_bulk_settings(flat: dict[str, Any]) -> dict[str, Any]:
    """The values of the bulk-load settings to restore (None = the default, as Elasticsearch resets)."""
    return {"index.refresh_interval": flat.get("index.refresh_interval"),
            "index.number_of_replicas": flat.get("index.number_of_replicas", "1")}


def owner_blocks(flat: dict[str, Any]) -> dict[str, str]:
    """The write-refusing blocks of an index (its flat settings) that a new index taking its place
    keeps: ``index.blocks.write`` and ``index.blocks.read_only``, as the owner set them. Not
    ``read_only_allow_delete``: Elasticsearch sets and lifts that one itself with the disk watermark."""
    return {key: "true" for key in (WRITE_BLOCK_SETTING, READ_ONLY_SETTING) if str(flat.get(key)).lower() == "true"}


def _changed_settings(before: SemanticConfig, after: SemanticConfig) -> list[str]:
    """The es-semantic settings that differ between two configurations."""
    old, new = before.to_meta(), after.to_meta()
    return sorted(k for k in set(old) | set(new) if json.dumps(old.get(k), sort_keys=True, default=str)
                  != json.dumps(new.get(k), sort_keys=True, default=str))


class CopyNotConverged(EsSemanticError):
    """The counts of a blue/green copy and its old index never agreed: nothing was swapped; a rerun
    resumes the copy (with ``--block-writes`` when writers keep changing the old index)."""

    exit_code = 75  # EX_TEMPFAIL: try again (differently)


class ConfigChangedDuringCopy(EsSemanticError):
    """The old index's configuration changed, during the copy, in a setting the copied vectors
    depend on: nothing was swapped; a rerun resumes the copy with the new configuration."""


def writes_blocked(flat: dict[str, Any]) -> bool:
    """Whether an index's flat settings already refuse document writes."""
    return any(str(flat.get(key)).lower() == "true" for key in _WRITE_BLOCKING)


def new_mappings(old_mappings: dict[str, Any], config: SemanticConfig, job_meta: dict[str, Any]) -> dict[str, Any]:
    """The old mapping with the new vector fields and ``_meta`` (other ``_meta`` keys kept)."""
    mappings = {k: v for k, v in old_mappings.items() if k != "_meta"}
    properties = dict(mappings.get("properties") or {})
    properties.update(render_semantic_fields(config))
    mappings["properties"] = properties
    meta = dict(old_mappings.get("_meta") or {})
    meta[META_KEY] = config.to_meta()
    meta[JOB_META_KEY] = job_meta
    mappings["_meta"] = meta
    return mappings


def _flat_settings(es: Any, index: str) -> dict[str, Any]:
    body = es.indices.get_settings(index=index, flat_settings=True).body
    return dict((body.get(index) or next(iter(body.values())))["settings"])


def _mappings(es: Any, index: str) -> dict[str, Any]:
    body = es.indices.get_mapping(index=index).body
    return dict((body.get(index) or next(iter(body.values())))["mappings"])


def _same_meta(stored: Any, wanted: dict[str, Any]) -> bool:
    """Whether a stored es-semantic ``_meta`` config equals ``wanted`` (compared as JSON)."""
    def norm(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    return isinstance(stored, dict) and norm(stored) == norm(wanted)


#: Settings that make two configurations' vectors different in kind (not only stale): a copy begun
#: under one is never resumed under another.
_VECTOR_KIND = ("model", "dims", "similarity", "vector_field", "index_options", "schema_version")


def _same_vector_kind(stored: Any, config: SemanticConfig) -> bool:
    """Whether a stored ``_meta`` configuration makes vectors of the same kind as ``config``."""
    wanted = config.to_meta()
    return isinstance(stored, dict) and all(
        json.dumps(stored.get(k), sort_keys=True, default=str) == json.dumps(wanted.get(k), sort_keys=True, default=str)
        for k in _VECTOR_KIND)


def _config_summary(meta: Any) -> str:
    if not isinstance(meta, dict):
        return "no es-semantic configuration"
    return ", ".join(f"{k} {meta.get(k)!r}" for k in ("model", "dims", "similarity"))


class BlueGreen:
    """One blue/green run for ``alias`` (see the module docstring)."""

    def __init__(self, es: Any, alias: str, old_config: SemanticConfig, config: SemanticConfig,
                 pipeline: Pipeline, *, new_index: str | None, model_label: str, base64_vectors: bool,
                 lock: Any = None, same_vectors: bool = True) -> None:
        self.es = es
        self.alias = alias
        self.old_config = old_config
        self.config = config
        self.pipeline = pipeline
        self.report = pipeline.report
        self.requested_name = new_index
        self.model_label = model_label
        self.base64_vectors = base64_vectors
        self.lock = lock
        #: whether the new index's vectors compare with the old one's as they did (same model and
        #: weights, dims, similarity...): only then does a threshold set on the old index hold for it
        self.same_vectors = same_vectors and old_config.same_similarities(config)
        #: settings to put back if the job dies (kept in the lock, see ``_pending``)
        self._pending_restore: dict[str, Any] = {}
        #: the old index's write blocks its owner set, carried to the new index at the swap
        self._owner_blocks: dict[str, str] = {}
        #: settings that changed since the unfinished copy being resumed began (see ``_choose``)
        self._resumed_changes: list[str] = []
        #: the old index's write marker taken before the last catch-up pass read it, and that pass's
        #: counts (see ``_catch_up_until_converged``)
        self._marker: dict[str, tuple[int, int]] | None = None
        self._last_pass: dict[str, int] = {}
        self.old_index, self.alias_body = resolve_alias(es, alias, concrete_ok=True)
        # A concrete index: replaced at the swap by an alias of its name over the copy (remove_index).
        self.concrete = self.old_index == alias
        if self.concrete:
            self._check_concrete()

    def _check_concrete(self) -> None:
        """Refuse, before anything is built, what replacing the concrete index would break."""
        options = self.pipeline.options
        given = {key: getattr(options, key, None) for key, _ in _VECTOR_FLAGS}
        others = self._other_aliases()
        if others:
            # Most often the index behind an alias (install-mappings' layout): move the alias instead.
            command = new_index_command(others[0], concrete=False, options=given)
            raise ConfigError(f"{self.old_index!r} is behind the alias {others[0]!r}; run the blue/green reindex on "
                              f"the alias, which then moves to the new index: {command}. (Replacing the index "
                              f"itself is another matter: {self._aliases_in_the_way(others)})")
        if not options.delete_old:
            raise ConfigError(migrate_advice(self.alias, given))

    def _aliases_in_the_way(self, others: list[str]) -> str:
        names = ", ".join(map(repr, others))
        removes = ", ".join(f'{{"remove": {{"index": "{self.old_index}", "alias": "{a}"}}}}' for a in others)
        return (f"{self.old_index!r} is a concrete index that other aliases point at ({names}); replacing it by an "
                f"alias {self.alias!r} deletes it, and those aliases with it, so nothing was changed. Remove them from "
                f"it first (curl -X POST '<ES_URL>/_aliases' -H 'Content-Type: application/json' -d "
                f"'{{\"actions\": [{removes}]}}'), rerun, and afterwards add them to the new index that the alias "
                f"{self.alias!r} then points at")

    def _unmoved(self) -> str:
        """Where searches still go, for messages after a failure."""
        if self.concrete:
            return f"the index {self.old_index!r} was NOT replaced"
        return f"the alias {self.alias!r} was NOT moved (it still points at {self.old_index!r})"

    # -- preparing the new index --
    def _choose(self) -> tuple[str, bool, dict[str, Any]]:
        """(new index name, resuming?, settings to restore at the end)."""
        old_flat = _flat_settings(self.es, self.old_index)
        restore = original_bulk_settings(old_flat)
        names = [self.requested_name] if self.requested_name else candidate_names(self.alias, self.old_index)
        for name in names:
            if name == self.old_index:
                raise ConfigError(f"--new-index {name!r} is the index the alias points at now; name a new one")
            if not self.es.indices.exists(index=name):
                return name, False, restore
            meta = _mappings(self.es, name).get("_meta") or {}
            job = meta.get(JOB_META_KEY) or {}
            if job.get("source") == self.old_index and job.get("state") == "copying":
                if not _same_meta(meta.get(META_KEY), self.config.to_meta()) and _same_vector_kind(
                        meta.get(META_KEY), self.config):
                    # Only settings the fingerprints cover changed since (text fields, template, max
                    # length, query side): resumed under the current ones, what they change re-embedded.
                    self._resume_with_current_config(name, meta)
                elif not _same_meta(meta.get(META_KEY), self.config.to_meta()):
                    # Resuming would mix two models' vectors (or fail on every write when the dims
                    # differ) and swap the alias to an index whose _meta names the wrong model. Refuse,
                    # rather than pick the next name: that would leave the half-built index behind
                    # unnoticed and a later run with the first configuration could resume it.
                    raise ConfigError(
                        f"index {name!r} is an unfinished copy of {self.old_index!r} built for another "
                        f"configuration ({_config_summary(meta.get(META_KEY))}; this run wants "
                        f"{_config_summary(self.config.to_meta())}); it cannot be resumed. Rerun with the "
                        f"first configuration to finish it, or delete it and rerun: "
                        f"curl -X DELETE '<ES_URL>/{name}'")
                return name, True, job.get("restore") or restore
            if self.requested_name:
                raise ConfigError(f"index {name!r} already exists and is not an unfinished copy of "
                                  f"{self.old_index!r}; choose another --new-index NAME")
        raise ConfigError(f"no free versioned name for alias {self.alias!r}; pass --new-index NAME")

    def _resume_with_current_config(self, name: str, meta: dict[str, Any]) -> None:
        """Resuming a copy begun under another configuration of the same kind of vectors: the new
        index's ``_meta`` takes the current one, and text fields it does not map yet take the old
        index's mapping of them (the resumed copy re-embeds every document whose fingerprint changed)."""
        stored = meta.get(META_KEY) or {}
        wanted = self.config.to_meta()
        self._resumed_changes = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        log.warning("the configuration of %r changed since the copy into %r began (%s); resuming it with the "
                    "current one: documents whose vectors depend on it are embedded again", self.old_index, name,
                    ", ".join(self._resumed_changes))
        new_props = _mappings(self.es, name).get("properties") or {}
        old_props = _mappings(self.es, self.old_index).get("properties") or {}
        properties: dict[str, Any] = {}
        for text_field in self.config.text_fields:
            have = lookup_property(old_props, text_field)
            if have is None or lookup_property(new_props, text_field) is not None:
                continue
            node = properties
            *parents, leaf = text_field.split(".")
            for part in parents:
                node = node.setdefault(part, {"properties": {}})["properties"]
            node[leaf] = dict(have)
        self.es.indices.put_mapping(index=name, meta={**meta, META_KEY: wanted},
                                    **({"properties": properties} if properties else {}))

    def _create(self, name: str, restore: dict[str, Any]) -> None:
        settings = copyable_settings(_flat_settings(self.es, self.old_index))
        settings.update(BULK_SETTINGS)
        job = {"source": self.old_index, "alias": self.alias, "state": "copying", "restore": restore,
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        mappings = new_mappings(_mappings(self.es, self.old_index), self.config, job)
        self.es.indices.create(index=name, settings=settings, mappings=mappings)

    def _restore(self, name: str, restore: dict[str, Any]) -> None:
        # Retried like every other request; if it still fails, pending_restore stays in the lock,
        # which release() then leaves behind expired so the next job restores these settings.
        self.pipeline.retry.call(self.es.indices.put_settings, index=name, settings=dict(restore))
        self.report.settings_restored.update({name: dict(restore)})  # keep what restore_pending did
        self._pending(name, None)

    def _pending(self, index: str, settings: dict[str, Any] | None) -> None:
        """Record durably (in the lock) that ``settings`` of ``index`` must be put back if the job
        dies, or with None that nothing of ``index`` needs putting back any more."""
        if settings is None:
            if index not in self._pending_restore:
                return
            self._pending_restore.pop(index)
        else:
            self._pending_restore[index] = dict(settings)
        if self.lock is not None:
            self.lock.set_field("pending_restore", dict(self._pending_restore))

    # -- the run --
    def run(self) -> None:
        name, resume, restore = self._choose()
        self.report.target_index = name
        bg = self.report.blue_green
        bg.update({"alias": self.alias, "old_index": self.old_index, "new_index": name, "resumed": resume,
                   "alias_swapped": False, "old_index_deleted": False})
        if self.concrete:
            bg["replaces_concrete_index"] = True
        if self._resumed_changes:
            bg["resumed_with_changed_config"] = list(self._resumed_changes)
        self._pending(name, restore)  # durable: whoever runs next restores these if we die
        if resume:
            log.warning("resuming the unfinished copy of %r into %r", self.old_index, name)
            self.es.indices.put_settings(index=name, settings=dict(BULK_SETTINGS))
        else:
            self._create(name, restore)
        self.report.total = self._count(self.old_index)
        record_digest(self.es, name, self.pipeline.embedder.weights_digest)  # the model of the new index's vectors
        try:
            plan = Plan(read_index=self.old_index, config=self.config, model_label=self.model_label, mode="copy",
                        target_index=name, source_excludes=self._excluded_fields(), lookup_target=resume,
                        base64_vectors=self.base64_vectors, respect_limit=False)
            self.pipeline.run(plan)
            self._marker = self._write_marker()  # before the pass reads: what it is sure to see
            self.report.blue_green["catch_up"] = self._last_pass = self.catch_up(plan)
        finally:
            self._restore(name, restore)
        if not self.report.failed:
            # Replacing a concrete index deletes it: a write landing before the swap would be gone
            # for good (no old index to find it in), so its writes are always blocked for the swap.
            if self.pipeline.options.block_writes or self.concrete:
                if self.concrete and not self.pipeline.options.block_writes:
                    log.info("blocking writes to %r for the swap: it is deleted by it", self.old_index)
                self._swap_with_writes_blocked(name, plan)
            else:
                if self._catch_up_until_converged(name, plan):
                    self._swap_carrying(name, owner_blocks(_flat_settings(self.es, self.old_index)))
        if self.report.failed:
            # Never switch searches to an index that misses documents; the report lists why.
            note = (f"{self.report.failed} documents could not be copied; {self._unmoved()}. Fix the cause and "
                    "rerun: the copy resumes")
            bg["note"] = f"{bg['note']}; {note}" if bg.get("note") else note
            return
        self._finish(name)

    # -- closing the gap before the swap (--block-writes) --
    def _swap_with_writes_blocked(self, name: str, plan: Plan) -> None:
        """Block writes to the old index, copy what changed since the catch-up, check, swap, unblock."""
        bg = self.report.blue_green
        flat = _flat_settings(self.es, self.old_index)
        if writes_blocked(flat):
            # Blocked by someone else: nothing can change, and the block is theirs to lift. One more
            # pass still, in case it was set while the catch-up ran.
            bg["write_block"] = "already blocked"
            log.info("%r already refuses writes; leaving its block as it is", self.old_index)
            bg["final_pass"] = self.catch_up(plan)
            if not self.report.failed:
                self._check_counts(name)
                self._swap_carrying(name, owner_blocks(flat))
            return
        previous = {WRITE_BLOCK_SETTING: flat.get(WRITE_BLOCK_SETTING)}  # None: unset (the default, false)
        self._pending(self.old_index, previous)  # durable before the block exists: the next run lifts it if we die
        started = time.monotonic()
        try:
            self.pipeline.retry.call(self.es.indices.add_block, index=self.old_index, block="write")
            bg["write_block"] = "set"
            log.info("writes to %r blocked for the final catch-up pass and the alias swap", self.old_index)
            bg["final_pass"] = self.catch_up(plan)
            if not self.report.failed:
                self._check_counts(name)
                self._swap_carrying(name, {})
        except BaseException:
            try:
                self._lift_block(previous, started)
            except Exception as exc:  # noqa: BLE001 - keep the first error
                log.warning("after lifting the write block: %s", exc)
            raise
        self._lift_block(previous, started)

    def _lift_block(self, previous: dict[str, Any], started: float) -> None:
        """Put the old index's write-block setting back as it was before the job (retried like any
        request). If even that fails, say so and leave it in pending_restore for the next run, rather
        than fail a job whose alias may already have moved."""
        bg = self.report.blue_green
        if self.concrete and bg.get("alias_swapped"):
            # The blocked index was deleted by the swap (its name is now the alias): nothing to lift.
            bg["write_block"] = "deleted with the index"
            bg["write_block_s"] = round(time.monotonic() - started, 3)
            self._pending(self.old_index, None)
            return
        try:
            self.pipeline.retry.call(self.es.indices.put_settings, index=self.old_index, settings=dict(previous))
        except Exception as exc:  # noqa: BLE001 - reported in the note and the log
            message = (f"could not lift the write block on {self.old_index!r} ({exc}); the next run on "
                       f"{self.alias!r} lifts it, or lift it now: curl -X PUT '<ES_URL>/{self.old_index}/_settings' "
                       "-H 'Content-Type: application/json' -d '{\"index.blocks.write\": null}'")
            log.error("%s", message)
            bg["note"] = message
            return
        bg["write_block"] = "lifted"
        bg["write_block_s"] = round(time.monotonic() - started, 3)
        self._pending(self.old_index, None)

    def _excluded_fields(self) -> list[str]:
        names = {self.config.vector_field, self.config.info_field, self.old_config.vector_field,
                 self.old_config.info_field}
        return sorted(names)

    def catch_up(self, plan: Plan) -> dict[str, int]:
        """Bring over what changed in the old index while the copy ran; returns counts."""
        self.es.indices.refresh(index=self.old_index)
        self.es.indices.refresh(index=plan.target_index)
        excluded = self._excluded_fields()
        changed = deleted = 0
        client = self.pipeline.writer._client
        retry = self.pipeline.retry
        fp = self.pipeline.fingerprinter(self.config)
        for page in read_pages(self.es, self.old_index, source_excludes=excluded, page_size=self.pipeline.options.page_size,
                               keep_alive=self.pipeline.options.keep_alive, retry=retry):
            self.pipeline.check()
            have = retry.call(sources_by_id, client, plan.target_index, page, excludes=[self.config.vector_field])
            stale: list[Item] = []
            for doc in page:
                target = have.get((doc.id, doc.routing))
                target_fields = {k: v for k, v in (target or {}).items() if k not in excluded}
                if target is not None and target_fields == doc.source:
                    continue
                text = self.config.build_text(doc.source)
                stale.append(Item(doc, text, fp(text), embed=bool(text.strip())))
            if stale:
                changed += len(stale)
                vectors = self.pipeline.embed(stale)
                ops = [self.pipeline.build_op(plan, it, v) for it, v in zip(stale, vectors, strict=True)]
                for chunk in chunk_ops(ops, self.pipeline.options.bulk_max_docs, self.pipeline.options.bulk_max_bytes):
                    outcome = self.pipeline.writer.send(chunk)
                    for op, reason in outcome.failures:
                        self.report.add_failure(op.doc_id, op.index, reason)
        self.es.indices.refresh(index=plan.target_index)
        if self._count(plan.target_index) != self._count(self.old_index):
            deleted = self._drop_deleted(plan.target_index)
        return {"changed": changed, "deleted": deleted}

    def _drop_deleted(self, target: str) -> int:
        """Delete from the new index the documents no longer in the old one."""
        client = self.pipeline.writer._client
        retry = self.pipeline.retry
        gone = 0
        for page in read_pages(self.es, target, source_includes=[], retry=retry):
            got = retry.call(client.mget, index=self.old_index, source=False, **mget_docs(page)).body
            routing = {d.id: d.routing for d in page}
            missing = [e["_id"] for e in got.get("docs", []) if not e.get("found")]
            if missing:
                ops = [{"delete": {"_index": target, "_id": i,
                                   **({"routing": routing[i]} if routing.get(i) is not None else {})}}
                       for i in missing]
                retry.call(client.bulk, operations=ops)
                gone += len(missing)
        self.es.indices.refresh(index=target)
        return gone

    def _count(self, index: str) -> int:
        return int(self.pipeline.retry.call(self.es.count, index=index).body["count"])

    def _counts_agree(self, name: str) -> bool:
        # Both indices: a count sees only refreshed documents, and writers do not refresh (a write
        # the old index has taken since its last refresh would otherwise pass for copied).
        self.es.indices.refresh(index=self.old_index)
        self.es.indices.refresh(index=name)
        old, new = self._count(self.old_index), self._count(name)
        self.report.blue_green["counts"] = {"old": old, "new": new}
        return old == new

    def _check_counts(self, name: str) -> None:
        """With writes to the old index refused: the counts must agree (``CopyNotConverged`` otherwise)."""
        if not self._counts_agree(name):
            counts = self.report.blue_green["counts"]
            raise CopyNotConverged(
                f"document counts differ after the final catch-up pass ({self.old_index!r}: {counts['old']}, "
                f"{name!r}: {counts['new']}) although writes to {self.old_index!r} were refused; something else "
                f"changed one of them (a client writing to {name!r} directly?); {self._unmoved()}. Rerun: the copy "
                "resumes and catches up")

    def _write_marker(self) -> dict[str, tuple[int, int]] | None:
        """Where the writes to the old index stand: per primary shard, its highest sequence number and
        its local checkpoint (index stats, ``level=shards``). Every document write (index, update,
        delete; refreshed or not) takes the next sequence number of its shard, so two equal markers
        mean that nothing was written in between. None when the stats cannot be read (no ``monitor``
        privilege on the index, a serverless project) or hold no sequence numbers."""
        try:
            body = self.pipeline.retry.call(self.es.indices.stats, index=self.old_index, level="shards").body
            shards = (body.get("indices") or {})[self.old_index]["shards"]
            marker: dict[str, tuple[int, int]] = {}
            for shard, copies in shards.items():
                for copy in copies:
                    if (copy.get("routing") or {}).get("primary"):
                        seq_no = copy["seq_no"]
                        marker[str(shard)] = (int(seq_no["max_seq_no"]), int(seq_no["local_checkpoint"]))
        except Exception as exc:  # noqa: BLE001 - the job falls back on a pass that finds nothing to do
            log.debug("no write marker for %r (%s)", self.old_index, exc)
            self._no_marker = f"{type(exc).__name__}: {str(exc)[:120]}"
            return None
        if not marker:
            self._no_marker = "the index stats hold no sequence numbers"
        return marker or None

    def _note_fallback(self) -> None:
        """Say once (report and warning) that writes during the catch-up were judged without markers."""
        bg = self.report.blue_green
        if bg.get("write_check") == "quiet pass":
            return
        bg["write_check"] = "quiet pass"
        self.report.warnings.append(
            f"the index stats of {self.old_index!r} could not be read ({getattr(self, '_no_marker', 'unknown')}), "
            "so writes during the catch-up were judged by a pass that found nothing left to copy: a write made "
            "during that very pass may not be in the new index. --block-writes closes that gap (or grant the "
            "monitor privilege on the index)")

    def _quiet_pass(self, before: dict[str, tuple[int, int]] | None) -> bool:
        """Whether the last catch-up pass saw the old index as it still is: nothing was written to it
        from before the pass read it (``before``, taken then) until now, and every write it had taken
        then was applied (local checkpoint = highest sequence number), so the pass's refresh showed it.
        Without markers: the pass found nothing to bring over (only a write during that very pass can
        then be missed)."""
        after = self._write_marker() if before is not None else None
        if before is None or after is None:
            self._note_fallback()
            return not self._last_pass.get("changed") and not self._last_pass.get("deleted")
        self.report.blue_green.setdefault("write_check", "sequence numbers")
        settled = all(max_seq_no == checkpoint for max_seq_no, checkpoint in before.values())
        return settled and after == before

    def _catch_up_until_converged(self, name: str, plan: Plan) -> bool:
        """Without a write block: catch-up passes until one ran with no write to the old index from
        before it read it until after it ended (``_quiet_pass``) and both indices hold as many
        documents: the new index then holds what the old one does, edits included (counts alone miss
        an edit, or an addition balanced by a deletion, made during a pass). At most
        ``CATCH_UP_PASSES`` in all; ``CopyNotConverged`` when writers never let one be quiet. False
        when a pass failed documents (no swap then; the report lists them)."""
        bg = self.report.blue_green
        passes = 1  # the catch-up after the copy
        while True:
            quiet = self._quiet_pass(self._marker)
            if self._counts_agree(name) and quiet:
                return True
            if passes >= CATCH_UP_PASSES:
                counts = bg["counts"]
                differ = (f"the document counts still differ ({self.old_index!r}: {counts['old']}, {name!r}: "
                          f"{counts['new']})" if counts["old"] != counts["new"] else
                          f"the counts agree ({counts['old']}) but the last pass still found documents to copy"
                          if bg.get("write_check") == "quiet pass" else
                          f"the counts agree ({counts['old']}) but {self.old_index!r} was written to during each "
                          "pass, so an edit may not be copied yet")
                raise CopyNotConverged(
                    f"the old index keeps changing: after {passes} catch-up passes {differ}; writers are too "
                    f"busy for an exact swap without a write block; {self._unmoved()}. Rerun with --block-writes "
                    "(writers get 403 for the final pass and the swap and should retry), or pause the writers: "
                    "the copy resumes")
            passes += 1
            self._marker = self._write_marker()
            counts = self._last_pass = self.catch_up(plan)
            bg["catch_up_passes"] = passes
            bg["catch_up"] = {key: bg["catch_up"].get(key, 0) + value for key, value in counts.items()}
            if self.report.failed:
                return False

    def _swap(self, name: str) -> None:
        """Move the alias from the old index to ``name`` in one atomic request; for a concrete index,
        delete it and add the alias of its name in one request (``remove_index``, which Elasticsearch
        applies before the other actions of the request)."""
        add: dict[str, Any] = {"index": name, "alias": self.alias}
        for key in ("filter", "index_routing", "search_routing", "is_write_index", "is_hidden"):
            if key in self.alias_body:
                add[key] = self.alias_body[key]
        if self.concrete:
            others = self._other_aliases()  # added while the copy ran?
            if others:
                raise EsSemanticError(self._aliases_in_the_way(others))
            add["is_write_index"] = True  # as install-mappings creates it
            actions = [{"add": add}, {"remove_index": {"index": self.old_index}}]
        else:
            actions = [{"remove": {"index": self.old_index, "alias": self.alias}}, {"add": add}]
        self.es.indices.update_aliases(actions=actions)
        self.report.blue_green["alias_swapped"] = True
        if self.concrete:
            self.report.blue_green["old_index_deleted"] = True

    def _swap_carrying(self, name: str, owner: dict[str, str]) -> None:
        """The swap, with what the old index must hand on: the query-side configuration changed through
        the alias while the copy ran (``_carry_config``; a change the copied vectors depend on stops the
        job here, nothing moved), and a write block its owner set (``owner``: on the new index before
        the alias moves, so that writes through the alias stay refused)."""
        seen = self._carry_config(name)
        if owner:
            self._pending(name, {WRITE_BLOCK_SETTING: None})  # ours until the swap: lifted if it fails
            self.pipeline.retry.call(self.es.indices.put_settings, index=name, settings={WRITE_BLOCK_SETTING: True})
        try:
            self._swap_past_read_only(name, owner)
        except BaseException:
            if owner:
                try:
                    self.pipeline.retry.call(self.es.indices.put_settings, index=name,
                                             settings={WRITE_BLOCK_SETTING: None})
                    self._pending(name, None)
                except Exception as exc:  # noqa: BLE001 - keep the first error; pending_restore has it
                    log.warning("could not lift the write block put on %r for the swap: %s", name, exc)
            raise
        if owner:
            self._pending(name, None)  # the owner's block now, on the index the alias points at: it stays
            self._owner_blocks = owner
            self.report.blue_green["owner_block_carried"] = dict(owner)
        self._carry_late_config(name, seen)

    def _swap_past_read_only(self, name: str, owner: dict[str, str]) -> None:
        """The swap; with the owner's ``read_only`` block on the old index, which refuses alias changes
        (Elasticsearch checks METADATA_WRITE on every index of an ``_aliases`` request), it is traded
        for a write block just for the swap (document writes stay refused) and put back right after
        (recorded in pending_restore first). The new index gets its read_only only in ``_finish``."""
        if not owner.get(READ_ONLY_SETTING):
            self._swap(name)
            return
        flat = _flat_settings(self.es, self.old_index)
        previous = {READ_ONLY_SETTING: True, WRITE_BLOCK_SETTING: flat.get(WRITE_BLOCK_SETTING)}
        self._pending(self.old_index, previous)
        self.pipeline.retry.call(self.es.indices.put_settings, index=self.old_index,
                                 settings={WRITE_BLOCK_SETTING: True, READ_ONLY_SETTING: None})
        try:
            self._swap(name)
        finally:
            if self.concrete and self.report.blue_green.get("alias_swapped"):
                self._pending(self.old_index, None)  # deleted by the swap
            else:
                self.pipeline.retry.call(self.es.indices.put_settings, index=self.old_index, settings=previous)
                self._pending(self.old_index, None)

    def _carry_config(self, name: str) -> SemanticConfig | None:
        """Read the old index's configuration again and compare it with the one the job started from.
        Query-side settings changed meanwhile (``query_instruction``; ``min_score`` when the new index's
        vectors compare as the old ones did) go into the new index's ``_meta``; a change of a setting
        the copied vectors depend on raises ``ConfigChangedDuringCopy`` (nothing moved, the copy can be
        resumed). Returns the configuration read (None when unreadable: the old index is gone)."""
        try:
            now = read_config(self.es, self.old_index)
        except IndexNotFound:
            return None
        except EsSemanticError as exc:
            raise ConfigChangedDuringCopy(
                f"the es-semantic configuration of {self.old_index!r} can no longer be read ({exc}); "
                f"{self._unmoved()}. Put it back and rerun: the copy resumes") from None
        changed = _changed_settings(self.old_config, now)
        if not changed:
            return now
        copied = [k for k in changed if k not in QUERY_SIDE]
        if copied:
            details = ", ".join(f"{k} {getattr(self.old_config, k)!r} -> {getattr(now, k)!r}" for k in copied)
            raise ConfigChangedDuringCopy(
                f"the configuration of {self.old_index!r} changed while it was being copied ({details}), and the "
                f"copied vectors were made for the one the job started from; {self._unmoved()}. Rerun the same "
                "command: the copy resumes with the new configuration (documents whose vectors depend on it are "
                "embedded again)")
        self._apply_query_side(name, now, changed)
        return now

    def _apply_query_side(self, name: str, now: SemanticConfig, changed: list[str]) -> None:
        """Put the query-side settings of ``now`` that ``changed`` into the new index's ``_meta``."""
        updates: dict[str, Any] = {}
        for key in ("query_instruction", "languages", "fusion"):  # BM25's analysis and the fusion: no vector changes
            if key in changed:
                updates[key] = getattr(now, key)
        if self.same_vectors and ("min_score" in changed or "query_instruction" in changed):
            updates["min_score"] = now.min_score
        if not updates:
            return
        self.config = replace(self.config, **updates)
        meta = dict(_mappings(self.es, name).get("_meta") or {})
        meta[META_KEY] = self.config.to_meta()
        self.pipeline.retry.call(self.es.indices.put_mapping, index=name, meta=meta)
        self.report.blue_green.setdefault("config_carried", {}).update(updates)
        log.info("carried to %r the settings changed on %r during the copy: %s", name, self.old_index, updates)

    def _carry_late_config(self, name: str, seen: SemanticConfig | None) -> None:
        """After the swap: a configuration change that reached the old index between ``_carry_config``
        and the swap is carried too (query side), or named in the note."""
        if seen is None or self.concrete:  # a replaced concrete index is gone: its name is now the alias
            return
        try:
            now = read_config(self.es, self.old_index)
        except Exception as exc:  # noqa: BLE001 - the alias has moved: never fail the job for this check
            log.debug("could not read the configuration of %r again after the swap: %s", self.old_index, exc)
            return
        changed = _changed_settings(seen, now)
        copied = [k for k in changed if k not in QUERY_SIDE]
        if copied:
            note = (f"the configuration of {self.old_index!r} changed just before the swap ({', '.join(copied)}) and "
                    f"was not carried to {name!r}: apply it there (es-semantic install-mappings --index {self.alias} "
                    "...), then reindex")
            bg = self.report.blue_green
            bg["note"] = f"{bg['note']}; {note}" if bg.get("note") else note
        elif changed:
            self._apply_query_side(name, now, changed)

    def _finish(self, name: str) -> None:
        # The copy is finished: drop the "unfinished copy" marker, keep the rest of _meta.
        meta = dict(_mappings(self.es, name).get("_meta") or {})
        job = dict(meta.get(JOB_META_KEY) or {})
        job["state"] = "done"
        meta[JOB_META_KEY] = job
        self.es.indices.put_mapping(index=name, meta=meta)
        owner = self._owner_blocks
        if owner.get(READ_ONLY_SETTING):
            # After the last metadata change: a read-only index refuses those. Only the owner's own
            # settings, so that lifting their block later lifts it all.
            settings: dict[str, Any] = {READ_ONLY_SETTING: True}
            if not owner.get(WRITE_BLOCK_SETTING):
                settings[WRITE_BLOCK_SETTING] = None
            self.pipeline.retry.call(self.es.indices.put_settings, index=name, settings=settings)
        if self.pipeline.options.delete_old and not self.concrete:  # a concrete one went with the swap
            self._delete_old()

    def _other_aliases(self) -> list[str]:
        """The aliases on the old index other than the one this job moves."""
        body = self.pipeline.retry.call(self.es.indices.get_alias, index=self.old_index).body
        aliases = (body.get(self.old_index) or {}).get("aliases") or {}
        return sorted(a for a in aliases if a != self.alias)

    def _delete_old(self) -> None:
        """``--delete-old``: delete the old index, unless other aliases still point at it (deleting
        it would delete them too, and take down whatever searches or writes through them)."""
        bg = self.report.blue_green
        others = self._other_aliases()
        if others:
            bg["old_index_kept_for_aliases"] = others
            note = (f"--delete-old: kept the old index {self.old_index!r}, because other aliases still point at it "
                    f"({', '.join(map(repr, others))}) and deleting it would delete them too; only {self.alias!r} "
                    f"moved. Once they point elsewhere, delete it: curl -X DELETE '<ES_URL>/{self.old_index}'")
            log.info("%s", note)  # the report's note; the CLI prints it as a warning
            bg["note"] = f"{bg['note']}; {note}" if bg.get("note") else note
            return
        if str(_flat_settings(self.es, self.old_index).get(READ_ONLY_SETTING)).lower() == "true":
            # A read-only index cannot be deleted: its block goes first (the owner's, but so does the index).
            self.pipeline.retry.call(self.es.indices.put_settings, index=self.old_index,
                                     settings={READ_ONLY_SETTING: None})
        self.pipeline.retry.call(self.es.indices.delete, index=self.old_index)
        bg["old_index_deleted"] = True


def restore_pending(es: Any, pending: dict[str, Any] | None) -> dict[str, Any]:
    """Put back settings a dead job left changed (from the lock it held); returns what was restored."""
    restored: dict[str, Any] = {}
    for index, settings in (pending or {}).items():
        try:
            es.indices.put_settings(index=index, settings=dict(settings))
            restored[index] = dict(settings)
        except NotFoundError:
            continue
    return restored


__all__ = [
    "BlueGreen",
    "SourceDoc",
    "candidate_names",
    "copyable_settings",
    "migrate_advice",
    "new_index_advice",
    "new_index_command",
    "new_mappings",
    "restore_pending",
    "writes_blocked",
]
