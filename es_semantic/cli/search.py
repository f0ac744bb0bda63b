"""``es-semantic search`` and ``es-semantic eval``: hybrid search from the shell, and its evaluation."""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
from typing import Any

import click

from ..errors import ConfigError
from ..search.hybrid import METHODS as _METHODS
from .main import Session


def _parse_filter(value: str | None) -> Any:
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--filter is not valid JSON ({exc.msg}); e.g. --filter '{{\"term\": {{\"category\": \"billing\"}}}}'") from None
    if not isinstance(parsed, (dict, list)):
        raise ConfigError("--filter must be a query DSL object, e.g. {\"term\": {\"category\": \"billing\"}}")
    return parsed


class MinScore(click.ParamType):
    """A cosine similarity threshold, ``index`` (the one stored in the index) or ``none``."""

    name = "FLOAT|index|none"

    def convert(self, value: Any, param: Any, ctx: Any) -> float | str | None:
        if value is None or isinstance(value, float):
            return value
        text = str(value).strip().lower()
        if text in ("index", "none"):
            return None if text == "none" else "index"
        try:
            from ..config import check_min_score

            return check_min_score(text)
        except ConfigError as exc:
            self.fail(f"{value!r}: {exc}; or 'index' / 'none'", param, ctx)


MIN_SCORE = MinScore()


