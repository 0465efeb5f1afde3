"""Unit tests of 'sequence-id-counter-init-strategy': where the auto-increment counter of the
sequence IDs {sequence-id}-{subtask}-{counter} starts in each open() ('zero' or 'nano-time').
Pure logic: the wall clock is injected."""

from __future__ import annotations

import pickle
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyflink_triton.errors import TritonConfigError
from pyflink_triton.options import TritonOptions
from pyflink_triton.policies.sequence import SequenceIdGenerator, SequenceParams, SequencePolicy

KEY = "sequence-id-counter-init-strategy"
BASE = {"endpoint": "localhost:8000", "model-name": "m"}
AUTO = {
    **BASE,
    "sequence-id": "job-7",
    "sequence-id-auto-increment": "true",
    "sequence-start": "true",
    "sequence-end": "true",
}
# 2026-11-18, in ns: what time.time_ns() gives in a real open()
NOW_NS = 1_795_720_761_059_386_300


def options(**extra: str) -> TritonOptions:
    return TritonOptions.from_dict({**AUTO, **{k.replace("_", "-"): v for k, v in extra.items()}})


def strategy(text: str) -> TritonOptions:
    return TritonOptions.from_dict({**AUTO, KEY: text})


def config_error(raw: dict[str, str]) -> str:
    with pytest.raises(TritonConfigError) as info:
        TritonOptions.from_dict(raw)
    return str(info.value)


def nano_policy(base: str = "job-7") -> SequencePolicy:
    return SequencePolicy(base, True, True, True, "string", "nano-time")


def fixed_clock(value: int):
    calls = []

    def now_ns() -> int:
        calls.append(value)
        return value

    now_ns.calls = calls  # type: ignore[attr-defined]
    return now_ns


def no_clock() -> int:
    raise AssertionError("the 'zero' strategy must not read the clock")


# --- parsing ---------------------------------------------------------------------------------

def test_default_is_zero():
    assert options().sequence_id_counter_init_strategy == "zero"
    assert TritonOptions.from_dict(BASE).sequence_id_counter_init_strategy == "zero"


@pytest.mark.parametrize("text, expected", [
    ("zero", "zero"), ("ZERO", "zero"), ("Zero", "zero"), ("  zero ", "zero"),
    ("nano-time", "nano-time"), ("NANO-TIME", "nano-time"), ("Nano-Time", "nano-time"),
    ("\tnano-time\n", "nano-time"),
])
def test_strategy_in_any_case(text, expected):
    assert strategy(text).sequence_id_counter_init_strategy == expected


@pytest.mark.parametrize("text", ["nanotime", "nano_time", "nano time", "time", "0", "", "  ",
                                  "zero,nano-time", "random", "NANO-TIMES"])
def test_invalid_strategy_names_the_option_and_the_accepted_values(text):
    message = config_error({**AUTO, KEY: text})
    assert f"'{KEY}'" in message
    assert "zero or nano-time" in message
    assert repr(text) in message


def test_invalid_strategy_is_reported_with_other_invalid_values():
    message = config_error({**AUTO, KEY: "later", "max-retries": "-1"})
    assert f"'{KEY}'" in message
    assert "'max-retries'" in message


@pytest.mark.parametrize("extra", [
    {"sequence-id": "job-7"},  # a fixed ID
    {"sequence-id": "job-7", "sequence-start": "true", "sequence-end": "true"},
    {"sequence-id": "job-7", "sequence-id-auto-increment": "false"},
    {},  # no sequence at all
])
def test_nano_time_without_auto_increment_is_refused(extra):
    message = config_error({**BASE, **extra, KEY: "nano-time"})
    assert f"'{KEY}'" in message
    assert "'sequence-id-auto-increment'" in message


def test_explicit_zero_without_auto_increment_is_accepted():
    """As for the other options refused 'without effect' (retries, breaker), a value equal to
    the default is not refused: only one that would change something."""
    parsed = TritonOptions.from_dict({**BASE, "sequence-id": "job-7", KEY: "ZERO"})
    assert parsed.sequence_id_counter_init_strategy == "zero"


def test_strategy_shows_in_repr_only_when_not_the_default():
    assert f"{KEY}=nano-time" in repr(strategy("nano-time"))
    assert KEY not in repr(strategy("zero"))


# --- the policy --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [("zero", "zero"), ("Nano-Time", "nano-time")])
def test_from_options_carries_the_strategy(text, expected):
    policy = SequencePolicy.from_options(strategy(text))
    assert policy == SequencePolicy("job-7", True, True, True, "string", expected)


