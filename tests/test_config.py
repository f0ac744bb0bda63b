"""SemanticConfig and ConnectionSettings: validation, text building, secrets kept out of output."""

from __future__ import annotations

import pytest

from es_semantic.config import (
    MAX_JSON_DEPTH,
    META_KEY,
    ConnectionSettings,
    SemanticConfig,
    check_index_name,
    parse_index_options,
    parse_json_object,
    redact,
    redact_url,
)
from es_semantic.errors import ConfigError, InvalidIndexName, InvalidValue, NotConfigured


def test_defaults_match_qwen3_embedding():
    config = SemanticConfig()
    assert config.model == "Qwen/Qwen3-Embedding-0.6B"
    assert config.dims == 1024
    assert config.info_field == "embedding_info"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"dims": 0}, "dims must be an integer between 1 and 4096"),
        ({"dims": 5000}, "dims must be an integer between 1 and 4096"),
        ({"dims": True}, "dims must be an integer"),
        ({"similarity": "euclid"}, "unknown similarity 'euclid'"),
        ({"text_fields": ()}, "at least one text field"),
        ({"text_fields": ("question", "question")}, "repeat"),
        ({"vector_field": "_vec"}, "invalid vector field '_vec'"),
        ({"vector_field": "question"}, "is es-semantic's own vector field 'question'"),
        ({"text_fields": ("question", "embedding_info")}, "own bookkeeping field 'embedding_info'"),
        ({"text_fields": ("embedding.x",)}, "own vector field 'embedding'"),
        ({"model": " "}, "model must be a non-empty"),
        ({"text_template": "{title}"}, "may only use the text fields"),
        ({"text_template": "{question"}, "not a valid format string"),
        ({"index_options": {"type": "quantum"}}, "unknown index options type 'quantum'"),
        ({"schema_version": 99}, "newer es-semantic"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(changes, message):
    with pytest.raises(ConfigError, match=message):
        SemanticConfig(**changes)


def test_index_options_validation():
    assert parse_index_options("hnsw", m=32, ef_construction=200) == {"type": "hnsw", "m": 32, "ef_construction": 200}
    with pytest.raises(ConfigError, match="applies to HNSW"):
        parse_index_options("flat", m=16)
    with pytest.raises(ConfigError, match=">= 2"):
        parse_index_options("int8_hnsw", m=1)


def test_build_text_joins_non_empty_fields_in_order():
    config = SemanticConfig(text_fields=("question", "answer", "extra.note"))
    source = {"answer": "Use the reset link.", "question": "Forgot password?", "extra": {"note": None}}
    assert config.build_text(source) == "Forgot password?\nUse the reset link."
    assert config.build_text({"question": ["a", "b"], "answer": 3}) == "a\nb\n3"
    assert config.build_text({}) == ""


def test_build_text_with_template():
    config = SemanticConfig(text_template="Q: {question}\nA: {answer}")
    assert config.build_text({"question": "q1", "answer": "a1"}) == "Q: q1\nA: a1"
    assert config.build_text({"question": "q1"}) == "Q: q1\nA: "


@pytest.mark.parametrize("template, placeholder", [
    ("{question:>300000000}", "{question:>300000000}"),
    ("Q: {question!r}", "{question!r}"),
    ("{question[0]}", "{question[0]}"),
    ("{}", "{}"),
    ("{0}", "{0}"),
    ("{question:{answer}}", "{question:{answer}}"),
])
def test_a_template_takes_plain_field_references_only(template, placeholder):
    with pytest.raises(ConfigError) as refused:
        SemanticConfig(text_template=template)
    message = str(refused.value)
    assert f"placeholder {placeholder!r} is not a plain field reference" in message and "\n" not in message


def test_a_template_reads_nested_fields_and_escaped_braces():
    config = SemanticConfig(text_fields=("meta.title", "answer"), text_template="{{{meta.title}}} {answer}")
    assert config.build_text({"meta": {"title": "T"}, "answer": "a"}) == "{T} a"
    with pytest.raises(ConfigError, match=r"names 'question.upper'; it may only use the text fields"):
        SemanticConfig(text_template="{question.upper}")


def test_non_text_values_become_json_and_objects_are_left_out_and_named():
    config = SemanticConfig(text_fields=("question", "answer", "flag", "meta", "tags"))
    source = {"question": "q", "answer": 2.5, "flag": True, "meta": {"author": "x"},
              "tags": ["a", 7, False, {"deep": 1}, None]}
    skipped: set[str] = set()
    assert config.build_text(source, skipped) == "q\n2.5\ntrue\na\n7\nfalse"
    assert skipped == {"meta", "tags"}
    assert config.build_text({"flag": False, "answer": 10**20}) == "100000000000000000000\nfalse"
    nested: set[str] = set()
    assert SemanticConfig(text_fields=("a.b",)).build_text({"a": [{"b": {"c": 1}}, {"b": "t"}]}, nested) == "t"
    assert nested == {"a.b"}


def test_meta_round_trip_and_unknown_keys():
    config = SemanticConfig(model="/models/x", dims=384, text_fields=("title", "text"), query_instruction="")
    mapping = {"_meta": {META_KEY: config.to_meta(), "other_tool": {"x": 1}}}
    assert SemanticConfig.from_mapping(mapping) == config
    with pytest.raises(NotConfigured) as caught:
        SemanticConfig.from_mapping({"properties": {}}, index="faq")
    assert caught.value.index == "faq" and str(caught.value) == "index 'faq' has no es-semantic configuration"
    meta = config.to_meta() | {"future_setting": 1}
    with pytest.raises(ConfigError, match="future_setting"):
        SemanticConfig.from_meta(meta, index="faq")


def test_connection_settings_from_env_and_validation():
    env = {"ES_URL": "https://es.example:9200", "ES_USERNAME": "elastic", "ES_PASSWORD": "s3cret-pw"}
    settings = ConnectionSettings.from_env(env)
    assert settings.client_kwargs()["basic_auth"] == ("elastic", "s3cret-pw")
    assert ConnectionSettings.from_env(env, url="http://other:9200").url == "http://other:9200"
    with pytest.raises(ConfigError, match="needs both a username and a password"):
        ConnectionSettings.from_env({"ES_USERNAME": "elastic"})
    with pytest.raises(ConfigError, match="invalid Elasticsearch URL"):
        ConnectionSettings(url="localhost:9200")
    with pytest.raises(ConfigError, match="either an API key or a username"):
        ConnectionSettings(api_key="k" * 20, username="u", password="p")
    with pytest.raises(ConfigError, match="does not exist"):
        ConnectionSettings(ca_certs="/no/such/ca.pem")


def test_secrets_never_in_repr_or_messages():
    settings = ConnectionSettings(url="https://user:pw123@es.example:9200", api_key="APIKEY-abcdef")
    assert "APIKEY-abcdef" not in repr(settings)
    assert "pw123" not in settings.describe()
    assert redact("failed with APIKEY-abcdef at https://user:pw123@es.example:9200", settings) == (
        "failed with *** at https://***@es.example:9200"
    )
    basic = ConnectionSettings(username="elastic", password="hunter22")
    assert "hunter22" not in repr(basic) and "password='***'" in repr(basic)
    in_url = ConnectionSettings(url="https://elastic:S3cretPW@host:9200")
    assert "S3cretPW" not in repr(in_url) and "https://***@host:9200" in repr(in_url)
    assert "S3cretPW" not in str(in_url)


def test_public_api_resolves_lazily_and_matches_all():
    import subprocess
    import sys

    import es_semantic
    from es_semantic import errors

    assert set(es_semantic.__all__) - {"__version__"} == set(es_semantic._LAZY) | {
        name for name in vars(errors) if name[0].isupper() and name != "Any"}
    for name in es_semantic._LAZY:
        assert getattr(es_semantic, name) is not None
    # Importing the package (and the CLI) must not load torch.
    probe = "import sys, es_semantic, es_semantic.cli.main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("url, secret, shown", [
    ("http://elastic:pa/ssw0rd@127.0.0.1:1", "ssw0rd", "http://***@127.0.0.1:1"),
    ("http://elastic:p@ssW0rd@127.0.0.1:1", "ssW0rd", "http://***@127.0.0.1:1"),
    ("elastic:S3cretPW@127.0.0.1:19431", "S3cretPW", "***@127.0.0.1:19431"),
    ("https://es.example:9200/?api_key=S3cretPW&x=1", "S3cretPW", "https://es.example:9200/?api_key=***&x=***"),
])
def test_redact_url_hides_up_to_the_last_at_without_a_scheme_and_query_values(url, secret, shown):
    assert redact_url(url) == shown
    text = redact_url(f"Could not parse URL '{url}', see bob@example.com")
    assert secret not in text and f"'{shown}'" in text and "bob@example.com" in text


