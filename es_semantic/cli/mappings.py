"""``es-semantic install-mappings`` (dense_vector fields and the semantic configuration) and
``es-semantic set-min-score`` (the stored "no good match" threshold)."""

from __future__ import annotations

import json
from dataclasses import replace

import click

from ..config import (
    DEFAULT_MODEL,
    DEFAULT_VECTOR_FIELD,
    INDEX_OPTION_TYPES,
    SIMILARITIES,
    check_min_score,
    parse_index_options,
)
from ..errors import ConfigError
from ..mappings import check_dims_fit, resolve_model_dims
from ..mappings import install_mappings as install
from .main import Session
from .search import embedding_server_options


def split_fields(value: str) -> tuple[str, ...]:
    """``"question, answer"`` -> ``("question", "answer")``; an empty item is an error."""
    parts = tuple(part.strip() for part in value.split(","))
    if not value.strip() or any(not part for part in parts):
        raise ConfigError(f"--text-fields {value!r}: give comma-separated field names, e.g. question,answer")
    return parts


@click.command("install-mappings")
@click.option("--index", required=True, help="Index or alias to configure (created if missing).")
@click.option("--vector-field", default=None, help=f"Name of the dense_vector field [new index: {DEFAULT_VECTOR_FIELD}].")
@click.option("--dims", type=int, default=None,
              help="Vector dimensions; fewer than the model's output truncates, Matryoshka style [default: the "
                   "--model's output size, read from its config].")
@click.option("--similarity", type=click.Choice(SIMILARITIES), default=None, help="[new index: cosine]")
@click.option("--index-options", "index_options", type=click.Choice(INDEX_OPTION_TYPES), default=None,
              help="How Elasticsearch indexes the vectors (quantisation and graph) [new index: int8_hnsw].")
@click.option("--m", "hnsw_m", type=int, default=None, help="HNSW graph degree (with an HNSW --index-options).")
@click.option("--ef-construction", type=int, default=None, help="HNSW build-time candidates (with an HNSW --index-options).")
@click.option("--model", default=None,
              help=f"Embedding model: a local folder or a Hugging Face id (looked up in the cache, else downloaded) "
                   f"[new index: {DEFAULT_MODEL}]. It must be found before anything is written.")
@click.option("--text-fields", default=None, help="Comma-separated fields whose text is embedded [new index: question,answer].")
@click.option("--text-template", default=None,
              help="How the text fields are joined, e.g. 'Q: {question}\\nA: {answer}' (plain {field} references "
                   "only); '' for the default: non-empty fields joined by newlines.")
@click.option("--query-instruction", default=None,
              help="Task instruction for queries ('' for none). Default: the model's own "
                   "(Qwen3-Embedding's retrieval task; none for models without one).")
@click.option("--template", default="faq", help="Template for a new index (mappings/*.json).")
@click.option("--alias/--no-alias", "alias", default=True,
              help="A new index is created as INDEX-v1 behind an alias INDEX, ready for a blue/green "
                   "`reindex --new-index`; --no-alias creates a plain index INDEX. An existing index or alias is "
                   "updated in place either way.")
@click.option("--replace-existing-vectors", is_flag=True,
              help="Take over a --vector-field the index already has but es-semantic did not create: reindex then "
                   "replaces the vectors the application stored there. Without it such a field is refused.")
@embedding_server_options(help_text="OpenAI-compatible embeddings server that will embed for this index (as "
                                    "reindex --embedding-url); the model is then looked for there, and its dims "
                                    "asked of it, instead of in a local folder or the Hugging Face cache.")
