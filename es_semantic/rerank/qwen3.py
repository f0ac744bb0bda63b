"""Qwen3-Reranker: a causal LM asked whether a document meets the query; the score is P("yes").

The prompt is the one the model card publishes: a system turn, the user turn
``<Instruct>: ...\\n<Query>: ...\\n<Document>: ...``, and an assistant turn opened with an empty
``<think>`` block. Rows are padded on the left so the last position is the next-token prediction
of every row; the score is the softmax over the "yes" and "no" logits there.
"""

from __future__ import annotations

from typing import Any

import torch

from es_semantic.errors import ModelLoadError

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
DEFAULT_MAX_LENGTH = 8192


def user_text(instruction: str, query: str, document: str) -> str:
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


class YesNoHead:
    """Turns (query, document) pairs into token ids and a causal LM's output into P("yes")."""

    left_pad = True

    def __init__(self, tokenizer: Any, model_id: str, *, instruction: str | None, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.instruction = DEFAULT_INSTRUCTION if instruction is None else instruction
        self.prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
        self.suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
        # room left for the instruction, query and document once the fixed prompt is in
        self.budget = max_length - len(self.prefix) - len(self.suffix)
        if self.budget < 1:
            raise ModelLoadError(f"max_length={max_length} leaves no room for text in the Qwen3-Reranker prompt "
                                 f"of {model_id!r} ({len(self.prefix) + len(self.suffix)} tokens)")
        self.yes_no = [self._single_token(word, model_id) for word in ("yes", "no")]

    def _single_token(self, word: str, model_id: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(word)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ModelLoadError(f"the tokenizer of reranker {model_id!r} has no {word!r} token; a *ForCausalLM "
                                 f"reranker is scored by its 'yes' and 'no' logits (Qwen3-Reranker)")
        return int(token_id)

    def encode(self, query: str, documents: list[str]) -> tuple[list[list[int]], list[list[int]] | None, int]:
        """Token ids per pair, no token type ids, and how many pairs were cut to ``max_length``."""
        texts = [user_text(self.instruction, query, d) for d in documents]
        # one token over the budget tells a cut text (and keeps transformers from warning about long inputs)
        middles = self.tokenizer(texts, add_special_tokens=False, truncation=True,
                                 max_length=self.budget + 1)["input_ids"]
        truncated = sum(len(m) > self.budget for m in middles)
        return [self.prefix + list(m[: self.budget]) + self.suffix for m in middles], None, truncated

    def scores(self, model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"]
        # positions count real tokens only: a left-padded row is computed like the same text alone
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        # logits of the last position only: the vocabulary projection of every position is most of the memory
        logits = model(**inputs, position_ids=position_ids, use_cache=False, logits_to_keep=1).logits[:, -1, :]
        yes_no = logits[:, self.yes_no].float()
        return torch.softmax(yes_no, dim=1)[:, 0]
