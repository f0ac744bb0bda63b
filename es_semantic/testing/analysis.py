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

import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
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


class AnalyzedToken(NamedTuple):
    """One token as the ``_analyze`` API lists it (offsets in UTF-16 code units, as Java counts them)."""

    term: str
    start_offset: int
    end_offset: int
    type: str
    position: int
    position_length: int = 1


# Token types, as Lucene's tokenizers and filters name them.
ALPHANUM, NUM, SOUTHEAST_ASIAN, EMOJI = "<ALPHANUM>", "<NUM>", "<SOUTHEAST_ASIAN>", "<EMOJI>"
IDEOGRAPHIC, HIRAGANA, KATAKANA, HANGUL = "<IDEOGRAPHIC>", "<HIRAGANA>", "<KATAKANA>", "<HANGUL>"
SINGLE, DOUBLE = "<SINGLE>", "<DOUBLE>"  # CJKBigramFilter's unigrams and bigrams
WORD = "word"  # what every other tokenizer calls its tokens

# A tokenizer turns text into ``(term, start offset, end offset, type)`` tuples (plain tuples:
# the indexing hot path).
RawToken = tuple[str, int, int, str]

# --- tokenizers ------------------------------------------------------------------------------

_WORD_FLAGS = regex.WORD | regex.V1
_WORD_BOUNDARY = regex.compile(r"\b", flags=_WORD_FLAGS)
# A UAX#29 segment is a token when it holds a letter, digit or emoji (Lucene drops segments that
# are only punctuation, spaces or symbols, and numbers that are not digits, such as ①).
_TOKEN_CHAR = regex.compile(r"[\p{L}\p{Word_Break=Numeric}\p{Word_Break=ALetter}\p{Extended_Pictographic}]")


def _chunks(term: str, start: int, kind: str, max_len: int) -> list[RawToken]:
    # Lucene's tokenizers split a too-long token at max_token_length boundaries.
    if len(term) <= max_len:
        return [(term, start, start + len(term), kind)]
    return [(term[i: i + max_len], start + i, start + min(i + max_len, len(term)), kind)
            for i in range(0, len(term), max_len)]


# ASCII fast path: the UAX#29 rules restricted to ASCII (letters, digits and "_" join; "'", "." and
# ":" join letters; "'", ".", "," and ";" join digits). Checked to give the same tokens as the
# full Unicode path on every ASCII title and abstract of SciFact, at a third of the cost.
_ASCII_TOKEN = re.compile(
    r"[A-Za-z0-9_]+(?:(?:(?<=[A-Za-z])['.:](?=[A-Za-z])|(?<=[0-9])[.,;'](?=[0-9]))[A-Za-z0-9_]+)*"
)
_ASCII_ALNUM = re.compile(r"[A-Za-z0-9]")
_ASCII_LETTER = re.compile(r"[A-Za-z]")

# StandardTokenizer's token types (its JFlex grammar: the longest match wins, ties go to the
# first rule, so a run of Hangul or Katakana alone is typed by its script, and a word without
# letters is a number).
_KATAKANA_WORD = regex.compile(r"[\p{Word_Break=Katakana}\p{Word_Break=Extend}\p{Word_Break=Format}]+")
_HANGUL_WORD = regex.compile(
    r"(?:[\p{Script=Hangul}&&\p{Word_Break=ALetter}]|[\p{Word_Break=Extend}\p{Word_Break=Format}])+", flags=regex.V1
)
_HAN = regex.compile(r"\p{Script=Han}")
_HIRAGANA = regex.compile(r"\p{Script=Hiragana}")
_COMPLEX_CONTEXT = regex.compile(r"\p{Line_Break=Complex_Context}")
_EMOJI = regex.compile(r"\p{Extended_Pictographic}")
_LETTER = regex.compile(r"[\p{L}\p{Word_Break=ALetter}\p{Word_Break=Hebrew_Letter}]")


@lru_cache(maxsize=1 << 16)  # CJK text is mostly one-character segments: few distinct ones
def _standard_type(segment: str) -> str:
    if _KATAKANA_WORD.fullmatch(segment):
        return KATAKANA
    if _HAN.match(segment):
        return IDEOGRAPHIC  # UAX#29 makes each ideograph a segment of its own
    if _HIRAGANA.match(segment):
        return HIRAGANA
    if _HANGUL_WORD.fullmatch(segment):
        return HANGUL
    if _COMPLEX_CONTEXT.match(segment):
        return SOUTHEAST_ASIAN
    if _EMOJI.match(segment):
        return EMOJI
    return ALPHANUM if _LETTER.search(segment) else NUM


