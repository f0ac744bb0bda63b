"""``es-semantic search`` and ``es-semantic eval``: hybrid search from the shell, and its evaluation."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from ..config import MAX_JSON_DEPTH, json_nesting
from ..errors import ConfigError
from ..search.fusion import NORMALIZERS
from ..search.options import EXECUTIONS, FROM_INDEX, METHODS, SearchOptionError, SearchOptions

if TYPE_CHECKING:  # .main registers the commands: importing it here would go round in a circle
    from .main import Session


def _filter_json(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """--filter as a query DSL object (or a list of them)."""
    if not value:
        return None
    example = '{"term": {"category": "billing"}}'
    if json_nesting(value) > MAX_JSON_DEPTH:
        raise click.BadParameter(f"nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg}); e.g. '{example}'") from None
    if not isinstance(parsed, (dict, list)):
        raise click.BadParameter(f"not a query DSL object; e.g. '{example}'")
    return parsed


class MinScore(click.ParamType):
    """A cosine similarity threshold, ``index`` (the one stored in the index) or ``none``."""

    name = "FLOAT|index|none"

    def convert(self, value: Any, param: Any, ctx: Any) -> float | str | None:
        if value is None or isinstance(value, float):
            return value
        text = str(value).strip().lower()
        if text in ("index", "none"):
            return None if text == "none" else FROM_INDEX
        try:
            return float(text)  # its range is the search's to check
        except ValueError:
            self.fail(f"{value!r} is not a number; or 'index' / 'none'", param, ctx)


MIN_SCORE = MinScore()


def embedding_server_options(func: Any = None, *, what: str = "the queries", help_text: str | None = None) -> Any:
    """--embedding-url / --embedding-api-key: embed ``what`` on an OpenAI-compatible server
    (``help_text``: the whole --embedding-url help instead)."""
    if func is None:
        return lambda f: embedding_server_options(f, what=what, help_text=help_text)
    func = click.option(
        "--embedding-api-key", envvar="ES_SEMANTIC_EMBEDDING_API_KEY", show_envvar=True, default=None,
        metavar="KEY", help="API key for --embedding-url (never printed).",
    )(func)
    return click.option(
        "--embedding-url", envvar="ES_SEMANTIC_EMBEDDING_URL", show_envvar=True, default=None, metavar="URL",
        help=help_text or f"OpenAI-compatible server to embed {what} with.",
    )(func)


def use_embedding_server(es: Any, index: str, url: str | None, api_key: str | None) -> None:
    """Make a remote embedder for the index's configured model the one searches of ``index`` use."""
    if not url:
        return
    from ..embedding import embedder_for
    from ..search.hybrid import index_info, register_embedder

    config = index_info(es, index).config
    # same model name, dims and query instruction as the stored vectors were made for
    register_embedder(config, embedder_for(config, base_url=url, api_key=api_key))


class RerankSpec(click.ParamType):
    """A reranking model (hub id or path), ``es:<inference_id>``, ``index`` (the index's) or ``none``."""

    name = "MODEL|es:ID|index|none"

    def convert(self, value: Any, param: Any, ctx: Any) -> str | None:
        text = str(value).strip() if value is not None else None
        if not text:
            self.fail(f"{value!r}: give a model, es:<inference_id>, 'index' or 'none'", param, ctx)
        return None if text.lower() == "none" else text


def rerank_options(func: Any) -> Any:
    """--rerank, --rerank-window and --rerank-url (a served /rerank API for --rerank MODEL)."""
    func = click.option("--rerank-url", envvar="ES_SEMANTIC_RERANK_URL", show_envvar=True, default=None,
                        metavar="URL", help="A /rerank server for --rerank MODEL.")(func)
    func = click.option("--rerank-window", type=int, default=None, metavar="N",
                        help="How many of the top are reranked [50].")(func)
    return click.option("--rerank", type=RerankSpec(), default=FROM_INDEX, show_default=True, metavar="MODEL",
                        help="Model, es:<inference_id>, 'index' or 'none'.")(func)


def served_reranker(rerank: str | None, url: str | None) -> Any:
    """``rerank`` as the ``hybrid_search`` option: with ``url``, a served Reranker of that model."""
    if not url:
        return rerank
    if rerank in (None, FROM_INDEX) or rerank.startswith("es:"):
        raise click.BadParameter("needs --rerank MODEL, the name of the model the server serves",
                                 param_hint="'--rerank-url'")
    from ..rerank import Reranker

    return Reranker(rerank, base_url=url)


def split_fields(value: str | None) -> list[str] | None:
    """``--fields 'question^2, answer'`` as a list (the search checks each name against the index)."""
    if value is None:
        return None
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def flag(option: str) -> str:
    """The command-line flag of a search option: ``num_candidates`` -> ``--num-candidates``."""
    return "--" + option.rstrip("_").replace("_", "-")


