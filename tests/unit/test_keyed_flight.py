"""Unit tests of ``sessions.keyed_flight.KeysInFlight``: the records of many keys sent at once
through the real ``KeyedInferenceSession``, each key's in order on one thread at a time.
Triton is played by a thread-safe variant of the fake stateful Triton of
test_keyed_sequence_policy (a running total per sequence), which also records when each
request was in flight and on which thread. No server, no Flink. Threads are made to overlap
with events and barriers, not with sleeps."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from test_keyed_sequence_policy import (
    FLUSHED,
    REPLAYED,
    START_TIMEOUT,
    TWO_SLOTS,
    Answer,
    FakeTriton,
    Harness,
    slot_gauges,
)

from pyflink_triton.errors import TritonRequestError, TritonServerError
from pyflink_triton.policies.keyed import KeySequence
from pyflink_triton.sessions.keyed_flight import Drained, KeysInFlight
from pyflink_triton.wire.request import InferRequest

WAIT = 5.0  # seconds an event or barrier may take before the test fails (never when it passes)


@dataclass
class Call:
    """One request as the fake Triton saw it."""

    key: str
    sequence_id: str
    start: bool
    end: bool
    value: int
    parameters: Any
    thread: str
    began: float
    ended: float = 0.0


class SafeTriton(FakeTriton):
    """FakeTriton answering one request at a time under a lock; ``hook(request)`` runs before
    (outside the lock, so that requests of different threads overlap there), ``fail_values``
    fail the request that carries that value. Records every request as a :class:`Call`, and
    any time a sequence had two requests in flight at once. (Two sequences of one key may:
    another key's thread ENDs an evicted sequence while the key's own thread starts its next
    one.)"""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.hook: Callable[[InferRequest], None] = lambda request: None
        self.fail_values: dict[int, TritonRequestError] = {}
        self.in_flight: dict[str, int] = {}
        self.overlaps: list[str] = []  # sequences that had two requests in flight at once
        self.most_open = 0  # the most sequences open at once
        self.closes = 0

    def infer(self, request: InferRequest) -> Answer:
        sequence = request.sequence
        value = int(request.inputs[0].array.reshape(-1)[0])
        call = Call(sequence.sequence_id.split("-")[1], sequence.sequence_id, sequence.start,
                    sequence.end, value, request.parameters, threading.current_thread().name,
                    time.monotonic())
        with self.lock:
            sequence_id = call.sequence_id
            self.in_flight[sequence_id] = self.in_flight.get(sequence_id, 0) + 1
            if self.in_flight[sequence_id] > 1:
                self.overlaps.append(sequence_id)
            self.calls.append(call)
        try:
            self.hook(request)
            with self.lock:
                error = self.fail_values.get(value)
                if error is not None and not (request.parameters or {}).get("sequence_flush"):
                    self.requests.append(request)
                    raise error
                answer = super().infer(request)
                self.most_open = max(self.most_open, len(self.totals))
                return answer
        finally:
            with self.lock:
                self.in_flight[call.sequence_id] -= 1
                call.ended = time.monotonic()

    def close(self) -> None:
        with self.lock:
            self.closes += 1
        super().close()

    def of(self, key: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.key == key]


@dataclass
class Flight:
    harness: Harness
    triton: SafeTriton
    keys: KeysInFlight
    connects: list[str]  # the threads that connected (each its own transport)

    @property
    def session(self):
        return self.harness.session

    def submit(self, key: str, value: int, end: bool = False,
               state: KeySequence | None = None, tag: Any = None) -> None:
        """The record ``key``/``value`` tagged ``tag`` (by default (key, value)); its time:
        the wall clock (the session's evictions decide by it)."""
        self.keys.submit((key, value) if tag is None else tag, key.encode(), key, state,
                         [value], end, int(time.time() * 1000))


@pytest.fixture
def flight(monkeypatch) -> Iterator[Callable[..., Flight]]:
    made: list[Flight] = []

    def make(config: dict[str, Any] | None = None, threads: int = 4, **extra: str) -> Flight:
        h = Harness(monkeypatch, config, **{k.replace("_", "-"): v for k, v in extra.items()})
        triton = h.triton = SafeTriton(config)
        h.opened = 0
        h.open()  # (again, on the thread-safe fake: incarnation inc1)
        connects: list[str] = []

        def connect(options: Any, endpoint: Any) -> SafeTriton:
            connects.append(threading.current_thread().name)
            return triton

        monkeypatch.setattr("pyflink_triton.sessions.servers.connect", connect)
        made.append(Flight(h, triton, KeysInFlight(h.session, threads), connects))
        return made[-1]

    yield make
    for f in made:
        f.keys.close()


def test_results_come_in_submission_order_and_each_keys_requests_in_order(flight):
    f = flight(threads=3)
    # a's requests take a little longer: b's and c's results are ready before a's
    f.triton.hook = lambda r: time.sleep(0.003) if r.sequence.sequence_id.startswith(
        "sensors-a") else None
    records = [("a", 1), ("b", 10), ("a", 2), ("c", 100), ("b", 20), ("a", 3), ("c", 200),
               ("b", 30), ("c", 300)]
    for key, value in records:
        f.submit(key, value)
    assert f.keys.pending == 9
    drained = f.keys.drain()
    assert drained.results == [(("a", 1), 1), (("b", 10), 10), (("a", 2), 3), (("c", 100), 100),
                               (("b", 20), 30), (("a", 3), 6), (("c", 200), 300),
                               (("b", 30), 60), (("c", 300), 600)]
    for key, values in (("a", [1, 2, 3]), ("b", [10, 20, 30]), ("c", [100, 200, 300])):
        calls = f.triton.of(key)
        assert [c.value for c in calls] == values
        assert [c.start for c in calls] == [True, False, False]
        assert {c.sequence_id for c in calls} == {f"sensors-{key}-inc1-0"}
    assert f.triton.overlaps == []
    assert f.keys.pending == 0


def test_each_keys_records_go_one_at_a_time(flight):
    f = flight(threads=4)
    f.triton.hook = lambda r: time.sleep(0.001)
    for n in range(8):
        for key in ("a", "b"):
            f.submit(key, n)
    f.keys.drain()
    assert f.triton.overlaps == []
    for key in ("a", "b"):
        calls = f.triton.of(key)
        assert [c.value for c in calls] == list(range(8))
        assert all(c.ended <= d.began for c, d in itertools.pairwise(calls))


def test_different_keys_are_in_flight_at_once(flight):
    f = flight(threads=3)
    together = threading.Barrier(3, timeout=WAIT)  # (broken, and the test failed, if not)
    f.triton.hook = lambda r: together.wait() if r.sequence.start else None
    for key in ("a", "b", "c"):
        f.submit(key, 1)
        f.submit(key, 2)
    drained = f.keys.drain()
    assert [result for _, result in drained.results] == [1, 3] * 3
    firsts = [f.triton.of(key)[0] for key in ("a", "b", "c")]
    assert max(c.began for c in firsts) < min(c.ended for c in firsts)
    assert len({c.thread for c in firsts}) == 3


def test_each_thread_sends_on_its_own_connection(flight):
    f = flight(threads=3)
    together = threading.Barrier(3, timeout=WAIT)
    f.triton.hook = lambda r: together.wait() if r.sequence.start else None
    for key in ("a", "b", "c"):
        f.submit(key, 1)
    f.keys.drain()
    senders = {c.thread for c in f.triton.calls}
    assert sorted(f.connects) == sorted(senders)  # one connect() per sending thread
    assert threading.current_thread().name not in senders
    f.keys.close()
    f.session.close()
    assert f.triton.closes == 1 + len(senders)  # (open()'s and each thread's)


def test_before_and_after_states_per_key(flight):
    f = flight(sequence_replay_records="2")
    f.submit("a", 1)
    f.submit("b", 10)
    f.submit("a", 2)
    f.submit("b", 20, end=True)
    first = f.keys.drain()
    assert first.before == {b"a": None, b"b": None}
    a, b = first.after[b"a"], first.after[b"b"]
    assert (a.incarnation, a.number, a.open, a.recent) == ("inc1", 0, True, ((1,), (2,)))
    assert a.idle_timer_ms == a.last_activity_ms + 5000
    assert (b.number, b.open, b.recent) == (0, False, ())
    # the next drain: each key's first record takes the state Flink stored
    f.submit("a", 3, state=a)
    f.submit("b", 30, state=b)
    f.submit("c", 100)
    second = f.keys.drain()
    assert second.results == [(("a", 3), 6), (("b", 30), 30), (("c", 100), 100)]
    assert second.before == {b"a": a, b"b": b, b"c": None}
    assert second.after[b"a"].recent == ((2,), (3,))
    assert second.after[b"b"].number == 1  # (a new sequence after b's END)
    assert set(second.after) == {b"a", b"b", b"c"}


def test_a_keys_next_record_takes_the_state_its_record_before_returned(flight):
    """The state given with a key's later records (Flink's, not updated until the drain) is
    not used: the key's sequence goes on from its record before."""
    f = flight(sequence_replay_records="2")
    f.submit("a", 1)
    stored = f.keys.drain().after[b"a"]
    stale = KeySequence("inc0", 7, True, 0, 5000, ((99,),))  # (an old incarnation's state)
    f.submit("a", 2, state=stored)
    f.submit("a", 3, state=stale)
    f.submit("a", 4, state=None)
    drained = f.keys.drain()
    assert [result for _, result in drained.results] == [3, 6, 10]
    assert drained.before == {b"a": stored}
    assert drained.after[b"a"].recent == ((3,), (4,))
    assert [(c.value, c.sequence_id, c.start) for c in f.triton.of("a")] == [
        (1, "sensors-a-inc1-0", True), (2, "sensors-a-inc1-0", False),
        (3, "sensors-a-inc1-0", False), (4, "sensors-a-inc1-0", False)]


def test_drain_with_nothing_submitted(flight):
    f = flight()
    assert f.keys.drain() == Drained()
    assert f.keys.pending == 0


def test_drain_raises_the_first_failure_in_record_order_after_the_others_finished(flight):
    """c's record fails first, then b's (earlier in record order, already in flight): drain
    raises b's, once every record in flight finished; nothing is sent after a failure."""
    f = flight(threads=3)
    in_flight = threading.Barrier(3, timeout=WAIT)  # a2, b20 and c200 sent together

    def c_failed() -> None:  # (as KeysInFlight saw it)
        deadline = time.monotonic() + WAIT
        while f.keys._failure is None:
            assert time.monotonic() < deadline
            time.sleep(0.001)

    def hook(request: InferRequest) -> None:
        value = int(request.inputs[0].array.reshape(-1)[0])
        if value in (2, 20, 200):
            in_flight.wait()
        if value in (2, 20):
            c_failed()
        if value == 2:
            time.sleep(0.01)  # (a2 finishes well after both failures)

    f.triton.hook = hook
    f.triton.fail_values = {20: TritonServerError("HTTP 400: b's bad input", 400),
                            200: TritonServerError("HTTP 400: c's bad input", 400)}
    # records in order: a1 b10 c100 a2 b20 c200 a3; b20 (index 4) fails after c200 (index 5)
    for key, value in (("a", 1), ("b", 10), ("c", 100), ("a", 2), ("b", 20), ("c", 200),
                       ("a", 3)):
        f.submit(key, value)
    with pytest.raises(TritonServerError, match="b's bad input"):
        f.keys.drain()
    raised_at = time.monotonic()
    assert all(0 < c.ended <= raised_at for c in f.triton.calls)  # every one finished first
    [b20] = [c for c in f.triton.of("b") if c.value == 20]
    [c200] = [c for c in f.triton.of("c") if c.value == 200]
    assert c200.ended < b20.ended
    assert [c.value for c in f.triton.of("a")] == [1, 2]  # a3: not sent after the failure
    assert f.keys.pending == 0
    # nothing is left: the next drain starts afresh
    f.submit("d", 5)
    assert f.keys.drain().results == [(("d", 5), 5)]


def test_a_failure_with_a_fallback_is_a_result(flight):
    f = flight(default_value="-1", sequence_replay_records="1")
    f.triton.fail_values = {2: TritonServerError("HTTP 400: bad input", 400)}
    for value in (1, 2, 3):
        f.submit("a", value)
    f.submit("b", 10)
    drained = f.keys.drain()
    assert drained.results == [(("a", 1), 1), (("a", 2), -1), (("a", 3), 4), (("b", 10), 10)]
    assert drained.after[b"a"].number == 1  # (a new sequence after the failure, replaying 1)


def test_close_after_a_drain_stops_the_threads(flight):
    f = flight(threads=2)
    f.submit("a", 1)
    f.submit("b", 1)
    f.keys.drain()
    f.keys.close()
    f.keys.close()  # (twice: nothing)
    assert not any(t.name.startswith("triton-keyed") and t.is_alive()
                   for t in threading.enumerate())


def test_close_waits_for_the_records_in_flight_and_sends_no_more(flight):
    f = flight(threads=1)
    go = threading.Event()
    f.triton.hook = lambda r: go.wait(WAIT) if r.sequence.sequence_id.startswith(
        "sensors-a") else None
    f.submit("a", 1)
    f.submit("a", 2)
    f.submit("b", 10)  # (waits for the one thread)
    deadline = time.monotonic() + WAIT
    while not f.triton.calls:  # a1 is in flight
        assert time.monotonic() < deadline
        time.sleep(0.001)
    closer = threading.Thread(target=f.keys.close)
    closer.start()
    while any(f.keys._queues.values()):  # (close() dropped what waits)
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert closer.is_alive()  # waits for a1
    go.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert [(c.key, c.value) for c in f.triton.calls] == [("a", 1)]
    assert f.triton.calls[0].ended > 0


def test_a_start_waits_while_every_open_sequence_is_in_flight_and_evicts_an_idle_one(
        flight, request):
    """A budget of 2: a's and b's STARTs are in flight when c needs a slot. c waits (it may
    not END a sequence with a request in flight), and ENDs a's once a's is answered; b's,
    still in flight, is never chosen."""
    f = flight(TWO_SLOTS, threads=3, sequence_replay_records="2")
    released = {"a": threading.Event(), "b": threading.Event()}
    request.addfinalizer(lambda: [event.set() for event in released.values()])  # (if failed)
    both = threading.Barrier(2, timeout=WAIT)

    def hook(request: InferRequest) -> None:
        sequence = request.sequence
        key = sequence.sequence_id.split("-")[1]
        if sequence.start and sequence.sequence_id in ("sensors-a-inc1-0", "sensors-b-inc1-0"):
            both.wait()
            assert released[key].wait(WAIT)

    f.triton.hook = hook
    f.submit("a", 1)
    f.submit("b", 10)
    deadline = time.monotonic() + WAIT
    while len(f.triton.calls) < 2:  # both in flight
        assert time.monotonic() < deadline
        time.sleep(0.001)
    f.submit("c", 100)
    time.sleep(0.02)  # (time for c to send, if it would)
    assert {c.key for c in f.triton.calls} == {"a", "b"}
    released["a"].set()
    while len(f.triton.calls) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert [(c.value, c.sequence_id, c.start, c.end, c.parameters)
            for c in f.triton.calls[2:]] == [
        (1, "sensors-a-inc1-0", False, True, FLUSHED),  # a's END, then c's START
        (100, "sensors-c-inc1-0", True, False, {"timeout": START_TIMEOUT})]
    released["b"].set()
    drained = f.keys.drain()
    assert [result for _, result in drained.results] == [1, 10, 100]
    assert slot_gauges(f.harness) == {"sequenceEvictions": 1, "openSequences": 2,
                                      "sequenceSlotBudget": 2}
    # a returns: its sequence was evicted, so it starts anew with the replay, evicting c's
    # (answered before b's)
    f.submit("a", 2, state=drained.after[b"a"])
    assert f.keys.drain().results == [(("a", 2), 3)]
    assert [(c.value, c.sequence_id, c.parameters) for c in f.triton.calls[4:]] == [
        (100, "sensors-c-inc1-0", FLUSHED),
        (1, "sensors-a-inc1-1", {**REPLAYED, "timeout": START_TIMEOUT}),
        (2, "sensors-a-inc1-1", None)]


def test_many_keys_over_a_small_budget_keep_their_totals(flight):
    """More keys than slots, sent together: evictions and replays; every result is the key's
    running total (each replay warms up the new sequence with all the key's inputs so far),
    and Triton never holds more sequences than the budget."""
    f = flight(TWO_SLOTS, threads=4, sequence_replay_records="3")
    states: dict[str, KeySequence | None] = {}
    keys = ["a", "b", "c", "d", "e"]
    for value in (1, 2, 3):
        for key in keys:
            f.submit(key, value, state=states.get(key))
        drained = f.keys.drain()
        states.update({k.decode(): v for k, v in drained.after.items()})
        assert [result for _, result in drained.results] == [
            value * (value + 1) // 2] * len(keys), value
    assert f.triton.most_open <= 2
    assert f.triton.overlaps == []
    assert f.session.evictions >= len(keys) - 2


@pytest.mark.parametrize("seed", range(5))
def test_random_keys_over_a_small_budget_are_running_totals(flight, seed):
    """Random records of 6 keys (some ending their sequence) over 3 slots and 4 threads, in
    several drains: every result is the sum of the key's inputs since its last END (the replay
    holds all of them), Triton never holds more than 3 sequences, and no request goes to a
    sequence Triton does not hold (the fake refuses it with a 400, which fails the drain)."""
    rng = random.Random(seed)
    three = {**TWO_SLOTS, "sequence_batching": {**TWO_SLOTS["sequence_batching"],
                                               "oldest": {"max_candidate_sequences": 3}}}
    f = flight(three, threads=4, sequence_replay_records="50")
    f.triton.hook = lambda r: time.sleep(0.0002) if rng.random() < 0.2 else None
    states: dict[str, KeySequence | None] = {}
    totals: dict[str, int] = {}
    for _ in range(6):
        expected = []
        for n in range(rng.randint(1, 30)):
            key, value, end = rng.choice("abcdef"), rng.randint(1, 9), rng.random() < 0.1
            totals[key] = totals.get(key, 0) + value
            expected.append(((key, n), totals[key]))
            if end:
                del totals[key]
            f.submit(key, value, end=end, state=states.get(key), tag=(key, n))
        drained = f.keys.drain()
        assert drained.results == expected
        states.update({k.decode(): v for k, v in drained.after.items()})
    assert f.triton.most_open <= 3
    assert f.triton.overlaps == []
