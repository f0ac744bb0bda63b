"""``es-semantic install-mappings`` (dense_vector fields and the semantic configuration) and
``es-semantic set-min-score`` (the stored "no good match" threshold)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from ..config import (
    DEFAULT_DIMS,
    DEFAULT_MODEL,
    DEFAULT_VECTOR_FIELD,
    INDEX_OPTION_TYPES,
    SIMILARITIES,
    check_index_name,
    check_min_score,
    parse_index_options,
)
from ..errors import InvalidValue
from ..mappings import install_mappings as install
from ..mappings import model_availability_warning
from .common import library_check

if TYPE_CHECKING:  # .main registers the commands: importing it here would go round in a circle
    from .main import Session


def split_fields(value: str) -> tuple[str, ...]:
    """``"question, answer"`` -> ``("question", "answer")``; an empty item is ``InvalidValue``."""
    parts = tuple(part.strip() for part in value.split(","))
    if not value.strip() or any(not part for part in parts):
        raise InvalidValue("text_fields", value, "comma-separated field names, e.g. question,answer")
    return parts


@click.command("install-mappings", epilog="What is stored, aliases, changing the model: docs/configuration.md")
@click.option("--index", required=True, metavar="NAME", callback=library_check(check_index_name),
              help="Index or alias to configure (created if missing).")
@click.option("--vector-field", default=None, metavar="NAME", help=f"dense_vector field [new: {DEFAULT_VECTOR_FIELD}].")
@click.option("--dims", type=int, default=None, metavar="N", help=f"Vector dims [the model's, else {DEFAULT_DIMS}].")
@click.option("--similarity", type=click.Choice(SIMILARITIES), default=None, metavar="NAME",
              help="cosine, dot_product, l2_norm, max_inner_product [new: cosine].")
@click.option("--index-options", type=click.Choice(INDEX_OPTION_TYPES), default=None, metavar="TYPE",
              help="Vector index type, e.g. hnsw, bbq_hnsw [new: int8_hnsw].")
@click.option("--m", "hnsw_m", type=int, default=None, metavar="N", help="HNSW graph degree.")
@click.option("--ef-construction", type=int, default=None, metavar="N", help="HNSW build-time candidates.")
@click.option("--model", default=None, metavar="ID|PATH", help=f"Embedding model [new: {DEFAULT_MODEL}].")
@click.option("--text-fields", default=None, metavar="A,B", callback=library_check(split_fields),
              help="Fields whose text is embedded [new: question,answer].")
@click.option("--text-template", default=None, metavar="TEXT", help="e.g. 'Q: {question}\\nA: {answer}'.")
@click.option("--query-instruction", default=None, metavar="TEXT", help="For queries ('' none; default: model's).")
@click.option("--template", default="faq", metavar="NAME", help="mappings/NAME.json for a new index.")
@click.option("--alias/--no-alias", "alias", default=True, help="Create a new index as INDEX-v1 behind alias INDEX.")
@click.option("--dry-run", is_flag=True, help="Print the mapping that would be applied; change nothing.")
@click.pass_obj
def install_mappings(session: Session, index: str, vector_field: str | None, dims: int | None,
                     similarity: str | None, index_options: str | None, hnsw_m: int | None,
                     ef_construction: int | None, model: str | None, text_fields: tuple[str, ...] | None,
                     text_template: str | None, query_instruction: str | None, template: str, alias: bool,
                     dry_run: bool) -> None:
    """Add a dense_vector field to an index (created if missing) and record the configuration.

    The settings are stored in the index mapping's _meta, where reindex and search read them.
    On a configured index only the options given change. Running it again changes nothing.

    \b
    Example:
      es-semantic install-mappings --index faq --text-fields question,answer
    """
    from ..mappings import configure

    if (hnsw_m is not None or ef_construction is not None) and index_options is None:
        raise click.UsageError("--m and --ef-construction need --index-options (e.g. --index-options int8_hnsw)")
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
        text_fields=text_fields,
        text_template=text_template.replace("\\n", "\n") if text_template is not None else None,
        query_instruction=query_instruction,
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


@click.command("set-min-score", epilog="Choosing a threshold: docs/search.md")
@click.option("--index", required=True, metavar="NAME", callback=library_check(check_index_name),
              help="Index or alias configured with install-mappings.")
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