@contextmanager
def option_errors() -> Iterator[None]:
    """A search option the library refuses, as click's error for the flag that set it."""
    try:
        yield
    except SearchOptionError as exc:
        value = ",".join(exc.value) if isinstance(exc.value, (list, tuple)) else exc.value  # as --fields took it
        raise click.BadParameter(f"{value!r}: {exc.reason}", ctx=click.get_current_context(),
                                 param_hint=f"'{flag(exc.option)}'") from None


def _fmt(value: float | None, rank: int | None) -> str:
    return "-" if value is None else f"{value:.4f} (#{rank})"


def _title(source: Any, fields: tuple[str, ...]) -> str:
    if not isinstance(source, dict):
        return ""
    for name in fields:
        value = source.get(name)
        if value:
            text = " ".join(str(value).split())
            return text if len(text) <= 80 else text[:77] + "..."
    return ""


@click.command("search")
@click.option("--index", required=True, metavar="NAME", help="Index or alias configured with install-mappings.")
@click.argument("query")
@click.option("--k", "k", type=int, default=10, metavar="N", help="Number of hits.")
@click.option("--from", "from_", type=int, default=0, metavar="N", help="Offset of the first hit.")
@click.option("--method", type=click.Choice(METHODS), default=None, metavar="NAME",
              help="linear (default), rrf, bm25 or knn.")
@click.option("--fields", default=None, metavar="A^2,B", help="BM25 fields with boosts.")
@click.option("--filter", "filter_", default=None, callback=_filter_json, metavar="JSON",
              help="Query DSL filter applied to both legs.")
@click.option("--min-score", type=MIN_SCORE, default="index", show_default=True,
              help="Similarity a hit needs; 'index' or 'none'.")
@click.option("--window", type=int, default=None, metavar="N", help="Per-leg fusion window.")
@click.option("--num-candidates", type=int, default=None, metavar="N", help="kNN candidates per shard.")
@click.option("--rank-constant", type=int, default=None, metavar="N", help="RRF rank constant.")
@click.option("--bm25-weight", type=float, default=None, metavar="W", help="Weight of the BM25 leg.")
@click.option("--knn-weight", type=float, default=None, metavar="W", help="Weight of the kNN leg.")
@click.option("--normalizer", type=click.Choice(NORMALIZERS), default=None, metavar="NAME",
              help="minmax, l2_norm, zscore, none (linear).")
@click.option("--execution", type=click.Choice(EXECUTIONS), default="auto", metavar="WHERE",
              help="auto, server (a retriever) or client.")
