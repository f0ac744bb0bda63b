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


# --- cjk: expected tokens written by hand and checked against Lucene 4.10's CJKAnalyzer -------


def _listed(analyzer, *texts):
    return [(t.term, t.start_offset, t.end_offset, t.type, t.position) for t in analyzer.analyzed_tokens(list(texts))]


def test_cjk_bigrams_runs_of_chinese_japanese_and_korean_across_scripts():
    text = "我在Tokyo买了保险，テレビ와 한국어!"
    assert _listed(get_analyzer("cjk"), text) == [
        ("我在", 0, 2, "<DOUBLE>", 0),
        ("tokyo", 2, 7, "<ALPHANUM>", 1),
        ("买了", 7, 9, "<DOUBLE>", 2),
        ("了保", 8, 10, "<DOUBLE>", 3),
        ("保险", 9, 11, "<DOUBLE>", 4),
        # Katakana and Hangul touch: one run, so a bigram spans the two scripts
        ("テレ", 12, 14, "<DOUBLE>", 5),
        ("レビ", 13, 15, "<DOUBLE>", 6),
        ("ビ와", 14, 16, "<DOUBLE>", 7),
        ("한국", 17, 19, "<DOUBLE>", 8),
        ("국어", 18, 20, "<DOUBLE>", 9),
    ]


def test_cjk_lone_character_is_a_unigram_and_stop_words_leave_gaps():
    # CJKAnalyzer's stop set has "s", "t" and "www" and not "an"
    assert _listed(get_analyzer("cjk"), "我 是 the www s an") == [
        ("我", 0, 1, "<SINGLE>", 0),
        ("是", 2, 3, "<SINGLE>", 1),
        ("an", 14, 16, "<ALPHANUM>", 5),
    ]


def test_cjk_folds_full_width_latin_and_half_width_katakana():
    assert _listed(get_analyzer("cjk"), "ＡＢＣ　ｄｅｆ１２３ ＨＥＬＬＯ") == [
        ("abc", 0, 3, "<ALPHANUM>", 0),
        ("def123", 4, 10, "<ALPHANUM>", 1),
        ("hello", 11, 16, "<ALPHANUM>", 2),
    ]
    # ｶﾞ becomes one character ガ: the token got shorter, so its grams keep the token's offsets
    assert _listed(get_analyzer("cjk"), "ｶﾀｶﾅｶﾞ ﾃﾚﾋﾞ") == [
        ("カタ", 0, 6, "<DOUBLE>", 0),
        ("タカ", 0, 6, "<DOUBLE>", 1),
        ("カナ", 0, 6, "<DOUBLE>", 2),
        ("ナガ", 0, 6, "<DOUBLE>", 3),
        ("テレ", 7, 11, "<DOUBLE>", 4),
        ("レビ", 7, 11, "<DOUBLE>", 5),
    ]


def test_standard_tokenizer_types_and_utf16_offsets():
    tokens = get_analyzer("standard").analyzed_tokens(["𠮷野家 テキスト ひら 한국어 3.14 abc1"])
    assert [(t.term, t.start_offset, t.end_offset, t.type) for t in tokens] == [
        ("𠮷", 0, 2, "<IDEOGRAPHIC>"),  # outside the BMP: two UTF-16 units, as Java counts
        ("野", 2, 3, "<IDEOGRAPHIC>"),
        ("家", 3, 4, "<IDEOGRAPHIC>"),
        ("テキスト", 5, 9, "<KATAKANA>"),
        ("ひ", 10, 11, "<HIRAGANA>"),
        ("ら", 11, 12, "<HIRAGANA>"),
        ("한국어", 13, 16, "<HANGUL>"),
        ("3.14", 17, 21, "<NUM>"),
        ("abc1", 22, 26, "<ALPHANUM>"),
    ]
    # a circled number is no word (Lucene drops it)
    assert analyze("①发生", "standard") == ["发", "生"]