def test_positional_policy_of_before_defaults_to_zero():
    assert SequencePolicy("b", True, True, True).counter_init == "zero"
    assert SequencePolicy("b", True, True, True, "string").counter_init == "zero"


@pytest.mark.parametrize("counter_init", ["zero", "nano-time"])
def test_policy_pickles_without_a_clock(counter_init):
    policy = SequencePolicy("job-7", True, True, True, "string", counter_init)
    copy = pickle.loads(pickle.dumps(policy))
    assert copy == policy
    assert copy.counter_init == counter_init
    # the clock is the worker's, read in open(), not shipped with the policy
    generator = copy.for_subtask(1, now_ns=fixed_clock(42))
    expected = 42 if counter_init == "nano-time" else 0
    assert generator.next().sequence_id == f"job-7-1-{expected}"


def test_policy_from_options_pickles():
    policy = SequencePolicy.from_options(strategy("nano-time"))
    assert pickle.loads(pickle.dumps(policy)) == policy


# --- nano-time ---------------------------------------------------------------------------------

def test_nano_time_starts_at_the_clock_of_open():
    clock = fixed_clock(NOW_NS)
    generator = nano_policy().for_subtask(3, now_ns=clock)
    assert clock.calls == [NOW_NS]  # read once, in open()
    assert generator.first == NOW_NS
    assert [generator.next() for _ in range(3)] == [
        SequenceParams(f"job-7-3-{NOW_NS + i}", True, True) for i in range(3)]
    assert clock.calls == [NOW_NS]  # and never again per record


def test_nano_time_from_options_starts_at_the_clock():
    policy = SequencePolicy.from_options(strategy("nano-time"))
    generator = policy.for_subtask(0, now_ns=fixed_clock(10**18))
    assert generator.next().sequence_id == f"job-7-0-{10**18}"


def test_nano_time_with_the_real_clock():
    policy = nano_policy()
    before = time.time_ns()
    generator = policy.for_subtask(2)
    after = time.time_ns()
    counter = int(generator.next().sequence_id.rsplit("-", 1)[1])
    assert before <= counter <= after


@given(base=st.from_regex(r"[A-Za-z][A-Za-z0-9._-]{0,20}", fullmatch=True),
       subtask=st.integers(0, 4095), now=st.integers(0, 2**64), count=st.integers(1, 20))
def test_nano_time_ids_keep_the_exact_format(base, subtask, now, count):
    generator = nano_policy(base).for_subtask(subtask, now_ns=lambda: now)
    ids = [generator.next().sequence_id for _ in range(count)]
    assert ids == [f"{base}-{subtask}-{now + i}" for i in range(count)]
    for sequence_id in ids:
        assert isinstance(sequence_id, str)
        assert re.fullmatch(rf"{re.escape(base)}-{subtask}-\d+", sequence_id)
        # the counter is the last dash-separated field, a plain decimal integer
        assert int(sequence_id.rsplit("-", 1)[1]) >= now


def test_nano_time_ids_fit_tritons_128_bytes():
    """The longest base accepted with auto-increment, the largest subtask index and a
    nano-time counter (19 digits until 2286) still make an ID Triton accepts."""
    longest = None
    for length in range(128, 0, -1):
        try:
            TritonOptions.from_dict({**AUTO, "sequence-id": "b" * length, KEY: "nano-time"})
        except TritonConfigError:
            continue
        longest = length
        break
    assert longest is not None
    policy = SequencePolicy.from_options(
        TritonOptions.from_dict({**AUTO, "sequence-id": "b" * longest, KEY: "nano-time"}))
    generator = policy.for_subtask(32767, now_ns=lambda: 10**19 - 2)
    assert len(generator.next().sequence_id.encode()) <= 128
    assert len(generator.next().sequence_id.encode()) <= 128


@pytest.mark.parametrize("start, end", [(True, True), (False, True), (True, False)])
def test_nano_time_passes_the_flags_through(start, end):
    policy = SequencePolicy("b", True, start, end, "string", "nano-time")
    params = policy.for_subtask(0, now_ns=lambda: 5).next()
    assert params == SequenceParams("b-0-5", start, end)


@given(drawn=st.integers(1, 5_000), ns_per_id=st.integers(1, 1_000_000),
       pause_ns=st.integers(0, 10**12), start=st.integers(0, 2**62))