def embedding_server_options(func: Any = None, *, what: str = "the queries", help_text: str | None = None) -> Any:
    """--embedding-url / --embedding-api-key: embed ``what`` on an OpenAI-compatible server
    (``help_text``: the whole --embedding-url help instead)."""
    if func is None:
        return lambda f: embedding_server_options(f, what=what, help_text=help_text)
    func = click.option(
        "--embedding-api-key", envvar="ES_SEMANTIC_EMBEDDING_API_KEY", show_envvar=True, default=None,
        help="API key for --embedding-url (never printed).",
    )(func)
    return click.option(
        "--embedding-url", envvar="ES_SEMANTIC_EMBEDDING_URL", show_envvar=True, default=None,
        help=help_text or ("OpenAI-compatible embeddings server (vLLM, SGLang, TEI, Infinity), e.g. "
                           "http://gpu-box:8000/v1, serving the index's configured model; embeds "
                           f"{what} there instead of loading the model."),
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


def parse_fields(es: Any, index: str, value: str | None) -> list[str] | None:
    """``--fields 'question^2,answer'`` as a list, refusing names the index does not map (a typo would
    otherwise search a field that does not exist, silently finding nothing with BM25)."""
    if not value:
        return None
    fields = [f.strip() for f in value.split(",") if f.strip()]
    if not fields:
        raise ConfigError(f"--fields {value!r}: give comma-separated field names, e.g. --fields 'question^2,answer'")
    for entry in fields:
        name, _, boost = entry.partition("^")
        if "^" in entry and not _is_boost(boost):
            raise ConfigError(f"--fields {entry!r}: the boost {boost!r} is not a number >= 0; e.g. "
                              f"--fields '{name or 'question'}^2'")
        if not name:
            raise ConfigError(f"--fields {entry!r}: no field name before '^'; e.g. --fields 'question^2,answer'")
    from fnmatch import fnmatchcase

    from ..mappings import TEXT_TYPES, did_you_mean, mapped_fields, nearest_first

    try:
        body = es.indices.get_mapping(index=index).body
    except Exception:  # noqa: BLE001 - a missing index is reported by the search itself, in its words
        return fields
    known: dict[str, str] = {}
    for entry in body.values():
        known.update(mapped_fields((entry.get("mappings") or {}).get("properties") or {}))
    searchable = (*TEXT_TYPES, "search_as_you_type")
    texts = [name for name, kind in known.items() if kind in searchable]
    names = [f.split("^", 1)[0] for f in fields]
    unknown = [name for name in names if "*" not in name and name not in known]
    if unknown:
        hints = [h for h in (did_you_mean(name, texts) for name in unknown) if h]
        raise ConfigError(
            f"--fields: index {index!r} has no field {', '.join(map(repr, unknown))}"
            + (f" ({'; '.join(hints)})" if hints else "")
            + f"; its text fields are: {', '.join(nearest_first(texts, unknown)) or 'none'}"
        )
    not_text = [name for name in names if "*" not in name and known[name] not in searchable]
    if not_text:
        kinds = ", ".join(f"{name!r} is {known[name]}" for name in not_text)
        raise ConfigError(f"--fields: BM25 searches text fields, and {kinds} (it would find nothing); its text "
                          f"fields are: {', '.join(nearest_first(texts, not_text)) or 'none'}")
    empty = [name for name in names if "*" in name and not any(fnmatchcase(t, name) for t in texts)]
    if empty:
        raise ConfigError(f"--fields: {', '.join(map(repr, empty))} matches no text field of index {index!r}; "
                          f"its text fields are: {', '.join(texts) or 'none'}")
    return fields


def _is_boost(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and value >= 0


def check_fusion_options(method: str | None, normalizer: str | None, rank_constant: float | None, *,
                         fields: str | None = None, bm25_weight: float | None = None,
                         knn_weight: float | None = None, num_candidates: int | None = None,
                         execution: str = "auto") -> None:
    """Refuse options the chosen method does not use, rather than ignore them silently."""
    chosen = method or "linear"  # hybrid_search's default
    if chosen == "knn" and fields:
        raise ConfigError("--fields chooses the BM25 fields; --method knn searches the vectors only: leave it out, "
                          "or use --method bm25, rrf or linear")
    if chosen == "bm25" and num_candidates is not None:
        raise ConfigError("--num-candidates applies to the kNN leg; --method bm25 has none: leave it out, "
                          "or use --method knn, rrf or linear")
    if chosen in ("bm25", "knn"):
        weight = "--bm25-weight" if bm25_weight is not None else "--knn-weight" if knn_weight is not None else None
        if weight:
            raise ConfigError(f"{weight} weighs the legs of a fusion; --method {chosen} is one leg alone: leave it "
                              "out, or use --method rrf or linear")
        if execution == "server":
            raise ConfigError(f"--execution server fuses two legs in Elasticsearch; --method {chosen} has one "
                              "leg and no fusion: leave it out, or use --method rrf or linear")
    if normalizer is not None and chosen != "linear":
        raise ConfigError(f"--normalizer applies to --method linear only, not {chosen}; "
                          "leave it out, or use --method linear")
    if rank_constant is not None and chosen != "rrf":
        raise ConfigError(f"--rank-constant applies to --method rrf only, not {chosen}; "
                          "leave it out, or use --method rrf")


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
@click.option("--index", required=True, help="Index or alias configured with install-mappings.")
@click.argument("query")
@click.option("--k", "k", type=int, default=10, help="Number of hits.")
@click.option("--from", "from_", type=int, default=0, help="Offset of the first hit (within --window).")
@click.option("--method", type=click.Choice(_METHODS), default=None,
              help="Fusion (linear, rrf) or one leg alone (bm25, knn). Default: the library's (linear).")
@click.option("--fields", default=None, help="BM25 fields with boosts, comma-separated, e.g. 'question^2,answer'.")
@click.option("--filter", "filter_", default=None, help="Query DSL filter (JSON) applied to both legs.")
@click.option("--min-score", type=MIN_SCORE, default="index", show_default=True,
              help="Cosine similarity a hit needs; below it for every hit prints 'no good match'. "
                   "'index': the threshold stored in the index (eval --calibrate --save); 'none': no threshold.")
@click.option("--window", type=int, default=None, help="Per-leg fusion window (rank_window_size).")
@click.option("--num-candidates", type=int, default=None, help="kNN candidates per shard.")
@click.option("--rank-constant", type=float, default=None, help="RRF rank constant.")
@click.option("--bm25-weight", type=float, default=None, help="Weight of the BM25 leg.")
@click.option("--knn-weight", type=float, default=None, help="Weight of the kNN leg.")
@click.option("--normalizer", type=click.Choice(("minmax", "l2_norm", "zscore", "none")), default=None,
              help="Score normaliser for --method linear.")
@click.option("--execution", type=click.Choice(("auto", "server", "client")), default="auto",
              help="Fuse with an Elasticsearch retriever (server) or here (client).")
@click.option("--explain", is_flag=True, help="Show the formula of every fused score.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@embedding_server_options
@click.pass_obj
def search(session: Session, index: str, query: str, k: int, from_: int, method: str | None, fields: str | None,
           filter_: str | None, min_score: float | str | None, window: int | None, num_candidates: int | None,
           rank_constant: float | None, bm25_weight: float | None, knn_weight: float | None,
           normalizer: str | None, execution: str, explain: bool, as_json: bool,
           embedding_url: str | None = None, embedding_api_key: str | None = None) -> None:
    """Hybrid (BM25 + kNN) search; prints the top hits with both sub-scores.

    The model, vector field and text fields come from the index _meta. With a min score (by
    default the one stored in the index, if any), hits whose cosine similarity to the query is
    lower are dropped, and "no good match" is printed (exit 0) when none is left.

    \b
    Example:
      es-semantic search --index faq "how do I reset my password"
      es-semantic search --index faq --k 3 --filter '{"term": {"language": "zh"}}' "忘记密码"
      es-semantic search --index faq --method rrf --explain --json "refund"
    """
    from ..search import hybrid_search

    check_fusion_options(method, normalizer, rank_constant, fields=fields, bm25_weight=bm25_weight,
                         knn_weight=knn_weight, num_candidates=num_candidates, execution=execution)
    es = session.client()
    use_embedding_server(es, index, embedding_url, embedding_api_key)
    result = hybrid_search(
        es, query, index=index, k=k, from_=from_, method=method,
        fields=parse_fields(es, index, fields),
        filter=_parse_filter(filter_), num_candidates=num_candidates, window=window,
        rank_constant=rank_constant, bm25_weight=bm25_weight, knn_weight=knn_weight, normalizer=normalizer,
        min_score=min_score, explain=explain, execution=execution,
    )
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
    click.echo(f"{result.method} ({result.execution}-side), {len(result)} hits, {result.took_ms:.0f} ms")
    if result.no_match:
        best = "n/a" if result.best_similarity is None else f"{result.best_similarity:.3f}"
        click.echo(f"no good match: best similarity {best} < min score {result.min_score}")
        return
    if not len(result):
        click.echo(no_hits_message(filtered=filtered, documents=documents, index=index))
        return
    click.echo(f"{'#':>3}  {'score':>8}  {'bm25 (rank)':>16}  {'knn (rank)':>15}  {'cos':>6}  id / text")
    for number, hit in enumerate(result, start=1):
        cos = "-" if hit.similarity is None else f"{hit.similarity:.3f}"
        click.echo(f"{number:>3}  {hit.score:>8.4f}  {_fmt(hit.bm25_score, hit.bm25_rank):>16}  "
                   f"{_fmt(hit.knn_score, hit.knn_rank):>15}  {cos:>6}  {hit.id}  {_title(hit.source, text_fields)}")
        if hit.explanation:
            click.echo(f"       {hit.explanation}")


class _DropSkippedWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("skipping %d queries with empty text")


def _quiet_skipped_warning() -> None:
    """Drop the library's log line about queries with empty text until the command ends."""
    logger = logging.getLogger("es_semantic.evaluation")
    dropped = _DropSkippedWarning()
    logger.addFilter(dropped)
    click.get_current_context().call_on_close(lambda: logger.removeFilter(dropped))


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
@click.option("--index", required=True, help="Index holding the judged documents (ids = qrels corpus ids).")
@click.option("--queries", "queries_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="queries.jsonl ({\"_id\", \"text\"} per line).")
@click.option("--qrels", "qrels_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Judgments: TSV 'query-id corpus-id score' (header and CRLF accepted).")
@click.option("--window", type=int, default=100, help="Per-leg window (Recall@100 needs 100).")
@click.option("--fields", default=None, help="BM25 fields with boosts, comma-separated.")
@click.option("--sweep", is_flag=True, help="Also try a grid of rank constants, weights and normalisers.")
@click.option("--calibrate", is_flag=True,
              help="Also choose the 'no good match' threshold (min_score): a table of thresholds and the best one.")
@click.option("--no-answer-queries", "no_answer_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --calibrate: queries.jsonl of questions the index has no answer for.")
@click.option("--holdout", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="With --calibrate: share of judged queries whose answers are hidden to act as unanswerable "
                   "(default 0.3 without --no-answer-queries, else 0).")
@click.option("--target-precision", type=click.FloatRange(0.0, 1.0, min_open=True), default=None,
              help="With --calibrate: the lowest threshold whose answers are right this often, "
                   "instead of the one with the best accuracy.")
@click.option("--method", type=click.Choice(("linear", "rrf", "knn")), default=None,
              help="With --calibrate: the search method the threshold is for (default: hybrid_search's).")
@click.option("--seed", type=int, default=0, help="With --calibrate: seed of the hold-out sample.")
@click.option("--save", is_flag=True,
              help="With --calibrate: store the recommended min_score in the index, where search and "
                   "hybrid_search() apply it by default.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@embedding_server_options
@click.pass_obj
def eval_(session: Session, index: str, queries_path: str, qrels_path: str, window: int, fields: str | None,
          sweep: bool, calibrate: bool, no_answer_path: str | None, holdout: float | None,
          target_precision: float | None, method: str | None, seed: int, save: bool, as_json: bool,
          embedding_url: str | None = None, embedding_api_key: str | None = None) -> None:
    """Evaluate BM25 alone, kNN alone, hybrid rrf and hybrid linear on judged queries.

    Prints nDCG@10, MRR@10, Recall@3, Recall@10, Recall@100 and Top-1 accuracy for each. Both
    legs are fetched once per query; every fusion is computed from them with the same formulas
    hybrid_search uses.

    With --calibrate it also chooses the "no good match" threshold: for each min_score, how many
    queries get a right answer, a wrong one, or none, counting unanswerable queries (from
    --no-answer-queries, or judged queries whose answers are held out), and recommends the one
    with the best accuracy (or the lowest meeting --target-precision). --save stores it in the
    index _meta.

    \b
    Example:
      es-semantic eval --index scifact --queries scifact/queries.jsonl --qrels scifact/qrels/test.tsv
      es-semantic eval --index faq --queries q.jsonl --qrels qrels.tsv --sweep --json
      es-semantic eval --index faq --queries q.jsonl --qrels qrels.tsv --calibrate --save
      es-semantic eval --index faq --queries q.jsonl --qrels qrels.tsv --calibrate \\
          --no-answer-queries out_of_scope.jsonl --target-precision 0.9
    """
    from ..calibration import evaluate_and_calibrate
    from ..evaluation import format_table, load_qrels, load_queries, missing_documents, run_eval

    if not calibrate and (no_answer_path or holdout is not None or target_precision is not None or method or save):
        raise ConfigError("--no-answer-queries, --holdout, --target-precision, --method and --save go with --calibrate")
    qrels = load_qrels(qrels_path)
    all_queries = load_queries(queries_path)
    textless = sorted(qid for qid in qrels if qid not in all_queries)
    if textless:  # judged, but no text to search with: left out and counted, like other unscorable queries
        click.echo(f"warning: {len(textless)} judged queries are not in the queries file "
                   f"(e.g. {', '.join(textless[:3])}); left out of the figures", err=True)
        qrels = {qid: judged for qid, judged in qrels.items() if qid in all_queries}
        if not qrels:
            raise ConfigError(f"none of the {len(textless)} queries judged in --qrels is in --queries; check that "
                              "both files come from the same data set (their query ids must match)")
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    unjudged = len(all_queries) - len(queries)  # in the queries file, not in the qrels: not scored
    options: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if not as_json and (done % 50 == 0 or done == total):
            click.echo(f"\r{done}/{total} queries", nl=done == total, err=True)

    es = session.client()
    _quiet_skipped_warning()  # the command says it once, as "warning: skipped N queries with empty text"
    if fields:
        options["fields"] = parse_fields(es, index, fields)
    use_embedding_server(es, index, embedding_url, embedding_api_key)
    options.update(index=index, sweep=sweep, window=window, progress=progress if sys.stderr.isatty() else None)
    found = None
    if calibrate:
        results, found = evaluate_and_calibrate(
            es, queries=queries, qrels=qrels, no_answer_queries=load_queries(no_answer_path) if no_answer_path else None,
            holdout=holdout, seed=seed, target_precision=target_precision, method=method, **options)
        if save:
            from ..calibration import save_calibration
            from ..search import clear_caches

            save_calibration(es, index, found)
            clear_caches()
    else:
        results = run_eval(es, queries=queries, qrels=qrels, **options)
    if results and all(figures["recall@100"] == 0 for figures in results.values()):
        click.echo("warning: no search found any judged document; check that the qrels' corpus ids are the "
                   f"documents' _id in {index!r}", err=True)
    relevant = {doc for judged in qrels.values() for doc, grade in judged.items() if grade > 0}
    missing = missing_documents(es, index, relevant)
    if missing:
        click.echo(f"warning: {len(missing)} of {len(relevant)} judged documents are not in index {index!r}; "
                   f"scores count them as misses (e.g. {', '.join(map(repr, missing[:3]))})", err=True)
    skipped = next(iter(results.values()), {}).get("skipped", 0)
    if skipped:
        click.echo(f"warning: skipped {skipped} queries with empty text (left out of the figures)", err=True)
    from ..search.hybrid import index_info

    stored_min_score = index_info(es, index).config.min_score  # read again after --save (caches cleared)
    for figures in results.values():
        figures["search_flags"] = reproducing_flags(figures["search_flags"], fields=fields, window=window,
                                                    stored_min_score=stored_min_score)
    if as_json:
        click.echo(json.dumps(results if found is None else {"eval": results, "calibration": found.to_dict()}))
        return
    click.echo(format_table(results))
    scored = next(iter(results.values()), {}).get("queries", 0)
    left_out = [f"{unjudged} without judgements in the qrels" if unjudged else "",
                f"{skipped} with empty text" if skipped else "",
                f"{len(queries) - skipped - scored} without a relevant judgement" if len(queries) - skipped - scored else ""]
    left_out = [part for part in left_out if part]
    click.echo(f"scored {scored} of {len(all_queries)} queries" + (f" (skipped: {', '.join(left_out)})" if left_out else "")
               + (f"; {len(textless)} judged queries not in the queries file were left out" if textless else ""))
    if window < 100:
        click.echo(f"note: with --window {window}, recall@100 counts the top {window} only")
    best = max(results.items(), key=lambda item: item[1]["ndcg@10"])
    click.echo(f"best nDCG@10: {best[0]} ({best[1]['config']}) {best[1]['ndcg@10']:.4f}")
    click.echo(f"search with it: es-semantic search --index {shlex.quote(index)} {best[1]['search_flags']} QUERY")
    if found is not None and found.fusion is not None:
        click.echo("")
        click.echo(found.fusion.describe(index, saved=save))
    if found is not None:
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
                   if save else f"store it with --save, or: es-semantic set-min-score --index {index} {found.min_score:g}")


eval_.name = "eval"
