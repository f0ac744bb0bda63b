"""Lucene's BM25Similarity, in float32 as Lucene computes it.

Lucene stores a document's field length in a one-byte norm (``SmallFloat.intToByte4``), so
lengths above 24 are rounded down to a 4-bit-mantissa value; the score uses that decoded (lossy)
length. ``avgdl`` is ``sumTotalTermFreq / docCount`` over the documents that have the field.

    idf   = ln(1 + (N - n + 0.5) / (n + 0.5))
    score = w - w / (1 + tf * 1 / (k1 * (1 - b + b * dl / avgdl)))     with w = boost * (k1 + 1) * idf

which is ``boost * (k1 + 1) * idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))`` rearranged the
way Lucene does it (for monotonicity in float arithmetic). The ``(k1 + 1)`` factor is
Elasticsearch's: its default similarity is ``LegacyBM25Similarity``, which multiplies the boost by
``k1 + 1`` (the YAML REST test ``190_knn_query-with-k-param`` "dis_max query with knn query"
depends on that scale).
"""

from __future__ import annotations

import math

import numpy as np

K1 = 1.2
B = 0.75


def _long_to_int4(i: int) -> int:
    if i < 0:
        raise ValueError("only non-negative values are supported")
    num_bits = i.bit_length()
    if num_bits < 4:
        return i  # subnormal value
    shift = num_bits - 4
    encoded = (i >> shift) & 0x07  # keep the 4 most significant bits, drop the implicit one
    return encoded | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits = i & 0x07
    shift = (i >> 3) - 1
    if shift == -1:
        return bits
    return (bits | 0x08) << shift


_MAX_INT4 = _long_to_int4(2**31 - 1)
NUM_FREE_VALUES = 255 - _MAX_INT4  # 24: lengths below this are stored exactly


def int_to_byte4(i: int) -> int:
    """Encode a non-negative int to Lucene's one-byte norm (returned as 0..255)."""
    if i < 0:
        raise ValueError("only non-negative values are supported")
    if i < NUM_FREE_VALUES:
        return i
    return NUM_FREE_VALUES + _long_to_int4(i - NUM_FREE_VALUES)


def byte4_to_int(b: int) -> int:
    """Decode a one-byte norm (0..255) back to the (lossy) length."""
    b &= 0xFF
    if b < NUM_FREE_VALUES:
        return b
    return NUM_FREE_VALUES + _int4_to_long(b - NUM_FREE_VALUES)


LENGTH_TABLE = np.array([byte4_to_int(i) for i in range(256)], dtype=np.float32)


def lossy_length(length: int) -> int:
    """The field length BM25 sees: the length after the one-byte norm round trip."""
    return byte4_to_int(int_to_byte4(length))


def idf(doc_freq: int, doc_count: int) -> np.float32:
    """Lucene's BM25 idf, computed in double and rounded to float."""
    return np.float32(math.log(1 + (doc_count - doc_freq + 0.5) / (doc_freq + 0.5)))


def avg_field_length(sum_total_term_freq: int, doc_count: int) -> np.float32:
    if doc_count <= 0:
        return np.float32(1.0)
    return np.float32(sum_total_term_freq / doc_count)


def norm_cache(avgdl: np.float32, k1: float = K1, b: float = B) -> np.ndarray:
    """``1 / (k1 * ((1 - b) + b * LENGTH_TABLE[i] / avgdl))`` for every norm byte, in float32."""
    k1f = np.float32(k1)
    bf = np.float32(b)
    one_minus_b = np.float32(1) - bf
    return (np.float32(1) / (k1f * (one_minus_b + bf * LENGTH_TABLE / np.float32(avgdl)))).astype(np.float32)


def score(tf: np.ndarray | float, norm_bytes: np.ndarray | int, weight: np.float32, cache: np.ndarray) -> np.ndarray:
    """Lucene's ``BM25Scorer.score``: ``weight - weight / (1 + freq * cache[norm])`` in float32.

    ``weight`` is ``boost * idf``; ``cache`` comes from :func:`norm_cache`.
    """
    freq = np.asarray(tf, dtype=np.float32)
    norm_inverse = cache[np.asarray(norm_bytes, dtype=np.intp)]
    w = np.float32(weight)
    return (w - w / (np.float32(1) + freq * norm_inverse)).astype(np.float32)


# Elasticsearch's default similarity is LegacyBM25Similarity: Lucene's BM25 with the boost
# multiplied by (k1 + 1), so scores keep the classic BM25 scale (the "boost 2.2" in explain output).
LEGACY_BOOST = np.float32(1) + np.float32(K1)


def term_weight(boost: float, doc_freq: int, doc_count: int, *, legacy: bool = True, k1: float = K1) -> np.float32:
    """``weight = boost * (k1 + 1) * idf`` in float32 (Elasticsearch); ``legacy=False``: Lucene's."""
    b = np.float32(boost) * (np.float32(1) + np.float32(k1)) if legacy else np.float32(boost)
    return np.float32(np.float32(b) * idf(doc_freq, doc_count))
