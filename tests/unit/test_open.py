"""Unit tests of what a function instance's open() does before its first record, in every mode:
the served model fetched under the records' retry policy, the refusal of a fixed sequence ID
shared by several senders, and one auto-increment counter per base and subtask among the
instances alive in a worker. No server: a scripted stand-in for the blocking transport that
open() uses (its real counterpart is tested against tritonserver in tests/integration)."""

from __future__ import annotations

from typing import Any

import pytest
from pyflink.table import DataTypes

from pyflink_triton.errors import TritonConfigError, TritonConnectionError, TritonRequestError
from pyflink_triton.options import TritonOptions
from pyflink_triton.policies.sequence import LiveSequences, SequencePolicy
from pyflink_triton.sessions.function import TritonInference

METADATA = {"name": "m", "versions": ["1"], "platform": "python",
            "inputs": [{"name": "x", "datatype": "INT64", "shape": [1]}],
            "outputs": [{"name": "y", "datatype": "INT64", "shape": [1]}]}
CONFIG = {"name": "m", "max_batch_size": 0,
          "sequence_batching": {"max_sequence_idle_microseconds": "10000000"}}
BASE = {"endpoint": "http://triton:8000", "model-name": "m"}
INPUTS, OUTPUT = [("x", DataTypes.BIGINT())], ("y", DataTypes.BIGINT())


