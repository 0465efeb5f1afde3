"""Unit tests of keyed sequences (one long-lived Triton sequence per key): the options and their
scope, the pure policy of ``sequence`` (KeyedSequencePolicy, KeyedSequences, key_text) and the
``KeyedInferenceSession`` of ``inference``, driven against a fake stateful Triton (a running
total per sequence that checks START/END as Triton does). No server, no Flink: the caller's
keyed state and timers are played by the tests."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import pickle
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyflink.table import DataTypes

from pyflink_triton.errors import (
    TritonConfigError,
    TritonConnectionError,
    TritonRequestError,
    TritonServerError,
)
from pyflink_triton.options import TritonOptions
from pyflink_triton.policies.keyed import (
    MAX_KEY_CHARS,
    TRITON_DEFAULT_IDLE_MICROS,
    IdlePlan,
    KeyedSequencePolicy,
    KeyedSequences,
    KeySequence,
    RecordPlan,
    Send,
    key_text,
    new_incarnation,
)
from pyflink_triton.policies.sequence import SequenceParams
from pyflink_triton.sessions.function import TritonInference
from pyflink_triton.sessions.keyed import (
    FLUSH_PARAMETER,
    REPLAY_PARAMETER,
    TRITON_TIMEOUT_PARAMETER,
    KeyedInferenceSession,
)
from pyflink_triton.wire.request import InferRequest

from fake_metrics import FakeMetricGroup

BASE = {"endpoint": "http://triton:8000", "model-name": "m"}
KEYED = {**BASE, "sequence-id": "sensors"}
INPUTS = [("x", DataTypes.BIGINT())]
OUTPUT = ("y", DataTypes.BIGINT())

REPLAYED = {REPLAY_PARAMETER: True}  # the parameters of a replayed input
FLUSHED = {FLUSH_PARAMETER: True}  # those of an END the function sent on its own


def parse(**extra: str) -> TritonOptions:
    return TritonOptions.from_dict({**KEYED, **extra})


def scope_error(options: TritonOptions, keyed: bool) -> str:
    with pytest.raises(TritonConfigError) as info:
        options.check_sequence_scope(keyed)
    return str(info.value)


def create_error(raw: dict[str, str], keyed: bool) -> str:
    with pytest.raises(TritonConfigError) as info:
        TritonInference.create(raw, INPUTS, OUTPUT, mode="keyed" if keyed else None)
    return str(info.value)


# --- check_sequence_scope ------------------------------------------------------------------

@pytest.mark.parametrize("extra, named", [
    ({"sequence-idle-timeout": "10 s"}, ["'sequence-idle-timeout'"]),
    ({"sequence-replay-records": "3"}, ["'sequence-replay-records'"]),
    ({"sequence-idle-timeout": "10 s", "sequence-replay-records": "3"},
     ["'sequence-idle-timeout'", "'sequence-replay-records'"]),
])
def test_keyed_only_options_are_refused_for_per_record_functions(extra, named):
    for options in (parse(**extra), TritonOptions.from_dict({**BASE, **extra})):
        message = scope_error(options, keyed=False)
        for key in named:
            assert key in message
        assert "keyed" in message
    message = create_error({**KEYED, **extra}, keyed=False)
    assert all(key in message for key in named)


def test_per_record_functions_accept_the_per_record_options():
    options = TritonOptions.from_dict({
        **KEYED, "sequence-id-auto-increment": "true", "sequence-start": "true",
        "sequence-end": "true", "sequence-id-counter-init-strategy": "nano-time",
        "mode": "async", "sequence-replay-records": "0"})  # (0: the default, no effect)
    options.check_sequence_scope(False)
    TritonInference.create(options, INPUTS, OUTPUT)  # (a per-record function by default)


def test_keyed_functions_accept_the_keyed_options():
    options = parse(**{"sequence-idle-timeout": "10 s", "sequence-replay-records": "4",
                       "mode": "sync"})
    options.check_sequence_scope(True)
    inference = TritonInference.create(options, INPUTS, OUTPUT, mode="keyed")
    assert inference.options.sequence_replay_records == 4
    assert inference.options.sequence_idle_timeout == timedelta(seconds=10)


def test_keyed_functions_require_sequence_id():
    message = scope_error(TritonOptions.from_dict(BASE), keyed=True)
    assert "'sequence-id'" in message
    assert "'sequence-id'" in create_error(BASE, keyed=True)


@pytest.mark.parametrize("extra, named", [
    ({"sequence-start": "true"}, ["'sequence-start'"]),
    ({"sequence-end": "true"}, ["'sequence-end'"]),
    ({"sequence-id": "42", "sequence-id-type": "uint64"}, ["'sequence-id-type'"]),
    ({"sequence-id-auto-increment": "true", "sequence-start": "true", "sequence-end": "true"},
     ["'sequence-id-auto-increment'", "'sequence-start'", "'sequence-end'"]),
    ({"sequence-id-auto-increment": "true", "sequence-start": "true", "sequence-end": "true",
      "sequence-id-counter-init-strategy": "nano-time"},
     ["'sequence-id-auto-increment'", "'sequence-start'", "'sequence-end'",
      "'sequence-id-counter-init-strategy'"]),
])
def test_keyed_functions_refuse_the_options_they_manage(extra, named):
    options = parse(**extra)
    message = scope_error(options, keyed=True)
    for key in named:
        assert key in message
    assert all(key in create_error({**KEYED, **extra}, keyed=True) for key in named)


def test_keyed_functions_refuse_a_counter_strategy_alone():
    """(from_dict already refuses it without auto-increment; the scope check names it too)"""
    options = dataclasses.replace(parse(), sequence_id_counter_init_strategy="nano-time")
    assert "'sequence-id-counter-init-strategy'" in scope_error(options, keyed=True)
    message = create_error({**KEYED, "sequence-id-counter-init-strategy": "nano-time"}, True)
    assert "'sequence-id-counter-init-strategy'" in message


def test_keyed_functions_refuse_async_mode():
    message = scope_error(parse(mode="async"), keyed=True)
    assert "'mode'" in message
    assert "'async'" in message
    assert "'mode'" in create_error({**KEYED, "mode": "ASYNC"}, keyed=True)


def test_keyed_functions_refuse_vectorized_mode():
    assert "vectorized" in create_error({**KEYED, "mode": "vectorized"}, keyed=True)


@pytest.mark.parametrize("text, expected", [
    ("30 s", timedelta(seconds=30)), ("250", timedelta(milliseconds=250)),
    ("2 min", timedelta(minutes=2)),
])
def test_idle_timeout_parses_a_duration(text, expected):
    assert parse(**{"sequence-idle-timeout": text}).sequence_idle_timeout == expected
    assert parse().sequence_idle_timeout is None


@pytest.mark.parametrize("key, text", [
    ("sequence-idle-timeout", "0 s"), ("sequence-idle-timeout", "soon"),
    ("sequence-replay-records", "-1"), ("sequence-replay-records", "two"),
])
def test_invalid_keyed_option_values_name_the_option(key, text):
    with pytest.raises(TritonConfigError) as info:
        parse(**{key: text})
    assert f"'{key}'" in str(info.value)


# --- KeyedSequencePolicy.for_model ------------------------------------------------------------

def for_model(config: dict[str, Any], **extra: str) -> KeyedSequencePolicy:
    return KeyedSequencePolicy.for_model(parse(**extra), "rnn", config)


@pytest.mark.parametrize("config", [{}, {"max_batch_size": 8}, {"dynamic_batching": {}}])
def test_for_model_refuses_a_model_without_sequence_batching(config):
    with pytest.raises(TritonConfigError) as info:
        for_model(config)
    assert "'rnn'" in str(info.value)
    assert "sequence_batching" in str(info.value)


@pytest.mark.parametrize("idle", ["5000000", 5000000, " 5000000"])
def test_for_model_reads_max_sequence_idle_as_string_or_number(idle):
    policy = for_model({"sequence_batching": {"max_sequence_idle_microseconds": idle}})
    assert policy.idle_timeout == timedelta(milliseconds=2500)  # half of it, when unset


@pytest.mark.parametrize("batching", [{}, {"oldest": {"max_candidate_sequences": 4}},
                                      {"max_sequence_idle_microseconds": 0},
                                      {"max_sequence_idle_microseconds": "0"}])
def test_for_model_without_max_sequence_idle_uses_tritons_default(batching):
    """Unset (or 0, as protobuf's JSON writes an unset uint64, as a string) is Triton's
    default of 1 s."""
    policy = for_model({"sequence_batching": batching})
    assert policy.idle_timeout == timedelta(microseconds=TRITON_DEFAULT_IDLE_MICROS) / 2
    assert TRITON_DEFAULT_IDLE_MICROS == 1_000_000


def test_for_model_keeps_an_idle_timeout_below_the_models():
    config = {"sequence_batching": {"max_sequence_idle_microseconds": "5000000"}}
    for text, expected in (("1 s", timedelta(seconds=1)), ("4999 ms", timedelta(seconds=4.999)),
                           ("4999999 us", timedelta(microseconds=4_999_999))):
        policy = for_model(config, **{"sequence-idle-timeout": text})
        assert policy.idle_timeout == expected


@pytest.mark.parametrize("idle, named", [("5 s", "5000 ms"), ("6 s", "6000 ms"),
                                         ("1 h", "3600000 ms")])
def test_for_model_refuses_an_idle_timeout_not_below_the_models(idle, named):
    config = {"sequence_batching": {"max_sequence_idle_microseconds": "5000000"}}
    with pytest.raises(TritonConfigError) as info:
        for_model(config, **{"sequence-idle-timeout": idle})
    message = str(info.value)
    assert "'sequence-idle-timeout'" in message
    assert f"({named})" in message
    assert "(5000 ms)" in message
    assert "max_sequence_idle_microseconds" in message
    assert "'rnn'" in message


def test_for_model_refuses_an_idle_timeout_at_tritons_default():
    with pytest.raises(TritonConfigError, match=r"\(1000 ms\).*\(1000 ms\)"):
        for_model({"sequence_batching": {}}, **{"sequence-idle-timeout": "1 s"})


def test_for_model_carries_base_id_and_replay():
    policy = for_model({"sequence_batching": {"max_sequence_idle_microseconds": "60000000"}},
                       **{"sequence-replay-records": "7", "sequence-idle-timeout": "10 s"})
    assert policy == KeyedSequencePolicy("sensors", timedelta(seconds=10), 7,
                                         timedelta(seconds=60))
    assert pickle.loads(pickle.dumps(policy)) == policy


# --- key_text, IDs, incarnations -----------------------------------------------------------------

@pytest.mark.parametrize("key, text", [
    ("device-7", "device-7"), ("a b", "a b"), ("é✓", "é✓"), (7, "7"), (-3, "-3"),
    (("a", 1), "('a', 1)"), ("x" * MAX_KEY_CHARS, "x" * MAX_KEY_CHARS), (2**63, str(2**63)),
])
def test_short_printable_keys_appear_as_is(key, text):
    assert key_text(key) == text


HASHED = re.compile(r"sha256:[0-9a-f]{32}")


@pytest.mark.parametrize("key", [
    "x" * (MAX_KEY_CHARS + 1), "line\nbreak", "tab\there", "\x00", "bell\x07", "\u200b",
    "\ud800 lone surrogate", tuple(range(40)), 10**70,
])
def test_long_or_unprintable_keys_are_hashed(key):
    assert HASHED.fullmatch(key_text(key))
    assert key_text(key) == key_text(key)


def test_hashes_are_stable_across_runs():
    """A known function of the key's text (not Python's salted hash()): the same key gets the
    same ID text in every process and after every restore."""
    assert key_text("x" * 65) == "sha256:" + hashlib.sha256(b"x" * 65).hexdigest()[:32]
    assert key_text(10**70) == "sha256:" + hashlib.sha256(str(10**70).encode()).hexdigest()[:32]


@given(st.lists(st.text(min_size=MAX_KEY_CHARS + 1, max_size=MAX_KEY_CHARS + 40), min_size=2,
                max_size=10, unique=True))
def test_distinct_long_keys_hash_apart(keys):
    texts = [key_text(k) for k in keys]
    assert len(set(texts)) == len(keys)
    assert all(HASHED.fullmatch(t) for t in texts)


@given(st.text(max_size=100))
def test_key_text_is_short_printable_and_deterministic(key):
    text = key_text(key)
    assert text == key_text(key)
    assert text.isprintable()
    assert len(text.encode()) <= max(MAX_KEY_CHARS, len("sha256:") + 32)
    if len(key) <= MAX_KEY_CHARS and key.isprintable() and len(key.encode()) <= MAX_KEY_CHARS:
        assert text == key
    else:
        assert HASHED.fullmatch(text)


def test_key_text_counts_utf8_bytes_against_max_bytes():
    key = "é" * 40  # 40 characters, 80 bytes
    assert HASHED.fullmatch(key_text(key))  # (default: 64 bytes)
    assert key_text(key, max_bytes=80) == key
    assert HASHED.fullmatch(key_text(key, max_bytes=79))


sequence_bases = st.text(min_size=1, max_size=54).filter(
    lambda b: b.strip() != "" and "\0" not in b and len(b.encode()) <= 54)


@given(base=sequence_bases,
       key=st.one_of(st.text(max_size=200), st.integers(-(10**80), 10**80),
                     st.tuples(st.text(max_size=30), st.integers())),
       number=st.integers(0, 10**20 - 1))
def test_keyed_ids_fit_tritons_128_bytes(base, key, number):
    """Triton refuses string sequence IDs over 128 UTF-8 bytes: any key of a base accepted at
    registration fits, hashed if need be, the same in every sequence of the key."""
    TritonOptions.from_dict({**BASE, "sequence-id": base}).check_sequence_scope(True)
    policy = KeyedSequencePolicy(base, timedelta(seconds=1))
    sequence_id = policy.sequence_id(key, new_incarnation(), number)
    assert len(sequence_id.encode()) <= 128
    assert sequence_id.startswith(base + "-")
    first = policy.sequence_id(key, "000000000000", 0)
    assert first.rsplit("-", 2)[0] == policy.sequence_id(key, "000000000000", number).rsplit(
        "-", 2)[0]


def test_keyed_registration_refuses_a_base_without_room_for_the_ids():
    base = "b" * 55
    message = scope_error(parse(**{"sequence-id": base}), keyed=True)
    assert "'sequence-id'" in message
    assert "128" in message
    TritonOptions.from_dict({**BASE, "sequence-id": base}).check_sequence_scope(False)


def test_sequence_id_format():
    policy = KeyedSequencePolicy("sensors", timedelta(seconds=1))
    assert policy.sequence_id("dev-1", "0a1b2c3d4e5f", 0) == "sensors-dev-1-0a1b2c3d4e5f-0"
    assert policy.sequence_id(12, "0a1b2c3d4e5f", 3) == "sensors-12-0a1b2c3d4e5f-3"
    long = "k" * 100
    assert policy.sequence_id(long, "i", 1) == f"sensors-{key_text(long)}-i-1"


def test_new_incarnation_is_a_fresh_48_bit_nonce():
    drawn = {new_incarnation() for _ in range(1000)}
    assert len(drawn) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in drawn)


# --- KeyedSequences: examples --------------------------------------------------------------------

IDLE_MS = 100


def sequences(replay: int = 0, incarnation: str = "inc1", idle_ms: int = IDLE_MS,
              base: str = "s") -> KeyedSequences:
    return KeyedSequencePolicy(base, timedelta(milliseconds=idle_ms), replay).for_incarnation(
        incarnation)


def params(send: Send) -> tuple[str | int, bool, bool]:
    return (send.sequence.sequence_id, send.sequence.start, send.sequence.end)


def test_first_record_starts_the_keys_sequence():
    plan = sequences().record(None, "k", (1,), False, 1000)
    assert isinstance(plan, RecordPlan)
    assert [params(s) for s in plan.sends] == [("s-k-inc1-0", True, False)]
    assert plan.sends[0].values == (1,)
    assert not plan.sends[0].flush
    assert plan.replayed == 0
    assert plan.state == KeySequence("inc1", 0, True, 1000, 1000 + IDLE_MS, ((1,),))


def test_next_records_continue_without_start():
    seq = sequences()
    state = seq.record(None, "k", (1,), False, 1000).state
    plan = seq.record(state, "k", (2,), False, 1010)
    assert [params(s) for s in plan.sends] == [("s-k-inc1-0", False, False)]
    assert plan.state == KeySequence("inc1", 0, True, 1010, 1010 + IDLE_MS, ((2,),))


def test_a_record_with_end_ends_the_sequence_and_the_next_starts_a_new_one():
    seq = sequences(replay=3)
    state = seq.record(None, "k", (1,), False, 1000).state
    state = seq.record(state, "k", (2,), False, 1001).state
    plan = seq.record(state, "k", (3,), True, 1002)
    assert [params(s) for s in plan.sends] == [("s-k-inc1-0", False, True)]
    assert plan.state == KeySequence("inc1", 0, False, 1002, None, ())
    nxt = seq.record(plan.state, "k", (4,), False, 1003)
    # after an END nothing is replayed: the model was told
    assert [params(s) for s in nxt.sends] == [("s-k-inc1-1", True, False)]
    assert nxt.sends[0].values == (4,)


def test_a_first_record_with_end_is_a_one_request_sequence():
    plan = sequences(replay=2).record(None, "k", (1,), True, 5)
    assert [params(s) for s in plan.sends] == [("s-k-inc1-0", True, True)]
    assert not plan.state.open
    assert plan.state.idle_timer_ms is None


@pytest.mark.parametrize("replay, expected", [(0, []), (1, [(3,)]), (2, [(2,), (3,)]),
                                              (3, [(1,), (2,), (3,)]),
                                              (10, [(1,), (2,), (3,)])])
def test_a_restored_open_sequence_restarts_with_replay(replay, expected):
    old = sequences(replay, "old")
    state = None
    for i, now in ((1, 10), (2, 20), (3, 30)):
        state = old.record(state, "k", (i,), False, now).state
    assert state.recent == ((1,), (2,), (3,))[-max(1, replay):]
    new = sequences(replay, "new")
    assert not new.continues(state, 40)
    plan = new.record(state, "k", (4,), False, 40)
    assert [s.values for s in plan.sends] == [*expected, (4,)]
    assert plan.replayed == len(expected)
    ids = {s.sequence.sequence_id for s in plan.sends}
    assert ids == {"s-k-new-1"}  # never the old incarnation's ID
    assert [s.sequence.start for s in plan.sends] == [True] + [False] * len(expected)
    assert not any(s.sequence.end for s in plan.sends)
    assert not any(s.flush for s in plan.sends)
    assert plan.state.recent == (*expected, (4,))[-max(1, replay):]
    assert plan.state.incarnation == "new"
    assert plan.state.number == 1


def test_a_restored_sequence_replays_into_a_record_that_ends():
    state = sequences(2, "old").record(None, "k", (1,), False, 0).state
    plan = sequences(2, "new").record(state, "k", (2,), True, 10)
    assert [(s.values, s.sequence.start, s.sequence.end) for s in plan.sends] == [
        ((1,), True, False), ((2,), False, True)]
    assert plan.state.recent == ()
    assert not plan.state.open


def test_a_restored_ended_sequence_replays_nothing():
    old = sequences(3, "old")
    state = old.record(None, "k", (1,), False, 0).state
    state = old.record(state, "k", (2,), True, 1).state
    plan = sequences(3, "new").record(state, "k", (3,), False, 2)
    assert [params(s) for s in plan.sends] == [("s-k-new-1", True, False)]


def test_the_state_of_a_sequence_is_picklable():
    seq = sequences(2)
    state = seq.record(None, ("a", 1), (1.5, "text", [1, 2]), False, 3).state
    assert pickle.loads(pickle.dumps(state)) == state
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.open = False  # type: ignore[misc]


def test_failure_of_a_continuing_record_abandons_the_sequence():
    seq = sequences(replay=2)
    state = seq.record(None, "k", (1,), False, 0).state
    state = seq.record(state, "k", (2,), False, 1).state
    plan = seq.record(state, "k", (3,), False, 2)
    after = seq.failed(state, plan)
    assert not after.open
    assert after.idle_timer_ms is None
    assert after.number == 0
    assert after.recent == ((1,), (2,))  # what the abandoned sequence had, before the failure
    nxt = seq.record(after, "k", (4,), False, 3)
    assert [(s.values, *params(s)) for s in nxt.sends] == [
        ((1,), "s-k-inc1-1", True, False), ((2,), "s-k-inc1-1", False, False),
        ((4,), "s-k-inc1-1", False, False)]


def test_failure_of_a_restarting_record_replays_the_same_inputs_next():
    seq = sequences(replay=2)
    state = sequences(2, "old").record(None, "k", (1,), False, 0).state
    plan = seq.record(state, "k", (2,), False, 1)
    after = seq.failed(state, plan)
    assert after.number == 1 and not after.open
    assert after.recent == ((1,),)
    nxt = seq.record(after, "k", (3,), False, 2)
    assert [(s.values, *params(s)) for s in nxt.sends] == [
        ((1,), "s-k-inc1-2", True, False), ((3,), "s-k-inc1-2", False, False)]


def test_failure_of_a_keys_first_record_starts_a_new_id_next():
    seq = sequences(replay=2)
    plan = seq.record(None, "k", (1,), False, 0)
    after = seq.failed(None, plan)
    assert after == KeySequence("inc1", 0, False, 0, None, (), interrupted=True)
    nxt = seq.record(after, "k", (2,), False, 1)
    assert [params(s) for s in nxt.sends] == [("s-k-inc1-1", True, False)]


def test_failure_of_a_record_with_end_still_replays():
    seq = sequences(replay=1)
    state = seq.record(None, "k", (1,), False, 0).state
    plan = seq.record(state, "k", (2,), True, 1)
    after = seq.failed(state, plan)
    assert not after.open
    assert after.recent == ((1,),)
    assert [s.values for s in seq.record(after, "k", (3,), False, 2).sends] == [(1,), (3,)]


def test_idle_key_gets_an_end_flush_repeating_its_last_input():
    seq = sequences(replay=2)
    state = seq.record(None, "k", (1,), False, 1000).state
    state = seq.record(state, "k", (2,), False, 1050).state
    assert state.idle_timer_ms == 1050 + IDLE_MS
    plan = seq.idle(state, "k", 1150)
    assert isinstance(plan, IdlePlan)
    assert plan.end == Send((2,), SequenceParams("s-k-inc1-0", False, True), flush=True)
    assert plan.state == KeySequence("inc1", 0, False, 1050, None, ())
    # after the idle END nothing is replayed
    nxt = seq.record(plan.state, "k", (3,), False, 2000)
    assert [params(s) for s in nxt.sends] == [("s-k-inc1-1", True, False)]


def test_a_late_timer_still_ends():
    seq = sequences()
    state = seq.record(None, "k", (1,), False, 0).state
    assert seq.idle(state, "k", 10**9).end is not None


def test_a_stale_timer_rearms_instead_of_ending():
    seq = sequences()
    state = seq.record(None, "k", (1,), False, 1000).state  # timer at 1100
    state = seq.record(state, "k", (2,), False, 1080).state  # timer at 1180 (1100 not deleted)
    plan = seq.idle(state, "k", 1100)
    assert plan.end is None
    assert plan.state == dataclasses.replace(state, idle_timer_ms=1180)
    assert plan.state.open
    assert seq.idle(plan.state, "k", 1179).end is None
    assert seq.idle(plan.state, "k", 1180).end is not None


def test_an_old_incarnations_timer_ends_nothing_and_keeps_the_inputs_to_replay():
    """Fired right after a restore, the timer measured the outage, not the key's silence:
    the key's next record still warms up its new sequence."""
    state = sequences(2, "old").record(None, "k", (1,), False, 0).state
    new = sequences(2, "new")
    plan = new.idle(state, "k", IDLE_MS)
    assert plan.end is None
    assert plan.state == KeySequence("old", 0, False, 0, None, ((1,),), interrupted=True)
    nxt = new.record(plan.state, "k", (2,), False, IDLE_MS + 1)
    assert [(s.values, *params(s)) for s in nxt.sends] == [
        ((1,), "s-k-new-1", True, False), ((2,), "s-k-new-1", False, False)]