@pytest.mark.parametrize("url, words", [
    ("http://localhost:abc", "port must be a number from 1 to 65535"),
    ("http://127.0.0.1:99999", "port must be a number from 1 to 65535"),
    ("http://localhost:92OO", "port must be a number from 1 to 65535"),
    ("http://[::1", "unclosed '['"),
    ("http://a:1,http://b:2", "give one URL"),
    ("http://elastic:pa/ssw0rd@127.0.0.1:1", "percent-encode"),
    ("elastic:S3cretPW@127.0.0.1:19431", "expected http(s)://host[:port]"),
])
def test_malformed_urls_are_config_errors_naming_the_argument(url, words):
    with pytest.raises(ConfigError) as caught:
        ConnectionSettings(url=url)
    message = str(caught.value)
    assert words in message and caught.value.option == "url" and "\n" not in message
    assert "S3cretPW" not in message and "ssw0rd" not in message and "S3cretPW" not in caught.value.value


def test_upper_case_scheme_is_accepted():
    assert ConnectionSettings(url="HTTP://localhost:9200").url == "http://localhost:9200"
    assert ConnectionSettings(url="Https://h:9243").client_kwargs()["hosts"] == ["https://h:9243"]


@pytest.mark.parametrize("index, reason", [
    ("", "it is empty"), ("*", "it contains '*'"), ("faq,other", "it contains ','"), ("_all", "it starts with '_'"),
    ("../b", "it contains '/'"), ("..", "it is '..'"), ("-x", "it starts with '-'"), ("a" * 256, "over 255 bytes"),
    (None, "as a string"), (["b"], "as a string"),
])
def test_index_names_that_name_no_one_index_are_refused(index, reason):
    with pytest.raises(InvalidIndexName) as caught:
        check_index_name(index)
    assert caught.value.index == index and caught.value.option == "index" and reason in str(caught.value)
    assert str(caught.value).startswith(f"invalid index name {index!r}: ") and "es-semantic" not in str(caught.value)