def _word_segments(text: str) -> Iterator[tuple[str, int]]:
    """The UAX#29 segments of non-ASCII ``text`` that are tokens, with their start offsets."""
    at = 0
    for segment in _WORD_BOUNDARY.split(text):
        if segment and _TOKEN_CHAR.search(segment):
            yield segment, at
        at += len(segment)


def _ascii_words(text: str) -> Iterator[re.Match[str]]:
    for match in _ASCII_TOKEN.finditer(text):
        if "_" in match.group() and not _ASCII_ALNUM.search(match.group()):
            continue  # only underscores: not a word
        yield match


def standard_tokens(text: str, max_token_length: int = MAX_TOKEN_LENGTH) -> list[RawToken]:
    """Unicode word-boundary tokens with offsets and types, as Lucene's StandardTokenizer emits them."""
    out: list[RawToken] = []
    if text.isascii():
        for match in _ascii_words(text):
            token = match.group()
            kind = ALPHANUM if token.isalpha() or _ASCII_LETTER.search(token) else NUM
            out.extend(_chunks(token, match.start(), kind, max_token_length))
        return out
    for segment, start in _word_segments(text):
        out.extend(_chunks(segment, start, _standard_type(segment), max_token_length))
    return out


def standard_tokenizer(text: str, max_token_length: int = MAX_TOKEN_LENGTH) -> list[str]:
    """The terms of :func:`standard_tokens` alone (the indexing path: no offsets or types)."""
    if text.isascii():  # findall: the fastest path (indexing SciFact is mostly this)
        words = [w for w in _ASCII_TOKEN.findall(text) if "_" not in w or _ASCII_ALNUM.search(w)]
    else:
        words = [s for s, _ in _word_segments(text)]
    out: list[str] = []
    for word in words:
        if len(word) <= max_token_length:
            out.append(word)
        else:
            out.extend(t for t, _, _, _ in _chunks(word, 0, ALPHANUM, max_token_length))
    return out


_LETTER_RUN = regex.compile(r"\p{L}+")
_WHITESPACE_RUN = regex.compile(r"\S+")


def _runs(pattern: Any, text: str, max_token_length: int) -> list[RawToken]:
    out: list[RawToken] = []
    for match in pattern.finditer(text):
        out.extend(_chunks(match.group(), match.start(), WORD, max_token_length))
    return out


def letter_tokens(text: str, max_token_length: int = MAX_TOKEN_LENGTH) -> list[RawToken]:
    return _runs(_LETTER_RUN, text, max_token_length)


def whitespace_tokens(text: str, max_token_length: int = MAX_TOKEN_LENGTH) -> list[RawToken]:
    return _runs(_WHITESPACE_RUN, text, max_token_length)


def keyword_tokens(text: str, max_token_length: int = MAX_TOKEN_LENGTH) -> list[RawToken]:
    return [(text, 0, len(text), WORD)] if text != "" else []


def lowercase_tokens(text: str, max_token_length: int = MAX_TOKEN_LENGTH) -> list[RawToken]:
    return [(t.lower(), s, e, k) for t, s, e, k in letter_tokens(text, max_token_length)]


TOKENIZERS: dict[str, Callable[..., list[RawToken]]] = {
    "standard": standard_tokens,
    "letter": letter_tokens,
    "whitespace": whitespace_tokens,
    "keyword": keyword_tokens,
    "lowercase": lowercase_tokens,
}


# --- token filters: Stream -> Stream ---------------------------------------------------------
# A stream token is ``(term, position increment, attributes)``; the attributes are ``(start offset,
# end offset, type, position length)``, or None where no filter of the analyzer reads them and
# nobody asked (indexing with most analyzers: no offsets or types are worked out).
# A filter that drops a token adds its position increment to the next kept token, as Lucene's
# FilteringTokenFilter does; that is how stop words leave gaps for phrase queries.

Attributes = tuple[int, int, str, int]
Stream = list[tuple[str, int, Attributes | None]]


def _drop(stream: Stream, keep: Callable[[str], bool]) -> Stream:
    out: Stream = []
    carry = 0
    for token in stream:
        if keep(token[0]):
            out.append((token[0], token[1] + carry, token[2]) if carry else token)
            carry = 0
        else:
            carry += token[1]
    return out


