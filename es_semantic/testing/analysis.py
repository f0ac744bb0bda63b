"""Text analysis for the test server: Lucene's tokenizers and token filters, in pure Python.

An analyzer turns text into a list of ``Token(term, position)``. Positions matter for phrase
queries and stop words leave position gaps, as in Lucene. The built-in analyzers follow
Elasticsearch's definitions:

* ``standard``: StandardTokenizer (Unicode UAX#29 word boundaries, via the ``regex`` module's
  WORD mode) + lowercase.
* ``english``: standard tokenizer + English possessive filter + lowercase + English stop words
  (Lucene's EnglishAnalyzer set) + Porter stemmer.
* ``simple`` (letters only, lowercased), ``stop`` (simple + English stop words), ``whitespace``,
  ``keyword``.

Custom analyzers from the index ``analysis`` settings combine the tokenizers ``standard``,
``whitespace``, ``keyword``, ``letter``, ``lowercase`` with the filters ``lowercase``,
``uppercase``, ``stop``, ``porter_stem``, ``stemmer`` (english), ``english_possessive``
(``stemmer`` with ``possessive_english``), ``asciifolding``, ``trim``, ``unique``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import regex

from es_semantic.testing.errors import EsError
from es_semantic.testing.porter import porter_stem

# Lucene EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (also Elasticsearch's `_english_`).
ENGLISH_STOP_WORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with"]
)

MAX_TOKEN_LENGTH = 255
POSITION_INCREMENT_GAP = 100  # Elasticsearch's default between values of a multi-valued text field


class Token(NamedTuple):
    term: str
    position: int


# --- tokenizers: text -> list[(term, position increment)] ---------------------------------

_WORD_FLAGS = regex.WORD | regex.V1
_WORD_BOUNDARY = regex.compile(r"\b", flags=_WORD_FLAGS)
# A UAX#29 segment is a token when it holds a letter, digit or emoji (Lucene drops segments that
# are only punctuation, spaces or symbols).
_TOKEN_CHAR = regex.compile(r"[\p{L}\p{N}\p{Extended_Pictographic}]")


def _chunk(term: str, max_len: int) -> list[str]:
    # Lucene's StandardTokenizer splits a too-long token at max_token_length boundaries.
    if len(term) <= max_len:
        return [term]
    return [term[i : i + max_len] for i in range(0, len(term), max_len)]


# ASCII fast path: the UAX#29 rules restricted to ASCII (letters, digits and "_" join; "'", "." and
# ":" join letters; "'", ".", "," and ";" join digits). Checked to give the same tokens as the
# full Unicode path on every ASCII title and abstract of SciFact, at a third of the cost.
_ASCII_TOKEN = re.compile(
    r"[A-Za-z0-9_]+(?:(?:(?<=[A-Za-z])['.:](?=[A-Za-z])|(?<=[0-9])[.,;'](?=[0-9]))[A-Za-z0-9_]+)*"
)
_ASCII_ALNUM = re.compile(r"[A-Za-z0-9]")


def standard_tokenizer(text: str, max_token_length: int = MAX_TOKEN_LENGTH) -> list[str]:
    """Unicode word-boundary tokens, as Lucene's StandardTokenizer emits them."""
    out: list[str] = []
    if text.isascii():
        for token in _ASCII_TOKEN.findall(text):
            if "_" in token and not _ASCII_ALNUM.search(token):
                continue  # only underscores: not a word
            if len(token) <= max_token_length:
                out.append(token)
            else:
                out.extend(_chunk(token, max_token_length))
        return out
    for segment in _WORD_BOUNDARY.split(text):
        if segment and _TOKEN_CHAR.search(segment):
            out.extend(_chunk(segment, max_token_length))
    return out


_LETTER_RUN = regex.compile(r"\p{L}+")
_WHITESPACE_RUN = regex.compile(r"\S+")


def letter_tokenizer(text: str, max_token_length: int = MAX_TOKEN_LENGTH) -> list[str]:
    out: list[str] = []
    for m in _LETTER_RUN.finditer(text):
        out.extend(_chunk(m.group(), max_token_length))
    return out


def whitespace_tokenizer(text: str, max_token_length: int = MAX_TOKEN_LENGTH) -> list[str]:
    out: list[str] = []
    for m in _WHITESPACE_RUN.finditer(text):
        out.extend(_chunk(m.group(), max_token_length))
    return out


def keyword_tokenizer(text: str, max_token_length: int = MAX_TOKEN_LENGTH) -> list[str]:
    return [text] if text != "" else []


def lowercase_tokenizer(text: str, max_token_length: int = MAX_TOKEN_LENGTH) -> list[str]:
    return [t.lower() for t in letter_tokenizer(text, max_token_length)]


TOKENIZERS: dict[str, Callable[..., list[str]]] = {
    "standard": standard_tokenizer,
    "letter": letter_tokenizer,
    "whitespace": whitespace_tokenizer,
    "keyword": keyword_tokenizer,
    "lowercase": lowercase_tokenizer,
}


