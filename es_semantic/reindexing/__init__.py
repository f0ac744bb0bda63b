"""The reindex job: embed an index's documents and keep their vectors current, safely.

    from es_semantic.reindexing import reindex, ReindexOptions
    report = reindex(es, "faq", options=ReindexOptions(limit=1000))
    print(report.summary())

Reader (point in time + ``search_after``, sliced) -> embedder -> writer (bulk partial updates with
optimistic concurrency) in a bounded pipeline; fingerprints skip what is current; a lock document
keeps one job per index; ``new_index`` builds a new index behind the alias (blue/green).
"""

from __future__ import annotations

from .job import reindex
from .options import ReindexOptions
from .report import ReindexReport
from .status import IndexStatus, index_status

__all__ = ["IndexStatus", "ReindexOptions", "ReindexReport", "index_status", "reindex"]
