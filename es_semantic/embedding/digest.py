"""The identity of a local model: a sha256 over every byte of its weight, config and tokenizer files.

``weights_digest(folder)`` hashes each file whole and combines the files' hashes with their paths
relative to the folder, so a copy of the model has the digest wherever it lies, and any edit of any
byte (a few rows of one tensor fine-tuned in place) gives another one. Hashing a 1.2 GB model takes
seconds, so each file's hash is cached by (path, size, mtime, ctime): in the process and in a JSON
file under the user's cache directory (``$ES_SEMANTIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/es-semantic``,
else ``~/.cache/es-semantic``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: What a digest starts with: the algorithm.
DIGEST_PREFIX = "sha256:"
#: Files that decide the vectors: weights, configuration, tokenizer, custom model code.
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack",
                       ".json", ".txt", ".model", ".tiktoken", ".py")
_CACHE_FILE = "file-digests.json"
_memory: dict[str, str] = {}
_lock = threading.Lock()


def cache_dir() -> Path:
    """Where file digests are cached between processes."""
    explicit = os.environ.get("ES_SEMANTIC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "es-semantic"


#: Subfolders of exports for other runtimes, which this engine never loads.
OTHER_RUNTIMES = ("onnx", "openvino")


def model_files(folder: Path) -> list[Path]:
    """The files of ``folder`` (and its module subfolders) that decide the vectors, sorted; hidden
    files and folders (``.git``, ``.cache``) and exports for other runtimes are left out."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in OTHER_RUNTIMES)
        found += [Path(root) / f for f in files if not f.startswith(".") and f.endswith(MODEL_FILE_SUFFIXES)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def hash_file(path: Path) -> str:
    """sha256 of the whole file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _key(path: Path) -> str:
    st = path.stat()  # follows links: a hub snapshot's files are links to its blobs
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"


def _read_disk_cache() -> dict[str, str]:
    try:
        data = json.loads((cache_dir() / _CACHE_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_disk_cache(new: dict[str, str]) -> None:
    """Add ``new`` to the cache file (atomically; a failure only costs a re-hash next time)."""
    target = cache_dir() / _CACHE_FILE
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # entries of files that are gone (a model deleted, a temporary copy) go: the file stays small
        kept = {k: v for k, v in _read_disk_cache().items() if os.path.exists(k.split("|", 1)[0])}
        merged = {**kept, **new}
        tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(merged, sort_keys=True), "utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        log.debug("could not write the digest cache %s: %s", target, exc)


def file_digests(paths: list[Path]) -> list[str]:
    """The sha256 of each file, from the cache where its (path, size, mtime, ctime) is known."""
    keys = [_key(p) for p in paths]
    with _lock:
        missing = [k for k in keys if k not in _memory]
        if missing:
            disk = _read_disk_cache()
            _memory.update({k: disk[k] for k in missing if k in disk})
    fresh = {k: hash_file(p) for k, p in zip(keys, paths) if k not in _memory}
    if fresh:
        with _lock:
            _memory.update(fresh)
        _write_disk_cache(fresh)
    return [_memory[k] for k in keys]


def weights_digest(folder: str | os.PathLike[str]) -> str:
    """``"sha256:<32 hex>"`` over the relative path and the sha256 of every model file of ``folder``."""
    root = Path(folder)
    files = model_files(root)
    h = hashlib.sha256()
    for path, digest in zip(files, file_digests(files)):
        h.update(f"{path.relative_to(root).as_posix()}\0{digest}\n".encode())
    return DIGEST_PREFIX + h.hexdigest()[:32]
