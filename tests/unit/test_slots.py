"""Unit tests of ``policies.slots``: how many sequence slots a model's config gives
(SequenceSlots.of_model), each subtask's share of them (SlotBudget.for_subtask), and the
registry of the sequences a subtask holds open within its share (OpenSequences). Pure: no
server, no Flink."""

from __future__ import annotations

import pytest

from pyflink_triton.errors import TritonConfigError
from pyflink_triton.policies.slots import OpenSequences, SequenceSlots, SlotBudget


def slots_of(**config) -> int:
    return SequenceSlots.of_model({"name": "m", **config}).count


# --- SequenceSlots.of_model ------------------------------------------------------------------

@pytest.mark.parametrize("max_batch_size, instances, expected", [
    (0, 1, 1), (1, 1, 1), (8, 1, 8), (0, 3, 3), (4, 2, 8), (None, 2, 2),
])
def test_direct_is_instances_times_max_batch_size_at_least_one(max_batch_size, instances,
                                                                expected):
    config = {"sequence_batching": {"direct": {}},
              "instance_group": [{"count": instances, "kind": "KIND_CPU"}]}
    if max_batch_size is not None:
        config["max_batch_size"] = max_batch_size
    assert slots_of(**config) == expected


def test_direct_is_the_default_strategy():
    """A sequence_batching without 'direct' or 'oldest' is Direct, as in Triton."""
    groups = [{"count": 2, "kind": "KIND_CPU"}]
    for batching in ({}, {"max_sequence_idle_microseconds": "5000000"}, {"direct": {}}):
        slots = SequenceSlots.of_model({"max_batch_size": 4, "instance_group": groups,
                                        "sequence_batching": batching})
        assert slots.count == 8
        assert slots.config == "Direct strategy: 2 instance(s) x max(1, max_batch_size 4)"


@pytest.mark.parametrize("candidates, instances, expected", [
    (1, 1, 1), (4, 1, 4), (4, 3, 12), (64, 2, 128),
])
def test_oldest_is_instances_times_max_candidate_sequences(candidates, instances, expected):
    config = {"max_batch_size": 8,  # (not Oldest's bound: its candidates are)
              "sequence_batching": {"oldest": {"max_candidate_sequences": candidates}},
              "instance_group": [{"count": instances, "kind": "KIND_CPU"}]}
    slots = SequenceSlots.of_model(config)
    assert slots.count == expected
    assert slots.config == (f"Oldest strategy: {instances} instance(s) x "
                            f"max_candidate_sequences {candidates}")


@pytest.mark.parametrize("groups", [None, []])
def test_no_instance_group_is_one_instance(groups):
    config = {"max_batch_size": 4, "sequence_batching": {}}
    if groups is not None:
        config["instance_group"] = groups
    assert slots_of(**config) == 4
    oldest = {"sequence_batching": {"oldest": {"max_candidate_sequences": 3}}}
    if groups is not None:
        oldest["instance_group"] = groups
    assert slots_of(**oldest) == 3


def test_an_instance_group_without_count_is_one_instance():
    assert slots_of(max_batch_size=2, sequence_batching={},
                    instance_group=[{"kind": "KIND_CPU"}]) == 2


def test_a_gpu_groups_count_is_per_gpu():
    config = {"max_batch_size": 0, "sequence_batching": {},
              "instance_group": [{"count": 2, "kind": "KIND_GPU", "gpus": [0, 1, 2]}]}
    slots = SequenceSlots.of_model(config)
    assert slots.count == 6
    assert "6 instance(s)" in slots.config
    oldest = {**config, "sequence_batching": {"oldest": {"max_candidate_sequences": 4}}}
    assert SequenceSlots.of_model(oldest).count == 24


def test_gpus_count_only_for_gpu_groups_and_groups_add_up():
    config = {"max_batch_size": 0, "sequence_batching": {}, "instance_group": [
        {"count": 2, "kind": "KIND_GPU", "gpus": [0, 1]},  # 4
        {"count": 3, "kind": "KIND_CPU", "gpus": [0, 1]},  # 3 (gpus do not apply)
        {"count": 1, "kind": "KIND_GPU", "gpus": [1]},  # 1
    ]}
    assert slots_of(**config) == 8


def test_numbers_may_be_strings_as_in_grpcs_json():
    """protobuf's JSON writes (u)int64 as strings; gRPC's model config comes as that JSON."""
    direct = {"max_batch_size": "4", "sequence_batching": {},
              "instance_group": [{"count": "2", "kind": "KIND_GPU", "gpus": [0, 1]}]}
    assert slots_of(**direct) == 16
    oldest = {"max_batch_size": "8",
              "sequence_batching": {"oldest": {"max_candidate_sequences": "5"}},
              "instance_group": [{"count": "3", "kind": "KIND_CPU"}]}
    assert slots_of(**oldest) == 15