@click.option("--dry-run", is_flag=True, help="Print the mapping that would be applied; change nothing.")
@click.pass_obj
def install_mappings(session: Session, index: str, vector_field: str | None, dims: int | None,
                     similarity: str | None, index_options: str | None, hnsw_m: int | None,
                     ef_construction: int | None, model: str | None, text_fields: str | None,
                     text_template: str | None, query_instruction: str | None, template: str, alias: bool,
                     replace_existing_vectors: bool, dry_run: bool, embedding_url: str | None = None,
                     embedding_api_key: str | None = None) -> None:
    """Add a dense_vector field to an index (creating it if needed) and record the configuration.

    The model, dims, vector field, text fields and query instruction are stored in the index
    mapping's _meta, so `reindex`, `search` and `hybrid_search()` read them from the index.
    The model is found first (a local folder, the Hugging Face cache or the hub; or the
    --embedding-url server), and its config gives the dims: when it cannot be found, nothing is written.
    A missing index is created as INDEX-v1 behind an alias INDEX (use the alias as the index:
    searches and writes go through it), so that a model change later can build INDEX-v2 and
    move the alias (`reindex --new-index`); --no-alias creates a plain index instead.
    On an index configured before, only the options given change; the others keep their stored
    values (the defaults shown apply to a new configuration). Running it again changes nothing.
    While the index holds no vector yet, the model, dims and similarity change in place; once it
    holds vectors, a change is refused with nothing changed, with the command that moves to a new
    index instead. A vector field es-semantic did not create is never taken over without
    --replace-existing-vectors.

    \b
    Example:
      es-semantic install-mappings --index faq --text-fields question,answer --model /models/Qwen3-Embedding-0.6B
      es-semantic install-mappings --index faq --model sentence-transformers/all-MiniLM-L6-v2 --dry-run
      es-semantic install-mappings --index faq --query-instruction "Find the FAQ entry that answers the question"
    """
    from ..mappings import configure, stored_config

    if (hnsw_m is not None or ef_construction is not None) and index_options is None:
        raise ConfigError("--m and --ef-construction need --index-options (e.g. --index-options int8_hnsw)")
    es = session.client()
    stored = stored_config(es, index)
    config = configure(  # every option checked before the model is looked for
        es, index, model=model, dims=dims, similarity=similarity, vector_field=vector_field,
        text_fields=split_fields(text_fields) if text_fields is not None else None,
        text_template=text_template.replace("\\n", "\n") if text_template is not None else None,
        query_instruction=query_instruction,
        index_options=(parse_index_options(index_options, m=hnsw_m, ef_construction=ef_construction)
                       if index_options is not None else None),
    )
    produced = _produced_dims(config.model, index, embedding_url, embedding_api_key)  # before anything is written
    dims_note = None
    if dims is None and (stored is None or stored.model != config.model):
        config = replace(config, dims=produced)  # (a model change has dropped any min_score already)
        dims_note = f"dims {produced}: the output size of {config.model!r} (from its config; --dims to change)"
    check_dims_fit(config, produced)
    result = install(es, index, config, template=template, dry_run=dry_run, alias=alias,
                     replace_existing_vectors=replace_existing_vectors)
    if dry_run and result.request:
        click.echo(json.dumps(result.request, indent=2, ensure_ascii=False))
    click.echo(result.summary())
    if dims_note:
        click.echo(f"note: {dims_note}", err=True)


def _produced_dims(model: str, index: str, embedding_url: str | None, api_key: str | None) -> int:
    """The output size of ``model``; the error saying nothing was written when it cannot be found (or the
    embedding server cannot be asked)."""
    from ..errors import EmbeddingError, ModelLoadError

    try:
        return resolve_model_dims(model, base_url=embedding_url, api_key=api_key)
    except (ModelLoadError, EmbeddingError) as exc:
        raise type(exc)(f"{str(exc).rstrip('.')}. Nothing was written to {index!r}.") from None


@click.command("set-min-score")
@click.option("--index", required=True, help="Index or alias configured with install-mappings.")
@click.argument("value", metavar="FLOAT|none")
@click.option("--dry-run", is_flag=True, help="Show what would be stored; change nothing.")
@click.pass_obj
def set_min_score(session: Session, index: str, value: str, dry_run: bool) -> None:
    """Store the "no good match" threshold in the index, or remove it with 'none'.

    search and hybrid_search() drop hits whose cosine similarity to the query is below it, and
    report "no good match" when none is left. The threshold belongs to the model: a blue/green
    reindex to another model drops it. Choose it with `eval --calibrate` (which can --save it).

    \b
    Example:
      es-semantic set-min-score --index faq 0.45
      es-semantic set-min-score --index faq none
    """
    from ..mappings import set_min_score as store

    min_score = None if value.strip().lower() == "none" else check_min_score(value)
    config = store(session.client(), index, min_score, dry_run=dry_run)
    verb = "would store" if dry_run else "stored"
    if config.min_score is None:
        click.echo(f"{'would remove' if dry_run else 'removed'} the min_score of {index!r}: searches use no threshold")
    else:
        click.echo(f"{verb} min_score {config.min_score:g} in {index!r}: searches drop hits below it by default")
