"""Honest progress (issue 14): documents done move with each embedding batch, rates and an ETA come
from the embedding rate, a log gets one line every 30 s instead of a bar, and truncation is one
warning at the end of the run."""

from __future__ import annotations

import io
import time

from test_reindex_support import DIMS, make_index

from es_semantic.reindexing import ReindexOptions, index_status, reindex
from es_semantic.reindexing.progress import ProgressBar, ProgressLog, figures, progress_for, progress_line
from es_semantic.reindexing.report import ReindexReport


def _halfway() -> ReindexReport:
    report = ReindexReport(index="faq", total=100)
    report.add(read=50, to_embed=40, vectors_made=20, embedded=10, skipped=10, tokens=4000)
    report.embed_seconds = 2.0
    report.started_at = time.time() - 10.0
    return report


def test_figures_count_vectors_made_and_estimate_from_the_embedding_rate():
    f = figures(_halfway())
    assert f["done"] == 30  # 10 current + 20 embedded (10 of them written so far)
    assert round(f["docs_per_s"], 1) == 2.0 and f["tokens_per_s"] == 2000.0
    # 40 of the 50 read needed a vector: 40 of the 50 unread will too; 60 left at 2/s
    assert abs(f["eta_s"] - 30.0) < 0.5
    line = progress_line(_halfway())
    assert line.startswith("30/100 documents done, 20 embedded (10 written), 10 current, 0 failed, 2.0 docs/s")
    assert line.endswith("2000 tok/s, eta 0:30")


def test_no_terminal_no_bar_but_a_line_every_interval():
    stream = io.StringIO()
    assert isinstance(progress_for(stream), ProgressLog)
    quiet = ProgressLog(stream, every_s=3600)
    quiet(_halfway())
    assert stream.getvalue() == ""
    ProgressLog(stream, every_s=0)(_halfway())
    (line,) = stream.getvalue().splitlines()
    assert " progress faq: 30/100 documents done" in line and line[:4].isdigit()  # a timestamp first
    assert "\r" not in stream.getvalue()


def test_the_bar_shows_documents_done_and_the_embedding_rates():
    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar(_halfway())
    bar.close()
    text = stream.getvalue()
    assert "30/100" in text and "embedded=20" in text and "written=10" in text and "eta=0:30" in text


def test_progress_moves_with_each_embedding_batch_and_truncation_is_one_warning(es_client, tiny_model):
    from es_semantic.embedding import Embedder

    es = es_client
    make_index(es, "faq", tiny_model, 40)
    small_batches = Embedder(str(tiny_model), dims=DIMS, device="cpu", batch_tokens=64, max_length=8)
    seen: list[tuple[int, int]] = []
    report = reindex(es, "faq", embedder=small_batches, options=ReindexOptions(embed_chunk=40),
                     progress=lambda r: seen.append((r.vectors_made, r.embedded)))
    assert report.embedded == report.vectors_made == 40
    made = sorted({m for m, _ in seen})
    assert len([m for m in made if 0 < m < 40]) >= 3  # one chunk of 40, several batches: moves within it
    assert any(m > w for m, w in seen)  # embedded before written
    truncation = [w for w in report.warnings if "truncated" in w]
    expected = f"{small_batches.stats.truncated} texts were longer than max_length=8 tokens and were truncated"
    assert truncation == [expected] and small_batches.stats.truncated > 0


def test_status_shows_the_max_length_in_force(es_client, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, 2)
    lines = "\n".join(index_status(es, "faq", embedder=embedder).lines())
    assert f"max_length: {embedder.max_length}" in lines and "the model limit" not in lines