def test_an_old_incarnations_stale_timer_rearms():
    state = sequences(2, "old").record(None, "k", (1,), False, 0).state
    plan = sequences(2, "new").idle(state, "k", IDLE_MS - 1)
    assert plan.end is None
    assert plan.state == state  # (its timer at last activity + timeout, as before)


@pytest.mark.parametrize("state", [
    None, KeySequence("inc1", 0, False, 0, None, ()),
    KeySequence("inc1", 3, False, 0, None, ((1,),)),
])
def test_a_timer_of_a_closed_key_does_nothing(state):
    assert sequences().idle(state, "k", 10**6) is None


def test_continues():
    seq = sequences()
    assert not seq.continues(None, 0)
    assert seq.continues(KeySequence("inc1", 0, True, 0, 100), 50)
    assert not seq.continues(KeySequence("inc1", 0, False, 0, None), 50)
    assert not seq.continues(KeySequence("inc0", 0, True, 0, 100), 50)


@pytest.mark.parametrize("timeout, idle_ms", [(timedelta(microseconds=1), 1),
                                              (timedelta(microseconds=999), 1),
                                              (timedelta(microseconds=1500), 1),
                                              (timedelta(seconds=30), 30_000)])
def test_idle_timer_in_whole_milliseconds_at_least_one(timeout, idle_ms):
    seq = KeyedSequencePolicy("s", timeout).for_incarnation("i")
    assert seq.record(None, "k", (1,), False, 500).state.idle_timer_ms == 500 + idle_ms


