"""The sequences a keyed session holds open, within its subtask's slot budget; thread-safe.

:class:`HeldSequences` decides, under one lock shared by the threads that send different
keys' records, which sequence a START evicts when the budget is full (the least recently used
one without a request in flight; it waits while every open one has one), remembers the
evictions (the evicted keys' states cannot be changed then: they are other keys' Flink state),
and keeps counting the slot of a sequence whose END failed until Triton would have reaped it.
The keyed session sends the ENDs it decides on.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from ..errors import TritonRequestError
from ..policies.keyed import KeyedSequences, KeySequence, RecordPlan
from ..policies.slots import Held, OpenSequences, SlotBudget
from ..wire.request import ModelRef

# A WARNING when a subtask evicts as many sequences as its budget within this many seconds.
EVICTION_WARNING_SECONDS = 60.0


class HeldSequences:
    def __init__(self, sequences: KeyedSequences, budget: SlotBudget, model: ModelRef) -> None:
        policy = sequences.policy
        assert policy.reaped_after is not None  # (for_model always knows it)
        self.budget = budget
        self._sequences = sequences
        self._model = model
        self._reaped_ms = policy.reaped_after // timedelta(milliseconds=1)
        self._open = OpenSequences(budget.per_subtask, self._reaped_ms)
        self._lock = threading.Condition()
        self._closed = False
        self.evictions = 0
        self._window = (time.monotonic(), 0)  # (since, evictions since): the WARNING's

    def __len__(self) -> int:
        return len(self._open)

    def unless_evicted(self, key: Any, state: KeySequence | None,
                       now_ms: int) -> KeySequence | None:
        """The key's state, told that its sequence was evicted if it was."""
        sequences = self._sequences
        if state is None or not state.open or state.incarnation != sequences.incarnation:
            return state
        sequence_id = sequences.sequence_id_of(key, state)
        with self._lock:
            if not self._open.was_evicted(sequence_id, now_ms):
                return state
            self._open.forget_eviction(sequence_id)
        return sequences.evicted(state)

    def take(self, key: Any, before: KeySequence | None, plan: RecordPlan) -> list[Held] | None:
        """Mark the plan's sequence as having a request in flight, and return the sequences
        to END first (evicted to free a slot for it); None if the plan continues a sequence
        that another key's record evicted since it was planned (plan it again)."""
        now_ms = plan.state.last_activity_ms
        evicted: list[Held] = []
        with self._lock:
            if plan.continued:
                if self._open.was_evicted(plan.sequence_id, now_ms):
                    return None
            else:
                if before is not None:  # (the sequence it replaces: reaped, interrupted)
                    self._open.release(self._sequences.sequence_id_of(key, before))
                while not self._open.has_room(now_ms):
                    self._check_open()
                    victim = self._open.least_recent_idle()
                    if victim is None:  # (all busy or lingering: wait for one to be let go)
                        release = self._open.next_release_ms()
                        self._lock.wait(None if release is None else
                                        max(0.001, (release - now_ms) / 1000))
                        now_ms = max(now_ms, int(time.time() * 1000))
                        continue
                    sequence_id, (victim_key, victim_state) = victim
                    self._open.evict(sequence_id, victim_state.last_activity_ms)
                    evicted.append((victim_key, victim_state))
                    self.evictions += 1
            self._open.hold(plan.sequence_id, key, plan.state)
        return evicted

    def answered(self, key: Any, plan: RecordPlan) -> None:
        """Keep the plan's sequence open (most recently used), or let it go if it ended."""
        with self._lock:
            if plan.state.open:
                self._open.answered(plan.sequence_id, key, plan.state)
            else:
                self._open.release(plan.sequence_id)
            self._lock.notify_all()

    def let_go(self, sequence_id: str) -> None:
        """The sequence is no longer open (its END went out, or its request failed)."""
        with self._lock:
            self._open.release(sequence_id)
            self._lock.notify_all()

    def linger(self, sequence_id: str, last_activity_ms: int) -> None:
        """The sequence's END failed: Triton may hold its slot until it reaps it."""
        with self._lock:
            self._open.linger(sequence_id, last_activity_ms + self._reaped_ms)
            self._lock.notify_all()

    def evicting_often(self) -> bool:
        """Count one eviction's END; True when the subtask has evicted as many sequences as
        its budget within the last EVICTION_WARNING_SECONDS (once per such window)."""
        with self._lock:
            since, count = self._window
            now = time.monotonic()
            if now - since >= EVICTION_WARNING_SECONDS:
                since, count = now, 0
            self._window = (since, count + 1)
            return count + 1 == self.budget.per_subtask

    def take_all(self) -> list[Held]:
        """Every open sequence, forgetting them, and no more STARTs (at close)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            return self._open.take_all()

    def _check_open(self) -> None:
        if self._closed:  # (a thread still waiting for a slot when the function closes)
            raise TritonRequestError(
                f"The keyed function of model {self._model} closed while a record waited for "
                "a sequence slot; it was not sent.")