def test_slots_describe_how_the_config_gives_them():
    slots = SequenceSlots.of_model({
        "max_batch_size": 0, "sequence_batching": {"oldest": {"max_candidate_sequences": 4}},
        "instance_group": [{"count": 2, "kind": "KIND_CPU"}]})
    assert str(slots) == ("8 sequence slot(s) (Oldest strategy: 2 instance(s) x "
                          "max_candidate_sequences 4)")
    assert str(SequenceSlots.of_model({"sequence_batching": {}})) == (
        "1 sequence slot(s) (Direct strategy: 1 instance(s) x max(1, max_batch_size 0))")


# --- SlotBudget.for_subtask ----------------------------------------------------------------------

EIGHT = SequenceSlots(8, "Oldest strategy: 2 instance(s) x max_candidate_sequences 4")


@pytest.mark.parametrize("parallelism, share", [(1, 8), (2, 4), (3, 2), (4, 2), (7, 1), (8, 1)])
def test_each_subtask_gets_its_whole_share_of_the_slots(parallelism, share):
    budget = SlotBudget.for_subtask("m", EIGHT, parallelism, None)
    assert budget == SlotBudget(share, EIGHT, parallelism, False)
    assert budget.per_subtask * parallelism <= EIGHT.count  # (never more than the model has)


@pytest.mark.parametrize("parallelism", [9, 16, 1000])
def test_fewer_slots_than_subtasks_is_refused_naming_the_model_and_the_option(parallelism):
    with pytest.raises(TritonConfigError) as info:
        SlotBudget.for_subtask("rnn", EIGHT, parallelism, None)
    message = str(info.value)
    assert "Model 'rnn'" in message
    assert str(EIGHT) in message  # the slots and how the config gives them
    assert f"{parallelism} parallel subtasks" in message
    assert "'sequence-slots'" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("override, parallelism", [(1, 1), (3, 2), (5, 100), (100, 1)])
def test_sequence_slots_overrides_the_share(override, parallelism):
    """Even above the share, or where the share would be refused: the user knows better."""
    budget = SlotBudget.for_subtask("m", EIGHT, parallelism, override)
    assert budget == SlotBudget(override, EIGHT, parallelism, True)


def test_a_budget_describes_where_it_comes_from():
    derived = SlotBudget.for_subtask("m", EIGHT, 3, None)
    assert derived.describe() == (f"2 open sequence(s) per subtask (the model's {EIGHT} / "
                                  "parallelism 3)")
    assert SlotBudget.for_subtask("m", EIGHT, 3, 5).describe() == (
        "5 open sequence(s) per subtask ('sequence-slots')")


# --- OpenSequences -----------------------------------------------------------------------------

def opened(budget: int, *ids: str, forget_after_ms: int = 1000) -> OpenSequences:
    """The sequences ``ids`` opened and answered in that order (the first least recent)."""
    sequences = OpenSequences(budget, forget_after_ms)
    for i in ids:
        sequences.hold(i, f"key-{i}", f"state-{i}")
        sequences.answered(i, f"key-{i}", f"state-{i}")
    return sequences


def test_room_within_the_budget():
    sequences = OpenSequences(2, 1000)
    assert len(sequences) == 0 and sequences.has_room(0)
    sequences.hold("a", "ka", 1)
    assert len(sequences) == 1 and sequences.has_room(0)
    sequences.hold("b", "kb", 1)
    assert len(sequences) == 2 and not sequences.has_room(0)
    assert sequences.release("a") == ("ka", 1)
    assert sequences.has_room(0)


def test_least_recent_idle_is_the_least_recently_answered():
    sequences = opened(3, "a", "b", "c")
    assert sequences.least_recent_idle() == ("a", ("key-a", "state-a"))
    sequences.hold("a", "key-a", "a2")
    sequences.answered("a", "key-a", "a3")  # a used again: b is the least recent now
    assert sequences.least_recent_idle() == ("b", ("key-b", "state-b"))
    sequences.hold("b", "key-b", "b2")
    sequences.answered("b", "key-b", "b3")
    assert sequences.least_recent_idle() == ("c", ("key-c", "state-c"))
    sequences.release("c")
    assert sequences.least_recent_idle() == ("a", ("key-a", "a3"))  # its latest state


def test_a_sequence_with_a_request_in_flight_is_never_chosen():
    sequences = opened(3, "a", "b", "c")
    sequences.hold("a", "key-a", "a2")  # in flight (and so most recent)
    assert sequences.least_recent_idle()[0] == "b"
    sequences.hold("b", "key-b", "b2")
    assert sequences.least_recent_idle()[0] == "c"
    sequences.hold("c", "key-c", "c2")
    assert sequences.least_recent_idle() is None  # every one busy: the caller must wait
    sequences.answered("b", "key-b", "b3")
    assert sequences.least_recent_idle() == ("b", ("key-b", "b3"))


def test_a_busy_sequence_is_skipped_even_when_it_is_the_least_recent():
    sequences = opened(3, "a", "b", "c")
    sequences.hold("a", "key-a", "a2")  # in flight ...
    sequences.answered("b", "key-b", "b2")  # ... while the others are answered after it
    sequences.answered("c", "key-c", "c2")
    assert sequences.least_recent_idle() == ("b", ("key-b", "b2"))
    sequences.answered("a", "key-a", "a3")
    assert sequences.least_recent_idle() == ("b", ("key-b", "b2"))
    sequences.release("b")
    assert sequences.least_recent_idle() == ("c", ("key-c", "c2"))