def test_describe():
    text = sequences(replay=3, incarnation="0a1b2c3d4e5f", idle_ms=30_000).describe()
    assert "s-<key>-0a1b2c3d4e5f-<n>" in text
    assert "30000 ms" in text
    assert "3 input(s)" in text


def test_keys_have_separate_sequences():
    seq = sequences()
    a = seq.record(None, "a", (1,), False, 0)
    b = seq.record(None, "b", (2,), False, 0)
    assert a.sends[0].sequence.sequence_id == "s-a-inc1-0"
    assert b.sends[0].sequence.sequence_id == "s-b-inc1-0"
    long_key = "z" * 200
    c = seq.record(None, long_key, (3,), False, 0)
    assert c.sends[0].sequence.sequence_id == f"s-{key_text(long_key)}-inc1-0"


# --- KeyedSequences: random runs against a reference model ----------------------------------------

KEYS = ["a", "b", 3, "k" * 100]
TIME_STEPS = [0, 1, IDLE_MS - 1, IDLE_MS, IDLE_MS + 1, 5 * IDLE_MS]

Op = tuple  # ("record", key, end, failed, dt) | ("idle", key, dt) | ("checkpoint",) | ("restore",)

operations = st.one_of(
    st.tuples(st.just("record"), st.sampled_from(KEYS), st.booleans(),
              st.sampled_from([False, False, False, True]), st.sampled_from(TIME_STEPS)),
    st.tuples(st.just("idle"), st.sampled_from(KEYS), st.sampled_from(TIME_STEPS)),
    st.tuples(st.just("checkpoint")),
    st.tuples(st.just("restore")),
)


@dataclasses.dataclass
class Ref:
    """What the model (Triton) saw of a key's last sequence, kept by the test itself."""

    inputs: list  # the inputs the last sequence received, oldest first
    ended: bool  # told END (by a record or idle): nothing to replay
    last_record_ms: int