def _map(stream: Stream, fn: Callable[[str], str]) -> Stream:
    return [(fn(term), inc, attributes) for term, inc, attributes in stream]


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
    for token in stream:
        if token[0] not in seen:
            seen.add(token[0])
            out.append(token)
    return out


# --- CJK: width folding and bigrams (Lucene's CJKWidthFilter and CJKBigramFilter) ------------

_VOICED_MARKS = {0xFF9E: "\u3099", 0xFF9F: "\u309a"}  # half-width (semi-)voiced sound marks
_WIDTH_VARIANT = re.compile("[\uff01-\uff5e\uff65-\uff9f]")


def _fold_width(term: str) -> str:
    """Full-width ASCII to ASCII, half-width Katakana to full-width, a half-width voiced mark
    combined with the Katakana before it where a composed character exists (ｶﾞ -> ガ)."""
    if term.isascii() or not _WIDTH_VARIANT.search(term):
        return term
    out: list[str] = []
    for ch in term:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E:
            out.append(chr(code - 0xFEE0))
        elif 0xFF65 <= code <= 0xFF9F:
            if code in _VOICED_MARKS and out and 0x30A6 <= ord(out[-1]) <= 0x30FD:
                combined = unicodedata.normalize("NFC", out[-1] + _VOICED_MARKS[code])
                if len(combined) == 1:
                    out[-1] = combined
                    continue
            out.append(unicodedata.normalize("NFKC", ch))
        else:
            out.append(ch)
    return "".join(out)


def cjk_width_filter(stream: Stream) -> Stream:
    return _map(stream, _fold_width)


#: ``ignored_scripts`` names of the ``cjk_bigram`` filter -> the token type it bigrams.
CJK_SCRIPT_TYPES = {"han": IDEOGRAPHIC, "hiragana": HIRAGANA, "katakana": KATAKANA, "hangul": HANGUL}


def _run_grams(run: list[tuple[str, int, int]], unigrams: bool) -> Stream:
    """The grams of a run of adjacent CJK characters: overlapping bigrams (a lone character as a
    unigram); with ``unigrams``, each character too, its bigram stacked on it spanning two positions."""
    if len(run) == 1:
        ch, start, end = run[0]
        return [(ch, 1, (start, end, SINGLE, 1))]
    out: Stream = []
    for (first, start, first_end), (second, _, end) in itertools.pairwise(run):
        if unigrams:
            out.append((first, 1, (start, first_end, SINGLE, 1)))
            out.append((first + second, 0, (start, end, DOUBLE, 2)))
        else:
            out.append((first + second, 1, (start, end, DOUBLE, 1)))
    if unigrams:
        ch, start, end = run[-1]
        out.append((ch, 1, (start, end, SINGLE, 1)))
    return out


def cjk_bigram_filter(stream: Stream, types: frozenset[str] = frozenset(CJK_SCRIPT_TYPES.values()),
                      output_unigrams: bool = False) -> Stream:
    """Bigrams over runs of CJK tokens (of ``types``) whose offsets touch; other tokens pass as they are."""
    out: Stream = []
    run: list[tuple[str, int, int]] = []
    for token in stream:
        term, _, attributes = token
        assert attributes is not None  # the analyzer asks for them (needs_attributes)
        start, end, kind, _ = attributes
        if kind not in types:
            if run:
                out.extend(_run_grams(run, output_unigrams))
                run = []
            out.append(token)
            continue
        if run and start != run[-1][2]:
            out.extend(_run_grams(run, output_unigrams))
            run = []
        if end - start == len(term):
            run.extend((ch, start + i, start + i + 1) for i, ch in enumerate(term))
        else:  # the width filter changed the length: every character keeps the token's offsets
            run.extend((ch, start, end) for ch in term)
    if run:
        out.extend(_run_grams(run, output_unigrams))
    return out


def _reads_attributes(fn: Callable[[Stream], Stream]) -> Callable[[Stream], Stream]:
    fn.needs_attributes = True  # type: ignore[attr-defined]
    return fn


_reads_attributes(cjk_bigram_filter)


# --- analyzers ---------------------------------------------------------------------------


def _utf16_offsets(text: str) -> Callable[[int], int]:
    """Code point offset -> UTF-16 offset (what Elasticsearch reports) for ``text``."""
    if all(ord(ch) <= 0xFFFF for ch in text):
        return lambda at: at
    units = [0]
    for ch in text:
        units.append(units[-1] + (2 if ord(ch) > 0xFFFF else 1))
    return units.__getitem__


