"""Sequence-ID policy: which Triton sequence each record's request belongs to. Pure, no I/O.

Two kinds of functions send sequences:

- **Per-record functions** (Table API, SQL, DataStream map): a :class:`SequencePolicy` is built
  from the options when the function is registered and shipped with it. In ``open()`` each
  parallel subtask asks it for a :class:`SequenceIdGenerator`, whose
  :meth:`~SequenceIdGenerator.next` is called once per record. With auto-increment the IDs are
  ``{sequence-id}-{subtask-index}-{counter}``, so parallel subtasks never share a sequence; the
  counter starts at 0 or, with 'sequence-id-counter-init-strategy' = 'nano-time', at the
  wall-clock time in nanoseconds, so a restarted or resubmitted job never repeats an ID.
- **Keyed sequences** (a keyed DataStream): one long-lived sequence per key, decided in
  ``policies.keyed``.

A record draws its ID once; anything that resends the record (a retry) must reuse the
:class:`SequenceParams` it drew.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import TritonConfigError
from ..options import TritonOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequenceParams:
    """The sequence fields of one request, as sent in the request's ``parameters``."""

    sequence_id: str | int  # int only with sequence-id-type = uint64
    start: bool
    end: bool


@dataclass(frozen=True)
class SequencePolicy:
    base_id: str | None
    auto_increment: bool
    start: bool
    end: bool
    id_type: Literal["string", "uint64"] = "string"
    counter_init: Literal["zero", "nano-time"] = "zero"

    @classmethod
    def from_options(cls, options: TritonOptions) -> SequencePolicy:
        return cls(options.sequence_id, options.sequence_id_auto_increment,
                   options.sequence_start, options.sequence_end, options.sequence_id_type,
                   options.sequence_id_counter_init_strategy)

    def check_senders(self, parallelism: int) -> None:
        """Refuse a fixed sequence ID for a function with several parallel instances: each
        would send into the one Triton sequence, interleaving its steps (and a START from one
        silently ends another's run)."""
        if self.base_id is None or self.auto_increment or parallelism <= 1:
            return
        raise TritonConfigError(
            f"The fixed 'sequence-id' = '{self.base_id}' is used by all {parallelism} parallel "
            "instances of the function, which would interleave their records in one Triton "
            "sequence (a START from one silently ends another's run). Use "
            "'sequence-id-auto-increment' = 'true' (each request its own sequence), keyed "
            "sequences (one sequence per key, TritonKeyedSequenceFunction), or a parallelism "
            "of 1 for this function.")

    def for_subtask(self, subtask_index: int, now_ns: Callable[[], int] = time.time_ns,
                    live: LiveSequences | None = None, attempt: int = 0) -> SequenceIdGenerator:
        """The generator of one open(); ``now_ns``: the wall clock, for 'nano-time'.
        ``live``: the registry of the function instances alive in this process, which share
        one counter per base and subtask (see :class:`LiveSequences`); None: a counter of its
        own. ``attempt``: the open()'s attempt number (fixed IDs)."""
        first = now_ns() if self.counter_init == "nano-time" else 0
        if live is None or self.base_id is None:
            return SequenceIdGenerator(self, subtask_index, first)
        return live.join(self, subtask_index, first, attempt)


class _Counter:
    """The next auto-increment counter value; shared by the instances of one base."""

    def __init__(self, first: int) -> None:
        self._next = first
        self._lock = threading.Lock()  # (records are drawn on several threads in async modes)
        self.users = 0

    def draw(self) -> int:
        with self._lock:
            value, self._next = self._next, self._next + 1
            return value

    def start_at_least(self, value: int) -> int:
        """Move the counter forward to ``value`` (never back); the next value it gives."""
        with self._lock:
            self._next = max(self._next, value)
            return self._next


