"""The local Triton launcher: python -m pyflink_triton.server, and its failure messages."""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pyflink_triton import server as server_module
from pyflink_triton.server import (
    PYTRITON_VERSION,
    LocalTritonServer,
    TritonInstallation,
    TritonServerSetupError,
    free_port,
)

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


def _hide_importable_pytriton(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytriton" else find_spec(name, *a))


def test_without_pytriton_the_wheel_is_fetched_into_the_cache_and_serves(monkeypatch, tmp_path):
    """The test session's cache holds the wheel's files after the first run; then this is fast."""
    _hide_importable_pytriton(monkeypatch)
    installation = TritonInstallation()
    wheel_files = server_module.cache_dir() / f"nvidia-pytriton-{PYTRITON_VERSION}"
    assert installation.binary == wheel_files / "pytriton" / "tritonserver" / "bin" / "tritonserver"
    assert installation.libraries == wheel_files / "nvidia_pytriton.libs"
    repository = tmp_path / "repository"
    shutil.copytree(MODEL_REPOSITORY / "add_one", repository / "add_one")
    with LocalTritonServer(repository, startup_timeout=60) as server:
        assert server.process.args[0] == str(installation.binary)
        with urllib.request.urlopen(f"{server.http_endpoint}/v2/models/add_one/ready") as r:
            assert r.status == 200


def test_the_wheel_is_fetched_once(monkeypatch, tmp_path):
    monkeypatch.setenv("PYFLINK_TRITON_HOME", str(tmp_path / "home"))
    _hide_importable_pytriton(monkeypatch)
    commands = []

    def fake_pip(command, what):
        commands.append(command)
        (Path(command[command.index("--target") + 1]) / "pytriton").mkdir(parents=True)

    monkeypatch.setattr(server_module, "_run", fake_pip)
    first, second = server_module._pytriton_dir(), server_module._pytriton_dir()
    assert first == second == tmp_path / "home" / f"nvidia-pytriton-{PYTRITON_VERSION}" / "pytriton"
    [command] = commands
    assert command[-1] == f"nvidia-pytriton=={PYTRITON_VERSION}" and "--no-deps" in command


def test_when_the_wheel_cannot_be_fetched_the_error_says_what_and_how_to_fix(monkeypatch,
                                                                            tmp_path):
    home = tmp_path / "home"
    monkeypatch.setenv("PYFLINK_TRITON_HOME", str(home))
    _hide_importable_pytriton(monkeypatch)
    run = server_module._run

    def offline_pip(command, what):  # pip's own failure, without a network round trip
        assert command[1:4] == ["-m", "pip", "install"]
        run([sys.executable, "-c", "import sys; sys.exit('ERROR: No matching distribution "
                                   "found for nvidia-pytriton==0.7.0')"], what)

    monkeypatch.setattr(server_module, "_run", offline_pip)
    with pytest.raises(TritonServerSetupError) as failure:
        LocalTritonServer(MODEL_REPOSITORY).start()
    message = str(failure.value)
    target = home / f"nvidia-pytriton-{PYTRITON_VERSION}"
    assert f"nvidia-pytriton=={PYTRITON_VERSION}" in message
    assert "No matching distribution" in message and str(target) in message
    assert "PYFLINK_TRITON_HOME" in message and f"touch {target / '.ready'}" in message
    assert not (target / ".ready").exists()
