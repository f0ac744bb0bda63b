"""Language sub-fields: which analyzers a text field gets next to its own, and what BM25 searches.

A text field keeps its own analysis (usually ``standard``: single CJK characters, Unicode words)
and gets one multi-field per language group of the index, analysed for that language:

* ``zh``, ``ja``, ``ko`` -> ``<field>.cjk`` (Elasticsearch's ``cjk`` analyzer: overlapping CJK bigrams);
* ``en`` -> ``<field>.english`` (stemming and English stop words).

The languages are stored in the index ``_meta`` (``SemanticConfig.languages``); ``install-mappings``
detects them from a sample of the documents unless ``--languages`` names them. The BM25 leg of
``hybrid_search`` sums the scores of a field and its ``.cjk`` sub-field and takes the best of
these and the other fields (:func:`summed_per_field`): chosen on baoxianzhidao's and SciFact's
train parts (``scripts/eval_chinese.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import regex

from .errors import ConfigError

#: Language code -> the sub-field (and analyzer) that serves it.
LANGUAGE_SUBFIELDS = {"zh": "cjk", "ja": "cjk", "ko": "cjk", "en": "english"}
#: Sub-field name -> its mapping (the analyzer has the sub-field's name).
SUBFIELD_MAPPINGS = {name: {"type": "text", "analyzer": name} for name in sorted(set(LANGUAGE_SUBFIELDS.values()))}
#: ``hybrid_search``'s BM25 ``multi_match_type`` on an index that records languages, as
#: :func:`summed_per_field` builds it (not an Elasticsearch type): a text field's score is summed with
#: its ``.cjk`` sub-field's (bigrams add to the single characters of the standard analyzer: nDCG@10
#: 0.393 on baoxianzhidao against 0.359 for the better of the two), while ``.english`` competes with
#: its field (stems repeat the same words: summing costs SciFact train 0.682 -> 0.678), and so do the
#: text fields with each other (``dis_max``).
SUM_PER_FIELD = "sum_per_field"
#: The sub-fields whose scores are added to their field's (the others compete with it).
SUMMED_SUBFIELDS = frozenset({"cjk"})

# What detection counts: letters by script, and English function words among Latin words.
_HAN = regex.compile(r"\p{Script=Han}")
_KANA = regex.compile(r"[\p{Script=Hiragana}\p{Script=Katakana}]")
_HANGUL = regex.compile(r"\p{Script=Hangul}")
_LATIN_WORD = regex.compile(r"\p{Script=Latin}+")
_ENGLISH_MARKERS = frozenset({"the", "and", "of", "to", "in", "is", "for", "with", "that", "are", "this", "on",
                              "what", "how", "can", "you", "it", "be", "by", "or", "not"})
#: A language is detected when its script holds at least this share of the sample's letters.
MIN_SHARE = 0.1


def check_languages(value: Iterable[str]) -> tuple[str, ...]:
    """``value`` as a sorted tuple of known language codes, or a ConfigError naming the unknown ones."""
    codes = tuple(sorted({str(code).strip().lower() for code in value}))
    unknown = [code for code in codes if code not in LANGUAGE_SUBFIELDS]
    if unknown or not codes:
        raise ConfigError(f"unknown language {', '.join(map(repr, unknown)) or 'list (empty)'}; "
                          f"use some of: {', '.join(LANGUAGE_SUBFIELDS)}")
    return codes


def parse_languages(text: str) -> tuple[str, ...]:
    """``"zh,en"`` -> ``("en", "zh")``."""
    return check_languages(part for part in text.split(",") if part.strip())


def detect_languages(texts: Iterable[str]) -> tuple[str, ...]:
    """The languages of a sample of document texts, by the scripts of their letters: Han (zh; ja
    where Kana are frequent too), Hangul (ko), and English where Latin words carry English function
    words. Empty when the sample holds no letters of these."""
    han = kana = hangul = latin = english = 0
    for text in texts:
        han += len(_HAN.findall(text))
        kana += len(_KANA.findall(text))
        hangul += len(_HANGUL.findall(text))
        for word in _LATIN_WORD.findall(text):
            latin += len(word)
            english += len(word) if word.lower() in _ENGLISH_MARKERS else 0
    total = han + kana + hangul + latin
    if not total:
        return ()
    found = set()
    if kana / total >= MIN_SHARE / 2:
        found.add("ja")
    elif han / total >= MIN_SHARE:
        found.add("zh")
    if hangul / total >= MIN_SHARE:
        found.add("ko")
    # function words are about a fifth of English running text (letters counted)
    if latin / total >= MIN_SHARE and english / latin >= 0.05:
        found.add("en")
    return tuple(sorted(found))


def subfields_for(languages: Sequence[str] | None) -> tuple[str, ...]:
    """The sub-field names that serve ``languages`` (None: every language sub-field)."""
    codes = LANGUAGE_SUBFIELDS if languages is None else languages
    return tuple(sorted({LANGUAGE_SUBFIELDS[code] for code in codes}))


def bm25_fields(text_fields: Sequence[str], subfields: Mapping[str, Sequence[str]],
                languages: Sequence[str] | None) -> list[str]:
    """The BM25 leg's fields: each text field, then the language sub-fields it has for ``languages``
    (None, an index that records none: whichever language sub-fields the mapping has)."""
    wanted = subfields_for(languages)
    extra = [f"{name}.{sub}" for name in text_fields for sub in wanted if sub in subfields.get(name, ())]
    return [*text_fields, *extra]


def missing_subfields(prop: Mapping[str, Any], languages: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The language sub-fields a text field's mapping ``prop`` lacks; a ConfigError where it has one by
    that name defined otherwise (renaming it is the user's call)."""
    have = prop.get("fields") or {}
    missing = {}
    for sub in subfields_for(languages):
        wanted = SUBFIELD_MAPPINGS[sub]
        if sub not in have:
            missing[sub] = dict(wanted)
        elif {k: have[sub].get(k) for k in wanted} != wanted:
            raise ConfigError(f"sub-field {sub!r} exists with another definition ({dict(have[sub])}), not {wanted}")
    return missing


def _field_name(spec: str) -> str:
    return spec.split("^", 1)[0]


def summed_per_field(text: str, fields: Sequence[str]) -> dict[str, Any]:
    """The BM25 query for :data:`SUM_PER_FIELD`: each field's score summed with those of its
    :data:`SUMMED_SUBFIELDS` in ``fields`` (``question`` with ``question.cjk``), the best of these sums
    and of the other fields counting (``dis_max``). Fields given with a boost (``question^2``) keep it."""
    names = {_field_name(spec) for spec in fields}
    groups: dict[str, list[str]] = {}
    for spec in fields:
        parent, _, sub = _field_name(spec).rpartition(".")
        joins = parent in names and sub in SUMMED_SUBFIELDS
        groups.setdefault(parent if joins else _field_name(spec), []).append(spec)
    clauses = [{"multi_match": {"query": text, "fields": group, "type": "most_fields"}} for group in groups.values()]
    return clauses[0] if len(clauses) == 1 else {"dis_max": {"queries": clauses}}