def test_two_opens_at_different_times_never_overlap(drawn, ns_per_id, pause_ns, start):
    """A subtask cannot draw more than one ID per nanosecond, so the next open() (a failover, a
    resubmit), reading the clock later, starts past every ID the earlier one drew."""
    now = {"ns": start}

    def now_ns() -> int:
        return now["ns"]

    first = nano_policy().for_subtask(0, now_ns=now_ns)
    ids_first = set()
    for _ in range(drawn):
        ids_first.add(first.next().sequence_id)
        now["ns"] += ns_per_id  # drawing (and sending) takes time
    now["ns"] += pause_ns  # the restart
    second = nano_policy().for_subtask(0, now_ns=now_ns)
    ids_second = {second.next().sequence_id for _ in range(drawn)}
    assert len(ids_first) == len(ids_second) == drawn
    assert not ids_first & ids_second


def test_zero_repeats_the_ids_of_the_previous_open():
    """The old behaviour, kept as the default: each open() sends 0, 1, ... again."""
    policy = SequencePolicy.from_options(options())
    first = policy.for_subtask(0, now_ns=no_clock)
    second = policy.for_subtask(0, now_ns=no_clock)
    assert [first.next().sequence_id for _ in range(3)] == ["job-7-0-0", "job-7-0-1", "job-7-0-2"]
    assert [second.next().sequence_id for _ in range(3)] == [
        "job-7-0-0", "job-7-0-1", "job-7-0-2"]


def test_zero_never_reads_the_clock():
    generator = SequencePolicy("b", True, True, True).for_subtask(4, now_ns=no_clock)
    assert generator.first == 0
    assert generator.next() == SequenceParams("b-4-0", True, True)


@pytest.mark.parametrize("policy", [
    SequencePolicy("job-7", False, True, True, "string", "nano-time"),  # fixed ID
    SequencePolicy(None, False, False, False, "string", "nano-time"),  # no sequence
])
def test_nano_time_changes_nothing_without_auto_increment(policy):
    """(from_dict refuses this; a hand-built policy still sends what it did)"""
    generator = policy.for_subtask(0, now_ns=lambda: NOW_NS)
    expected = None if policy.base_id is None else SequenceParams("job-7", True, True)
    assert [generator.next() for _ in range(2)] == [expected, expected]
    assert generator.issued == 0


# --- issued ----------------------------------------------------------------------------------

def test_issued_counts_the_ids_drawn_not_the_counter():
    generator = nano_policy().for_subtask(0, now_ns=lambda: NOW_NS)
    assert generator.issued == 0
    generator.next()
    assert generator.issued == 1
    for _ in range(9):
        generator.next()
    assert generator.issued == 10


@given(now=st.integers(0, 2**64), count=st.integers(0, 50))
def test_issued_whatever_the_start(now, count):
    generator = nano_policy().for_subtask(1, now_ns=lambda: now)
    for _ in range(count):
        generator.next()
    assert generator.issued == count


def test_issued_with_zero_as_before():
    generator = SequencePolicy("b", True, True, True).for_subtask(0)
    for _ in range(4):
        generator.next()
    assert generator.issued == 4


# --- describe ----------------------------------------------------------------------------------

def test_describe_zero_as_before():
    text = SequencePolicy("job-7", True, True, True).for_subtask(2).describe()
    assert text == "sequence IDs job-7-2-<counter> (subtask 2, counter from 0)"


def test_describe_nano_time_names_the_start():
    text = nano_policy().for_subtask(2, now_ns=lambda: NOW_NS).describe()
    assert "job-7-2-<counter>" in text
    assert "subtask 2" in text
    assert str(NOW_NS) in text
    assert "nano-time" in text


def test_describe_does_not_change_after_draws():
    generator = nano_policy().for_subtask(0, now_ns=lambda: 100)
    text = generator.describe()
    generator.next()
    assert generator.describe() == text


@pytest.mark.parametrize("policy, text", [
    (SequencePolicy(None, False, False, False, "string", "nano-time"), "no sequence ID"),
    (SequencePolicy("s", False, True, True, "string", "nano-time"),
     "the fixed sequence ID 's' (string)"),
])
def test_describe_without_auto_increment_ignores_the_strategy(policy, text):
    assert policy.for_subtask(0, now_ns=lambda: NOW_NS).describe() == text


def test_generator_built_directly_starts_at_zero():
    generator = SequenceIdGenerator(nano_policy(), 0)
    assert generator.first == 0
    assert generator.next().sequence_id == "job-7-0-0"
