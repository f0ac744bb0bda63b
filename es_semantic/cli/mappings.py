"""``es-semantic install-mappings`` (dense_vector fields and the semantic configuration) and
``es-semantic set-min-score`` (the stored "no good match" threshold)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from ..config import (
    DEFAULT_MODEL,
    DEFAULT_VECTOR_FIELD,
    INDEX_OPTION_TYPES,
    SIMILARITIES,
    check_index_name,
    check_min_score,
    parse_index_options,
)
from ..errors import InvalidValue
from ..mappings import check_dims_fit, resolve_model_dims
from ..mappings import install_mappings as install
from .common import library_check
from .search import embedding_server_options

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
@click.option("--dims", type=int, default=None, metavar="N", help="Vector dims [the model's].")
@click.option("--similarity", type=click.Choice(SIMILARITIES), default=None, metavar="NAME",
              help="cosine, dot_product, l2_norm, max_inner_product [new: cosine].")
@click.option("--index-options", type=click.Choice(INDEX_OPTION_TYPES), default=None, metavar="TYPE",
              help="Vector index type, e.g. hnsw, bbq_hnsw [new: int8_hnsw].")
@click.option("--m", "hnsw_m", type=int, default=None, metavar="N", help="HNSW graph degree.")
@click.option("--ef-construction", type=int, default=None, metavar="N", help="HNSW build-time candidates.")
@click.option("--model", default=None, metavar="ID|PATH",
              help=f"Embedding model, found before anything is written [new: {DEFAULT_MODEL}].")
@click.option("--text-fields", default=None, metavar="A,B", callback=library_check(split_fields),
              help="Fields whose text is embedded [new: question,answer].")
@click.option("--text-template", default=None, metavar="TEXT",
              help="e.g. 'Q: {question}\\nA: {answer}' (plain {field} references only).")
@click.option("--query-instruction", default=None, metavar="TEXT", help="For queries ('' none; default: model's).")
@click.option("--languages", default=None, metavar="zh,en", help="Text languages (.cjk, .english) [detected].")
@click.option("--reranker", default=None, metavar="ID|PATH", help="Default reranker of searches ('none': none).")
@click.option("--template", default="faq", metavar="NAME", help="mappings/NAME.json (new index).")
@click.option("--alias/--no-alias", "alias", default=True, help="Create a new index as INDEX-v1 behind alias INDEX.")
@click.option("--replace-existing-vectors", is_flag=True,
              help="Take over a --vector-field es-semantic did not create: reindex replaces its vectors.")
@embedding_server_options(help_text="Embeddings server that will serve --model (as reindex --embedding-url): "
                                    "the model's dims are asked of it.")
@click.option("--dry-run", is_flag=True, help="Print the mapping that would be applied; change nothing.")
@click.pass_obj
def install_mappings(session: Session, index: str, vector_field: str | None, dims: int | None,
                     similarity: str | None, index_options: str | None, hnsw_m: int | None,
                     ef_construction: int | None, model: str | None, text_fields: tuple[str, ...] | None,
                     text_template: str | None, query_instruction: str | None, languages: str | None,
                     reranker: str | None, template: str, alias: bool, replace_existing_vectors: bool,
                     dry_run: bool, embedding_url: str | None = None,
                     embedding_api_key: str | None = None) -> None:
    """Add a dense_vector field to an index (created if missing) and record the configuration.

    The settings are stored in the index mapping's _meta, where reindex and search read them.
    The model is found first (local folder, Hugging Face cache or hub), and gives the dims; if it
    cannot be found, nothing is written. On a configured index only the options given change;
    while it holds no vector, the model, dims and similarity change in place. Rerunning changes
    nothing.

    \b
    Example:
      es-semantic install-mappings --index faq --text-fields question,answer --model /models/Qwen3-Embedding-0.6B
    """
    from ..languages import parse_languages
    from ..mappings import configure, stored_config

    if (hnsw_m is not None or ef_construction is not None) and index_options is None:
        raise click.UsageError("--m and --ef-construction need --index-options (e.g. --index-options int8_hnsw)")
    es = session.client()
    stored = stored_config(es, index)
    config = configure(  # every option checked before the model is looked for
        es, index, model=model, dims=dims, similarity=similarity, vector_field=vector_field,
        text_fields=text_fields,
        text_template=text_template.replace("\\n", "\n") if text_template is not None else None,
        query_instruction=query_instruction, reranker=None if reranker in (None, "none") else reranker,
        languages=parse_languages(languages) if languages is not None else None,
        index_options=(parse_index_options(index_options, m=hnsw_m, ef_construction=ef_construction)
                       if index_options is not None else None),
    )
    if reranker == "none":
        config = replace(config, reranker=None)
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