def test_index_names_of_one_index_or_alias_pass():
    for name in ("faq", "faq-v2", "my.index", "Faq-Alias", "a" * 255):
        assert check_index_name(name) == name


@pytest.mark.parametrize("text, words", [
    ("[" * 3000 + "]" * 3000, f"nests deeper than {MAX_JSON_DEPTH} levels"),
    ('{"a":' * 3000 + "1" + "}" * 3000, f"nests deeper than {MAX_JSON_DEPTH} levels"),
    ("{nope", "is not valid JSON"),
    ("[1]", "must be a JSON object"),
])
def test_json_options_refuse_deep_nesting_and_non_objects(text, words):
    with pytest.raises(ConfigError, match=words) as caught:
        parse_json_object(text, "query")
    assert caught.value.option == "query"


def test_json_option_depth_counts_brackets_outside_strings_only():
    text = '{"a": "' + "[" * 500 + '\\"{", "b": [[1]]}'
    assert parse_json_object(text, "query")["b"] == [[1]]
    assert parse_json_object('{"a":' * MAX_JSON_DEPTH + "1" + "}" * MAX_JSON_DEPTH, "query")


def test_invalid_value_carries_the_option_value_and_what_it_takes():
    with pytest.raises(InvalidValue) as caught:
        ConnectionSettings(request_timeout=float("nan"))
    error = caught.value
    assert (error.option, error.expected) == ("request_timeout", "a number of seconds > 0")
    assert str(error) == "request_timeout must be a number of seconds > 0, got nan"


def test_errors_are_exported_from_the_package():
    import es_semantic
    from es_semantic import ConfigError as Exported
    from es_semantic import EsSemanticError

    assert Exported is ConfigError and issubclass(InvalidIndexName, EsSemanticError)
    for name in ("IndexNotFound", "NotConfigured", "ConnectionFailed", "LockHeld", "ModelLoadError"):
        assert issubclass(getattr(es_semantic, name), EsSemanticError)