class Run:
    """Plays Flink for one random run: keyed state, checkpoints, restores (new incarnation),
    and checks every plan against the invariants."""

    def __init__(self, replay: int) -> None:
        self.replay = replay
        self.policy = KeyedSequencePolicy("s", timedelta(milliseconds=IDLE_MS), replay)
        self.generation = 0
        self.seq = self.policy.for_incarnation("inc0")
        self.now = 1_000
        self.values = 0
        self.states: dict[Any, KeySequence] = {}
        self.ref: dict[Any, Ref] = {}
        self.checkpoint: tuple[dict, dict] = ({}, {})
        self.started: set[str] = set()  # every ID ever sent with START
        self.live: set[str] = set()  # IDs open in this incarnation (may get requests)
        self.dead: set[str] = set()  # ended, abandoned or of an old incarnation

    def prefix(self, key: Any) -> str:
        return f"s-{key_text(key)}-{self.seq.incarnation}-"

    def apply(self, op: Op) -> None:
        if op[0] == "record":
            _, key, end, failed, dt = op
            self.now += dt
            self.record(key, end, failed)
        elif op[0] == "idle":
            _, key, dt = op
            self.now += dt
            self.idle(key)
        elif op[0] == "checkpoint":
            self.checkpoint = (dict(self.states), copy.deepcopy(self.ref))
        else:
            self.states, self.ref = dict(self.checkpoint[0]), copy.deepcopy(self.checkpoint[1])
            self.generation += 1
            self.seq = self.policy.for_incarnation(f"inc{self.generation}")
            self.dead |= self.live
            self.live = set()
        self.check_states()

    def record(self, key: Any, end: bool, failed: bool) -> None:
        state, ref, n = self.states.get(key), self.ref.get(key), self.replay
        self.values += 1
        value = (self.values,)
        continues = (state is not None and state.open
                     and state.incarnation == self.seq.incarnation)
        assert self.seq.continues(state, self.now) == continues
        plan = self.seq.record(state, key, value, end, self.now)
        sends = plan.sends
        # one sequence per plan, this incarnation's, numbered on from the key's last one
        ids = {s.sequence.sequence_id for s in sends}
        assert len(ids) == 1
        (sequence_id,) = ids
        assert sequence_id.startswith(self.prefix(key))
        number = state.number if continues else (0 if state is None else state.number + 1)
        assert sequence_id == self.policy.sequence_id(key, self.seq.incarnation, number)
        assert plan.state.number == number
        assert sequence_id not in self.dead
        # replay: the last min(N, available) inputs of an interrupted sequence, first
        expected_replay = ([] if continues or n == 0 or ref is None or ref.ended
                           else ref.inputs[-n:])
        assert [s.values for s in sends[:-1]] == expected_replay
        assert plan.replayed == len(expected_replay)
        assert sends[-1].values == value
        # START on the first request of a new sequence only; END only on an ending record
        assert [s.sequence.start for s in sends] == [not continues] + [False] * (len(sends) - 1)
        assert [s.sequence.end for s in sends] == [False] * (len(sends) - 1) + [end]
        assert not any(s.flush for s in sends)
        if continues:
            assert sequence_id in self.live
        else:
            assert sequence_id not in self.started  # IDs never repeat across sequences
            self.started.add(sequence_id)
        if failed:
            after = self.seq.failed(state, plan)
            self.live.discard(sequence_id)
            self.dead.add(sequence_id)
            inputs = ref.inputs if continues else list(expected_replay)
            self.ref[key] = Ref(list(inputs), False,
                                ref.last_record_ms if ref is not None else self.now)
            assert not after.open and after.idle_timer_ms is None
            assert after.number == number and after.incarnation == self.seq.incarnation
        else:
            after = plan.state
            if end:
                self.live.discard(sequence_id)
                self.dead.add(sequence_id)
                self.ref[key] = Ref([], True, self.now)
            else:
                self.live.add(sequence_id)
                inputs = (ref.inputs if continues else list(expected_replay)) + [value]
                self.ref[key] = Ref(inputs, False, self.now)
            assert after.last_activity_ms == self.now
        self.states[key] = after

    def idle(self, key: Any) -> None:
        state, ref = self.states.get(key), self.ref.get(key)
        plan = self.seq.idle(state, key, self.now)
        if state is None or not state.open:
            assert plan is None
            return
        assert plan is not None
        due = state.last_activity_ms + IDLE_MS
        if self.now < due:  # stale: a record came after the timer was set
            assert plan.end is None
            assert plan.state == dataclasses.replace(state, idle_timer_ms=due)
        elif state.incarnation != self.seq.incarnation:
            assert plan.end is None  # an old incarnation's ID is never touched
            assert not plan.state.open and plan.state.idle_timer_ms is None
            assert plan.state.recent == state.recent and plan.state.interrupted
            # (the model was told nothing: the key's next sequence replays as after any
            # interruption)
        else:
            sequence_id = self.policy.sequence_id(key, state.incarnation, state.number)
            assert plan.end == Send(tuple(ref.inputs[-1]), SequenceParams(
                sequence_id, False, True), flush=True)
            assert sequence_id in self.live
            self.live.discard(sequence_id)
            self.dead.add(sequence_id)
            assert not plan.state.open and plan.state.idle_timer_ms is None
            assert plan.state.recent == ()
            assert plan.state.number == state.number
            self.ref[key] = Ref([], True, ref.last_record_ms)
        self.states[key] = plan.state

    def check_states(self) -> None:
        keep = max(1, self.replay)
        for key, state in self.states.items():
            ref = self.ref[key]
            if state.open:
                assert state.idle_timer_ms == state.last_activity_ms + IDLE_MS
                assert state.last_activity_ms == ref.last_record_ms
                assert list(state.recent) == ref.inputs[-keep:]
                assert 1 <= len(state.recent) <= keep
            else:
                assert state.idle_timer_ms is None
                if ref.ended:
                    assert state.recent == ()
                elif self.replay:
                    assert list(state.recent[-self.replay:]) == ref.inputs[-self.replay:]
            assert len(state.recent) <= keep


@settings(max_examples=300, deadline=None)
@given(replay=st.integers(0, 4), ops=st.lists(operations, max_size=60))
def test_random_runs_keep_the_invariants(replay, ops):
    run = Run(replay)
    for op in ops:
        run.apply(op)


@settings(max_examples=100, deadline=None)
@given(replay=st.integers(1, 4), before=st.lists(st.booleans(), min_size=1, max_size=10),
       after_restore=st.integers(1, 5))
def test_after_a_restore_the_old_id_is_never_used(replay, before, after_restore):
    """Records (ending or not) in one incarnation, a restore of the last state in a new one:
    no request of the new incarnation carries an ID of the old one."""
    old, new = sequences(replay, "old"), sequences(replay, "new")
    state, old_ids = None, set()
    for i, end in enumerate(before):
        plan = old.record(state, "k", (i,), end, i)
        old_ids |= {s.sequence.sequence_id for s in plan.sends}
        state = plan.state
    for j in range(after_restore):
        plan = new.record(state, "k", (100 + j,), False, 100 + j)
        assert not old_ids & {s.sequence.sequence_id for s in plan.sends}
        state = plan.state
    idle = new.idle(state, "k", 10**6)
    assert idle.end is not None and idle.end.sequence.sequence_id not in old_ids


# --- KeyedInferenceSession against a fake stateful Triton --------------------------------------

METADATA = {"name": "m", "versions": ["1"], "platform": "python",
            "inputs": [{"name": "x", "datatype": "INT64", "shape": [1]}],
            "outputs": [{"name": "y", "datatype": "INT64", "shape": [1]}]}
# (64 slots: more than any test's keys, so that only the tests of the budget see evictions)
CONFIG = {"name": "m", "max_batch_size": 0,
          "sequence_batching": {"max_sequence_idle_microseconds": "10000000",
                                "oldest": {"max_candidate_sequences": 64}}}


class Answer:
    def __init__(self, total: int) -> None:
        self.total = total

    def as_numpy(self, name: str) -> np.ndarray | None:
        return np.array([self.total], dtype=np.int64) if name == "y" else None


class FakeTriton:
    """A running total per sequence, checked as Triton checks a sequence: a request without
    START to an unknown ID is refused (400); an END frees the ID; a flush adds nothing.
    ``fail``: per infer() call number (from 1), an error to raise instead of answering."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = CONFIG if config is None else config
        self.requests: list[InferRequest] = []
        self.totals: dict[str | int, int] = {}
        self.started: list[str | int] = []
        self.fail: dict[int, TritonRequestError] = {}
        self.closed = False

    def model_metadata(self, model, timeout=None) -> dict[str, Any]:
        return METADATA

    def model_config(self, model, timeout=None) -> dict[str, Any]:
        return self.config

    def infer(self, request: InferRequest) -> Answer:
        self.requests.append(request)
        error = self.fail.pop(len(self.requests), None)
        if error is not None:
            raise error
        sequence = request.sequence
        assert sequence is not None
        if sequence.start:
            assert sequence.sequence_id not in self.started, "an ID reused"
            self.started.append(sequence.sequence_id)
            self.totals[sequence.sequence_id] = 0
        elif sequence.sequence_id not in self.totals:
            raise TritonServerError(
                f"HTTP 400: inference request for sequence {sequence.sequence_id} to model "
                "'m' must specify the START flag on the first request of the sequence", 400)
        flush = bool((request.parameters or {}).get(FLUSH_PARAMETER))
        if not flush:
            self.totals[sequence.sequence_id] += int(request.inputs[0].array.reshape(-1)[0])
        total = self.totals[sequence.sequence_id]
        if sequence.end:
            del self.totals[sequence.sequence_id]
        return Answer(total)

    def close(self) -> None:
        self.closed = True

    def sent(self, since: int = 0) -> list[tuple[int, str | int, bool, bool, Any]]:
        """(value, sequence ID, start, end, parameters) of each request; parameters without
        Triton's backlog bound 'timeout', which every START carries (its own tests check it)."""
        return [(int(r.inputs[0].array.reshape(-1)[0]), r.sequence.sequence_id,
                 r.sequence.start, r.sequence.end, _without_timeout(r.parameters))
                for r in self.requests[since:]]


def _without_timeout(parameters: Any) -> Any:
    rest = {k: v for k, v in (parameters or {}).items() if k != TRITON_TIMEOUT_PARAMETER}
    return rest or None


class MetricGroup(FakeMetricGroup):
    """With the keyed function's sequence gauges read at once."""

    def sample(self) -> dict[str, int]:
        gauges = self.groups["triton"].gauges
        return {name: gauges[name]() for name in (
            "sequencesStarted", "sequencesRestarted", "replayedInputs", "idleEnds")}


class Harness:
    """One TritonInference (a keyed function) opened against a FakeTriton; each open() is a new
    incarnation, 'inc1', 'inc2', ...; ``states`` plays Flink's keyed state."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any] | None = None,
                 **extra: str) -> None:
        self.inference = TritonInference.create({**KEYED, **extra}, INPUTS, OUTPUT, mode="keyed")
        self.triton = FakeTriton(config)
        self.opened = 0
        self.states: dict[Any, KeySequence | None] = {}
        self.now = 1_000
        monkeypatch.setattr("pyflink_triton.sessions.servers.connect",
                            lambda options, endpoint: self.triton)

        def incarnation() -> str:
            self.opened += 1
            return f"inc{self.opened}"

        monkeypatch.setattr("pyflink_triton.sessions.function.new_incarnation", incarnation)
        self.session = self.open()

    def open(self) -> KeyedInferenceSession:
        self.metrics = MetricGroup()
        self.session = self.inference.open(0, 0, self.metrics, mode="keyed")
        return self.session

    def restore(self, states: dict[Any, KeySequence | None] | None = None
                ) -> KeyedInferenceSession:
        """A failover: the old session is gone (not closed), a new one opens on the state of
        the last checkpoint (by default the current state)."""
        if states is not None:
            self.states = dict(states)
        return self.open()

    def infer(self, key: Any, value: Any, end: bool = False, dt: int = 1) -> Any:
        self.now += dt
        result, self.states[key] = self.session.infer(self.states.get(key), key, [value], end,
                                                      self.now)
        return result

    def timer(self, key: Any) -> None:
        """The key's idle timer fires (at its registered time)."""
        state = self.states.get(key)
        assert state is not None and state.idle_timer_ms is not None
        self.now = max(self.now, state.idle_timer_ms)
        self.states[key] = self.session.end_if_idle(state, key, self.now)


