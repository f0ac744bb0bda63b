"""The weights digest recorded with each vector: every tensor of a safetensors file counts (not only
the ends of the file), other weight formats are hashed whole, and vectors recording the digest of
the earlier algorithm are checked like vectors that record none (never "other weights")."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_reindex_support import make_index

from es_semantic.embedding.model_config import DIGEST_TAG, folder_digest, legacy_folder_digest
from es_semantic.reindex import ReindexOptions, index_status, reindex
from es_semantic.reindex.job import digest_kind


def _weights_folder(folder: Path, tensors: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def _layers(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)  # 6 layers of 1 MiB: the inner ones lie away from the file's ends
    return {f"encoder.layer.{i}.weight": rng.standard_normal((512, 512), dtype=np.float32) for i in range(6)}


def test_an_inner_tensor_retrained_in_place_changes_the_digest(tmp_path):
    tensors = _layers()
    before = folder_digest(_weights_folder(tmp_path / "a", tensors))
    assert before.startswith(DIGEST_TAG) and len(before) == len(DIGEST_TAG) + 16
    assert folder_digest(_weights_folder(tmp_path / "copy", dict(tensors))) == before  # a copy: the same
    tuned = dict(tensors)
    tuned["encoder.layer.3.weight"] = tensors["encoder.layer.3.weight"] + np.float32(0.01)
    folder = _weights_folder(tmp_path / "a", tuned)
    after = folder_digest(folder)
    assert after != before
    assert legacy_folder_digest(folder) == legacy_folder_digest(tmp_path / "copy")  # what the old one missed


def test_other_weight_formats_are_hashed_whole(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    data = bytearray(np.random.default_rng(0).bytes(5 << 20))
    (folder / "pytorch_model.bin").write_bytes(bytes(data))
    before = folder_digest(folder)
    data[len(data) // 2] ^= 0xFF  # one byte in the middle
    (folder / "pytorch_model.bin").write_bytes(bytes(data))
    assert folder_digest(folder) != before


def test_a_file_not_readable_as_safetensors_is_hashed_whole(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    data = bytearray(b"\xff" * 8 + bytes(3 << 20))  # a header length past the end of the file
    (folder / "model.safetensors").write_bytes(bytes(data))
    before = folder_digest(folder)
    data[len(data) // 2] = 1
    (folder / "model.safetensors").write_bytes(bytes(data))
    assert folder_digest(folder) != before


def test_digest_kinds():
    assert digest_kind("w2:0123456789abcdef") == "w2:"
    assert digest_kind("0123456789abcdef") == "" and digest_kind(None) == ""


# -- vectors recording the earlier digest -----------------------------------------------------------

@pytest.fixture
def written_by_the_earlier_version(es_client, tiny_model, embedder, monkeypatch) -> Any:
    """faq, embedded as the previous version did: its vectors record the earlier digest (and their
    fingerprints were made with it)."""
    es = es_client
    make_index(es, "faq", tiny_model, 8)
    with monkeypatch.context() as patched:
        patched.setattr(embedder, "_digest", legacy_folder_digest(tiny_model))
        reindex(es, "faq", embedder=embedder)
    recorded = {h["_source"]["embedding_info"]["weights"] for h in es.search(index="faq", size=20)["hits"]["hits"]}
    assert recorded == {legacy_folder_digest(tiny_model)}
    return es


def test_vectors_recording_the_earlier_digest_are_not_taken_for_other_weights(written_by_the_earlier_version,
                                                                              embedder, tiny_model):
    es = written_by_the_earlier_version
    report = reindex(es, "faq", embedder=embedder)  # the configured model: no "weights changed" refusal
    # their vectors are compared with what the model makes of their texts: the same
    assert report.model_check["same"] is True and report.model_check["method"] == "probe"
    assert report.model_check["probe"]["matched"] == report.model_check["probe"]["checked"] > 0
    # their fingerprints hold the earlier digest, which still matches: an upgrade re-embeds nothing
    assert report.embedded == 0 and report.skipped == 8
    assert index_status(es, "faq", embedder=embedder).current == 8
    es.update(index="faq", id="0", doc={"answer": "an edited answer"}, refresh=True)
    report = reindex(es, "faq", embedder=embedder)
    assert report.embedded == 1 and report.skipped == 7
    recorded = {h["_id"]: h["_source"]["embedding_info"]["weights"]
                for h in es.search(index="faq", size=20)["hits"]["hits"]}
    assert recorded["0"] == embedder.weights_digest and embedder.weights_digest.startswith(DIGEST_TAG)
    assert set(recorded.values()) == {embedder.weights_digest, legacy_folder_digest(tiny_model)}
    # the vector written now records the current digest, so the next job checks the weights by it
    assert reindex(es, "faq", embedder=embedder).model_check["method"] == "weights"


def test_an_earlier_fingerprint_is_current_only_for_vectors_recording_the_earlier_digest(
        written_by_the_earlier_version, embedder):
    es = written_by_the_earlier_version
    # a vector that records the current digest must match the current fingerprint
    hit = es.get(index="faq", id="1")
    info = dict(hit["_source"]["embedding_info"], weights=embedder.weights_digest)
    es.update(index="faq", id="1", doc={"embedding_info": info}, refresh=True)
    report = reindex(es, "faq", embedder=embedder)
    assert report.embedded == 1 and report.skipped == 7


def test_a_copy_of_the_model_is_recognised_by_the_fingerprints_of_vectors_with_the_earlier_digest(
        written_by_the_earlier_version, tiny_model, tmp_path):
    es = written_by_the_earlier_version
    copy = Path(shutil.copytree(tiny_model, tmp_path / "elsewhere" / "copy"))
    report = reindex(es, "faq", options=ReindexOptions(model=str(copy)))
    assert report.model_check["same"] is True and report.model_check["method"] == "fingerprint"
    assert report.model == str(tiny_model)  # the configured model, in place


# -- the earlier digest's blind spot: weights retrained between the ends of a file ------------------

@pytest.fixture
def blind_earlier_digest(monkeypatch):
    """The earlier digest as it behaves on a large model whose retrained tensors lie between the
    first and last MiB of the file: blind to the weights (here: config files only)."""
    import hashlib

    def blind(path: Path) -> str:
        return hashlib.sha256((Path(path) / "config.json").read_bytes()).hexdigest()[:16]

    monkeypatch.setattr("es_semantic.reindex.pipeline.legacy_folder_digest", blind)
    return blind


def _retrain(folder: Path) -> None:
    """Change one inner tensor of the model in ``folder``, in place."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    name = "layers.1.mlp.down_proj.weight"
    tensors[name] = tensors[name] * np.float32(-3.0)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("how", ["in place", "as --model"])
def test_weights_retrained_where_the_earlier_digest_cannot_see_are_refused(es_client, tiny_model, tmp_path,
                                                                           blind_earlier_digest, how):
    from es_semantic.embedding import Embedder
    from es_semantic.errors import ConfigError

    es = es_client
    model = Path(shutil.copytree(tiny_model, tmp_path / "tiny-qwen3"))
    make_index(es, "faq", model, 8)
    before = Embedder(str(model), dims=64, device="cpu")
    before._digest = blind_earlier_digest(model)  # written by the earlier version
    reindex(es, "faq", embedder=before)
    if how == "in place":
        _retrain(model)
        options = ReindexOptions()
    else:
        retrained = Path(shutil.copytree(model, tmp_path / "elsewhere" / "tiny-qwen3"))
        _retrain(retrained)
        options = ReindexOptions(model=str(retrained))
    assert blind_earlier_digest(model) == blind_earlier_digest(tmp_path / "tiny-qwen3")  # it cannot tell
    with pytest.raises(ConfigError) as refused:
        reindex(es, "faq", options=options)
    assert "--new-index" in str(refused.value)
    if how == "in place":
        assert "are not what the configured model's folder" in str(refused.value)
        assert index_status(es, "faq").current == 0  # not taken as current either
