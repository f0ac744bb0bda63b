"""Token-budget batching: pure functions, no torch.

Why a token budget and not a fixed batch size: the cost of a batch is its *padded* size
(rows x longest row). With inputs sorted by length, a budget of padded tokens gives long texts
small batches and short texts big ones, so every forward pass does about the same amount of
work and memory use stays flat whatever the mix of lengths.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

__all__ = ["length_order", "plan_batches"]


def length_order(lengths: Sequence[int], *, descending: bool = True) -> list[int]:
    """Indices of ``lengths`` sorted by length (stable, so equal lengths keep input order).

    Longest first by default: the biggest batch runs first, so an out-of-memory error shows up
    at once instead of after an hour, and the batch shapes only shrink afterwards.
    """
    return sorted(range(len(lengths)), key=lambda i: -lengths[i] if descending else lengths[i])


def plan_batches(
    lengths: Sequence[int],
    batch_tokens: int,
    *,
    max_batch_size: int | None = None,
    order: Sequence[int] | None = None,
    max_waste: float | None = None,
    min_fill: float = 0.25,
) -> Iterator[list[int]]:
    """Group indices into batches whose padded size ``rows * max(length)`` fits ``batch_tokens``.

    ``order`` is the sequence of indices to walk (default: longest first). A single text longer
    than the budget still gets a batch of its own (never dropped). Yields lists of indices into
    ``lengths``; together they cover every index exactly once.

    ``max_waste`` (e.g. 0.05) also cuts a batch once it holds at least ``min_fill`` of the budget
    and adding the next text would make more than that fraction of its padded tokens padding:
    on a short call (a few hundred texts) a full budget would span a wide range of lengths,
    and a second smaller batch costs less than the padding it saves.
    """
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if order is None:
        order = length_order(lengths)
    batch: list[int] = []
    longest = 0
    real = 0
    for i in order:
        n = max(int(lengths[i]), 1)
        new_longest = max(longest, n)
        padded = new_longest * (len(batch) + 1)
        cut = bool(batch) and (
            (max_batch_size is not None and len(batch) >= max_batch_size)
            or padded > batch_tokens
            or (
                max_waste is not None
                and longest * len(batch) >= min_fill * batch_tokens
                and 1.0 - (real + n) / padded > max_waste
            )
        )
        if cut:
            yield batch
            batch, new_longest, real = [], n, 0
        batch.append(i)
        longest = new_longest
        real += n
    if batch:
        yield batch