@pytest.fixture
def harness(monkeypatch):
    def make(config: dict[str, Any] | None = None, **extra: str) -> Harness:
        return Harness(monkeypatch, config, **{k.replace("_", "-"): v for k, v in extra.items()})
    return make


def test_records_of_a_key_share_one_sequence(harness):
    h = harness()
    assert [h.infer("a", v) for v in (1, 2, 3)] == [1, 3, 6]
    assert h.triton.sent() == [(1, "sensors-a-inc1-0", True, False, None),
                               (2, "sensors-a-inc1-0", False, False, None),
                               (3, "sensors-a-inc1-0", False, False, None)]
    assert h.states["a"] == KeySequence("inc1", 0, True, h.now, h.now + 5000, ((3,),))


def test_keys_are_separate_sequences(harness):
    h = harness()
    assert [h.infer("a", 1), h.infer("b", 10), h.infer("a", 2), h.infer("b", 20)] == [
        1, 10, 3, 30]
    assert [r.sequence.sequence_id for r in h.triton.requests] == [
        "sensors-a-inc1-0", "sensors-b-inc1-0", "sensors-a-inc1-0", "sensors-b-inc1-0"]


def test_a_record_with_end_sends_end_and_the_next_starts_anew(harness):
    h = harness(sequence_replay_records="3")
    h.infer("a", 1)
    assert h.infer("a", 2, end=True) == 3
    assert h.infer("a", 5) == 5  # a new sequence, nothing replayed after END
    assert h.triton.sent(1) == [(2, "sensors-a-inc1-0", False, True, None),
                                (5, "sensors-a-inc1-1", True, False, None)]


def test_idle_end_is_a_flush_with_the_sequence_flush_parameter(harness):
    h = harness()
    h.infer("a", 4)
    h.infer("a", 6)
    h.timer("a")
    last = h.triton.requests[-1]
    assert last.parameters == {"sequence_flush": True}
    assert FLUSH_PARAMETER == "sequence_flush"
    assert (last.sequence.sequence_id, last.sequence.start, last.sequence.end) == (
        "sensors-a-inc1-0", False, True)
    assert int(last.inputs[0].array.reshape(-1)[0]) == 6  # repeats the last input
    assert h.triton.totals == {}  # ended in Triton
    assert not h.states["a"].open
    assert all(_without_timeout(r.parameters) is None for r in h.triton.requests[:-1])
    assert h.session.idle_ends == 1


def test_a_stale_timer_sends_nothing(harness):
    h = harness()
    h.infer("a", 1)
    stale = h.states["a"]
    h.infer("a", 2, dt=10)
    sent = len(h.triton.requests)
    after = h.session.end_if_idle(h.states["a"], "a", stale.idle_timer_ms)
    assert len(h.triton.requests) == sent
    assert after.open
    assert after.idle_timer_ms == h.states["a"].idle_timer_ms


def test_a_failed_idle_end_closes_the_state_anyway(harness):
    h = harness()
    h.infer("a", 1)
    h.triton.fail[2] = TritonServerError("HTTP 400: refused", 400)
    h.timer("a")
    assert not h.states["a"].open
    assert h.session.idle_ends == 0
    h.session.close()
    assert len(h.triton.requests) == 2  # close() does not END it again
    assert h.triton.closed


def test_a_restore_restarts_each_open_key_with_replay(harness):
    h = harness(sequence_replay_records="2")
    for v in (1, 2, 3):
        h.infer("a", v)
    h.restore()
    assert h.infer("a", 10) == 15  # replayed 2 and 3, then 10
    assert h.triton.sent(3) == [(2, "sensors-a-inc2-1", True, False, REPLAYED),
                                (3, "sensors-a-inc2-1", False, False, REPLAYED),
                                (10, "sensors-a-inc2-1", False, False, None)]
    assert h.metrics.sample() == {"sequencesStarted": 1, "sequencesRestarted": 1,
                                  "replayedInputs": 2, "idleEnds": 0}


def test_a_restore_to_an_older_checkpoint(harness):
    h = harness(sequence_replay_records="5")
    h.infer("a", 1)
    checkpoint = dict(h.states)
    h.infer("a", 2)
    h.restore(checkpoint)
    assert h.infer("a", 2) == 3  # replays 1 (the checkpointed input), then the record again
    assert [s[1] for s in h.triton.sent(2)] == ["sensors-a-inc2-1"] * 2


def test_a_failed_request_abandons_the_sequence_with_the_fallback(harness):
    h = harness(sequence_replay_records="2", default_value="-1")
    h.infer("a", 1)
    h.infer("a", 2)
    h.triton.fail[3] = TritonServerError("HTTP 400: bad input", 400)
    assert h.infer("a", 3) == -1
    state = h.states["a"]
    assert not state.open and state.idle_timer_ms is None and state.number == 0
    assert h.infer("a", 4) == 7  # new sequence: replays 1 and 2, then 4
    assert h.triton.sent(3) == [(1, "sensors-a-inc1-1", True, False, REPLAYED),
                                (2, "sensors-a-inc1-1", False, False, REPLAYED),
                                (4, "sensors-a-inc1-1", False, False, None)]
    assert h.metrics.sample() == {"sequencesStarted": 2, "sequencesRestarted": 1,
                                  "replayedInputs": 2, "idleEnds": 0}


def test_a_failed_replayed_request_abandons_the_new_sequence(harness):
    h = harness(sequence_replay_records="2", default_value="-1")
    h.infer("a", 1)
    h.infer("a", 2)
    h.restore()
    h.triton.fail[3] = TritonServerError("HTTP 400: bad input", 400)  # the first replayed one
    assert h.infer("a", 5) == -1
    assert len(h.triton.requests) == 3  # the rest of the plan was not sent
    assert h.infer("a", 6) == 9  # replays 1 and 2 again, in yet another sequence
    assert {s[1] for s in h.triton.sent(3)} == {"sensors-a-inc2-2"}


def test_a_failed_request_without_fallback_raises(harness):
    h = harness()
    h.infer("a", 1)
    h.triton.fail[2] = TritonServerError("HTTP 400: bad input", 400)
    with pytest.raises(TritonServerError, match="bad input"):
        h.infer("a", 2)


def test_after_a_failure_close_does_not_end_the_abandoned_sequence(harness):
    h = harness(default_value="-1")
    h.infer("a", 1)
    h.triton.fail[2] = TritonServerError("HTTP 400: bad input", 400)
    h.infer("a", 2)
    h.session.close()
    assert len(h.triton.requests) == 2


@pytest.mark.parametrize("bad", ["abc", 2**70, 1.5])
def test_an_encoding_error_leaves_the_state_unchanged(harness, bad):
    h = harness(sequence_replay_records="2", default_value="-1")
    h.infer("a", 1)
    before = h.states["a"]
    sent = len(h.triton.requests)
    assert h.infer("a", bad) == -1
    assert h.states["a"] is before
    assert len(h.triton.requests) == sent
    assert h.infer("a", 2) == 3  # the sequence goes on
    assert h.metrics.sample()["sequencesStarted"] == 1


def test_an_encoding_error_of_a_restarting_record_sends_no_replay(harness):
    h = harness(sequence_replay_records="2", default_value="-1")
    h.infer("a", 1)
    h.restore()
    before = h.states["a"]
    assert h.infer("a", "abc") == -1
    assert len(h.triton.requests) == 1  # not even the replayed input
    assert h.states["a"] is before
    assert h.metrics.sample() == {"sequencesStarted": 0, "sequencesRestarted": 0,
                                  "replayedInputs": 0, "idleEnds": 0}


def test_an_encoding_error_without_fallback_raises_naming_the_model(harness):
    h = harness()
    with pytest.raises(TritonRequestError, match=r"Model 'm'.*needs integers"):
        h.infer("a", "abc")
    assert h.triton.requests == []


def test_close_ends_every_sequence_still_open_in_this_incarnation(harness):
    h = harness(sequence_replay_records="1")
    h.infer("a", 1)
    h.infer("b", 10)
    h.infer("b", 20)
    h.infer("c", 100)
    h.infer("c", 200, end=True)  # ended by its record
    h.infer("d", 7)
    h.timer("d")  # ended idle
    sent = len(h.triton.requests)
    h.session.close()
    ends = h.triton.sent(sent)
    assert sorted(ends) == [(1, "sensors-a-inc1-0", False, True, {"sequence_flush": True}),
                            (20, "sensors-b-inc1-0", False, True, {"sequence_flush": True})]
    assert h.triton.totals == {}
    assert h.triton.closed


def test_close_leaves_an_old_incarnations_sequences_alone(harness):
    h = harness()
    h.infer("a", 1)
    h.infer("b", 2)
    h.restore()  # (the first session is gone without close(), as in a failover)
    h.infer("a", 3)
    sent = len(h.triton.requests)
    h.session.close()
    assert [s[1] for s in h.triton.sent(sent)] == ["sensors-a-inc2-1"]


def test_close_after_a_restarted_sequence_ended_sends_nothing(harness):
    h = harness()
    h.infer("a", 1)
    h.restore()
    h.infer("a", 2, end=True)
    sent = len(h.triton.requests)
    h.session.close()
    assert len(h.triton.requests) == sent


def test_close_goes_on_when_an_end_fails(harness):
    h = harness()
    h.infer("a", 1)
    h.infer("b", 2)
    h.triton.fail[3] = TritonServerError("HTTP 400: refused", 400)
    h.session.close()
    assert len(h.triton.requests) == 4
    assert h.triton.closed


def test_closing_twice_ends_nothing_twice(harness):
    h = harness()
    h.infer("a", 1)
    h.session.close()
    h.session.close()
    assert len(h.triton.requests) == 2


