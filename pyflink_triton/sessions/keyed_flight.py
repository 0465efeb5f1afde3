"""Keys in flight together: the records of many keys sent at once, each key's in order.

Triton's sequence batcher batches the steps of different sequences that are waiting at the
same time; a subtask that sends one request at a time never lets it. :class:`KeysInFlight`
takes records as they come (:meth:`~KeysInFlight.submit` returns at once) and sends them on up
to 'max-concurrent-requests' threads, each key's records one after another on one thread, in
the order they came, through the thread-safe :class:`~.keyed.KeyedInferenceSession`.
:meth:`~KeysInFlight.drain` waits for all of them and gives back every record's result in the
order the records came, and each key's state after its last record (the caller stores it in
Flink keyed state: this class never touches Flink). Nothing is kept between drains.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..policies.keyed import KeySequence
from .keyed import KeyedInferenceSession

# Records waiting to be sent, per thread, before submit() blocks: enough to keep every thread
# busy, few enough that a drain never waits for a long queue.
WAITING_PER_THREAD = 64


@dataclass
class _Record:
    index: int  # its place among the records since the last drain
    identity: Hashable  # the key as Flink tells keys apart
    key: Any
    state: KeySequence | None  # the key's state in Flink (used for its first record only)
    values: Sequence[Any]
    end: bool
    now_ms: int


@dataclass
class Drained:
    """What the records since the last drain gave: ``results`` in the order the records came
    (each the tag given to submit() and the result), and per key (by its identity) the state
    Flink had before its first record (``before``) and the state after its last
    (``after``)."""

    results: list[tuple[Any, Any]] = field(default_factory=list)
    before: dict[Hashable, KeySequence | None] = field(default_factory=dict)
    after: dict[Hashable, KeySequence | None] = field(default_factory=dict)


class KeysInFlight:
    def __init__(self, session: KeyedInferenceSession, threads: int) -> None:
        self._session = session
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="triton-keyed")
        self._room = threading.BoundedSemaphore(threads * WAITING_PER_THREAD)
        self._lock = threading.Condition()
        self._queues: dict[Any, deque[_Record]] = {}  # keys with a thread on them
        self._tags: list[Any] = []
        self._results: dict[int, Any] = {}
        self._failure: tuple[int, BaseException] | None = None  # the first record's that raised
        self._drained = Drained()

    @property
    def pending(self) -> int:
        """Records submitted since the last drain."""
        return len(self._tags)

    def submit(self, tag: Any, identity: Hashable, key: Any, state: KeySequence | None,
               values: Sequence[Any], end: bool, now_ms: int) -> None:
        """Queue one record of ``key`` (``state``: the key's state in Flink) to be sent after
        the key's earlier ones; ``tag`` comes back with its result. ``identity`` tells keys
        apart as Flink does (its serialized key: Python's == would merge 0.0 and -0.0, split
        NaNs and refuse lists). Blocks while many records wait to be sent."""
        self._room.acquire()
        with self._lock:
            record = _Record(len(self._tags), identity, key, state, values, end, now_ms)
            self._tags.append(tag)
            self._drained.before.setdefault(identity, state)
            queue = self._queues.get(identity)
            if queue is not None:  # (a thread is on the key: it takes this one next)
                queue.append(record)
                return
            self._queues[identity] = deque([record])
        self._pool.submit(self._run, identity)

    def _run(self, identity: Hashable) -> None:
        """Send the key's records, one after another, until its queue is empty."""
        while True:
            with self._lock:
                queue = self._queues[identity]
                if not queue:
                    del self._queues[identity]
                    self._lock.notify_all()
                    return
                record = queue.popleft()
                # (the key's first record takes Flink's state; the next, the one before gave)
                state = self._drained.after.get(identity, record.state)
            try:
                if self._failure is not None:  # (the job fails: send nothing more)
                    raise _Skipped()
                result, after = self._session.infer(state, record.key, record.values,
                                                    record.end, record.now_ms)
            except BaseException as error:  # (reported by drain(), in record order)
                with self._lock:
                    if not isinstance(error, _Skipped) and (
                            self._failure is None or record.index < self._failure[0]):
                        self._failure = (record.index, error)
                    self._results[record.index] = None
                self._room.release()
                continue
            with self._lock:
                self._results[record.index] = result
                self._drained.after[identity] = after
            self._room.release()

    def drain(self) -> Drained:
        """Wait until every record submitted so far is answered; their results and the keys'
        states. Raises what a record raised (the first in record order), after all the others
        finished."""
        with self._lock:
            while self._queues:
                self._lock.wait()
            drained, self._drained = self._drained, Drained()
            tags, self._tags = self._tags, []
            results, self._results = self._results, {}
            failure, self._failure = self._failure, None
        if failure is not None:
            raise failure[1]
        drained.results = [(tag, results[index]) for index, tag in enumerate(tags)]
        return drained

    def close(self) -> None:
        """Stop the threads once the records they are on are answered (none wait at a drained
        point; at a cancel, the records not sent are replayed from the last checkpoint)."""
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Skipped(Exception):
    """A record not sent because an earlier one failed the job."""
