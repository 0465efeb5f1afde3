"""The local Triton launcher: python -m pyflink_triton.server, and its failure messages."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from pyflink_triton import server as server_module
from pyflink_triton.server import LocalTritonServer, TritonServerSetupError, free_port

from servers import MODEL_REPOSITORY


def test_cli_serves_until_terminated_then_stops_the_server(tmp_path):
    http_port, grpc_port = free_port(), free_port()
    cli = subprocess.Popen(
        [sys.executable, "-m", "pyflink_triton.server", "--model-repository",
         str(MODEL_REPOSITORY), "--http-port", str(http_port), "--grpc-port", str(grpc_port),
         "--log-file", str(tmp_path / "triton.log")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready_line = cli.stdout.readline()
        assert f"endpoint: http://127.0.0.1:{http_port}" in ready_line, cli.stderr.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/models/add_one") as r:
            assert json.load(r)["inputs"][0]["name"] == "x"
    finally:
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/live", timeout=2)
    assert "add_one" in (tmp_path / "triton.log").read_text()


def test_a_model_that_fails_to_load_shows_the_server_log(tmp_path):
    broken = tmp_path / "repository" / "broken_model"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('name: "broken_model"\nbackend: "python"\n'
                                         'input [ { name: "X" data_type: TYPE_NOPE } ]\n')
    with pytest.raises(TritonServerSetupError) as failure:
        LocalTritonServer(tmp_path / "repository", startup_timeout=60).start()
    message = str(failure.value)
    assert "tritonserver exited" in message and "TYPE_NOPE" in message


def test_a_missing_repository_is_named(tmp_path):
    with pytest.raises(TritonServerSetupError, match=r"No model repository at .*nowhere"):
        LocalTritonServer(tmp_path / "nowhere")


def test_without_nvidia_pytriton_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(server_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TritonServerSetupError, match=r"pip install 'pyflink-triton\[server\]'"):
        LocalTritonServer(MODEL_REPOSITORY).start()
