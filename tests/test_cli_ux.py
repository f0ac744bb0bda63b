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
    assert "set one of them" in line and "--es-url / ES_URL" in line and "--cloud-id / ES_CLOUD_ID" in line


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
    assert named in str(caught.value) and not_named not in str(caught.value)
