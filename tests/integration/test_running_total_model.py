"""The running_total test model (tests/fault_models/running_total.py) on a real tritonserver:
per-ID running totals in Triton sequences, flushes that are not counted, and its request log."""

from __future__ import annotations

import importlib.util
import sys
import time
import types
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from faults import (
    FAULT_MODELS,
    RUNNING_TOTAL,
    SEQUENCE_FLUSH,
    FaultRepository,
    make_fault_repository,
)

KEYS_OPEN_AT_ONCE = 150


@pytest.fixture
def client(server) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    try:
        yield client
    finally:
        client.close()


def _key(name: str) -> str:
    """A string sequence ID no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _x(value: int) -> httpclient.InferInput:
    tensor = httpclient.InferInput("X", [1], "INT64")
    tensor.set_data_from_numpy(np.array([value], dtype=np.int64))
    return tensor


def _send(client: httpclient.InferenceServerClient, key: str | int, x: int, start: bool = False,
          end: bool = False, flush: bool = False, replay: bool = False) -> int:
    parameters = {SEQUENCE_FLUSH: True} if flush else {"sequence_replay": True} if replay else None
    result = client.infer(RUNNING_TOTAL, [_x(x)], sequence_id=key, sequence_start=start,
                          sequence_end=end, parameters=parameters)
    return int(result.as_numpy("TOTAL")[0])


def _logged(repository: FaultRepository, key: str | int) -> list[dict]:
    return [r for r in repository.records(RUNNING_TOTAL) if r["corrid"] == key]


def test_start_resets_and_totals_accumulate_per_id(client):
    a, b = _key("a"), _key("b")
    assert _send(client, a, 5, start=True) == 5
    assert _send(client, b, 100, start=True) == 100
    assert _send(client, a, 3) == 8
    assert _send(client, b, 1) == 101
    # START on a still-open ID: Triton routes it into the same sequence, the model restarts
    assert _send(client, a, 2, start=True) == 2
    assert _send(client, a, 4) == 6
    assert _send(client, a, 1, end=True) == 7
    assert _send(client, b, 0, end=True) == 101
    assert _send(client, a, 10, start=True, end=True) == 10  # after END: a new sequence


def test_uint64_and_string_ids_of_the_same_digits_are_separate_keys(client):
    number = int(uuid.uuid4().int % 2**62) + 1
    assert _send(client, number, 1, start=True) == 1
    assert _send(client, str(number), 10, start=True) == 10
    assert _send(client, number, 1, end=True) == 2
    assert _send(client, str(number), 1, end=True) == 11


def test_a_flush_is_not_counted_and_an_end_with_flush_deletes_the_state(client,
                                                                         fault_repository):
    key = _key("flush")
    assert _send(client, key, 10, start=True) == 10
    assert _send(client, key, 4) == 14
    assert _send(client, key, 4, flush=True) == 14  # the last input repeated: not counted
    with pytest.raises(InferenceServerException, match="'sequence_flush' must be a bool"):
        client.infer(RUNNING_TOTAL, [_x(4)], sequence_id=key, parameters={SEQUENCE_FLUSH: "yes"})
    assert _send(client, key, 4, end=True, flush=True) == 14
    with pytest.raises(InferenceServerException, match="must specify the START flag"):
        _send(client, key, 1)  # Triton ended the sequence too
    lines = _logged(fault_repository, key)
    assert [(r["x"], r["flush"], r["end"], r["total"]) for r in lines] == [
        (10, False, False, 10), (4, False, False, 14), (4, True, False, 14),
        (4, True, True, 14)]
    # the model held one more ID from START until the END, which deleted it
    assert lines[-1]["open"] == lines[0]["open"] - 1


def test_150_ids_open_at_once_do_not_block(client, fault_repository):
    keys = [_key(f"open{i}") for i in range(KEYS_OPEN_AT_ONCE)]
    slowest = 0.0

    def timed(*args: object, **flags: bool) -> int:
        nonlocal slowest
        began = time.monotonic()
        total = _send(client, *args, **flags)
        slowest = max(slowest, time.monotonic() - began)
        return total

    assert [timed(key, i, start=True) for i, key in enumerate(keys)] == list(
        range(KEYS_OPEN_AT_ONCE))
    assert [timed(key, 1) for key in keys] == [i + 1 for i in range(KEYS_OPEN_AT_ONCE)]
    assert [timed(key, 1, end=True, flush=True) for key in keys] == [
        i + 1 for i in range(KEYS_OPEN_AT_ONCE)]
    # a START waiting for a free sequence slot would wait until an END or the 5 s idle reaping
    assert slowest < 1.0
    records = [r for r in fault_repository.records(RUNNING_TOTAL) if r["corrid"] in set(keys)]
    assert len(records) == 3 * KEYS_OPEN_AT_ONCE
    opened = records[KEYS_OPEN_AT_ONCE - 1]["open"]
    assert opened >= KEYS_OPEN_AT_ONCE
    assert records[-1]["open"] == opened - KEYS_OPEN_AT_ONCE


def test_each_request_logs_one_line(server, client, fault_repository):
    key = _key("log")
    began = time.time()
    _send(client, key, 7, start=True, replay=True)
    _send(client, key, 5)
    _send(client, key, 5, end=True, flush=True)
    lines = _logged(fault_repository, key)
    assert [{k: v for k, v in r.items() if k not in ("time", "open")} for r in lines] == [
        {"corrid": key, "x": 7, "start": True, "end": False, "flush": False, "replay": True,
         "total": 7, "unknown": False, "pid": server.process.pid},
        {"corrid": key, "x": 5, "start": False, "end": False, "flush": False, "replay": False,
         "total": 12, "unknown": False, "pid": server.process.pid},
        {"corrid": key, "x": 5, "start": False, "end": True, "flush": True, "replay": False,
         "total": 12, "unknown": False, "pid": server.process.pid},
    ]
    times = [r["time"] for r in lines]
    assert began <= times[0] <= times[1] <= times[2] <= time.time()


def test_the_config_has_256_sequence_slots_and_the_repository_s_idle_time(client, tmp_path):
    batching = client.get_model_config(RUNNING_TOTAL)["sequence_batching"]
    assert batching["max_sequence_idle_microseconds"] == 5_000_000
    assert batching["oldest"]["max_candidate_sequences"] == 256
    short = make_fault_repository(tmp_path, running_total_max_idle=0.5)
    assert "max_sequence_idle_microseconds: 500000\n" in (
        short.path / RUNNING_TOTAL / "config.pbtxt").read_text()


def test_the_state_rules_including_an_unknown_id(monkeypatch):
    """The model's state class on its own: an ID with no state and no START (which Triton lets
    through only if the model lost its state while Triton kept the sequence) counts from 0."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils",
                        types.ModuleType("triton_python_backend_utils"))
    spec = importlib.util.spec_from_file_location("running_total_model",
                                                  FAULT_MODELS / "running_total.py")
    assert spec is not None and spec.loader is not None
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    state = model.RunningTotals()
    assert state.apply("k", 5, start=False, end=False, flush=False) == (5, True)
    assert state.apply("k", 2, start=False, end=False, flush=False) == (7, False)
    assert state.apply("k", 2, start=False, end=False, flush=True) == (7, False)
    assert state.apply("k", 3, start=True, end=False, flush=False) == (3, False)
    assert state.apply("k", 3, start=False, end=True, flush=True) == (3, False)
    assert state.totals == {}
    assert state.apply("k", 1, start=False, end=True, flush=False) == (1, True)
    assert state.totals == {}
