"""``es-semantic install-mappings`` (dense_vector fields and the semantic configuration) and
``es-semantic set-min-score`` (the stored "no good match" threshold)."""

from __future__ import annotations

import json

import click

from ..config import (
    DEFAULT_DIMS,
    DEFAULT_MODEL,
    DEFAULT_VECTOR_FIELD,
    INDEX_OPTION_TYPES,
    SIMILARITIES,
    check_min_score,
    parse_index_options,
)
from ..errors import ConfigError
from ..mappings import install_mappings as install
from ..mappings import model_availability_warning
from .main import Session


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
                   f"--model's output size when its config can be read locally (a folder or the Hugging Face cache), "
                   f"else {DEFAULT_DIMS}].")
@click.option("--similarity", type=click.Choice(SIMILARITIES), default=None, help="[new index: cosine]")
@click.option("--index-options", "index_options", type=click.Choice(INDEX_OPTION_TYPES), default=None,
              help="How Elasticsearch indexes the vectors (quantisation and graph) [new index: int8_hnsw].")
@click.option("--m", "hnsw_m", type=int, default=None, help="HNSW graph degree (with an HNSW --index-options).")
@click.option("--ef-construction", type=int, default=None, help="HNSW build-time candidates (with an HNSW --index-options).")
@click.option("--model", default=None, help=f"Embedding model id or local path [new index: {DEFAULT_MODEL}].")
@click.option("--text-fields", default=None, help="Comma-separated fields whose text is embedded [new index: question,answer].")
@click.option("--text-template", default=None,
              help="How the text fields are joined, e.g. 'Q: {question}\\nA: {answer}'; '' for the default: "
                   "non-empty fields joined by newlines.")
@click.option("--query-instruction", default=None,
              help="Task instruction for queries ('' for none). Default: the model's own "
                   "(Qwen3-Embedding's retrieval task; none for models without one).")
@click.option("--languages", default=None,
              help="Languages of the text, comma-separated (zh, ja, ko -> .cjk sub-fields; en -> .english) "
                   "[default: the stored ones, else detected from a sample of the documents].")
@click.option("--template", default="faq", help="Template for a new index (mappings/*.json).")
@click.option("--alias/--no-alias", "alias", default=True,
              help="A new index is created as INDEX-v1 behind an alias INDEX, ready for a blue/green "
                   "`reindex --new-index`; --no-alias creates a plain index INDEX. An existing index or alias is "
                   "updated in place either way.")
@click.option("--dry-run", is_flag=True, help="Print the mapping that would be applied; change nothing.")
@click.pass_obj
def install_mappings(session: Session, index: str, vector_field: str | None, dims: int | None,
                     similarity: str | None, index_options: str | None, hnsw_m: int | None,
                     ef_construction: int | None, model: str | None, text_fields: str | None,
                     text_template: str | None, query_instruction: str | None, languages: str | None,
                     template: str, alias: bool, dry_run: bool) -> None:
    """Add a dense_vector field to an index (creating it if needed) and record the configuration.

    The model, dims, vector field, text fields and query instruction are stored in the index
    mapping's _meta, so `reindex`, `search` and `hybrid_search()` read them from the index.
    A missing index is created as INDEX-v1 behind an alias INDEX (use the alias as the index:
    searches and writes go through it), so that a model change later can build INDEX-v2 and
    move the alias (`reindex --new-index`); --no-alias creates a plain index instead.
    The configured text fields get language sub-fields (.cjk for zh/ja/ko, .english for en) that
    BM25 searches too; on an existing index the documents already there are indexed again in place
    (_update_by_query, throttled, run as a task; rerun to resume).
    On an index configured before, only the options given change; the others keep their stored
    values (the defaults shown apply to a new configuration). Running it again changes nothing.
    A field that exists with other dims or similarity is refused with nothing changed, with the
    command that moves to a new index instead.

    \b
    Example:
      es-semantic install-mappings --index faq --text-fields question,answer --dims 1024
      es-semantic install-mappings --index faq --model /models/Qwen3-Embedding-0.6B --dry-run
      es-semantic install-mappings --index faq --query-instruction "Find the FAQ entry that answers the question"
    """
    from ..languages import parse_languages
    from ..mappings import configure

    if (hnsw_m is not None or ef_construction is not None) and index_options is None:
        raise ConfigError("--m and --ef-construction need --index-options (e.g. --index-options int8_hnsw)")
    es = session.client()
    dims_note = None
    unread = False  # --model given without --dims, and its output size could not be read
    if model is not None and dims is None:
        dims = _dims_from_model(es, index, model)
        if dims is not None:
            dims_note = f"dims {dims}: the output size of {model!r} (from its config; --dims to change)"
        else:
            unread = _model_dims_unread(es, index, model)
    config = configure(
        es, index, model=model, dims=dims, similarity=similarity, vector_field=vector_field,
        text_fields=split_fields(text_fields) if text_fields is not None else None,
        text_template=text_template.replace("\\n", "\n") if text_template is not None else None,
        query_instruction=query_instruction,
        languages=parse_languages(languages) if languages is not None else None,
        index_options=(parse_index_options(index_options, m=hnsw_m, ef_construction=ef_construction)
                       if index_options is not None else None),
    )
    if unread:
        origin = "the default" if config.dims == DEFAULT_DIMS else "the stored value"
        dims_note = (f"dims {config.dims} is {origin}, not read from the model (its config is not available "
                     "locally); pass --dims")
    result = install(es, index, config, template=template, dry_run=dry_run, alias=alias)
    if dry_run and result.request:
        click.echo(json.dumps(result.request, indent=2, ensure_ascii=False))
    click.echo(result.summary())
    if dims_note:
        click.echo(f"note: {dims_note}", err=True)
    warning = model_availability_warning(config.model)
    if warning:
        click.echo(f"warning: {warning}", err=True)


def _dims_from_model(es: object, index: str, model: str) -> int | None:
    """The dims of ``model`` (read from its config, no weights, no download) for a configuration
    that moves to it; None where the index is already configured for this model (its stored dims,
    possibly truncated, stay) or the model's size cannot be read locally."""
    from ..errors import EsSemanticError
    from ..mappings import model_dims, read_config

    try:
        stored = read_config(es, index)  # type: ignore[arg-type]
    except EsSemanticError:
        stored = None
    if stored is not None and stored.model == model:
        return None
    return model_dims(model)


def _model_dims_unread(es: object, index: str, model: str) -> bool:
    """Whether ``model`` is new to the index and its output size could not be read (so dims were guessed)."""
    from ..errors import EsSemanticError
    from ..mappings import model_dims, read_config

    try:
        stored = read_config(es, index)  # type: ignore[arg-type]
    except EsSemanticError:
        stored = None
    return not (stored is not None and stored.model == model) and model_dims(model) is None


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
