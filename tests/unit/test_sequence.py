"""Unit tests of pyflink_triton.policies.sequence: sequence-ID policy and generators."""

from __future__ import annotations

import dataclasses
import pickle
import sys
import threading

import pytest

from pyflink_triton.options import TritonOptions
from pyflink_triton.policies.sequence import SequenceIdGenerator, SequenceParams, SequencePolicy

BASE = {"endpoint": "localhost:8000", "model-name": "m"}
SEED = {
    **BASE,
    "sequence-id": "flink-job-123",
    "sequence-id-auto-increment": "true",
    "sequence-start": "true",
    "sequence-end": "true",
}


def auto(base: str = "flink-job-123") -> SequencePolicy:
    return SequencePolicy(base, True, True, True)


# --- from_options --------------------------------------------------------------------------------

def test_from_options_seed():
    policy = SequencePolicy.from_options(TritonOptions.from_dict(SEED))
    assert policy == SequencePolicy("flink-job-123", True, True, True, "string")


def test_from_options_without_sequence():
    policy = SequencePolicy.from_options(TritonOptions.from_dict(BASE))
    assert policy == SequencePolicy(None, False, False, False, "string")


def test_from_options_uint64():
    options = TritonOptions.from_dict({**BASE, "sequence-id": "42", "sequence-id-type": "uint64",
                                       "sequence-start": "true"})
    assert SequencePolicy.from_options(options) == SequencePolicy("42", False, True, False,
                                                                  "uint64")


def test_policy_is_immutable_and_picklable():
    policy = auto()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.base_id = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(policy)) == policy


# --- auto-increment IDs --------------------------------------------------------------------------

def test_seed_ids_exact():
    policy = SequencePolicy.from_options(TritonOptions.from_dict(SEED))
    subtask0 = policy.for_subtask(0)
    subtask1 = policy.for_subtask(1)
    assert subtask0.next() == SequenceParams("flink-job-123-0-0", True, True)
    assert subtask0.next() == SequenceParams("flink-job-123-0-1", True, True)
    assert subtask1.next() == SequenceParams("flink-job-123-1-0", True, True)
    assert subtask0.next() == SequenceParams("flink-job-123-0-2", True, True)
    assert subtask1.next() == SequenceParams("flink-job-123-1-1", True, True)


@pytest.mark.parametrize("base", ["flink-job-123", "b", "job.with.dots", "x-0"])
@pytest.mark.parametrize("subtask", [0, 1, 7, 127])
def test_id_format(base, subtask):
    generator = auto(base).for_subtask(subtask)
    ids = [generator.next().sequence_id for _ in range(12)]
    assert ids == [f"{base}-{subtask}-{counter}" for counter in range(12)]
    assert all(isinstance(i, str) for i in ids)


def test_counter_is_per_generator_and_starts_at_zero():
    policy = auto()
    first = policy.for_subtask(3)
    for _ in range(5):
        first.next()
    second = policy.for_subtask(3)  # a new open() of the same subtask
    assert second.next().sequence_id == "flink-job-123-3-0"
    assert first.next().sequence_id == "flink-job-123-3-5"


def test_auto_increment_passes_flags_through():
    generator = SequencePolicy("b", True, False, True).for_subtask(0)
    params = generator.next()
    assert (params.start, params.end) == (False, True)


def test_issued_counts_auto_incremented_ids():
    generator = auto().for_subtask(0)
    assert generator.issued == 0
    generator.next()
    assert generator.issued == 1
    for _ in range(9):
        generator.next()
    assert generator.issued == 10


def test_generator_attributes():
    policy = auto()
    generator = policy.for_subtask(4)
    assert isinstance(generator, SequenceIdGenerator)
    assert generator.policy is policy
    assert generator.subtask_index == 4


# --- fixed and absent sequence IDs ---------------------------------------------------------------

@pytest.mark.parametrize("start, end", [(False, False), (True, False), (False, True),
                                        (True, True)])
def test_plain_sequence_id_is_repeated(start, end):
    generator = SequencePolicy("flink-job-123", False, start, end).for_subtask(2)
    for _ in range(5):
        assert generator.next() == SequenceParams("flink-job-123", start, end)
    assert generator.issued == 0


@pytest.mark.parametrize("base, expected", [("42", 42), ("1", 1), (str(2**63 - 1), 2**63 - 1),
                                            ("0007", 7)])
def test_uint64_sequence_id_becomes_int(base, expected):
    generator = SequencePolicy(base, False, True, False, "uint64").for_subtask(0)
    params = generator.next()
    assert params.sequence_id == expected
    assert type(params.sequence_id) is int
    assert (params.start, params.end) == (True, False)


def test_string_sequence_id_of_digits_stays_string():
    params = SequencePolicy("42", False, False, False, "string").for_subtask(0).next()
    assert params.sequence_id == "42"
    assert isinstance(params.sequence_id, str)


def test_uint64_from_options():
    options = TritonOptions.from_dict({**BASE, "sequence-id": "42", "sequence-id-type": "uint64"})
    params = SequencePolicy.from_options(options).for_subtask(0).next()
    assert params == SequenceParams(42, False, False)


@pytest.mark.parametrize("policy", [
    SequencePolicy(None, False, False, False),
    SequencePolicy(None, True, True, True),
    SequencePolicy(None, False, True, True, "uint64"),
])
def test_no_sequence_when_base_is_none(policy):
    generator = policy.for_subtask(0)
    assert [generator.next() for _ in range(3)] == [None, None, None]
    assert generator.issued == 0


def test_no_sequence_from_default_options():
    generator = SequencePolicy.from_options(TritonOptions.from_dict(BASE)).for_subtask(0)
    assert generator.next() is None


def test_sequence_params_is_immutable():
    params = SequenceParams("a", True, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.sequence_id = "b"  # type: ignore[misc]
    assert params == SequenceParams("a", True, False)
    assert params != SequenceParams("a", True, True)


# --- describe ------------------------------------------------------------------------------------

def test_describe():
    assert SequencePolicy(None, False, False, False).for_subtask(0).describe() == "no sequence ID"
    auto_text = auto().for_subtask(2).describe()
    assert "flink-job-123-2-<counter>" in auto_text
    assert "subtask 2" in auto_text
    fixed = SequencePolicy("s-1", False, True, True).for_subtask(0).describe()
    assert "'s-1'" in fixed
    assert "string" in fixed
    assert "uint64" in SequencePolicy("9", False, False, False, "uint64").for_subtask(0).describe()


# --- thread safety -------------------------------------------------------------------------------

def test_threads_get_no_duplicates_and_no_gaps():
    threads_count, per_thread = 8, 10_000
    generator = auto("b").for_subtask(5)
    results: list[list[str]] = [[] for _ in range(threads_count)]
    barrier = threading.Barrier(threads_count)

    def draw(index: int) -> None:
        barrier.wait()
        out = results[index]
        for _ in range(per_thread):
            out.append(generator.next().sequence_id)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(threads_count)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)

    total = threads_count * per_thread
    ids = [sequence_id for out in results for sequence_id in out]
    assert len(ids) == total
    assert len(set(ids)) == total  # no duplicates
    counters = sorted(int(sequence_id.rsplit("-", 1)[1]) for sequence_id in ids)
    assert counters == list(range(total))  # no gaps
    assert all(sequence_id.startswith("b-5-") for sequence_id in ids)
    # Each thread sees its own IDs in increasing order.
    for out in results:
        own = [int(sequence_id.rsplit("-", 1)[1]) for sequence_id in out]
        assert own == sorted(own)
    assert generator.issued == total
