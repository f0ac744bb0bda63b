"""The local engine on a CUDA GPU: automatic device and bf16, batching that stays exact enough in
bf16, agreement with the CPU, and a REAL out-of-memory (not a faked one) halving the batch.

Skipped without a GPU; ``scripts/gpu/run.sh`` runs them on one (with the GPU benchmarks).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (scripts/gpu/run.sh runs these on one)")

from es_semantic.embedding import Embedder
from es_semantic.testing.models import make_tiny_qwen3

TEXTS = [
    "short", "x", "", "a medium length sentence about semantic search",
    "Elasticsearch " * 120, "protein folding determines function in cells; " * 20, "保险理赔需要哪些材料",
]


def cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_qwen3(tmp_path_factory.mktemp("gpu") / "tiny-qwen3", max_position_embeddings=8192)


def test_cuda_and_bf16_are_the_defaults(tiny):
    emb = Embedder(str(tiny))
    backend = emb._backend
    assert backend.devices[0].type == "cuda"
    assert backend.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert backend.attn_implementation in ("sdpa", "flash_attention_2")
    assert 2048 <= backend.batch_tokens <= 131072
    assert emb.embed_documents(TEXTS).dtype == np.float32


def test_bf16_batches_match_single_texts_and_the_cpu(tiny):
    gpu = Embedder(str(tiny), device="cuda")
    batch = gpu.embed_documents(TEXTS)
    alone = np.stack([gpu.embed_documents([t])[0] for t in TEXTS])
    assert cos_rows(batch, alone).min() > 0.995  # bf16 rounding differs with the batch shape, a little
    cpu = Embedder(str(tiny), device="cpu").embed_documents(TEXTS)
    assert cos_rows(batch, cpu).min() > 0.99
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_fp32_on_cuda_equals_the_cpu(tiny):
    gpu = Embedder(str(tiny), device="cuda", dtype="float32").embed_documents(TEXTS)
    cpu = Embedder(str(tiny), device="cpu").embed_documents(TEXTS)
    assert cos_rows(gpu, cpu).min() > 0.9999


def test_a_real_out_of_memory_halves_the_batch_and_finishes(tiny):
    texts = [f"document {i}: " + "semantic search over an index " * 300 for i in range(64)]
    device = torch.device("cuda")
    probe = Embedder(str(tiny), device="cuda", dtype="float32", batch_tokens=10_000_000)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    expected = probe.embed_documents(texts)  # one batch of all 64 texts
    peak = torch.cuda.max_memory_allocated(device) - base
    assert probe.stats.oom_retries == 0 and probe.stats.batches == 1
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    # Cap this process's GPU memory so that the same batch cannot fit, but a quarter of it can.
    torch.cuda.set_per_process_memory_fraction((base + peak * 0.45) / total, device)
    try:
        emb = Embedder(str(tiny), device="cuda", dtype="float32", batch_tokens=10_000_000)
        got = emb.embed_documents(texts)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
    assert emb.stats.oom_retries >= 1 and emb.stats.batches > 1
    assert emb.batch_tokens < 10_000_000  # later calls start from the budget that fitted
    assert cos_rows(got, expected).min() > 0.9999