CJK_SETTINGS = {
    "index": {
        "analysis": {
            "filter": {
                "with_unigrams": {"type": "cjk_bigram", "ignored_scripts": ["katakana", "hiragana"],
                                  "output_unigrams": True},
                "han_only": {"type": "cjk_bigram", "ignored_scripts": ["hiragana", "katakana", "hangul"]},
            },
            "analyzer": {
                "unigrams": {"tokenizer": "standard", "filter": ["cjk_width", "with_unigrams"]},
                "han": {"tokenizer": "standard", "filter": ["han_only"]},
                "plain": {"tokenizer": "standard", "filter": ["cjk_width", "lowercase", "cjk_bigram"]},
                "cjk_no_stop": {"type": "cjk", "stopwords": "_none_"},
            },
        }
    }
}


def test_cjk_bigram_filter_output_unigrams_and_ignored_scripts():
    tokens = get_analyzer("unigrams", CJK_SETTINGS).analyzed_tokens(["日本語テキスト"])
    assert [(t.term, t.type, t.position, t.position_length) for t in tokens] == [
        ("日", "<SINGLE>", 0, 1),
        ("日本", "<DOUBLE>", 0, 2),  # stacked on its first character, spanning two positions
        ("本", "<SINGLE>", 1, 1),
        ("本語", "<DOUBLE>", 1, 2),
        ("語", "<SINGLE>", 2, 1),
        ("テキスト", "<KATAKANA>", 3, 1),  # an ignored script passes as the tokenizer made it
    ]
    assert [(t.term, t.type) for t in get_analyzer("han", CJK_SETTINGS).analyzed_tokens(["ひらがな漢字"])] == [
        ("ひ", "<HIRAGANA>"), ("ら", "<HIRAGANA>"), ("が", "<HIRAGANA>"), ("な", "<HIRAGANA>"),
        ("漢字", "<DOUBLE>"),
    ]


def test_custom_chain_equals_the_cjk_analyzer_but_for_stop_words():
    text = "保险理赔 the ＡＢＣ ｶﾞｲﾄﾞ"
    assert analyze(text, "plain", CJK_SETTINGS) == analyze(text, "cjk_no_stop", CJK_SETTINGS)
    assert analyze(text, "cjk_no_stop", CJK_SETTINGS) == ["保险", "险理", "理赔", "the", "abc", "ガイ", "イド"]
    assert "the" not in analyze(text, "cjk")


def test_analyze_api_lists_types_offsets_positions(es_client):
    es_client.indices.create(index="docs", settings=CJK_SETTINGS, mappings={"properties": {
        "text": {"type": "text", "fields": {"cjk": {"type": "text", "analyzer": "cjk"}}}}})
    body = es_client.indices.analyze(index="docs", field="text.cjk", text=["保险理赔", "ＯＫ"]).body
    assert body["tokens"] == [
        {"token": "保险", "start_offset": 0, "end_offset": 2, "type": "<DOUBLE>", "position": 0},
        {"token": "险理", "start_offset": 1, "end_offset": 3, "type": "<DOUBLE>", "position": 1},
        {"token": "理赔", "start_offset": 2, "end_offset": 4, "type": "<DOUBLE>", "position": 2},
        # the next value: positions jump by the position increment gap, offsets by one
        {"token": "ok", "start_offset": 5, "end_offset": 7, "type": "<ALPHANUM>", "position": 103},
    ]
    inline = es_client.indices.analyze(tokenizer="standard", filter=[{"type": "cjk_bigram", "output_unigrams": True}],
                                       text="中文").body["tokens"]
    assert [(t["token"], t["position"], t.get("positionLength")) for t in inline] == [
        ("中", 0, None), ("中文", 0, 2), ("文", 1, None)]
    named = es_client.indices.analyze(index="docs", analyzer="unigrams", text="ｶﾀ").body["tokens"]
    assert [t["token"] for t in named] == ["カタ"]  # katakana ignored: width-folded, one token, no bigrams