def test_a_failed_request_releases_its_sequence_and_busy_mark():
    sequences = opened(2, "a")
    sequences.hold("b", "key-b", "b1")
    assert sequences.release("b") == ("key-b", "b1")
    assert sequences.release("b") is None  # (twice, or never held: nothing)
    assert sequences.release("x") is None
    assert len(sequences) == 1 and sequences.has_room(0)
    sequences.hold("b", "key-b", "b2")  # held anew: busy again, so a is chosen
    assert sequences.least_recent_idle()[0] == "a"
    sequences.answered("b", "key-b", "b2")
    sequences.release("a")
    assert sequences.least_recent_idle()[0] == "b"


def test_evict_frees_the_slot_and_marks_the_sequence():
    sequences = opened(2, "a", "b")
    assert sequences.evict("a", 500) == ("key-a", "state-a")
    assert len(sequences) == 1 and sequences.has_room(0)
    assert sequences.least_recent_idle()[0] == "b"
    assert sequences.was_evicted("a", 600)
    assert not sequences.was_evicted("b", 600)
    assert not sequences.was_evicted("never", 600)
    sequences.forget_eviction("a")
    assert not sequences.was_evicted("a", 600)
    sequences.forget_eviction("a")  # (twice: nothing)


def test_an_eviction_mark_is_kept_as_long_as_triton_could_hold_the_sequence():
    """However many marks there are, one younger than ``forget_after_ms`` is kept."""
    sequences = opened(1, forget_after_ms=1000)
    for n in range(10):
        sequences.hold(f"s{n}", n, n)
        sequences.evict(f"s{n}", 10_000 + n)
    assert all(sequences.was_evicted(f"s{n}", 10_999) for n in range(10))


def test_eviction_marks_older_than_forget_after_are_forgotten():
    """Once there are more marks than twice the budget (a small set is not worth sweeping),
    those of sequences Triton would have reaped by now go."""
    sequences = OpenSequences(1, 1000)
    for n, at in enumerate((0, 100, 200, 5000, 5000)):
        sequences.hold(f"s{n}", n, n)
        sequences.evict(f"s{n}", at)
    assert sequences.was_evicted("s3", 1150)  # forgets those idle for 1000 ms by then
    assert not sequences.was_evicted("s0", 1150)
    assert not sequences.was_evicted("s1", 1150)  # (1050 ms: forgotten)
    assert sequences.was_evicted("s2", 1150)  # (950 ms: Triton may still hold it)
    assert sequences.was_evicted("s2", 1199)
    assert not sequences.was_evicted("s2", 1200)  # (exactly 1000 ms: reaped)
    assert sequences.was_evicted("s3", 1200) and sequences.was_evicted("s4", 1200)


def test_eviction_marks_stay_few():
    """Evictions spread over time never pile up beyond what the budget and the reaper need."""
    budget, forget_after = 2, 1000
    sequences = OpenSequences(budget, forget_after)
    for n in range(1000):
        now = n * 100  # 10 evictions per forget_after
        sequences.hold(f"s{n}", n, n)
        sequences.evict(f"s{n}", now)
        sequences.was_evicted("x", now)
    assert len(sequences._evicted) <= max(2 * budget, forget_after // 100) + 1


def test_take_all_gives_every_open_sequence_least_recent_first_and_forgets_them():
    sequences = opened(3, "a", "b", "c")
    sequences.hold("a", "key-a", "a2")  # busy ones too
    sequences.evict("b", 0)
    assert sequences.take_all() == [("key-c", "state-c"), ("key-a", "a2")]
    assert len(sequences) == 0 and sequences.has_room(0)
    assert sequences.least_recent_idle() is None
    assert sequences.take_all() == []
    sequences.hold("d", "key-d", "d1")  # (usable after)
    assert len(sequences) == 1


def test_a_sequence_whose_end_failed_keeps_its_slot_until_triton_would_reap_it():
    held = OpenSequences(2, forget_after_ms=1000)
    held.hold("a", "ka", "sa")
    held.hold("b", "kb", "sb")
    held.answered("a", "ka", "sa")
    held.linger("a", until_ms=5000)  # (its END failed: Triton may hold it)
    assert len(held) == 1 and not held.has_room(4999)
    assert held.next_release_ms() == 5000
    assert held.least_recent_idle() is None  # (a lingering slot is not evictable)
    assert held.has_room(5000) and held.next_release_ms() is None


def test_eviction_marks_are_forgotten_oldest_first_without_a_scan():
    held = OpenSequences(1, forget_after_ms=100)
    for n, at in enumerate((0, 10, 20)):
        held.hold(f"s{n}", f"k{n}", "state")
        held.evict(f"s{n}", at)
    assert held.was_evicted("s2", 100)  # (s0 is forgotten, s1 and s2 are kept)
    assert not held.was_evicted("s0", 100)
    assert held.was_evicted("s1", 109) and not held.was_evicted("s1", 110)