def test_metrics_of_a_run(harness):
    h = harness(sequence_replay_records="3")
    assert h.metrics.sample() == {"sequencesStarted": 0, "sequencesRestarted": 0,
                                  "replayedInputs": 0, "idleEnds": 0}
    h.infer("a", 1)
    h.infer("a", 2)
    h.infer("b", 1, end=True)
    h.infer("b", 1)  # a new sequence after END: started, not restarted
    assert h.metrics.sample() == {"sequencesStarted": 3, "sequencesRestarted": 0,
                                  "replayedInputs": 0, "idleEnds": 0}
    h.timer("b")
    assert h.metrics.sample()["idleEnds"] == 1
    h.restore()  # new session, new gauges; a still open
    h.infer("a", 3)
    h.infer("b", 4)  # b ended before the restore: not a restart
    assert h.metrics.sample() == {"sequencesStarted": 2, "sequencesRestarted": 1,
                                  "replayedInputs": 2, "idleEnds": 0}
    assert (h.session.started, h.session.restarted, h.session.replayed,
            h.session.idle_ends) == (2, 1, 2, 0)


@pytest.mark.parametrize("replay", ["0", "2"])
def test_a_failed_first_record_counts_as_a_restart_of_the_key(harness, replay):
    """sequencesRestarted counts a key "whose last sequence stopped without END: a failover,
    or a failure" (KeyedInferenceSession._count). A key whose sequence was abandoned after its
    first request failed is such a key, as is one abandoned on a later request."""
    h = harness(sequence_replay_records=replay, default_value="-1")
    h.triton.fail[1] = TritonServerError("HTTP 400: bad input", 400)
    assert h.infer("a", 1) == -1
    h.infer("a", 2)
    h.infer("b", 1)
    h.triton.fail[4] = TritonServerError("HTTP 400: bad input", 400)
    assert h.infer("b", 2) == -1
    h.infer("b", 3)
    assert h.metrics.sample()["sequencesRestarted"] == 2


def test_open_keyed_refuses_a_model_without_sequence_batching(harness):
    h = harness()
    h.triton.config = {"name": "m", "max_batch_size": 0}
    h.triton.closed = False
    with pytest.raises(TritonConfigError, match=r"'m'.*sequence_batching"):
        h.open()
    assert h.triton.closed


def test_open_keyed_refuses_an_idle_timeout_not_below_the_models(harness):
    """Checked against the served model in every open(): it may have changed since."""
    longer = {**CONFIG, "sequence_batching": {"max_sequence_idle_microseconds": "20000000"}}
    h = harness(longer, sequence_idle_timeout="10 s")
    assert h.session.sequences.policy.idle_timeout == timedelta(seconds=10)
    h.triton.config = CONFIG  # now 10 s, as the timeout
    h.triton.closed = False
    with pytest.raises(TritonConfigError, match=r"'sequence-idle-timeout' \(10000 ms\).*"
                                                r"\(10000 ms\)"):
        h.open()
    assert h.triton.closed


def test_open_keyed_uses_half_the_models_idle_time_and_a_new_incarnation(harness):
    h = harness()
    assert h.session.sequences.policy.idle_timeout == timedelta(seconds=5)
    assert h.session.sequences.incarnation == "inc1"
    assert h.open().sequences.incarnation == "inc2"


@settings(max_examples=60, deadline=None)
@given(script=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 9),
                                 st.sampled_from(["go", "go", "end", "fail", "idle",
                                                  "restore"])), max_size=25),
       replay=st.integers(0, 3))
def test_random_session_runs_never_confuse_triton(script, replay):
    """Whatever happens, every request Triton gets is valid for its sequence (no request to an
    unstarted or ended ID, no ID started twice: FakeTriton asserts both), no request goes to an
    abandoned ID, and close() leaves open only the sequences abandoned after a failure (Triton
    may or may not hold those; it reaps them)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        h = Harness(monkeypatch, None, **{"sequence-replay-records": str(replay),
                                          "default-value": "-1"})
        abandoned: set[str | int] = set()
        for key, value, what in script:
            if what == "restore":
                h.triton.totals.clear()  # (Triton reaps the old incarnation's meanwhile)
                h.restore()
            elif what == "idle":
                if h.states.get(key) is not None and h.states[key].idle_timer_ms is not None:
                    h.timer(key)
            else:
                if what == "fail":
                    h.triton.fail[len(h.triton.requests) + 1] = TritonServerError(
                        "HTTP 400: refused", 400)
                sent = len(h.triton.requests)
                result = h.infer(key, value, end=what == "end")
                ids = {r.sequence.sequence_id for r in h.triton.requests[sent:]}
                assert not ids & abandoned
                if what == "fail":
                    assert result == -1
                    abandoned |= ids
                else:
                    assert result != -1
        h.session.close()
        assert set(h.triton.totals) <= abandoned


# --- sequences Triton no longer holds; steps never sent twice; a bounded close() --------------

def test_a_key_idle_past_the_models_max_idle_starts_a_new_sequence(harness):
    """Its idle END came late (or not at all): Triton reaped the sequence after the model's
    max_sequence_idle_microseconds (10 s here), so the next record starts a new one, warmed
    up with the key's last inputs, instead of continuing into a 400."""
    h = harness(sequence_replay_records="2")
    h.infer("a", 1)
    h.infer("a", 2)
    h.triton.totals.clear()  # (what Triton's reaper did, untold)
    assert h.infer("a", 4, dt=10_000) == 7
    assert h.triton.sent(2) == [(1, "sensors-a-inc1-1", True, False, REPLAYED),
                                (2, "sensors-a-inc1-1", False, False, REPLAYED),
                                (4, "sensors-a-inc1-1", False, False, None)]
    assert h.metrics.sample()["sequencesRestarted"] == 1


def test_a_key_idle_below_the_models_max_idle_continues(harness):
    """Past its own idle timeout (5 s, its END not sent yet) but within Triton's 10 s."""
    h = harness(sequence_replay_records="2")
    h.infer("a", 1)
    assert h.infer("a", 2, dt=9_999) == 3
    assert [s[1:3] for s in h.triton.sent()] == [("sensors-a-inc1-0", True),
                                                ("sensors-a-inc1-0", False)]


@pytest.mark.parametrize("retries", ["0", "3"])
def test_a_sequence_triton_no_longer_knows_restarts_once_with_replay(harness, retries):
    """Triton restarted (or reaped the sequence) and answers the continuation with 400 "must
    specify the START flag": the key's sequence restarts (new ID, START, replay), once."""
    h = harness(sequence_replay_records="2", max_retries=retries)
    for v in (1, 2, 3):
        h.infer("a", v)
    h.triton.totals.clear()  # a Triton restart: every sequence is gone
    assert h.infer("a", 10) == 15
    assert h.triton.sent(3) == [(10, "sensors-a-inc1-0", False, False, None),  # the 400
                                (2, "sensors-a-inc1-1", True, False, REPLAYED),
                                (3, "sensors-a-inc1-1", False, False, REPLAYED),
                                (10, "sensors-a-inc1-1", False, False, None)]
    assert h.infer("a", 20) == 35  # and goes on there
    assert h.states["a"].number == 1 and h.states["a"].open


def test_a_step_that_may_have_reached_the_model_is_not_sent_again_into_its_sequence(harness):
    """A reset after the request was written: the model may have applied it. Resending it into
    the sequence could apply it twice; the key's sequence restarts instead, and the record is
    applied once, in the new sequence, after the replay."""
    h = harness(sequence_replay_records="2", max_retries="5")
    h.infer("a", 1)
    h.infer("a", 2)
    h.triton.fail[3] = TritonConnectionError("connection reset")  # (maybe delivered)
    assert h.infer("a", 4) == 7
    assert h.triton.sent(2) == [(4, "sensors-a-inc1-0", False, False, None),
                                (4, "sensors-a-inc1-0", False, True, FLUSHED),  # its slot
                                (1, "sensors-a-inc1-1", True, False, REPLAYED),
                                (2, "sensors-a-inc1-1", False, False, REPLAYED),
                                (4, "sensors-a-inc1-1", False, False, None)]
    assert "sensors-a-inc1-0" not in h.triton.totals  # ended, not left to the reaper


def test_a_step_that_surely_never_left_is_retried_in_its_sequence(harness):
    h = harness(max_retries="5", retry_initial_backoff="1ms", retry_max_backoff="1ms")
    h.infer("a", 1)
    h.triton.fail[2] = TritonConnectionError("connection refused", maybe_delivered=False)
    h.triton.fail[3] = TritonConnectionError("connection refused", maybe_delivered=False)
    assert h.infer("a", 2) == 3
    assert [s[1:3] for s in h.triton.sent(1)] == [("sensors-a-inc1-0", False)] * 3


def test_a_sequence_restarts_only_once_per_record(harness):
    h = harness(sequence_replay_records="1", default_value="-1", max_retries="3")
    h.infer("a", 1)
    h.triton.fail[2] = TritonConnectionError("connection reset")
    h.triton.fail[4] = TritonConnectionError("connection reset")  # the restart's START
    assert h.infer("a", 2) == -1
    assert [s[1:4] for s in h.triton.sent(1)] == [
        ("sensors-a-inc1-0", False, False), ("sensors-a-inc1-0", False, True),  # (its END)
        ("sensors-a-inc1-1", True, False), ("sensors-a-inc1-1", False, True)]
    assert not h.states["a"].open
    assert h.infer("a", 5) == 6  # the next record starts again, replaying 1


def test_a_retry_that_then_meets_an_unknown_sequence_restarts(harness):
    """Connection refused while Triton restarts (retried in place: it never left), then the
    restarted Triton's 400: the sequence restarts with the replay."""
    h = harness(sequence_replay_records="1", max_retries="5", retry_initial_backoff="1ms",
                retry_max_backoff="1ms")
    h.infer("a", 1)
    h.triton.fail[2] = TritonConnectionError("connection refused", maybe_delivered=False)
    h.triton.totals.clear()
    assert h.infer("a", 2) == 3
    assert [s[1:3] for s in h.triton.sent(1)] == [
        ("sensors-a-inc1-0", False), ("sensors-a-inc1-0", False),  # refused, then the 400
        ("sensors-a-inc1-1", True), ("sensors-a-inc1-1", False)]


class UnreachableTriton(FakeTriton):
    """Answers the requests of open(), then refuses every request, as a dead server."""

    def infer(self, request: InferRequest) -> Answer:
        self.requests.append(request)
        raise TritonConnectionError("connection refused", maybe_delivered=False)


