"""Triton's sequence slots: how many a model has, each subtask's share, and the sequences a
subtask holds open within it. Pure, no I/O, not thread-safe (the keyed session locks).

A model with sequence batching serves a fixed number of sequences at once. When all its slots
are held, Triton queues a further START in a backlog without a word, and it waits there until
a holder ENDs or is reaped (``max_sequence_idle_microseconds``). A subtask therefore keeps at
most its budget of sequences open (:class:`OpenSequences`), and ENDs the least recently used
one before it starts another.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import TritonConfigError


@dataclass(frozen=True)
class SequenceSlots:
    """A model's sequence slots, and how its config gives them (for messages)."""

    count: int
    config: str  # e.g. "Direct strategy: 2 instance(s) x max(1, max_batch_size 0)"

    @classmethod
    def of_model(cls, config: Mapping[str, Any]) -> SequenceSlots:
        """From the model's config as ``/v2/models/<m>/config`` gives it (numbers may be
        strings in gRPC's JSON). Direct: instances x max(1, max_batch_size); Oldest: instances
        x max_candidate_sequences. Direct is Triton's default strategy."""
        batching = config.get("sequence_batching") or {}
        instances = _instances(config.get("instance_group") or [])
        oldest = batching.get("oldest")
        if oldest is not None:
            candidates = max(1, int(oldest.get("max_candidate_sequences") or 0))
            return cls(instances * candidates, f"Oldest strategy: {instances} instance(s) x "
                                               f"max_candidate_sequences {candidates}")
        batch = int(config.get("max_batch_size") or 0)
        return cls(instances * max(1, batch),
                   f"Direct strategy: {instances} instance(s) x max(1, max_batch_size {batch})")

    def __str__(self) -> str:
        return f"{self.count} sequence slot(s) ({self.config})"


def _instances(groups: list[Mapping[str, Any]]) -> int:
    """Model instances over all instance groups: a GPU group's count is per GPU."""
    total = 0
    for group in groups:
        count = int(group.get("count") or 1)
        gpus = group.get("gpus") or ()
        total += count * (len(gpus) if group.get("kind") == "KIND_GPU" and gpus else 1)
    return max(1, total)


@dataclass(frozen=True)
class SlotBudget:
    """How many sequences one subtask holds open at most."""

    per_subtask: int
    slots: SequenceSlots
    parallelism: int
    overridden: bool  # set by 'sequence-slots', not derived

    @classmethod
    def for_subtask(cls, model: str, slots: SequenceSlots, parallelism: int,
                    override: int | None) -> SlotBudget:
        if override is not None:
            return cls(override, slots, parallelism, True)
        share = slots.count // parallelism
        if share < 1:
            raise TritonConfigError(
                f"Model '{model}' has {slots}, fewer than the function's {parallelism} parallel "
                "subtasks, so some subtasks could not hold even one sequence open: their STARTs "
                "would wait in Triton's backlog. Give the model more slots (instances, "
                "max_batch_size for Direct, max_candidate_sequences for Oldest), lower the "
                "parallelism, or set 'sequence-slots' if you know better.")
        return cls(share, slots, parallelism, False)

    def describe(self) -> str:
        how = ("'sequence-slots'" if self.overridden
               else f"the model's {self.slots} / parallelism {self.parallelism}")
        return f"{self.per_subtask} open sequence(s) per subtask ({how})"


Held = tuple[Any, Any]  # (key, its KeySequence), what an END of the sequence needs


class OpenSequences:
    """The sequences a subtask holds open, least recently used first, with those that have a
    request in flight (never evicted); those whose END failed (Triton may hold them until it
    reaps them: their slots stay counted until then); and those it evicted (until Triton would
    have reaped them anyway, so the marks stay few)."""

    def __init__(self, budget: int, forget_after_ms: int) -> None:
        self.budget = budget
        self._forget_after_ms = forget_after_ms
        self._open: OrderedDict[str, Held] = OrderedDict()
        self._busy: set[str] = set()
        self._lingering: dict[str, int] = {}  # ID -> when Triton reaps it at the latest
        # ID -> the last activity of its key then; in eviction order, which is nearly the
        # order of those times (the least recently used goes first)
        self._evicted: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def has_room(self, now_ms: int) -> bool:
        for sequence_id, until in list(self._lingering.items()):
            if until <= now_ms:
                del self._lingering[sequence_id]
        return len(self._open) + len(self._lingering) < self.budget

    def next_release_ms(self) -> int | None:
        """When the first lingering sequence stops counting, if any does."""
        return min(self._lingering.values(), default=None)

    def hold(self, sequence_id: str, key: Any, state: Any) -> None:
        """The sequence is open (or about to be) and has a request in flight."""
        self._open[sequence_id] = (key, state)
        self._open.move_to_end(sequence_id)
        self._busy.add(sequence_id)

    def answered(self, sequence_id: str, key: Any, state: Any) -> None:
        """The sequence's request was answered and it stays open, most recently used."""
        self._busy.discard(sequence_id)
        self._open[sequence_id] = (key, state)
        self._open.move_to_end(sequence_id)

    def release(self, sequence_id: str) -> Held | None:
        """The sequence is no longer open (ended, failed, replaced)."""
        self._busy.discard(sequence_id)
        return self._open.pop(sequence_id, None)

    def linger(self, sequence_id: str, until_ms: int) -> None:
        """The sequence's END failed: count its slot as held until ``until_ms``."""
        self.release(sequence_id)
        self._lingering[sequence_id] = until_ms

    def least_recent_idle(self) -> tuple[str, Held] | None:
        """The least recently used sequence without a request in flight, or None."""
        return next(((i, held) for i, held in self._open.items() if i not in self._busy), None)

    def evict(self, sequence_id: str, last_activity_ms: int) -> Held | None:
        held = self._open.pop(sequence_id, None)
        self._evicted[sequence_id] = last_activity_ms
        return held

    def was_evicted(self, sequence_id: str, now_ms: int) -> bool:
        """Whether the sequence was evicted; forgets those Triton would have reaped by now."""
        evicted = self._evicted
        while evicted:
            oldest, at = next(iter(evicted.items()))
            if now_ms - at < self._forget_after_ms:
                break
            del evicted[oldest]
        return sequence_id in evicted

    def forget_eviction(self, sequence_id: str) -> None:
        self._evicted.pop(sequence_id, None)

    def take_all(self) -> list[Held]:
        """Every open sequence (at close), forgetting them."""
        held, self._open, self._busy = list(self._open.values()), OrderedDict(), set()
        return held