@click.option("--explain", is_flag=True, help="Show the formula of every fused score.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@rerank_options
@embedding_server_options
@click.pass_obj
def search(session: Session, index: str, query: str, fields: str | None, filter_: Any, as_json: bool,
           rerank_url: str | None = None, embedding_url: str | None = None, embedding_api_key: str | None = None,
           **flags: Any) -> None:
    """Hybrid (BM25 + kNN) search; prints the top hits with both sub-scores.

    The model, vector field and text fields come from the index _meta. Hits below the min score
    (cosine similarity) are dropped; none left prints "no good match" (exit 0).

    \b
    Example:
      es-semantic search --index faq --k 3 --filter '{"term": {"language": "zh"}}' "忘记密码"
      es-semantic search --index faq --rerank Qwen/Qwen3-Reranker-0.6B "refund"

    Options and defaults: docs/search.md
    """
    from ..search import hybrid_search

    flags["rerank"] = served_reranker(flags["rerank"], rerank_url)
    with option_errors():
        options = SearchOptions(fields=split_fields(fields), filter=filter_, **flags)
        es = session.client()
        use_embedding_server(es, index, embedding_url, embedding_api_key)
        result = hybrid_search(es, query, index=index, options=options)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    from ..search.hybrid import index_info

    # the index's own text fields first (cached by the search), then the usual names
    documents = None
    if not len(result) and not result.no_match:
        try:
            documents = int(es.count(index=index).body["count"])
        except Exception:  # noqa: BLE001 - only to word the message
            documents = None
    print_result(result, (*index_info(es, index).config.text_fields, *DISPLAY_FIELDS), filtered=bool(filter_),
                 documents=documents, index=index)


#: Fields whose text the result table shows, first found first.
DISPLAY_FIELDS = ("question", "title", "text", "answer")


def no_hits_message(*, filtered: bool = False, documents: int | None = None, index: str | None = None) -> str:
    """Why a search found nothing, as far as we know: an empty index, or the filter where one was given."""
    if documents == 0 and index:
        return f"no hits: index {index!r} has no documents"
    if filtered:
        return ("no hits: no document matched; check the filter, and es-semantic status for how many "
                "documents have a vector")
    return "no hits: no document matched; es-semantic status shows how many documents have a vector"


def print_result(result: Any, text_fields: tuple[str, ...] = DISPLAY_FIELDS, *, filtered: bool = False,
                 documents: int | None = None, index: str | None = None) -> None:
    """The human-readable table ``search`` and ``demo`` print (``filtered``, ``documents`` and ``index``
    tell "no hits" apart)."""
    load = "" if result.model_load_ms is None else f" (and {result.model_load_ms:.0f} ms to load the model)"
    click.echo(f"{result.method} ({result.execution}-side), {len(result)} hits, {result.took_ms:.0f} ms{load}")
    if result.no_match and "rerank" in result.params:
        click.echo(f"no good match: no rerank score of the top {result.params['rerank_window']} reaches min score "
                   f"{result.min_score}")
        return
    if result.no_match:
        best = "n/a" if result.best_similarity is None else f"{result.best_similarity:.3f}"
        click.echo(f"no good match: best similarity {best} < min score {result.min_score}")
        return
    if not len(result):
        click.echo(no_hits_message(filtered=filtered, documents=documents, index=index))
        return
    reranked = any(hit.rerank_score is not None for hit in result)
    click.echo(f"{'#':>3}  {'rerank  ' if reranked else ''}{'score':>8}  {'bm25 (rank)':>16}  {'knn (rank)':>15}  "
               f"{'cos':>6}  id / text")
    for number, hit in enumerate(result, start=1):
        cos = "-" if hit.similarity is None else f"{hit.similarity:.3f}"
        rerank = f"{hit.rerank_score:>6.4f}  " if reranked else ""
        click.echo(f"{number:>3}  {rerank}{hit.score:>8.4f}  {_fmt(hit.bm25_score, hit.bm25_rank):>16}  "
                   f"{_fmt(hit.knn_score, hit.knn_rank):>15}  {cos:>6}  {hit.id}  {_title(hit.source, text_fields)}")
        if hit.explanation:
            click.echo(f"       {hit.explanation}")


def reproducing_flags(flags: str, *, fields: str | None, window: int, stored_min_score: float | None) -> str:
    """The ``search`` options that rank as an eval variant did (``flags``, from ``Variant.search_flags``):
    ``--k`` within a window smaller than search's default 10, ``--min-score none`` where the index stores a
    threshold (eval scores without one), and eval's ``--fields`` (BM25 only: nothing to kNN)."""
    words = flags.split()
    method = words[words.index("--method") + 1] if "--method" in words else None
    extra = []
    if window < 10:
        extra += ["--k", str(window)]
    if stored_min_score is not None:
        extra += ["--min-score", "none"]
    if fields and method != "knn":
        extra += ["--fields", shlex.quote(fields)]
    return " ".join([flags, *extra])


@click.command("eval")
@click.option("--index", required=True, metavar="NAME", help="Index of the judged documents (ids as in qrels).")
@click.option("--queries", "queries_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="queries.jsonl ({\"_id\", \"text\"} per line).")
@click.option("--qrels", "qrels_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="TSV 'query-id corpus-id score' (a header is fine).")
@click.option("--window", type=int, default=100, metavar="N", help="Per-leg window (Recall@100 needs 100).")
@click.option("--fields", default=None, metavar="A^2,B", help="BM25 fields with boosts.")
@click.option("--sweep", is_flag=True, help="Also try rank constants, weights, normalisers.")
@click.option("--calibrate", is_flag=True,
              help="Also choose the 'no good match' threshold (min_score).")
@click.option("--no-answer-queries", "no_answer_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Questions the index has no answer for.")
@click.option("--holdout", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              metavar="SHARE", help="Share of judged queries made unanswerable [0.3 or 0].")
@click.option("--target-precision", type=click.FloatRange(0.0, 1.0, min_open=True), default=None,
              metavar="P", help="Lowest threshold right this often, not best accuracy.")
@click.option("--method", type=click.Choice(("linear", "rrf", "knn")), default=None,
              metavar="NAME", help="linear, rrf or knn: the method the threshold is for.")
@click.option("--seed", type=int, default=0, metavar="N", help="Seed of the hold-out sample.")
@click.option("--save", is_flag=True,
              help="Store the recommended min_score in the index.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@rerank_options
@embedding_server_options
@click.pass_obj
def eval_(session: Session, index: str, queries_path: str, qrels_path: str, window: int, fields: str | None,
          sweep: bool, calibrate: bool, no_answer_path: str | None, save: bool, as_json: bool,
          rerank: str | None = FROM_INDEX, rerank_window: int | None = None, rerank_url: str | None = None,
          embedding_url: str | None = None, embedding_api_key: str | None = None, **calibration: Any) -> None:
    """Evaluate BM25 alone, kNN alone, hybrid rrf and hybrid linear on judged queries.

    Prints nDCG@10, MRR@10, Recall@3/10/100 and Top-1 for each, from one fetch of both legs per
    query. --calibrate also chooses the "no good match" threshold (min_score); --save stores it.
    With a reranker (--rerank, by default the index's), the default fusion reranked is one more row.

    \b
    Example:
      es-semantic eval --index faq --queries q.jsonl --qrels qrels.tsv --calibrate --save

    Calibration and evaluation: docs/search.md
    """
    from ..evaluation import evaluate_index, load_judged

    settings = _calibration_settings(calibrate, no_answer_path, save, calibration)
    judged = load_judged(queries_path, qrels_path)
    es = session.client()
    use_embedding_server(es, index, embedding_url, embedding_api_key)
    with option_errors():
        # eval ranks each leg's whole window: no page, so k plays no part
        options = SearchOptions(k=1, window=window, fields=split_fields(fields),
                                rerank=served_reranker(rerank, rerank_url), rerank_window=rerank_window)
        report = evaluate_index(es, index, judged, options=options, sweep=sweep, calibrate=settings,
                                progress=None if as_json or not sys.stderr.isatty() else _progress)
    if save:
        from ..calibration import save_calibration
        from ..search import clear_caches

        save_calibration(es, index, report.calibration)
        clear_caches()
    for line in report.warnings():
        click.echo(f"warning: {line}", err=True)
    _add_search_flags(report, es, fields)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    print_eval(report)
    if report.calibration is not None:
        print_calibration(report.calibration, index, save)


eval_.name = "eval"


def _calibration_settings(calibrate: bool, no_answer_path: str | None, save: bool,
                          calibration: dict[str, Any]) -> dict[str, Any] | None:
    """The calibration's keywords with --calibrate; without it, a ConfigError if any was given."""
    from ..evaluation import load_queries

    if calibrate:
        return calibration | {"no_answer_queries": load_queries(no_answer_path) if no_answer_path else None}
    if no_answer_path or save or calibration != {"holdout": None, "target_precision": None, "method": None, "seed": 0}:
        raise ConfigError("--no-answer-queries, --holdout, --target-precision, --method, --seed and --save "
                          "go with --calibrate")
    return None


def _progress(done: int, total: int) -> None:
    if done % 50 == 0 or done == total:
        click.echo(f"\r{done}/{total} queries", nl=done == total, err=True)


def _add_search_flags(report: Any, es: Any, fields: str | None) -> None:
    """Each variant's ``search_flags``: the ``search`` options that rank as it did."""
    from ..search.hybrid import index_info

    stored_min_score = index_info(es, report.index).config.min_score  # read again after --save (caches cleared)
    for figures in report.results.values():
        figures["search_flags"] = reproducing_flags(figures["search_flags"], fields=fields, window=report.window,
                                                    stored_min_score=stored_min_score)


def print_eval(report: Any) -> None:
    """The figures table, what they cover, and the best variant as ``search`` flags."""
    from ..evaluation import format_table

    click.echo(format_table(report.results))
    click.echo(report.coverage())
    if report.window < 100:
        click.echo(f"note: with --window {report.window}, recall@100 counts the top {report.window} only")
    name, figures = report.best()
    click.echo(f"best nDCG@10: {name} ({figures['config']}) {figures['ndcg@10']:.4f}")
    click.echo(f"search with it: es-semantic search --index {shlex.quote(report.index)} {figures['search_flags']} QUERY")


def print_calibration(found: Any, index: str, saved: bool) -> None:
    """The fusion chosen for the index, the threshold table and the recommended ``min_score``."""
    if found.fusion is not None:
        click.echo("")
        click.echo(found.fusion.describe(index, saved=saved))
    r = found.recommended
    click.echo("")
    click.echo(f"no-good-match threshold for {found.method} ({r.answerable} answerable queries, "
               f"{r.unanswerable} unanswerable, {len(found.held_out)} of them held out):")
    click.echo(found.table())
    if found.note:
        click.echo(f"note: {found.note}")
    click.echo(f"recommended min_score {found.min_score:g} ({found.objective}): accuracy {r.accuracy:.4f}, "
               f"precision {r.precision:.4f}, false answers {r.false_answer_rate:.4f} "
               f"(no threshold: accuracy {found.no_threshold.accuracy:.4f}, precision "
               f"{found.no_threshold.precision:.4f})")
    click.echo(f"stored in the _meta of {index!r}: search and hybrid_search() now apply it by default"
               if saved else f"store it with --save, or: es-semantic set-min-score --index {index} {found.min_score:g}")
