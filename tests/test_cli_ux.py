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
