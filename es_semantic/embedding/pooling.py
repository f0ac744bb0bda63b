"""Pooling of token states into one vector per text (torch).

Works for either padding side: every mode reads positions from the attention mask, never
assumes where the padding is. Accumulates in float32 whatever the model dtype, so bf16/fp16
models do not lose precision in a long mean.
"""

from __future__ import annotations

import torch

POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real (mask==1) token of each row, for left or right padding."""
    seq_len = attention_mask.shape[1]
    positions = torch.arange(seq_len, device=attention_mask.device).expand_as(attention_mask)
    # max position where the mask is set; an all-zero row falls back to the final position
    masked = torch.where(attention_mask.bool(), positions, torch.full_like(positions, -1))
    idx = masked.max(dim=1).values
    return torch.where(idx < 0, torch.full_like(idx, seq_len - 1), idx)


def first_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the first real token of each row (CLS under left padding is not at 0)."""
    return attention_mask.to(torch.int32).argmax(dim=1)


def exclude_prompt(attention_mask: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """Copy of the mask with the first ``prompt_length`` real tokens of each row zeroed."""
    start = first_token_index(attention_mask)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device).unsqueeze(0)
    keep = positions >= (start + prompt_length).unsqueeze(1)
    return attention_mask * keep.to(attention_mask.dtype)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str, *,
         prompt_length: int | None = None) -> torch.Tensor:
    """Pool ``hidden`` (batch, seq, dim) into (batch, dim) float32.

    ``mode`` is one of :data:`POOLING_MODES` or several joined by ``+`` (concatenated, as
    sentence-transformers does when several ``pooling_mode_*`` flags are set).
    ``prompt_length`` excludes that many leading real tokens from the pooled positions
    (sentence-transformers ``include_prompt: false``); last-token/CLS pooling ignore it,
    as they do there.
    """
    modes = mode.split("+")
    pool_mask = attention_mask
    if prompt_length:
        pool_mask = exclude_prompt(attention_mask, prompt_length)
    out = []
    h32 = None
    for m in modes:
        if m == "lasttoken":
            idx = last_token_index(attention_mask)
            out.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), idx].float())
        elif m == "cls":
            idx = first_token_index(attention_mask)
            out.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), idx].float())
        elif m in ("mean", "mean_sqrt_len_tokens"):
            if h32 is None:
                h32 = hidden.float()
            w = pool_mask.unsqueeze(-1).to(torch.float32)
            # masked_fill, not a multiply: padded positions may hold NaN (fully masked attention
            # rows under left padding) and NaN * 0 is NaN
            total = h32.masked_fill(w == 0, 0.0).sum(dim=1)
            count = w.sum(dim=1).clamp(min=1e-9)
            out.append(total / (count if m == "mean" else count.sqrt()))
        elif m == "max":
            if h32 is None:
                h32 = hidden.float()
            filled = h32.masked_fill(~pool_mask.bool().unsqueeze(-1), float("-inf"))
            out.append(filled.max(dim=1).values)
        elif m == "weightedmean":
            if h32 is None:
                h32 = hidden.float()
            # weights 1..n over real tokens, counted from the first real token (padding-side safe)
            real_pos = attention_mask.cumsum(dim=1).to(torch.float32)
            w = (real_pos * pool_mask.to(torch.float32)).unsqueeze(-1)
            out.append((h32.masked_fill(w == 0, 0.0) * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-9))
        else:
            raise ValueError(f"unknown pooling mode {m!r}; expected one of {', '.join(POOLING_MODES)}")
    return out[0] if len(out) == 1 else torch.cat(out, dim=-1)