# --- token filters: list[(term, posinc)] -> list[(term, posinc)] -----------------------------
# A filter that drops a token adds its position increment to the next kept token, as Lucene's
# FilteringTokenFilter does; that is how stop words leave gaps for phrase queries.

Stream = list[tuple[str, int]]


def _drop(stream: Stream, keep: Callable[[str], bool]) -> Stream:
    out: Stream = []
    carry = 0
    for term, inc in stream:
        if keep(term):
            out.append((term, inc + carry))
            carry = 0
        else:
            carry += inc
    return out


def _map(stream: Stream, fn: Callable[[str], str]) -> Stream:
    return [(fn(t), inc) for t, inc in stream]


def lowercase_filter(stream: Stream) -> Stream:
    return _map(stream, str.lower)


def stop_filter(stream: Stream, stopwords: Iterable[str] = ENGLISH_STOP_WORDS, ignore_case: bool = False) -> Stream:
    words = frozenset(w.lower() for w in stopwords) if ignore_case else frozenset(stopwords)
    if ignore_case:
        return _drop(stream, lambda t: t.lower() not in words)
    return _drop(stream, lambda t: t not in words)


def _strip_possessive(term: str) -> str:
    # Lucene EnglishPossessiveFilter: drop a trailing 's / ’s / ＇s (s in either case).
    if len(term) >= 2 and term[-1] in "sS" and term[-2] in "'\u2019\uff07":
        return term[:-2]
    return term


def english_possessive_filter(stream: Stream) -> Stream:
    return _map(stream, _strip_possessive)


def porter_stem_filter(stream: Stream) -> Stream:
    return _map(stream, porter_stem)


def _fold(term: str) -> str:
    # ASCII folding, approximated with NFKD decomposition (drops accents, keeps base letters).
    if term.isascii():
        return term
    decomposed = unicodedata.normalize("NFKD", term)
    folded = "".join(c for c in decomposed if not unicodedata.combining(c))
    return folded.replace("ß", "ss").replace("æ", "ae").replace("Æ", "AE").replace("ø", "o").replace("Ø", "O")


def asciifolding_filter(stream: Stream) -> Stream:
    return _map(stream, _fold)


def uppercase_filter(stream: Stream) -> Stream:
    return _map(stream, str.upper)


def trim_filter(stream: Stream) -> Stream:
    return _map(stream, str.strip)


def unique_filter(stream: Stream) -> Stream:
    seen: set[str] = set()
    out: Stream = []
    for t, inc in stream:
        if t not in seen:
            seen.add(t)
            out.append((t, inc))
    return out


# --- analyzers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Analyzer:
    """A tokenizer followed by token filters."""

    name: str
    tokenizer: Callable[[str], list[str]]
    filters: tuple[Callable[[Stream], Stream], ...] = ()

    def term_positions(self, text: str, start_position: int = 0) -> list[tuple[str, int]]:
        """``(term, position)`` pairs (plain tuples: the indexing hot path)."""
        terms = self.tokenizer(text)
        if not self.filters or self.filters == (lowercase_filter,):
            # no filter drops tokens: positions are consecutive
            if self.filters:
                terms = [t.lower() for t in terms]
            return [(t, start_position + i) for i, t in enumerate(terms) if t] if "" in terms else list(
                zip(terms, range(start_position, start_position + len(terms)))
            )
        stream: Stream = [(t, 1) for t in terms]
        for f in self.filters:
            stream = f(stream)
        out: list[tuple[str, int]] = []
        pos = start_position - 1
        for term, inc in stream:
            pos += inc
            if term:
                out.append((term, pos))
        return out

    def tokens(self, text: str, start_position: int = 0) -> list[Token]:
        return [Token(t, p) for t, p in self.term_positions(text, start_position)]

    def terms(self, text: str) -> list[str]:
        return [t.term for t in self.tokens(text)]


BUILTIN_ANALYZERS: dict[str, Analyzer] = {
    "standard": Analyzer("standard", standard_tokenizer, (lowercase_filter,)),
    "english": Analyzer(
        "english",
        standard_tokenizer,
        (english_possessive_filter, lowercase_filter, stop_filter, porter_stem_filter),
    ),
    "simple": Analyzer("simple", lowercase_tokenizer),
    "stop": Analyzer("stop", lowercase_tokenizer, (stop_filter,)),
    "whitespace": Analyzer("whitespace", whitespace_tokenizer),
    "keyword": Analyzer("keyword", keyword_tokenizer),
}


def _stopword_set(value: Any) -> frozenset[str]:
    if value is None or value == "_english_":
        return ENGLISH_STOP_WORDS
    if value == "_none_":
        return frozenset()
    if isinstance(value, str):
        return frozenset([value])
    return frozenset(value)