def test_close_against_a_dead_server_sends_one_end_and_gives_up_at_once(harness, caplog):
    """Without a bound, 3 keys x 11 attempts x the backoff would hold close() for minutes."""
    h = harness(max_retries="10", retry_initial_backoff="1 s")
    for key in ("a", "b", "c"):
        h.infer(key, 1)
    dead = UnreachableTriton()
    h.session._local.transport = dead
    started = time.monotonic()
    h.session.close()
    assert time.monotonic() - started < 1.0
    assert len(dead.requests) == 1
    assert "3 of 3 open sequence(s) of model 'm' were not ended at close" in caplog.text
    assert "connection refused" in caplog.text


class SlowTriton(FakeTriton):
    """Answers every request after ``seconds`` (at most the request's timeout)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def infer(self, request: InferRequest) -> Answer:
        time.sleep(min(self.seconds, request.timeout or self.seconds))
        return super().infer(request)


def test_close_ends_sequences_within_its_deadline(harness, caplog):
    h = harness()
    for key in ("a", "b", "c", "d"):
        h.infer(key, 1)
    slow = SlowTriton(0.2)
    slow.totals = dict(h.triton.totals)
    h.session._local.transport = slow
    started = time.monotonic()
    h.session.end_open_sequences(within=0.5)
    assert time.monotonic() - started < 1.5  # (0.5 s, and the last attempt cut to what is left)
    assert 1 <= len(slow.requests) <= 3
    assert f"{4 - len(slow.requests)} of 4 open sequence(s)" in caplog.text
    h.session.close()  # (nothing left to end)
    assert len(slow.requests) <= 3


def test_a_failed_replay_that_may_have_arrived_restarts_the_new_sequence_once(harness):
    h = harness(sequence_replay_records="2", max_retries="3")
    h.infer("a", 1)
    h.infer("a", 2)
    h.restore()
    h.triton.fail[3] = TritonConnectionError("connection reset")  # the first replayed one
    assert h.infer("a", 5) == 8
    assert [s[1:4] for s in h.triton.sent(2)] == [
        ("sensors-a-inc2-1", True, False), ("sensors-a-inc2-1", False, True),  # (its END)
        ("sensors-a-inc2-2", True, False), ("sensors-a-inc2-2", False, False),
        ("sensors-a-inc2-2", False, False)]


def test_a_sequence_replaced_after_triton_reaped_it_is_not_ended_at_close(harness):
    h = harness()
    h.infer("a", 1)
    h.infer("a", 2, dt=10_000)  # (a new sequence: Triton reaped the first)
    sent = len(h.triton.requests)
    h.session.close()
    assert [s[1:4] for s in h.triton.sent(sent)] == [("sensors-a-inc1-1", False, True)]


def test_an_idle_timer_later_than_the_reaper_sends_no_end_and_keeps_the_replay(harness):
    """The timer fired after Triton's max idle (10 s here): the END would meet a 400. The key's
    next record starts anew with the replay, as after any interruption."""
    h = harness(sequence_replay_records="2")
    h.infer("a", 1)
    h.infer("a", 2)
    sent = len(h.triton.requests)
    h.now += 10_000
    h.states["a"] = h.session.end_if_idle(h.states["a"], "a", h.now)
    assert len(h.triton.requests) == sent
    assert not h.states["a"].open and h.states["a"].interrupted
    h.triton.totals.clear()  # (what the reaper did)
    assert h.infer("a", 4) == 7
    assert [s[0] for s in h.triton.sent(sent)] == [1, 2, 4]


def test_close_names_the_last_failure_even_when_it_did_not_stop_it(harness, caplog):
    h = harness()
    h.infer("a", 1)
    h.triton.totals.clear()  # (the END will meet a 400: Triton lost the sequence)
    h.session.close()
    assert "1 of 1 open sequence(s)" in caplog.text
    assert "must specify the START flag" in caplog.text


# --- the slot budget: at most so many sequences open per subtask, LRU eviction ----------------

import logging  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from pyflink_triton.wire.failures import SEQUENCE_BACKLOG_EXPIRED, server_error  # noqa: E402
from pyflink_triton.wire.request import ModelRef  # noqa: E402

# 2 sequence slots (Oldest, 1 instance): a budget of 2 at parallelism 1.
TWO_SLOTS = {**CONFIG, "sequence_batching": {"max_sequence_idle_microseconds": "10000000",
                                             "oldest": {"max_candidate_sequences": 2}}}
SLOTS_TEXT = "2 sequence slot(s) (Oldest strategy: 1 instance(s) x max_candidate_sequences 2)"
BACKLOG_503 = f"HTTP 503: {SEQUENCE_BACKLOG_EXPIRED}"
# Triton's 'timeout' of every START, in µs: the idle timeout (half the model's 10 s), as
# 'timeout' (30 s) leaves more.
START_TIMEOUT = 5_000_000


def budgeted(harness: Callable[..., Harness], config: dict[str, Any] | None = None,
             **extra: str) -> Harness:
    """A harness of 2 slots replaying 2 inputs, whose clock is the wall clock: an eviction
    decides whether Triton reaped the victim already by the wall clock (see
    test_an_evictions_end_is_decided_by_the_records_time)."""
    h = harness(TWO_SLOTS if config is None else config,
                **{"sequence_replay_records": "2", **extra})
    h.now = int(time.time() * 1000)
    return h


def slot_gauges(h: Harness) -> dict[str, int]:
    gauges = h.metrics.groups["triton"].gauges
    return {name: gauges[name]() for name in (
        "sequenceEvictions", "openSequences", "sequenceSlotBudget")}


def three_keys(h: Harness) -> None:
    """a, a, a, b, b: both slots held (a least recently used); then c evicts a."""
    for key, value in (("a", 1), ("a", 2), ("a", 3), ("b", 10), ("b", 20)):
        h.infer(key, value)
    assert h.infer("c", 100) == 100


def test_a_start_beyond_the_budget_first_ends_the_least_recently_used_sequence(harness):
    h = budgeted(harness)
    three_keys(h)
    assert h.triton.sent(5) == [(3, "sensors-a-inc1-0", False, True, FLUSHED),  # before c's
                                (100, "sensors-c-inc1-0", True, False, None)]  # START
    assert set(h.triton.totals) == {"sensors-b-inc1-0", "sensors-c-inc1-0"}
    assert h.states["a"].open  # (a's Flink state could not be changed then: the session knows)
    assert h.session.evictions == 1


def test_an_evicted_key_returns_in_a_new_sequence_replaying_its_last_inputs(harness):
    h = budgeted(harness)
    three_keys(h)
    sent = len(h.triton.requests)
    assert h.infer("a", 4) == 9  # 2 + 3 replayed, then 4; b is the least recent now
    assert h.triton.sent(sent) == [(20, "sensors-b-inc1-0", False, True, FLUSHED),
                                   (2, "sensors-a-inc1-1", True, False, REPLAYED),
                                   (3, "sensors-a-inc1-1", False, False, REPLAYED),
                                   (4, "sensors-a-inc1-1", False, False, None)]
    assert h.states["a"] == KeySequence("inc1", 1, True, h.now, h.now + 5000, ((3,), (4,)))
    assert h.infer("a", 5) == 14  # and goes on there
    sent = len(h.triton.requests)
    assert h.infer("b", 30) == 60  # evicts c; replays 10 and 20
    assert h.triton.sent(sent) == [(100, "sensors-c-inc1-0", False, True, FLUSHED),
                                   (10, "sensors-b-inc1-1", True, False, REPLAYED),
                                   (20, "sensors-b-inc1-1", False, False, REPLAYED),
                                   (30, "sensors-b-inc1-1", False, False, None)]
    assert h.metrics.sample() == {"sequencesStarted": 5, "sequencesRestarted": 2,
                                  "replayedInputs": 4, "idleEnds": 0}
    assert slot_gauges(h) == {"sequenceEvictions": 3, "openSequences": 2,
                              "sequenceSlotBudget": 2}


def test_keys_within_the_budget_are_never_evicted(harness):
    h = budgeted(harness)
    for n in range(10):
        assert h.infer("ab"[n % 2], 1) == n // 2 + 1
    assert h.session.evictions == 0
    assert {s[1] for s in h.triton.sent()} == {"sensors-a-inc1-0", "sensors-b-inc1-0"}


def test_a_key_whose_sequence_ended_frees_its_slot_without_an_eviction(harness):
    h = budgeted(harness)
    h.infer("a", 1)
    h.infer("b", 1, end=True)
    h.infer("c", 1)
    h.timer("a")  # (its idle END)
    h.infer("d", 1)
    assert h.session.evictions == 0
    assert slot_gauges(h)["openSequences"] == 2  # c and d


def test_an_evicted_keys_idle_timer_sends_nothing(harness):
    h = budgeted(harness)
    three_keys(h)
    sent = len(h.triton.requests)
    h.timer("a")
    assert len(h.triton.requests) == sent
    state = h.states["a"]
    assert not state.open and state.idle_timer_ms is None and state.interrupted
    assert state.recent == ((2,), (3,))  # (kept for the replay)
    assert h.session.idle_ends == 0
    h.timer("b")  # a key still open: its idle END as ever, freeing its slot
    assert h.triton.sent(sent) == [(20, "sensors-b-inc1-0", False, True, FLUSHED)]
    assert slot_gauges(h)["openSequences"] == 1
    assert h.infer("a", 4) == 9  # a slot is free: no eviction
    assert [s[1] for s in h.triton.sent(sent + 1)] == ["sensors-a-inc1-1"] * 3
    assert h.session.evictions == 1


def test_close_ends_only_the_sequences_still_open(harness):
    h = budgeted(harness)
    three_keys(h)
    sent = len(h.triton.requests)
    h.session.close()
    assert sorted(h.triton.sent(sent)) == [
        (20, "sensors-b-inc1-0", False, True, FLUSHED),
        (100, "sensors-c-inc1-0", False, True, FLUSHED)]
    assert h.triton.totals == {}


def test_an_evicted_sequence_triton_already_reaped_gets_no_end(harness):
    """Idle past the model's max_sequence_idle_microseconds (10 s): an END would meet a 400."""
    h = budgeted(harness)
    h.now -= 20_000
    h.infer("a", 1)
    h.infer("b", 10, dt=15_000)
    sent = len(h.triton.requests)
    assert h.infer("c", 100, dt=5_000) == 100
    assert h.triton.sent(sent) == [(100, "sensors-c-inc1-0", True, False, None)]
    assert h.session.evictions == 1


