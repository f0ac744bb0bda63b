"""Command-line usability: one-line messages naming the flag to change, for what a new user gets wrong."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from es_semantic.cli.main import Session, cli


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env)


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


# ------------------------------------------------------------------ 7: Ctrl-C


def test_ctrl_c_says_interrupted(monkeypatch):
    def interrupted(self):
        raise KeyboardInterrupt()

    monkeypatch.setattr(Session, "client", interrupted)
    result = invoke("status", "--index", "faq")
    assert result.exit_code == 130
    assert one_error_line(result) == "error: interrupted"


# ------------------------------------------------------------------ 1: test-server options


def test_test_server_port_in_use_is_a_usage_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("test-server", "--port", str(port))
    assert result.exit_code == 2, result.output
    assert one_error_line(result) == (f"error: port {port} is already in use; pick another --port "
                                      "(0 picks a free one)")
    assert "bug" not in result.output


@pytest.mark.parametrize("args, words", [
    (["--port", "99999"], ["--port", "0<=x<=65535"]),
    (["--port", "-1"], ["--port"]),
    (["--refresh-interval", "abc"], ["--refresh-interval", "'abc' is not a time value", "-1"]),
])
def test_test_server_bad_option_values(args, words):
    result = invoke("test-server", *args)
    assert result.exit_code == 2, result.output
    assert all(word in result.output for word in words), result.output
    assert "unexpected" not in result.output and "bug" not in result.output


# ------------------------------------------------------------------ 2: cloud id and URL

GOOD_CLOUD_ID = "demo:" + __import__("base64").b64encode(b"example.invalid$abc123$def456").decode()


def test_bad_cloud_id_names_the_setting():
    result = invoke("status", "--index", "faq", env={"ES_CLOUD_ID": "not-a-cloud-id", "ES_URL": None})
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "--cloud-id / ES_CLOUD_ID" in line and "unexpected" not in line


@pytest.mark.parametrize("env, args", [
    ({"ES_CLOUD_ID": GOOD_CLOUD_ID, "ES_URL": "http://localhost:9201"}, []),
    ({"ES_CLOUD_ID": GOOD_CLOUD_ID, "ES_URL": None}, ["--es-url", "http://localhost:9201"]),
    ({"ES_CLOUD_ID": None, "ES_URL": "http://localhost:9201"}, ["--cloud-id", GOOD_CLOUD_ID]),
])
def test_cloud_id_and_url_together_are_refused(env, args):
    result = invoke(*args, "status", "--index", "faq", env=env)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "both an Elasticsearch URL and an Elastic Cloud id are set" in line and "--cloud-id / ES_CLOUD_ID" in line


def test_connection_settings_refuse_cloud_id_with_url():
    from es_semantic.config import ConnectionSettings
    from es_semantic.errors import ConfigError

    with pytest.raises(ConfigError, match="set one of them"):
        ConnectionSettings(url="http://es:9200", cloud_id=GOOD_CLOUD_ID)
    with pytest.raises(ConfigError, match="set one of them"):
        ConnectionSettings.from_env({"ES_URL": "http://es:9200", "ES_CLOUD_ID": GOOD_CLOUD_ID})
    assert ConnectionSettings.from_env({"ES_CLOUD_ID": GOOD_CLOUD_ID}).cloud_id == GOOD_CLOUD_ID
    with pytest.raises(ConfigError, match="invalid Elastic Cloud id"):
        ConnectionSettings(cloud_id="demo:" + __import__("base64").b64encode(b"nohost").decode())


@pytest.mark.parametrize("cloud, named, not_named", [(True, "--cloud-id / ES_CLOUD_ID", "--es-url"),
                                                     (False, "--es-url / ES_URL", "--cloud-id")])
def test_unreachable_names_the_setting_used(monkeypatch, cloud, named, not_named):
    import elasticsearch

    from es_semantic import client as client_module
    from es_semantic.config import ConnectionSettings
    from es_semantic.errors import ConnectionFailed

    def refuse(es):
        raise elasticsearch.ConnectionError("Connection refused")

    monkeypatch.setattr(client_module, "server_info", refuse)
    settings = ConnectionSettings(cloud_id=GOOD_CLOUD_ID) if cloud else ConnectionSettings(url="http://127.0.0.1:1")
    with pytest.raises(ConnectionFailed) as caught:
        client_module.connect(settings)
    assert caught.value.reason == "unreachable" and "--" not in str(caught.value)  # the library names no flag
    env = {"ES_CLOUD_ID": GOOD_CLOUD_ID, "ES_URL": None} if cloud else {"ES_URL": "http://127.0.0.1:1"}
    line = one_error_line(invoke("status", "--index", "faq", env=env))
    assert f"connection refused); check {named} and that the cluster is running" in line, line
    assert not_named not in line


# ------------------------------------------------------------------ 11-13: search options, names


@pytest.fixture
def faq_index(es_client, es_server):
    """An index 'faq' (behind the alias faq, over faq-v1) configured for a model never loaded here."""
    from es_semantic.config import SemanticConfig
    from es_semantic.mappings import install_mappings
    from es_semantic.search import clear_caches

    install_mappings(es_client, "faq", SemanticConfig(model="org/not-loaded", dims=4))
    clear_caches()
    yield es_server.url
    clear_caches()


def test_missing_index_suggests_a_close_name_before_creating_it(faq_index):
    result = invoke("--es-url", faq_index, "status", "--index", "faqs", "--no-model")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "index 'faqs' not found; did you mean 'faq'? If not, create it with: " in line, line
    far = invoke("--es-url", faq_index, "status", "--index", "zebra", "--no-model")
    assert "did you mean" not in far.output and "create it with" in far.output


def test_https_against_plain_http_says_try_http(es_server):
    # the test server speaks plain http: a TLS client hello gets an http answer
    url = es_server.url.replace("http://", "https://")
    result = invoke("--es-url", url, "status", "--index", "faq", "--no-model")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "the server may be speaking plain http; try " + es_server.url in line, line


# ------------------------------------------------------------------ 9: connection options after the command


def test_connection_options_after_the_subcommand(faq_index):
    result = invoke("status", "--index", "faq", "--no-model", "--es-url", faq_index, env={"ES_URL": None})
    assert result.exit_code == 0, result.output
    # after the command wins over before it (and over ES_URL)
    result = invoke("--es-url", "http://127.0.0.1:1", "status", "--index", "faq", "--no-model",
                    "--es-url", faq_index, "--request-timeout", "5", env={"ES_URL": "http://127.0.0.1:2"})
    assert result.exit_code == 0, result.output
    wrong = invoke("--es-url", faq_index, "status", "--index", "faq", "--no-model", "--es-url", "http://127.0.0.1:1")
    assert wrong.exit_code == 2 and "http://127.0.0.1:1" in one_error_line(wrong)


def test_connection_options_after_every_connecting_command():
    for name, command in cli.commands.items():
        names = {p.name for p in command.params}
        if name in ("test-server", "demo"):
            assert "es_url" not in names
        else:
            assert {"es_url", "api_key", "cloud_id", "insecure", "request_timeout"} <= names, name


# ------------------------------------------------------------------ 10: environment variables


def test_options_are_read_from_es_semantic_command_option_variables(faq_index):
    result = invoke("--es-url", faq_index, "status", "--index", "faq", env={"ES_SEMANTIC_STATUS_NO_MODEL": "1"})
    assert result.exit_code == 0, result.output
    assert "model not loaded" in result.output
    bad = invoke("reindex", "--index", "faq", env={"ES_SEMANTIC_REINDEX_WRITERS": "abc"})
    assert bad.exit_code == 2 and "'abc' is not a valid integer" in bad.output and "(from" not in bad.output


def test_connection_options_read_their_own_variables():
    group = {p.name: p.envvar for p in cli.params}
    assert {group[name] for name in ("es_url", "api_key", "username", "password", "cloud_id", "ca_certs")} == {
        "ES_URL", "ES_API_KEY", "ES_USERNAME", "ES_PASSWORD", "ES_CLOUD_ID", "ES_CA_CERTS"}


# ------------------------------------------------------------------ QA pass 2


@pytest.mark.parametrize("url, secret", [
    ("http://elastic:pa/ssw0rd@127.0.0.1:1", "ssw0rd"),
    ("http://elastic:p@ssW0rd@127.0.0.1:1", "ssW0rd"),
    ("elastic:S3cretPW@127.0.0.1:19431", "S3cretPW"),
])
def test_passwords_in_urls_never_printed_nor_in_the_report(url, secret, tmp_path):
    report = tmp_path / "r.json"
    result = invoke("--es-url", url, "reindex", "--index", "sci", "--report", str(report))
    assert result.exit_code == 2, result.output
    assert secret not in result.output and "unexpected" not in result.output
    assert "--es-url" in one_error_line(result)
    text = report.read_text()
    assert secret not in text and "***@" in text


def test_report_of_a_failed_connection_holds_no_password(tmp_path):
    report = tmp_path / "r.json"
    result = invoke("--es-url", "http://elastic:p@ssW0rd@127.0.0.1:1", "reindex", "--index", "sci",
                    "--report", str(report), "--no-progress")
    assert result.exit_code == 2, result.output
    assert "ssW0rd" not in result.output and "ssW0rd" not in report.read_text()


def test_secrets_from_the_password_option_are_kept_out_of_a_refused_settings_message(monkeypatch):
    from es_semantic.config import ConnectionSettings
    from es_semantic.errors import ConfigError

    def refuse(settings):
        raise ConfigError(f"bad settings for {settings.password}")

    monkeypatch.setattr(ConnectionSettings, "__post_init__", refuse)
    result = invoke("--username", "u", "--password", "hunter22", "status", "--index", "x")
    assert result.exit_code == 2 and "hunter22" not in result.output, result.output


@pytest.mark.parametrize("url, env, words", [
    ("http://localhost:abc", None, "port must be a number"),
    ("http://127.0.0.1:99999", None, "port must be a number"),
    ("http://[::1", None, "unclosed '['"),
    ("http://a:1,http://b:2", None, "give one URL"),
    (None, {"ES_URL": "http://localhost:92OO"}, "port must be a number"),
    (None, {"ES_URL": "localhost:9200"}, "expected http(s)://host[:port]"),
])
def test_malformed_urls_exit_2_naming_the_setting(url, env, words):
    args = ["--es-url", url] if url else []
    result = invoke(*args, "status", "--index", "faq", env=env)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.endswith("(--es-url / ES_URL)") and words in line and "unexpected" not in line


def test_upper_case_scheme_connects(faq_index):
    result = invoke("status", "--index", "faq", "--no-model", "--es-url", faq_index.replace("http://", "HTTP://"))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("value", ["true", "0.1.0"])
def test_version_is_not_read_from_the_environment(value, monkeypatch):
    def unreachable(self):
        raise RuntimeError("reached the command")

    monkeypatch.setattr(Session, "client", unreachable)
    result = invoke("status", "--index", "x", env={"ES_SEMANTIC_VERSION": value})
    assert "reached the command" in result.output, result.output
    assert invoke("--version").exit_code == 0


@pytest.mark.parametrize("value, expected", [("true", True), ("YES", True), ("1", True), ("false", None),
                                             ("no", None), ("faq-v9", "faq-v9")])
def test_new_index_from_the_environment_true_means_the_flag(value, expected, monkeypatch):
    import importlib

    reindex_module = importlib.import_module("es_semantic.reindexing")
    seen = {}

    def fake_reindex(es, index, options, progress=None):
        seen["new_index"] = options.new_index
        raise RuntimeError("stop here")

    monkeypatch.setattr(Session, "client", lambda self: object())
    monkeypatch.setattr(reindex_module, "reindex", fake_reindex)
    invoke("reindex", "--index", "trunc", "--no-progress", env={"ES_SEMANTIC_REINDEX_NEW_INDEX": value})
    assert seen["new_index"] == expected


def test_bulk_bytes_refused_by_its_option():
    for env, args in (({"ES_SEMANTIC_REINDEX_BULK_BYTES": "huge"}, []), ({}, ["--bulk-bytes", "huge"])):
        result = invoke("reindex", "--index", "faq", *args, env=env)
        assert result.exit_code == 2
        assert ("Invalid value for '--bulk-bytes': must be a size such as 8mb, 512kb or 1000000, got 'huge'"
                in result.output)


def test_request_timeout_messages_name_the_option():
    for value in ("0", "nan", "inf", "1e300"):
        result = invoke("--request-timeout", value, "status", "--index", "faq")
        assert result.exit_code == 2 and "Invalid value for '--request-timeout'" in result.output, result.output
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        slow = invoke("--es-url", url, "--request-timeout", "0.2", "status", "--index", "faq", "--no-model")
    assert slow.exit_code == 2, slow.output
    line = one_error_line(slow)
    assert "timed out after 0.2s" in line and "raise --request-timeout" in line, line


def test_debug_keeps_the_exit_code(faq_index):
    plain = invoke("--es-url", faq_index, "status", "--index", "no-such-index", "--no-model")
    debug = invoke("--es-url", faq_index, "--debug", "status", "--index", "no-such-index", "--no-model")
    assert plain.exit_code == debug.exit_code == 2, (plain.output, debug.output)
    assert "Traceback" in debug.output and "error: " in debug.output


def test_search_of_an_empty_index_says_so(faq_index):
    result = invoke("--es-url", faq_index, "search", "--index", "faq", "--method", "bm25", "--fields", "quest*",
                    "password")
    assert result.exit_code == 0, result.output
    assert "no hits: index 'faq' has no documents" in result.output and "filter" not in result.output
