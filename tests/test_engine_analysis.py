"""Analyzers of the test server: tokenizers, filters, Porter stemmer, custom analyzers."""

from __future__ import annotations

import pytest

from es_semantic.testing.analysis import ENGLISH_STOP_WORDS, analyze, get_analyzer
from es_semantic.testing.errors import EsError
from es_semantic.testing.porter import porter_stem


def test_standard_tokenizer_follows_unicode_word_boundaries():
    text = "The U.S.A. costs $3.14, 1,000 items; don't e-mail foo_bar abc123"
    assert analyze(text, "standard") == [
        "the",
        "u.s.a",
        "costs",
        "3.14",
        "1,000",
        "items",
        "don't",
        "e",
        "mail",
        "foo_bar",
        "abc123",
    ]


def test_standard_tokenizer_cjk_and_kana():
    # Each ideograph and each hiragana is a token; a katakana run stays one word.
    assert analyze("日本語テキストひらがな", "standard") == ["日", "本", "語", "テキスト", "ひ", "ら", "が", "な"]
    assert analyze("한국어 café Naïve", "standard") == ["한국어", "café", "naïve"]


def test_standard_splits_tokens_longer_than_max_token_length():
    tokens = analyze("a" * 600, "standard")
    assert [len(t) for t in tokens] == [255, 255, 90]


def test_english_analyzer_possessive_stop_and_porter():
    assert analyze("The dog's owners were running to the parks quickly", "english") == [
        "dog",
        "owner",
        "were",
        "run",
        "park",
        "quickli",
    ]


def test_stop_words_leave_position_gaps():
    tokens = get_analyzer("english").tokens("the quick and the dead")
    assert [(t.term, t.position) for t in tokens] == [("quick", 1), ("dead", 4)]


def test_simple_stop_whitespace_keyword():
    assert analyze("Hello, World-42 x", "simple") == ["hello", "world", "x"]
    assert analyze("The Cat in the hat", "stop") == ["cat", "hat"]
    assert analyze("Hello, World-42", "whitespace") == ["Hello,", "World-42"]
    assert analyze("New York", "keyword") == ["New York"]


def test_english_stop_word_set_is_lucenes():
    assert len(ENGLISH_STOP_WORDS) == 33
    assert {"a", "such", "will", "with"} <= ENGLISH_STOP_WORDS
    assert "i" not in ENGLISH_STOP_WORDS


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        ("caresses", "caress"),
        ("ponies", "poni"),
        ("ties", "ti"),
        ("cats", "cat"),
        ("feed", "feed"),
        ("agreed", "agre"),
        ("plastered", "plaster"),
        ("motoring", "motor"),
        ("sing", "sing"),
        ("conflated", "conflat"),
        ("troubled", "troubl"),
        ("sized", "size"),
        ("hopping", "hop"),
        ("falling", "fall"),
        ("filing", "file"),
        ("happy", "happi"),
        ("sky", "sky"),
        ("relational", "relat"),
        ("conditional", "condit"),
        ("valenci", "valenc"),
        ("digitizer", "digit"),
        ("conformabli", "conform"),
        ("radicalli", "radic"),
        ("vietnamization", "vietnam"),
        ("predication", "predic"),
        ("operator", "oper"),
        ("feudalism", "feudal"),
        ("decisiveness", "decis"),
        ("hopefulness", "hope"),
        ("formaliti", "formal"),
        ("sensibiliti", "sensibl"),
        ("triplicate", "triplic"),
        ("formative", "form"),
        ("electriciti", "electr"),
        ("goodness", "good"),
        ("revival", "reviv"),
        ("allowance", "allow"),
        ("airliner", "airlin"),
        ("adjustable", "adjust"),
        ("replacement", "replac"),
        ("adoption", "adopt"),
        ("communism", "commun"),
        ("effective", "effect"),
        ("bowdlerize", "bowdler"),
        ("probate", "probat"),
        ("rate", "rate"),
        ("cease", "ceas"),
        ("controll", "control"),
        ("roll", "roll"),
        ("generalizations", "gener"),
        ("oscillators", "oscil"),
        ("is", "is"),
        ("as", "as"),
    ],
)
def test_porter_stemmer_reference_examples(word, stem):
    assert porter_stem(word) == stem


def test_custom_analyzer_from_index_settings():
    settings = {
        "index": {
            "analysis": {
                "filter": {"my_stop": {"type": "stop", "stopwords": ["foo"]}},
                "analyzer": {
                    "folded": {
                        "type": "custom",
                        "tokenizer": "whitespace",
                        "filter": ["lowercase", "asciifolding", "my_stop", "porter_stem"],
                    },
                },
            }
        }
    }
    assert analyze("Café FOO Running", "folded", settings) == ["cafe", "run"]


def test_unknown_analyzer_is_an_error():
    with pytest.raises(EsError) as exc:
        analyze("x", "nope")
    assert exc.value.status == 400
    assert "nope" in exc.value.reason


@pytest.mark.parametrize(
    "text",
    ["a_b __ _a a_ x.y.z 1.2.3 a.1 1,a can't 'quoted' a:b:c 3'4 foo--bar U.S.A. 10;20 e.g., v2.0.1-rc1",
     "Hello, World! (2024) -- the end... #hashtag @user http://x.org/a?b=c 3.14e-5"],
)
def test_ascii_fast_path_equals_unicode_word_boundaries(text):
    from es_semantic.testing.analysis import (
        _TOKEN_CHAR,
        _WORD_BOUNDARY,
        standard_tokenizer,
    )

    unicode_path = [s for s in _WORD_BOUNDARY.split(text) if s and _TOKEN_CHAR.search(s)]
    assert standard_tokenizer(text) == unicode_path