def _analysis_settings(index_settings: dict | None) -> dict:
    if not index_settings:
        return {}
    settings = index_settings.get("index", index_settings)
    analysis = settings.get("analysis")
    if analysis is None:
        # flat settings such as {"index.analysis.analyzer.x.type": ...} are nested by the store;
        # accept {"analysis": ...} at the top level as well.
        analysis = index_settings.get("analysis", {})
    return analysis or {}


def _build_tokenizer(name: str, analysis: dict) -> Callable[[str], list[str]]:
    custom = analysis.get("tokenizer", {}).get(name)
    if custom is not None:
        kind = custom.get("type", name)
        max_len = int(custom.get("max_token_length", MAX_TOKEN_LENGTH))
        base = TOKENIZERS.get(kind)
        if base is None:
            raise EsError(400, "illegal_argument_exception", f"Unknown tokenizer type [{kind}] for [{name}]")
        return lambda text, _b=base, _m=max_len: _b(text, _m)
    base = TOKENIZERS.get(name)
    if base is None:
        raise EsError(400, "illegal_argument_exception", f"failed to find global tokenizer under [{name}]")
    return base


_SIMPLE_FILTERS: dict[str, Callable[[Stream], Stream]] = {
    "lowercase": lowercase_filter,
    "uppercase": uppercase_filter,
    "stop": stop_filter,
    "porter_stem": porter_stem_filter,
    "asciifolding": asciifolding_filter,
    "english_possessive": english_possessive_filter,
    "trim": trim_filter,
    "unique": unique_filter,
}


def _build_filter(name: str, analysis: dict) -> Callable[[Stream], Stream]:
    custom = analysis.get("filter", {}).get(name)
    if custom is None:
        if name in _SIMPLE_FILTERS:
            return _SIMPLE_FILTERS[name]
        raise EsError(400, "illegal_argument_exception", f"failed to find global filter under [{name}]")
    kind = custom.get("type", name)
    if kind == "stop":
        words = _stopword_set(custom.get("stopwords"))
        ignore_case = bool(custom.get("ignore_case", False))
        return lambda s, _w=words, _i=ignore_case: stop_filter(s, _w, _i)
    if kind in ("stemmer", "porter_stem"):
        language = custom.get("language", custom.get("name", "english"))
        if language in ("possessive_english",):
            return english_possessive_filter
        if language in ("english", "porter"):
            return porter_stem_filter
        raise EsError(
            400, "illegal_argument_exception", f"stemmer language [{language}] is not supported by the test server"
        )
    if kind in _SIMPLE_FILTERS:
        return _SIMPLE_FILTERS[kind]
    raise EsError(400, "illegal_argument_exception", f"Unknown filter type [{kind}] for [{name}]")


def get_analyzer(name: str, index_settings: dict | None = None) -> Analyzer:
    """Resolve an analyzer name: custom analyzers of the index first, then the built-ins."""
    analysis = _analysis_settings(index_settings)
    custom = analysis.get("analyzer", {}).get(name)
    if custom is not None:
        kind = custom.get("type", "custom")
        if kind != "custom":
            if kind in ("standard", "stop") and "stopwords" in custom:
                words = _stopword_set(custom["stopwords"])
                tok = standard_tokenizer if kind == "standard" else lowercase_tokenizer
                return Analyzer(name, tok, (lowercase_filter, lambda s, _w=words: stop_filter(s, _w)))
            if kind in BUILTIN_ANALYZERS:
                return BUILTIN_ANALYZERS[kind]
            raise EsError(400, "illegal_argument_exception", f"Unknown analyzer type [{kind}] for [{name}]")
        tokenizer = _build_tokenizer(custom.get("tokenizer", "standard"), analysis)
        filter_names = custom.get("filter", [])
        if isinstance(filter_names, str):
            filter_names = [filter_names]
        filters = tuple(_build_filter(f, analysis) for f in filter_names)
        return Analyzer(name, tokenizer, filters)
    builtin = BUILTIN_ANALYZERS.get(name)
    if builtin is None:
        raise EsError(400, "illegal_argument_exception", f"failed to find analyzer [{name}]")
    return builtin


def analyze(text: str, analyzer: str, index_settings: dict | None = None) -> list[str]:
    """The terms ``analyzer`` produces for ``text`` (what the ``_analyze`` API lists)."""
    return get_analyzer(analyzer, index_settings).terms(text)


def get_normalizer(name: str, index_settings: dict | None = None) -> Callable[[str], str]:
    """A keyword ``normalizer``: the built-in ``lowercase`` or a custom one of the index settings."""
    analysis = _analysis_settings(index_settings)
    custom = analysis.get("normalizer", {}).get(name)
    if custom is None:
        if name == "lowercase":
            return str.lower
        raise EsError(400, "illegal_argument_exception", f"failed to find normalizer [{name}]")
    filter_names = custom.get("filter", [])
    if isinstance(filter_names, str):
        filter_names = [filter_names]
    filters = [_build_filter(f, analysis) for f in filter_names]

    def normalize(text: str) -> str:
        stream: Stream = [(text, 1)]
        for f in filters:
            stream = f(stream)
        return stream[0][0] if stream else text

    return normalize