def test_an_evictions_end_is_decided_by_the_records_time(harness):
    h = harness(TWO_SLOTS, sequence_replay_records="2")  # (its clock: 1 s after the epoch)
    h.infer("a", 1)
    h.infer("b", 10)
    h.infer("a", 2)
    sent = len(h.triton.requests)
    h.infer("c", 100)
    assert h.triton.sent(sent) == [(10, "sensors-b-inc1-0", False, True, FLUSHED),
                                   (100, "sensors-c-inc1-0", True, False, None)]


def test_slot_gauges(harness):
    h = budgeted(harness)
    assert slot_gauges(h) == {"sequenceEvictions": 0, "openSequences": 0,
                              "sequenceSlotBudget": 2}
    h.infer("a", 1)
    h.infer("b", 1)
    assert slot_gauges(h)["openSequences"] == 2
    h.infer("c", 1)
    assert slot_gauges(h) == {"sequenceEvictions": 1, "openSequences": 2,
                              "sequenceSlotBudget": 2}
    h.infer("c", 2, end=True)
    assert slot_gauges(h)["openSequences"] == 1
    h.session.close()
    assert slot_gauges(h)["openSequences"] == 0


@pytest.mark.parametrize("config, extra, budget", [
    (None, {}, 64),  # (CONFIG: 64 Oldest slots)
    (None, {"sequence_slots": "3"}, 3),
    (TWO_SLOTS, {"sequence_slots": "5"}, 5),  # (above the model's: the user knows better)
    ({**CONFIG, "max_batch_size": 4, "sequence_batching": {},
      "instance_group": [{"count": 2, "kind": "KIND_CPU"}]}, {}, 8),  # Direct: 2 x 4
])
def test_the_budget_comes_from_the_models_slots_or_sequence_slots(harness, config, extra,
                                                                   budget):
    h = harness(config, **extra)
    assert slot_gauges(h)["sequenceSlotBudget"] == budget
    assert h.session.budget == budget


def test_sequence_slots_sets_the_budget_that_evicts(harness):
    h = budgeted(harness, CONFIG, sequence_slots="1")
    h.infer("a", 1)
    h.infer("b", 1)
    assert h.triton.sent(1) == [(1, "sensors-a-inc1-0", False, True, FLUSHED),
                                (1, "sensors-b-inc1-0", True, False, None)]


def test_the_budget_is_the_models_slots_shared_by_the_subtasks(harness):
    eight = {**CONFIG, "sequence_batching": {"oldest": {"max_candidate_sequences": "8"}}}
    h = harness(eight)
    for parallelism, budget in ((1, 8), (3, 2), (8, 1)):
        session = h.inference.open(0, 0, MetricGroup(), parallelism, mode="keyed")
        assert session.budget == budget
        assert session.sequences.budget.describe() == (
            f"{budget} open sequence(s) per subtask (the model's 8 sequence slot(s) (Oldest "
            f"strategy: 1 instance(s) x max_candidate_sequences 8) / parallelism "
            f"{parallelism})")


def test_a_parallelism_above_the_models_slots_fails_at_open_naming_the_model(harness):
    h = harness(TWO_SLOTS)
    h.triton.closed = False
    with pytest.raises(TritonConfigError) as info:
        h.inference.open(0, 0, MetricGroup(), 3, mode="keyed")
    message = str(info.value)
    assert "Model 'm'" in message
    assert SLOTS_TEXT in message
    assert "3 parallel subtasks" in message
    assert "'sequence-slots'" in message
    assert h.triton.closed  # (open() let its connection go)
    # 'sequence-slots' takes it: the user knows better
    h = harness(TWO_SLOTS, sequence_slots="1")
    assert h.inference.open(0, 0, MetricGroup(), 3, mode="keyed").budget == 1


def eviction_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "least recently used" in r.getMessage()]


def test_a_warning_when_a_subtask_evicts_its_budget_within_a_minute(harness, caplog):
    h = budgeted(harness)
    h.infer("k0", 1)
    h.infer("k1", 1)
    h.infer("k2", 1)  # 1 eviction
    assert eviction_warnings(caplog) == []
    h.infer("k3", 1)  # 2: the budget
    [warning] = eviction_warnings(caplog)
    assert "Model 'm': this subtask ended 2 least recently used sequence(s) within 60 s" in (
        warning)
    assert (f"its budget: 2 open sequence(s) per subtask (the model's {SLOTS_TEXT} / "
            "parallelism 1)") in warning
    assert "replaying its last 2 input(s) ('sequence-replay-records')" in warning
    assert "'sequence-slots'" in warning
    h.infer("k4", 1)  # 3: no second warning within the minute
    assert len(eviction_warnings(caplog)) == 1


def test_the_eviction_warning_counts_evictions_within_a_minute(harness, caplog, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("pyflink_triton.sessions.keyed_slots.time",
                        SimpleNamespace(time=time.time, monotonic=lambda: clock[0]))
    h = budgeted(harness)  # (its window starts on this clock)
    warned = []
    for n, at in enumerate((0, 0, 0, 61, 70, 140, 201)):
        clock[0] = at
        h.infer(f"k{n}", 1)
        warned.append(len(eviction_warnings(caplog)))
    # evictions at 0 (k2), 61 (k3: a new minute), 70 (k4: 2 in it), 140 (k5), 201 (k6)
    assert warned == [0, 0, 0, 0, 1, 1, 1]
    assert h.session.evictions == 5


def test_every_start_carries_tritons_timeout_and_no_other_request_does(harness):
    h = budgeted(harness)
    three_keys(h)  # STARTs, continuations, an eviction END
    h.infer("a", 4)  # a START with replay
    h.infer("a", 5, end=True)  # a record's END
    h.timer("c")  # an idle END
    h.infer("d", 1, end=True)  # a one-request sequence: START and END
    h.session.close()  # close()'s ENDs
    for request in h.triton.requests:
        parameters = request.parameters or {}
        if request.sequence.start:
            assert parameters[TRITON_TIMEOUT_PARAMETER] == START_TIMEOUT, request
        else:
            assert TRITON_TIMEOUT_PARAMETER not in parameters, request
    assert sum(r.sequence.start for r in h.triton.requests) == 5
    assert TRITON_TIMEOUT_PARAMETER == "timeout"


@pytest.mark.parametrize("extra, micros", [
    ({}, START_TIMEOUT),  # the idle timeout: half the model's max idle (10 s)
    ({"sequence_idle_timeout": "2 s"}, 2_000_000),
    ({"sequence_idle_timeout": "9999 ms"}, 9_999_000),
    ({"timeout": "5 s"}, 4_000_000),  # 80 % of 'timeout': Triton's 503 comes before it
    ({"timeout": "6250 ms"}, 5_000_000),  # (both)
    ({"timeout": "1 s", "sequence_idle_timeout": "500 ms"}, 500_000),
    ({"timeout": "1 s", "sequence_idle_timeout": "900 ms"}, 800_000),
])
def test_the_start_timeout_is_the_idle_timeout_within_the_request_timeout(harness, extra,
                                                                          micros):
    h = budgeted(harness, **extra)
    h.infer("a", 1)
    h.infer("a", 2)
    assert [r.parameters for r in h.triton.requests] == [{TRITON_TIMEOUT_PARAMETER: micros},
                                                         None]
    assert isinstance(h.triton.requests[0].parameters[TRITON_TIMEOUT_PARAMETER], int)


def test_a_start_that_got_no_slot_fails_naming_the_slots_and_is_not_retried(harness):
    h = budgeted(harness, max_retries="3", retry_initial_backoff="1ms",
                 retry_max_backoff="1ms")
    h.infer("a", 1)
    h.triton.fail[2] = TritonServerError(BACKLOG_503, 503, final=True)
    with pytest.raises(TritonRequestError) as info:
        h.infer("b", 10)
    message = str(info.value)
    assert "sensors-b-inc1-0" in message
    assert "model 'm'" in message
    assert f"the model has {SLOTS_TEXT}" in message
    assert "2 open sequence(s) per subtask" in message
    assert "'sequence-slots'" in message
    assert SEQUENCE_BACKLOG_EXPIRED in message  # (what Triton said)
    assert not info.value.retryable
    assert len(h.triton.requests) == 2  # one attempt; no END, no restart


def test_a_start_that_got_no_slot_frees_its_place_in_the_budget(harness):
    h = budgeted(harness, default_value="-1", max_retries="3")
    h.infer("a", 1)
    h.triton.fail[2] = TritonServerError(BACKLOG_503, 503, final=True)
    assert h.infer("b", 10) == -1
    assert len(h.triton.requests) == 2
    assert not h.states["b"].open
    assert slot_gauges(h)["openSequences"] == 1
    h.infer("c", 100)  # a slot is free: no eviction
    assert h.session.evictions == 0
    # b's next record starts anew (nothing to replay: the model never saw 10), evicting a
    assert h.infer("b", 20) == 20
    assert h.triton.sent(3) == [(1, "sensors-a-inc1-0", False, True, FLUSHED),
                                (20, "sensors-b-inc1-1", True, False, None)]


@pytest.mark.parametrize("status", [503, "UNAVAILABLE"])
def test_tritons_backlog_expiry_is_not_retryable(status):
    """Sending the START again would wait in the backlog again; other 503s are retried."""
    endpoint = TritonOptions.from_dict(KEYED).endpoint
    expired = server_error(endpoint, ModelRef("m"), status, SEQUENCE_BACKLOG_EXPIRED)
    assert not expired.retryable
    assert not pickle.loads(pickle.dumps(expired)).retryable
    assert server_error(endpoint, ModelRef("m"), status, "server is busy").retryable