class LiveSequences:
    """The sequence IDs of the function instances alive in one process (a Python worker).

    Instances with the same base and subtask index run in one worker when a query calls a model
    twice (``SELECT m(a), m(b)``) or two models share a 'sequence-id'. With auto-increment they
    draw from one counter here, so no ID is issued twice while they live (with 'zero' each
    would count from 0; with 'nano-time' two opens in one clock tick would too). A fixed
    'sequence-id' cannot be shared at all: two senders would interleave one Triton sequence,
    so a second instance of the same attempt is refused. An instance leaves at close(); one
    that never closes (a failover) only keeps its counter from starting over.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, int, str], _Counter] = {}
        # Fixed IDs in use (Triton tells "42" from 42: so does the key).
        self._fixed: set[tuple[str, str, int, int]] = set()

    def join(self, policy: SequencePolicy, subtask_index: int, first: int,
             attempt: int) -> SequenceIdGenerator:
        assert policy.base_id is not None
        with self._lock:
            if not policy.auto_increment:
                key = (policy.base_id, policy.id_type, subtask_index, attempt)
                if key in self._fixed:
                    raise TritonConfigError(
                        f"The fixed 'sequence-id' = '{policy.base_id}' is already used by "
                        f"another function instance of subtask {subtask_index} in this worker "
                        "(the model called twice in one query, or two models with the same "
                        "'sequence-id'): two senders would interleave one Triton sequence. Give "
                        "each model its own 'sequence-id', or use "
                        "'sequence-id-auto-increment' or keyed sequences.")
                self._fixed.add(key)
                return SequenceIdGenerator(policy, subtask_index, first,
                                           release=lambda: self._leave_fixed(key))
            key = (policy.base_id, subtask_index, policy.counter_init)
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = _Counter(first)
            counter.users += 1
            first = counter.start_at_least(first)
            return SequenceIdGenerator(policy, subtask_index, first, counter,
                                       release=lambda: self._leave(key, counter))

    def _leave(self, key: tuple[str, int, str], counter: _Counter) -> None:
        with self._lock:
            counter.users -= 1
            if counter.users <= 0 and self._counters.get(key) is counter:
                del self._counters[key]

    def _leave_fixed(self, key: tuple[str, str, int, int]) -> None:
        with self._lock:
            self._fixed.discard(key)


# The registry of this process, used by every function instance (``sessions.function``).
LIVE_SEQUENCES = LiveSequences()


class SequenceIdGenerator:
    """The sequence IDs of one function instance (one parallel subtask)."""

    def __init__(self, policy: SequencePolicy, subtask_index: int, first: int = 0,
                 counter: _Counter | None = None,
                 release: Callable[[], None] | None = None) -> None:
        self.policy = policy
        self.subtask_index = subtask_index
        self.first = first  # where this instance's counter started (or stood, when shared)
        self._counter = counter or _Counter(first)
        self._release = release
        self._issued = 0

    @property
    def issued(self) -> int:
        """How many auto-incremented IDs this instance has drawn."""
        return self._issued

    def describe(self) -> str:
        policy = self.policy
        if policy.base_id is None:
            return "no sequence ID"
        if policy.auto_increment:
            start = (f"{self.first}" if policy.counter_init == "zero"
                     else f"{self.first} (nano-time: the wall clock in ns at open())")
            return (f"sequence IDs {policy.base_id}-{self.subtask_index}-<counter> "
                    f"(subtask {self.subtask_index}, counter from {start})")
        return f"the fixed sequence ID {policy.base_id!r} ({policy.id_type})"

    def next(self) -> SequenceParams | None:
        """The sequence fields for the next record, or None when requests carry no sequence."""
        policy = self.policy
        if policy.base_id is None:
            return None
        if not policy.auto_increment:
            sequence_id: str | int = (int(policy.base_id) if policy.id_type == "uint64"
                                      else policy.base_id)
            return SequenceParams(sequence_id, policy.start, policy.end)
        counter = self._counter.draw()
        self._issued += 1
        sequence_id = f"{policy.base_id}-{self.subtask_index}-{counter}"
        log.debug("sequence ID %s", sequence_id)
        return SequenceParams(sequence_id, policy.start, policy.end)

    def close(self) -> None:
        """Leave the process's registry (at the instance's close())."""
        release, self._release = self._release, None
        if release is not None:
            release()