class StartingTriton:
    """Refuses connections ``down`` times (as a server still starting), then serves."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.calls = 0
        self.closed = 0

    def _serve(self, answer: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.down:
            self.down -= 1
            raise TritonConnectionError("Cannot reach the Triton server at http://triton:8000 "
                                        "(option 'endpoint') for model 'm': "
                                        "ConnectionRefusedError", maybe_delivered=False)
        return answer

    def model_metadata(self, model: Any, timeout: Any = None) -> dict[str, Any]:
        return self._serve(METADATA)

    def model_config(self, model: Any, timeout: Any = None) -> dict[str, Any]:
        return self._serve(CONFIG)

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def triton(monkeypatch):
    """A StartingTriton behind every connect() of open(); no real sleeps."""
    def make(down: int) -> StartingTriton:
        server = StartingTriton(down)
        monkeypatch.setattr("pyflink_triton.sessions.servers.connect",
                            lambda options, endpoint: server)
        monkeypatch.setattr("pyflink_triton.sessions.reliable.time.sleep", lambda seconds: None)
        return server
    return make


def open_mode(mode: str, **extra: str) -> Any:
    keyed = {"sequence-id": "s"} if mode == "keyed" else {}
    inference = TritonInference.create({**BASE, **extra, **keyed}, INPUTS, OUTPUT, mode=mode)
    return inference.open(0, mode=mode)


def close(session: Any) -> None:
    stop = getattr(session, "stop", None)  # (an async session's sockets are its loop's)
    (stop or session.close)()


@pytest.mark.parametrize("mode", ["sync", "async", "vectorized", "keyed"])
def test_every_mode_waits_in_open_for_a_server_that_is_starting(triton, mode, caplog):
    server = triton(down=3)
    session = open_mode(mode, **{"max-retries": "10"})
    close(session)
    assert server.calls == 3 + 2  # three refused, then metadata and config
    waits = [r for r in caplog.records if "trying again in" in r.getMessage()]
    assert len(waits) == 3 and all(r.levelname == "WARNING" for r in waits)
    assert "http://triton:8000" in waits[0].getMessage()


@pytest.mark.parametrize("mode", ["sync", "async", "vectorized", "keyed"])
def test_without_retries_open_fails_at_once_naming_the_endpoint(triton, mode):
    server = triton(down=1)
    with pytest.raises(TritonRequestError, match="Cannot reach the Triton server at "
                                                 "http://triton:8000"):
        open_mode(mode)
    assert server.calls == 1
    assert server.closed == 1


def test_registration_waits_too_when_it_must_ask_the_server(triton):
    server = triton(down=2)
    inference = TritonInference.create({**BASE, "max-retries": "3"})  # (no columns declared)
    assert [c.name for c in inference.signature.inputs] == ["x"]
    assert server.calls == 2 + 2


# --- a fixed sequence ID has one sender ----------------------------------------------------------

FIXED = {"sequence-id": "job-7", "sequence-start": "true"}


def test_a_fixed_sequence_id_is_refused_for_several_parallel_instances(triton):
    triton(down=0)
    inference = TritonInference.create({**BASE, **FIXED}, INPUTS, OUTPUT, mode="sync")
    with pytest.raises(TritonConfigError) as info:
        inference.open(1, parallelism=2)
    message = str(info.value)
    assert "'sequence-id' = 'job-7'" in message and "all 2 parallel instances" in message
    assert "'sequence-id-auto-increment'" in message and "keyed sequences" in message
    inference.open(0, parallelism=1).close()  # one instance: its own sequence


def test_a_fixed_sequence_id_is_refused_for_a_second_instance_in_the_worker(triton):
    triton(down=0)
    inference = TritonInference.create({**BASE, **FIXED}, INPUTS, OUTPUT, mode="sync")
    first = inference.open(0)
    with pytest.raises(TritonConfigError, match="already used by another function instance"):
        inference.open(0)
    inference.open(0, attempt=1).close()  # a restarted attempt is another sender's successor
    first.close()
    inference.open(0).close()  # (free again)


def test_a_fixed_sequence_id_as_string_and_as_uint64_are_two_sequences(triton):
    """Both open: Triton tells "42" from 42, so they are not one sequence with two senders."""
    triton(down=0)
    as_string = TritonInference.create({**BASE, "sequence-id": "42"}, INPUTS, OUTPUT,
                                       mode="sync").open(0)
    as_number = TritonInference.create({**BASE, "sequence-id": "42",
                                        "sequence-id-type": "uint64"}, INPUTS, OUTPUT,
                                       mode="sync").open(0)
    try:
        assert [s.context.request([1]).sequence.sequence_id for s in (as_string, as_number)
                ] == ["42", 42]
    finally:
        as_string.close()
        as_number.close()


@pytest.mark.parametrize("options", [
    {"mode": "async", **FIXED},
    {"mode": "async", "sequence-id": "7", "sequence-id-type": "uint64"},
])
def test_async_mode_refuses_a_fixed_sequence_id_at_registration(options):
    with pytest.raises(TritonConfigError) as info:
        TritonInference.create({**BASE, **options}, INPUTS, OUTPUT, mode="async")
    message = str(info.value)
    assert "'mode' = 'async' with the fixed 'sequence-id'" in message
    assert "'max-concurrent-requests'" in message
    assert "'sequence-id-auto-increment'" in message and "keyed sequences" in message


# --- one counter per base and subtask among the instances of a worker ---------------------------

AUTO = {"sequence-id": "b", "sequence-id-auto-increment": "true", "sequence-start": "true",
        "sequence-end": "true"}


def policy(**extra: str) -> SequencePolicy:
    return SequencePolicy.from_options(TritonOptions.from_dict({**BASE, **AUTO, **extra}))


@pytest.mark.parametrize("strategy", ["zero", "nano-time"])
def test_instances_with_one_base_and_subtask_never_issue_the_same_id(strategy):
    """SELECT m(a), m(b): two instances of subtask 0 in one worker (opened in one clock tick)."""
    live = LiveSequences()
    p = policy(**{"sequence-id-counter-init-strategy": strategy})
    first = p.for_subtask(0, now_ns=lambda: 1000, live=live)
    second = p.for_subtask(0, now_ns=lambda: 1000, live=live)
    ids = [g.next().sequence_id for _ in range(5) for g in (first, second)]
    assert len(set(ids)) == 10
    start = 0 if strategy == "zero" else 1000
    assert sorted(int(i.rsplit("-", 1)[1]) for i in ids) == list(range(start, start + 10))
    assert (first.issued, second.issued) == (5, 5)


def test_other_subtasks_and_bases_count_on_their_own():
    live = LiveSequences()
    a0, a1 = policy().for_subtask(0, live=live), policy().for_subtask(1, live=live)
    other = policy(**{"sequence-id": "c"}).for_subtask(0, live=live)
    assert [a0.next().sequence_id, a1.next().sequence_id, other.next().sequence_id] == [
        "b-0-0", "b-1-0", "c-0-0"]


def test_a_counter_starts_over_once_its_instances_closed():
    """'zero' keeps its meaning: a later open(), with no instance of the base left, counts from
    0 again (as a restarted job does)."""
    live = LiveSequences()
    first = policy().for_subtask(0, live=live)
    first.next()
    first.close()
    assert policy().for_subtask(0, live=live).next().sequence_id == "b-0-0"


def test_nano_time_moves_a_shared_counter_forward_to_the_clock():
    live = LiveSequences()
    p = policy(**{"sequence-id-counter-init-strategy": "nano-time"})
    first = p.for_subtask(0, now_ns=lambda: 100, live=live)
    first.next()
    second = p.for_subtask(0, now_ns=lambda: 5000, live=live)
    assert second.next().sequence_id == "b-0-5000"
    assert first.next().sequence_id == "b-0-5001"


def test_instances_of_a_real_open_share_the_counter(triton):
    triton(down=0)
    inference = TritonInference.create({**BASE, **AUTO}, INPUTS, OUTPUT, mode="sync")
    first, second = inference.open(0), inference.open(0)
    try:
        ids = [s.context.request([1]).sequence.sequence_id for s in (first, second, first)]
        assert ids == ["b-0-0", "b-0-1", "b-0-2"]
    finally:
        first.close()
        second.close()