@dataclass(frozen=True)
class Analyzer:
    """A tokenizer followed by token filters."""

    name: str
    tokenizer: Callable[[str], list[RawToken]]
    filters: tuple[Callable[[Stream], Stream], ...] = ()

    @property
    def needs_attributes(self) -> bool:
        """Whether a filter reads the tokens' offsets or types (the CJK bigram filter does)."""
        return any(getattr(f, "needs_attributes", False) for f in self.filters)

    def _terms(self, text: str) -> list[str]:
        if self.tokenizer is standard_tokens:  # the indexing hot path: no offsets or types needed
            return standard_tokenizer(text)
        return [t for t, _, _, _ in self.tokenizer(text)]

    def stream(self, text: str, attributes: bool = True) -> Stream:
        """The filtered token stream of ``text`` (without offsets and types unless ``attributes`` or a
        filter needs them)."""
        stream: Stream
        if attributes or self.needs_attributes:
            stream = [(t, 1, (s, e, k, 1)) for t, s, e, k in self.tokenizer(text)]
        else:
            stream = [(t, 1, None) for t in self._terms(text)]
        for f in self.filters:
            stream = f(stream)
        return stream

    def term_positions(self, text: str, start_position: int = 0) -> list[tuple[str, int]]:
        """``(term, position)`` pairs (plain tuples: the indexing hot path)."""
        if not self.filters or self.filters == (lowercase_filter,):
            # no filter drops tokens: positions are consecutive
            terms = self._terms(text)
            if self.filters:
                terms = [t.lower() for t in terms]
            return [(t, start_position + i) for i, t in enumerate(terms) if t] if "" in terms else list(
                zip(terms, range(start_position, start_position + len(terms)))
            )
        out: list[tuple[str, int]] = []
        pos = start_position - 1
        for term, inc, _ in self.stream(text, attributes=False):
            pos += inc
            if term:
                out.append((term, pos))
        return out

    def tokens(self, text: str, start_position: int = 0) -> list[Token]:
        return [Token(t, p) for t, p in self.term_positions(text, start_position)]

    def terms(self, text: str) -> list[str]:
        return [t.term for t in self.tokens(text)]

    def analyzed_tokens(self, texts: Sequence[str]) -> list[AnalyzedToken]:
        """What the ``_analyze`` API lists for ``texts``: positions and offsets continue from one text to
        the next with Elasticsearch's gaps (``POSITION_INCREMENT_GAP`` positions, one offset)."""
        out: list[AnalyzedToken] = []
        last_position, last_offset = -1, 0
        for text in texts:
            utf16 = _utf16_offsets(text)
            for term, inc, attributes in self.stream(text):
                assert attributes is not None
                start, end, kind, length = attributes
                last_position += inc
                if term:
                    out.append(AnalyzedToken(term, last_offset + utf16(start), last_offset + utf16(end), kind,
                                             last_position, length))
            last_offset += utf16(len(text)) + 1
            last_position += POSITION_INCREMENT_GAP
        return out


#: Lucene CJKAnalyzer's default stop words (Elasticsearch's ``cjk`` analyzer): the English set
#: without "an", with "s", "t" and "www".
CJK_STOP_WORDS = (ENGLISH_STOP_WORDS - {"an"}) | {"s", "t", "www"}


def _stop_words(words: frozenset[str]) -> Callable[[Stream], Stream]:
    return lambda stream: stop_filter(stream, words)


def cjk_analyzer(name: str = "cjk", stopwords: frozenset[str] = CJK_STOP_WORDS) -> Analyzer:
    """Elasticsearch's ``cjk`` analyzer: standard tokenizer, width folding, lowercase, CJK bigrams, stop words."""
    return Analyzer(name, standard_tokens,
                    (cjk_width_filter, lowercase_filter, cjk_bigram_filter, _stop_words(stopwords)))


BUILTIN_ANALYZERS: dict[str, Analyzer] = {
    "standard": Analyzer("standard", standard_tokens, (lowercase_filter,)),
    "english": Analyzer(
        "english",
        standard_tokens,
        (english_possessive_filter, lowercase_filter, stop_filter, porter_stem_filter),
    ),
    "cjk": cjk_analyzer(),
    "simple": Analyzer("simple", lowercase_tokens),
    "stop": Analyzer("stop", lowercase_tokens, (stop_filter,)),
    "whitespace": Analyzer("whitespace", whitespace_tokens),
    "keyword": Analyzer("keyword", keyword_tokens),
}


