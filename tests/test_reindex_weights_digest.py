"""The weights digest: a sha256 over every byte of a model's files, each file's hash cached by
(path, size, mtime, ctime); a few rows of the token embeddings edited in place are caught by the
next job (issue 13 item 2)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from test_reindex_support import DIMS, all_sources, assert_vectors_match, make_index

from es_semantic.embedding import digest
from es_semantic.embedding.digest import weights_digest
from es_semantic.errors import ConfigError
from es_semantic.mappings import read_config
from es_semantic.reindexing import ReindexOptions, reindex
from es_semantic.reindexing.identity import recorded_digests


@pytest.fixture(autouse=True)
def digest_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of its own for each test: empty in the process and on disk."""
    monkeypatch.setenv("ES_SEMANTIC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(digest, "_memory", {})
    return tmp_path / "cache"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files ``hash_file`` reads, in order."""
    seen: list[Path] = []
    real = digest.hash_file

    def counting(path: Path) -> str:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(digest, "hash_file", counting)
    return seen


def edit_token_rows(folder: Path, rows: slice = slice(3, 5)) -> str:
    """Fine-tune a few rows of the token embeddings in place, as tuning some tokens does: same file,
    same size, same tensor names and shapes."""
    from safetensors.numpy import load_file, save_file

    path = folder / "model.safetensors"
    size = path.stat().st_size
    tensors = {name: array.copy() for name, array in load_file(str(path)).items()}
    name = next(n for n in tensors if "embed_tokens" in n or "word_embeddings" in n)
    tensors[name][rows] += 0.01
    save_file(tensors, str(path), metadata={"format": "pt"})
    assert path.stat().st_size == size
    return name


def test_a_few_token_rows_edited_in_place_change_the_digest_and_a_copy_keeps_it(tmp_path, tiny_model):
    folder = Path(shutil.copytree(tiny_model, tmp_path / "a"))
    before = weights_digest(folder)
    assert before.startswith("sha256:") and len(before) == len("sha256:") + 32
    assert weights_digest(shutil.copytree(folder, tmp_path / "elsewhere" / "b")) == before
    edit_token_rows(folder)
    assert weights_digest(folder) != before


def test_a_cached_file_is_not_read_again(tmp_path, tiny_model, reads, digest_cache):
    folder = Path(shutil.copytree(tiny_model, tmp_path / "m"))
    first = weights_digest(folder)
    hashed = len(reads)
    assert hashed == len(digest.model_files(folder)) and any(p.name == "model.safetensors" for p in reads)
    assert weights_digest(folder) == first and len(reads) == hashed  # in-process cache
    digest._memory.clear()  # as a new process: the cache on disk answers
    assert weights_digest(folder) == first and len(reads) == hashed
    assert (digest_cache / "file-digests.json").is_file()
    edit_token_rows(folder)  # a new mtime: that file, and only it, is read again
    assert weights_digest(folder) != first
    assert [p.name for p in reads[hashed:]] == ["model.safetensors"]


def test_what_is_part_of_the_model(tmp_path, tiny_model):
    folder = Path(shutil.copytree(tiny_model, tmp_path / "m"))
    before = weights_digest(folder)
    (folder / "README.md").write_text("# notes")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "lock.json").write_text("{}")
    (folder / "onnx").mkdir()
    (folder / "onnx" / "config.json").write_text("{}")  # an export this engine never loads
    assert weights_digest(folder) == before
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "model.safetensors").write_bytes(b"a module's weights")
    assert weights_digest(folder) != before  # module folders count
    (folder / "tokenizer_config.json").write_text((folder / "tokenizer_config.json").read_text() + " ")
    assert weights_digest(folder) != before


def _versions(es: Any, index: str) -> dict[str, int]:
    es.indices.refresh(index=index)
    return {h["_id"]: h["_version"] for h in es.search(index=index, size=100, version=True, source=False)["hits"]["hits"]}


def test_weights_edited_in_place_are_refused_by_the_next_job(es_client, tiny_model, tmp_path):
    from es_semantic.embedding import Embedder

    es = es_client
    folder = Path(shutil.copytree(tiny_model, tmp_path / "models" / "tiny-qwen3"))
    make_index(es, "faq-v1", folder, 8)
    es.indices.put_alias(index="faq-v1", name="faq")
    assert reindex(es, "faq").embedded == 8
    old = weights_digest(folder)
    assert recorded_digests(es, "faq") == {"faq-v1": old}  # recorded with the first vectors
    before = _versions(es, "faq")
    edit_token_rows(folder)
    with pytest.raises(ConfigError, match=r"did not make the vectors of 'faq'") as err:
        reindex(es, "faq")
    assert old in str(err.value) and "--new-index" in str(err.value)
    assert _versions(es, "faq") == before  # not one vector rewritten
    report = reindex(es, "faq", options=ReindexOptions(new_index=True))
    assert report.blue_green["alias_swapped"] and report.model_check["same"] is False
    tuned = Embedder(str(folder), dims=DIMS, device="cpu")
    assert set(recorded_digests(es, "faq").values()) == {tuned.weights_digest} != {old}
    assert_vectors_match(all_sources(es, "faq"), read_config(es, "faq"), tuned)
    assert reindex(es, "faq").skipped == 8  # in place again: the index records these weights
