"""Pure-function tests of the embedding engine: batching and pooling, hand-computed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from es_semantic.embedding.batching import length_order, plan_batches
from es_semantic.embedding.embedder import check_texts, l2_normalize, truncate_dims
from es_semantic.embedding.local import pad_batch
from es_semantic.embedding.pooling import exclude_prompt, last_token_index, pool
from es_semantic.errors import EmbeddingError


# ---------------------------------------------------------------- batching
def test_length_order_longest_first_and_stable():
    assert length_order([3, 10, 3, 7]) == [1, 3, 0, 2]
    assert length_order([3, 10, 3, 7], descending=False) == [0, 2, 3, 1]


def test_plan_batches_respects_budget_and_covers_everything():
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(1, 300, size=500)]
    batches = list(plan_batches(lengths, 1000))
    seen = sorted(i for b in batches for i in b)
    assert seen == list(range(500))
    for b in batches:
        padded = len(b) * max(lengths[i] for i in b)
        assert padded <= 1000
    # sorted longest first: each batch's longest is not longer than the previous batch's shortest
    for prev, cur in itertools.pairwise(batches):
        assert max(lengths[i] for i in cur) <= min(lengths[i] for i in prev)


def test_plan_batches_hand_computed():
    # lengths sorted: 5(idx1), 4(idx3), 3(idx0), 2(idx2); budget 10
    # [1]: 5; add 3 -> 2*5=10 ok; add 0 -> 3*5=15 > 10 -> cut. [0]: 3; add 2 -> 2*3=6 ok
    assert list(plan_batches([3, 5, 2, 4], 10)) == [[1, 3], [0, 2]]


def test_plan_batches_max_waste_cuts_wide_batches():
    lengths = [10, 10, 10, 10, 6, 6]
    assert list(plan_batches(lengths, 60)) == [[0, 1, 2, 3, 4, 5]]  # 60 padded, 52 real
    # with 4 rows (40 tokens >= 25% of 60) adding a 6 would make 8% padding > 5%: cut;
    # the new batch (6 tokens < 15) is below min_fill, so the last 6 joins it whatever the waste
    assert list(plan_batches(lengths, 60, max_waste=0.05)) == [[0, 1, 2, 3], [4, 5]]
    # 10%: the first 6 fits (8% padding), the second would make 52/60 real (13%): cut
    assert list(plan_batches(lengths, 60, max_waste=0.1)) == [[0, 1, 2, 3, 4], [5]]
    # below min_fill no waste cut: [10] alone (10 < 0.25*60) accepts a 6 (37.5% padding)
    assert list(plan_batches([10, 6], 60, max_waste=0.05)) == [[0, 1]]


def test_plan_batches_oversized_text_alone_and_row_cap():
    assert list(plan_batches([50, 1, 1], 10)) == [[0], [1, 2]]
    assert list(plan_batches([1] * 5, 100, max_batch_size=2)) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError):
        list(plan_batches([1], 0))


def test_pad_batch_left_and_right():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0, left=True)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=9, left=False)
    assert ids.tolist() == [[5, 6, 7], [8, 9, 9]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


# ---------------------------------------------------------------- pooling
def _hidden():
    # batch 2, seq 3, dim 2; row 0 left-padded (1 pad), row 1 full
    h = torch.tensor(
        [[[9.0, 9.0], [1.0, 2.0], [3.0, 4.0]],
         [[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]]
    )
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    return h, mask


def test_pool_modes_hand_computed():
    h, mask = _hidden()
    assert pool(h, mask, "lasttoken").tolist() == [[3.0, 4.0], [2.0, 2.0]]
    assert pool(h, mask, "cls").tolist() == [[1.0, 2.0], [1.0, 0.0]]
    assert pool(h, mask, "mean").tolist() == [[2.0, 3.0], [1.0, 1.0]]
    assert pool(h, mask, "max").tolist() == [[3.0, 4.0], [2.0, 2.0]]
    np.testing.assert_allclose(
        pool(h, mask, "mean_sqrt_len_tokens").numpy(), [[4 / 2**0.5, 6 / 2**0.5], [3 / 3**0.5, 3 / 3**0.5]], rtol=1e-6
    )
    # weights 1,2 over real tokens: row0 (1*[1,2] + 2*[3,4]) / 3 ; row1 (1*[1,0]+2*[0,1]+3*[2,2]) / 6
    np.testing.assert_allclose(
        pool(h, mask, "weightedmean").numpy(), [[7 / 3, 10 / 3], [7 / 6, 8 / 6]], rtol=1e-6
    )
    assert pool(h, mask, "cls+mean").shape == (2, 4)
    with pytest.raises(ValueError):
        pool(h, mask, "median")


def test_last_token_index_right_padding_and_empty_row():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [1, 3, 3]


def test_exclude_prompt_counts_from_first_real_token():
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    assert exclude_prompt(mask, 2).tolist() == [[0, 0, 0, 1], [0, 0, 1, 1]]
    h = torch.arange(8, dtype=torch.float32).reshape(1, 4, 2)
    # mean over the last two of four tokens: ([4,5] + [6,7]) / 2
    assert pool(h, torch.ones(1, 4, dtype=torch.long), "mean", prompt_length=2).tolist() == [[5.0, 6.0]]


def test_pool_bf16_accumulates_in_float32():
    h = torch.full((1, 1000, 2), 1.001, dtype=torch.bfloat16)
    out = pool(h, torch.ones(1, 1000, dtype=torch.long), "mean")
    assert out.dtype == torch.float32
    assert abs(out[0, 0].item() - float(torch.tensor(1.001, dtype=torch.bfloat16))) < 1e-6


# ---------------------------------------------------------------- vectors and inputs
def test_truncate_dims_renormalises():
    x = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)
    np.testing.assert_allclose(truncate_dims(x, 2, True), [[0.6, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(truncate_dims(x, 2, False), [[3.0, 4.0]])
    np.testing.assert_allclose(l2_normalize(np.zeros((1, 3))), [[0, 0, 0]])


def test_check_texts_errors_name_index_and_type():
    assert check_texts(("a", "", " ")) == ["a", "", " "]
    with pytest.raises(EmbeddingError, match="texts is None"):
        check_texts(None)
    with pytest.raises(EmbeddingError, match="single str"):
        check_texts("hello")
    with pytest.raises(EmbeddingError, match=r"texts\[2\] is int"):
        check_texts(["a", "b", 3])
    with pytest.raises(EmbeddingError, match=r"texts\[1\] is None"):
        check_texts(["a", None])
    with pytest.raises(EmbeddingError, match=r"texts\[0\] is bytes"):
        check_texts([b"a"])


# ---------------------------------------------------------------- devices
def test_device_and_dtype_resolution():
    from es_semantic.embedding.devices import (
        default_batch_tokens,
        is_oom,
        resolve_devices,
        resolve_dtype,
    )
    from es_semantic.errors import ConfigError

    cpu = torch.device("cpu")
    assert resolve_devices("cpu") == [cpu]
    assert resolve_devices(devices=["cpu", "cpu"]) == [cpu, cpu]
    if not torch.cuda.is_available():
        assert resolve_devices(None)[0].type in ("cpu", "mps")
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_devices("cuda")
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_devices(devices=["cuda:0", "cuda:1"])
    assert resolve_dtype(None, cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype("torch.float16", cpu) == torch.float16
    with pytest.raises(ConfigError, match="Unknown dtype"):
        resolve_dtype("int8", cpu)
    assert default_batch_tokens(cpu, torch.float32, 384) == 8192
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_oom(RuntimeError("MPS backend out of memory"))
    assert not is_oom(RuntimeError("shape mismatch"))


def test_pool_ignores_nan_in_padding():
    h, mask = _hidden()
    h[0, 0] = float("nan")  # the padded position of row 0
    for mode in ("mean", "max", "weightedmean", "lasttoken", "cls", "mean_sqrt_len_tokens"):
        assert torch.isfinite(pool(h, mask, mode)).all(), mode
    assert pool(h, mask, "mean").tolist() == [[2.0, 3.0], [1.0, 1.0]]