def _stopword_set(value: Any, default: frozenset[str] = ENGLISH_STOP_WORDS) -> frozenset[str]:
    if value is None:
        return default
    if value == "_english_":
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


def _build_tokenizer(name: Any, analysis: dict) -> Callable[[str], list[RawToken]]:
    custom = name if isinstance(name, dict) else analysis.get("tokenizer", {}).get(name)
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
    "cjk_width": cjk_width_filter,
    "cjk_bigram": cjk_bigram_filter,
}


def _cjk_bigram_from(custom: dict) -> Callable[[Stream], Stream]:
    ignored = custom.get("ignored_scripts") or []
    if isinstance(ignored, str):
        ignored = [ignored]
    types = frozenset(t for script, t in CJK_SCRIPT_TYPES.items() if script not in ignored)
    unigrams = custom.get("output_unigrams", False)
    if isinstance(unigrams, str):
        unigrams = unigrams.lower() == "true"
    return _reads_attributes(lambda s, _t=types, _u=bool(unigrams): cjk_bigram_filter(s, _t, _u))


def _build_filter(name: Any, analysis: dict) -> Callable[[Stream], Stream]:
    custom = name if isinstance(name, dict) else analysis.get("filter", {}).get(name)
    if custom is None:
        if name in _SIMPLE_FILTERS:
            return _SIMPLE_FILTERS[name]
        raise EsError(400, "illegal_argument_exception", f"failed to find global filter under [{name}]")
    kind = custom.get("type", name)
    if kind == "stop":
        words = _stopword_set(custom.get("stopwords"))
        ignore_case = bool(custom.get("ignore_case", False))
        return lambda s, _w=words, _i=ignore_case: stop_filter(s, _w, _i)
    if kind == "cjk_bigram":
        return _cjk_bigram_from(custom)
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


def _custom_analyzer(name: str, definition: dict, analysis: dict) -> Analyzer:
    """A ``custom`` analyzer: a tokenizer and filters named in the index settings (or defined inline)."""
    tokenizer = _build_tokenizer(definition.get("tokenizer", "standard"), analysis)
    filter_names = definition.get("filter", [])
    if isinstance(filter_names, (str, dict)):
        filter_names = [filter_names]
    return Analyzer(name, tokenizer, tuple(_build_filter(f, analysis) for f in filter_names))


def _configured_builtin(name: str, kind: str, custom: dict) -> Analyzer:
    """A built-in analyzer type configured in the index settings (``stopwords`` of standard, stop, cjk)."""
    if "stopwords" in custom and kind in ("standard", "stop", "cjk"):
        if kind == "cjk":
            return cjk_analyzer(name, _stopword_set(custom["stopwords"], CJK_STOP_WORDS))
        words = _stopword_set(custom["stopwords"])
        tok = standard_tokens if kind == "standard" else lowercase_tokens
        return Analyzer(name, tok, (lowercase_filter, _stop_words(words)))
    if kind in BUILTIN_ANALYZERS:
        return BUILTIN_ANALYZERS[kind]
    raise EsError(400, "illegal_argument_exception", f"Unknown analyzer type [{kind}] for [{name}]")


def get_analyzer(name: str, index_settings: dict | None = None) -> Analyzer:
    """Resolve an analyzer name: custom analyzers of the index first, then the built-ins."""
    analysis = _analysis_settings(index_settings)
    custom = analysis.get("analyzer", {}).get(name)
    if custom is not None:
        kind = custom.get("type", "custom")
        if kind != "custom":
            return _configured_builtin(name, kind, custom)
        return _custom_analyzer(name, custom, analysis)
    builtin = BUILTIN_ANALYZERS.get(name)
    if builtin is None:
        raise EsError(400, "illegal_argument_exception", f"failed to find analyzer [{name}]")
    return builtin


def request_analyzer(body: dict, index_settings: dict | None = None) -> Analyzer | None:
    """The analyzer an ``_analyze`` request builds from ``tokenizer`` and ``filter`` (names of the index
    settings or inline definitions), or None when it names none."""
    if "tokenizer" not in body and "filter" not in body:
        return None
    definition = {"tokenizer": body.get("tokenizer", "keyword"), "filter": body.get("filter", [])}
    return _custom_analyzer("_anonymous_", definition, _analysis_settings(index_settings))


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
        stream: Stream = [(text, 1, (0, len(text), WORD, 1))]
        for f in filters:
            stream = f(stream)
        return stream[0][0] if stream else text

    return normalize
