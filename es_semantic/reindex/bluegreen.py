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
   comparing both indices and brought over (re-embedded when their text changed).
5. Check counts, then swap the alias atomically (keeping its filter/routing/write-index flags).
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
from typing import Any

from elasticsearch import NotFoundError

from ..config import META_KEY, SemanticConfig
from ..errors import ConfigError, EsSemanticError, IndexNotFound
from ..mappings import render_semantic_fields
from .pipeline import Item, Pipeline, Plan
from .reader import SourceDoc, mget_docs, read_pages
from .writer import chunk_ops

log = logging.getLogger(__name__)

#: ``_meta`` key marking an unfinished blue/green copy (and what to restore when it ends).
JOB_META_KEY = "es_semantic_bluegreen"
BULK_SETTINGS = {"index.refresh_interval": "-1", "index.number_of_replicas": "0"}
WRITE_BLOCK_SETTING = "index.blocks.write"
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
                 ("index_options", "--index-options"))


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
    except Exception:  # noqa: BLE001 - advice only: never hide the error it explains
        concrete = False
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
        raise IndexNotFound(f"alias {alias!r} does not exist (check --index)")
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


def _config_summary(meta: Any) -> str:
    if not isinstance(meta, dict):
        return "no es-semantic configuration"
    return ", ".join(f"{k} {meta.get(k)!r}" for k in ("model", "dims", "similarity"))


class BlueGreen:
    """One blue/green run for ``alias`` (see the module docstring)."""

    def __init__(self, es: Any, alias: str, old_config: SemanticConfig, config: SemanticConfig,
                 pipeline: Pipeline, *, new_index: str | None, model_label: str, base64_vectors: bool,
                 lock: Any = None) -> None:
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
        self.old_index, self.alias_body = resolve_alias(es, alias, concrete_ok=True)
        # A concrete index: replaced at the swap by an alias of its name over the copy (remove_index).
        self.concrete = self.old_index == alias
        if self.concrete:
            self._check_concrete()

    def _check_concrete(self) -> None:
        """Refuse, before anything is built, what replacing the concrete index would break."""
        options = self.pipeline.options
        given = {key: getattr(options, key, None) for key, _ in _VECTOR_FLAGS}
        if not options.delete_old:
            raise ConfigError(migrate_advice(self.alias, given))
        others = self._other_aliases()
        if others:
            raise ConfigError(self._aliases_in_the_way(others))

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
                if not _same_meta(meta.get(META_KEY), self.config.to_meta()):
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
        if self.lock is not None:
            self.lock.set_field("pending_restore", {})

    # -- the run --
    def run(self) -> None:
        name, resume, restore = self._choose()
        self.report.target_index = name
        bg = self.report.blue_green
        bg.update({"alias": self.alias, "old_index": self.old_index, "new_index": name, "resumed": resume,
                   "alias_swapped": False, "old_index_deleted": False})
        if self.concrete:
            bg["replaces_concrete_index"] = True
        if self.lock is not None:  # durable: whoever runs next restores these if we die
            self.lock.set_field("pending_restore", {name: restore})
        if resume:
            log.warning("resuming the unfinished copy of %r into %r", self.old_index, name)
            self.es.indices.put_settings(index=name, settings=dict(BULK_SETTINGS))
        else:
            self._create(name, restore)
        self.report.total = self._count(self.old_index)
        try:
            plan = Plan(read_index=self.old_index, config=self.config, model_label=self.model_label, mode="copy",
                        target_index=name, source_excludes=self._excluded_fields(), lookup_target=resume,
                        base64_vectors=self.base64_vectors, respect_limit=False)
            self.pipeline.run(plan)
            self.report.blue_green["catch_up"] = self.catch_up(plan)
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
                self._check_counts(name)
                self._swap(name)
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
                self._swap(name)
            return
        previous = {WRITE_BLOCK_SETTING: flat.get(WRITE_BLOCK_SETTING)}  # None: unset (the default, false)
        if self.lock is not None:  # durable before the block exists: whoever runs next lifts it if we die
            self.lock.set_field("pending_restore", {self.old_index: previous})
        started = time.monotonic()
        try:
            self.pipeline.retry.call(self.es.indices.add_block, index=self.old_index, block="write")
            bg["write_block"] = "set"
            log.info("writes to %r blocked for the final catch-up pass and the alias swap", self.old_index)
            bg["final_pass"] = self.catch_up(plan)
            if not self.report.failed:
                self._check_counts(name)
                self._swap(name)
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
            if self.lock is not None:
                self.lock.set_field("pending_restore", {})
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
        if self.lock is not None:
            self.lock.set_field("pending_restore", {})

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
            got = retry.call(client.mget, index=plan.target_index, source_excludes=[self.config.vector_field],
                             **mget_docs(page)).body
            have = {e["_id"]: e.get("_source") or {} for e in got.get("docs", []) if e.get("found")}
            stale: list[Item] = []
            for doc in page:
                target = have.get(doc.id)
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

    def _check_counts(self, name: str) -> None:
        self.es.indices.refresh(index=name)
        old, new = self._count(self.old_index), self._count(name)
        self.report.blue_green["counts"] = {"old": old, "new": new}
        if old != new:
            raise EsSemanticError(
                f"document counts differ after the copy ({self.old_index!r}: {old}, {name!r}: {new}), probably "
                f"because of writes during the last seconds; {self._unmoved()}. Rerun to resume and catch up"
            )

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

    def _finish(self, name: str) -> None:
        # The copy is finished: drop the "unfinished copy" marker, keep the rest of _meta.
        meta = dict(_mappings(self.es, name).get("_meta") or {})
        job = dict(meta.get(JOB_META_KEY) or {})
        job["state"] = "done"
        meta[JOB_META_KEY] = job
        self.es.indices.put_mapping(index=name, meta=meta)
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
