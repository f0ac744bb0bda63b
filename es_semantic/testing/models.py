"""Tiny, offline, random-weight embedding models for tests, demos and speed runs.

:func:`make_tiny_qwen3` writes a folder laid out like ``Qwen/Qwen3-Embedding-0.6B``
(transformers weights + a byte-level BPE tokenizer that appends ``<|endoftext|>`` + the
sentence-transformers files: last-token pooling, Normalize, a "query" prompt), just small and
random. Nothing is downloaded: the tokenizer is trained on the spot with ``tokenizers``.
Needs torch and transformers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

EOS = "<|endoftext|>"
QWEN3_QUERY_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"

# Shape of Qwen3-0.6B / Qwen3-Embedding-0.6B (random weights run at the same speed).
QWEN3_0_6B_SHAPE = {
    "hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
    "head_dim": 128, "intermediate_size": 3072, "vocab_size": 151669, "max_position_embeddings": 32768,
    "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
}
TINY_SHAPE = {
    "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "head_dim": 16, "intermediate_size": 128, "max_position_embeddings": 512,
}

_DEFAULT_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Elasticsearch stores documents in indices and searches them with BM25 and vectors.",
    "Semantic search embeds queries and documents into the same vector space.",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "Proteins fold into three-dimensional structures that determine their function.",
    "A cat sat on the mat while the dog slept in the sun.",
    "Insurance policies cover damage, theft and liability up to a limit.",
    "Numbers like 0123456789 and symbols like !?.,;:()[]{}<>@#$%&*+-=/\\ appear in text.",
    "保险 理赔 需要 哪些 材料？ 数据 检索 语义 向量",
]


def make_bpe_tokenizer(corpus: Iterable[str] | None = None, *, vocab_size: int = 512, model_max_length: int = 32768):
    """A byte-level BPE ``PreTrainedTokenizerFast`` like Qwen's: every byte encodable, no BOS,
    ``<|endoftext|>`` appended to every text by the post-processor, padding on the left."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus if corpus is not None else _DEFAULT_CORPUS * 4), trainer)
    eos_id = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B:1 {EOS}:1", special_tokens=[(EOS, eos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, padding_side="left",
        model_max_length=model_max_length,
    )


def write_sentence_transformers_files(path: Path, *, dim: int, max_seq_length: int,
                                      pooling: str = "lasttoken", query_prompt: str | None = QWEN3_QUERY_PROMPT) -> None:
    """The files sentence-transformers reads: modules.json, 1_Pooling, prompts, max length."""
    path = Path(path)
    (path / "1_Pooling").mkdir(parents=True, exist_ok=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    flags = {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": pooling == "lasttoken",
        "include_prompt": True,
    }
    (path / "1_Pooling" / "config.json").write_text(json.dumps(flags, indent=2))
    prompts = {"query": query_prompt, "document": ""} if query_prompt is not None else {}
    (path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2)
    )
    (path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2)
    )


def make_tiny_qwen3(
    path: str | Path,
    *,
    sentence_transformers_files: bool = True,
    seed: int = 0,
    tokenizer_corpus: Iterable[str] | None = None,
    tokenizer_vocab_size: int = 512,
    dtype: str = "float32",
    **config_overrides,
) -> Path:
    """Write a random-weight Qwen3 embedding model to ``path`` and return the path.

    Default shape is tiny (hidden 64, 2 layers) so it loads and runs in milliseconds on CPU;
    pass ``**QWEN3_0_6B_SHAPE`` for a full-size model (speed runs). ``sentence_transformers_files``
    False leaves only transformers files (tests the decoder defaults).
    """
    import torch
    from transformers import Qwen3Config, Qwen3Model

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = make_bpe_tokenizer(tokenizer_corpus, vocab_size=tokenizer_vocab_size)
    shape = {**TINY_SHAPE, **config_overrides}
    shape.setdefault("vocab_size", len(tokenizer))
    shape["vocab_size"] = max(shape["vocab_size"], len(tokenizer))
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    # pad_token_id stays unset, as in Qwen3: setting it would zero the EOS embedding row,
    # and the EOS token is the one last-token pooling reads
    config = Qwen3Config(**shape, eos_token_id=eos_id, bos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3Model(config)
        if dtype != "float32":
            model = model.to(getattr(torch, dtype))
    model.save_pretrained(path)
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(path)
    if sentence_transformers_files:
        write_sentence_transformers_files(path, dim=config.hidden_size, max_seq_length=config.max_position_embeddings)
    return path


def make_random_qwen3_0_6b(path: str | Path, corpus: Iterable[str]) -> Path:
    """Random weights in Qwen3-Embedding-0.6B's exact shape (bf16) with a 32k byte-level BPE trained
    on ``corpus``: the same FLOPs and memory traffic as the real model, so the same speed, without
    the hub. Used by the GPU benchmarks."""
    return make_tiny_qwen3(path, tokenizer_corpus=corpus, tokenizer_vocab_size=32000, dtype="bfloat16",
                           **QWEN3_0_6B_SHAPE)
