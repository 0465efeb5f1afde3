"""Keyed sequences: one long-lived Triton sequence per key of a keyed DataStream. Pure, no I/O.

A :class:`KeyedSequencePolicy` (from the options and the served model's config) gives each
``open()`` a :class:`KeyedSequences`, which decides, from the key's state as Flink keeps it
(:class:`KeySequence`), whether a record continues the key's sequence or starts a new one,
which inputs to replay first, and when an idle key is ended. ``sessions.keyed`` sends what it
decides; the Flink side is ``flink.datastream.TritonKeyedSequenceFunction``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import cached_property
from typing import Any

from ..errors import TritonConfigError
from ..options import TritonOptions, format_duration
from ..options.sequence_ids import (
    KEYED_INCARNATION_HEX,
    KEYED_NUMBER_DIGITS,
    MAX_SEQUENCE_ID_BYTES,
)
from .sequence import SequenceParams
from .slots import SlotBudget

# What Triton uses when a model's sequence_batching sets no max_sequence_idle_microseconds.
TRITON_DEFAULT_IDLE_MICROS = 1_000_000

# A key longer than this (as text) appears in the ID as its hash, so that IDs stay short: Triton
# keeps each as given, in every slot and log line of a sequence (and refuses IDs over 128 bytes).
MAX_KEY_CHARS = 64

Inputs = tuple[Any, ...]  # one record's values, one per input column


def new_incarnation() -> str:
    """A random nonce, new in every ``open()``. Attempt numbers and job IDs repeat across
    resubmits (a new job is attempt 0 again); 48 random bits do not, in practice."""
    return secrets.token_hex(KEYED_INCARNATION_HEX // 2)


def key_text(key: Any, max_bytes: int = MAX_KEY_CHARS) -> str:
    """How a key appears in its sequence IDs: as text, or ``sha256:<32 hex digits>`` when that
    text is longer than :data:`MAX_KEY_CHARS` characters or ``max_bytes`` bytes, or not
    printable (a NUL would cut the ID short)."""
    text = str(key)
    if (len(text) <= MAX_KEY_CHARS and text.isprintable()
            and len(text.encode("utf-8", "surrogatepass")) <= max_bytes):
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class KeySequence:
    """What Flink keeps per key, in checkpointed keyed state: the key's current or last
    sequence."""

    incarnation: str  # of the open() that started it
    number: int  # how many sequences the key started before this one; part of the ID
    open: bool  # started and not ended, as far as the function knows
    last_activity_ms: int  # processing time of the key's last record
    idle_timer_ms: int | None  # the processing-time timer registered for the key
    recent: tuple[Inputs, ...] = ()  # the key's last inputs, oldest first, for replay and END
    # The sequence stopped without END (a request failed for good, or it belonged to an older
    # incarnation): the key's next sequence replaces it, replaying ``recent``.
    interrupted: bool = False

    @property
    def replaceable(self) -> bool:
        """Whether a new sequence of the key replaces one that stopped without END."""
        return self.open or self.interrupted


@dataclass(frozen=True)
class Send:
    """One request the function sends for a key."""

    values: Inputs
    sequence: SequenceParams
    flush: bool = False  # an END that repeats the last input; the model must not count it
    replay: bool = False  # an input replayed into a restarted sequence; its answer is dropped


@dataclass(frozen=True)
class RecordPlan:
    """What one record of a key sends, in order (replayed inputs first; the record's own
    request last, whose answer is the result), and the key's state once it was answered."""

    sends: tuple[Send, ...]
    state: KeySequence

    @property
    def replayed(self) -> int:
        return len(self.sends) - 1

    @property
    def sequence_id(self) -> str | int:
        return self.sends[-1].sequence.sequence_id

    @property
    def continued(self) -> bool:
        """Whether the record continues the key's open sequence (else it starts one)."""
        return not self.sends[0].sequence.start


@dataclass(frozen=True)
class IdlePlan:
    """What a key's idle timer does: send an END (or nothing), then store ``state``."""

    end: Send | None
    state: KeySequence


@dataclass(frozen=True)
class KeyedSequencePolicy:
    """One Triton sequence per key, ID ``{sequence-id}-{key}-{incarnation}-{n}``.

    A key's first record sends START; a record for which the end condition holds sends END;
    a key idle for ``idle_timeout`` gets an explicit END (repeating its last input, flagged
    as a flush). A key whose sequence was started by another incarnation (the state was
    restored after a failover) never resumes that ID: it starts a new sequence, replaying its
    last ``replay_records`` inputs first. So does a key whose last request failed for good.
    """

    base_id: str
    idle_timeout: timedelta
    replay_records: int = 0
    # The model's max_sequence_idle_microseconds: a sequence idle that long is gone from
    # Triton (reaped, the model untold). None: not known, never assumed reaped.
    reaped_after: timedelta | None = None

    @classmethod
    def for_model(cls, options: TritonOptions, model: str,
                  config: Mapping[str, Any]) -> KeyedSequencePolicy:
        """The policy for a served model (its config as ``/v2/models/<m>/config`` gives it):
        the idle timeout must end a key before Triton's reaper drops it untold."""
        assert options.sequence_id is not None  # (checked at registration)
        batching = config.get("sequence_batching")
        if batching is None:
            raise TritonConfigError(
                f"Model '{model}' has no sequence_batching in its config, so Triton keeps no "
                "state per sequence: keyed sequences are for stateful models. Use "
                "TritonMapFunction for a stateless model.")
        # (a number over HTTP, a string in gRPC's JSON; 0 or absent: Triton's default)
        reaped_after = timedelta(microseconds=int(
            batching.get("max_sequence_idle_microseconds") or 0) or TRITON_DEFAULT_IDLE_MICROS)
        idle = options.sequence_idle_timeout
        if idle is None:
            idle = reaped_after / 2
        elif idle >= reaped_after:
            raise TritonConfigError(
                f"'sequence-idle-timeout' ({format_duration(idle)}) must be below model "
                f"'{model}''s max_sequence_idle_microseconds ({format_duration(reaped_after)}): "
                "after that Triton drops an idle sequence without telling the model, before "
                "the function's END.")
        return cls(options.sequence_id, idle, options.sequence_replay_records, reaped_after)

    @cached_property
    def _key_room(self) -> int:
        # The key gets what Triton's limit leaves (the base was checked at registration to
        # leave room for a hashed key), the same in every sequence of the key.
        return (MAX_SEQUENCE_ID_BYTES - len(self.base_id.encode()) - 3 - KEYED_INCARNATION_HEX
                - KEYED_NUMBER_DIGITS)

    def sequence_id(self, key: Any, incarnation: str, number: int) -> str:
        return f"{self.base_id}-{key_text(key, self._key_room)}-{incarnation}-{number}"

    def for_incarnation(self, incarnation: str,
                        budget: SlotBudget | None = None) -> KeyedSequences:
        return KeyedSequences(self, incarnation, budget)


class KeyedSequences:
    """The keyed-sequence decisions of one ``open()`` (one incarnation). ``budget``: how many
    sequences the subtask holds open at most (None: no limit)."""

    def __init__(self, policy: KeyedSequencePolicy, incarnation: str,
                 budget: SlotBudget | None = None) -> None:
        self.policy = policy
        self.incarnation = incarnation
        self.budget = budget
        self._idle_ms = max(1, policy.idle_timeout // timedelta(milliseconds=1))
        self._reaped_ms = (None if policy.reaped_after is None
                           else policy.reaped_after // timedelta(milliseconds=1))

    def describe(self) -> str:
        policy = self.policy
        budget = "" if self.budget is None else f", {self.budget.describe()}"
        return (f"keyed sequences {policy.base_id}-<key>-{self.incarnation}-<n> (incarnation "
                f"{self.incarnation}), END after {self._idle_ms} ms idle, replaying up to "
                f"{policy.replay_records} input(s) into a restarted sequence{budget}")

    def continues(self, state: KeySequence | None, now_ms: int) -> bool:
        """Whether the key's next record (at processing time ``now_ms``) belongs to its open
        sequence: one of this incarnation that Triton still holds. A key idle past the model's
        max_sequence_idle_microseconds has lost it to Triton's reaper, even if its idle END
        has not come yet (timers fire late under backpressure)."""
        if state is None or not state.open or state.incarnation != self.incarnation:
            return False
        return not self.reaped(state, now_ms)

    def reaped(self, state: KeySequence, now_ms: int) -> bool:
        """Whether Triton's reaper has dropped the key's sequence by ``now_ms``. (The key's
        last activity is taken before its last request was sent, so this idle time is never
        shorter than Triton's, which starts when that request arrived.)"""
        return self._reaped_ms is not None and now_ms - state.last_activity_ms >= self._reaped_ms

    def record(self, state: KeySequence | None, key: Any, values: Inputs, end: bool,
               now_ms: int) -> RecordPlan:
        """The requests of one record of ``key``, whose state is ``state`` (None: never
        seen), and the state once they were answered."""
        policy = self.policy
        continues = self.continues(state, now_ms)
        if continues:
            assert state is not None
            number, replay = state.number, ()
        else:
            number = 0 if state is None else state.number + 1
            # Inputs survive in ``recent`` only when the last sequence was interrupted (a
            # failover, a failure, Triton's reaper), never after an END, which the model acted
            # on.
            replay = state.recent[-policy.replay_records:] if (
                state is not None and policy.replay_records) else ()
        sequence_id = policy.sequence_id(key, self.incarnation, number)
        sends = [Send(v, SequenceParams(sequence_id, i == 0, False), replay=True)
                 for i, v in enumerate(replay)]
        sends.append(Send(values, SequenceParams(sequence_id, not (continues or sends), end)))
        if end:
            after = KeySequence(self.incarnation, number, False, now_ms, None, ())
        else:
            before = state.recent if continues and state is not None else replay
            recent = (*before, values)[-max(1, policy.replay_records):]
            after = KeySequence(self.incarnation, number, True, now_ms,
                                now_ms + self._idle_ms, recent)
        return RecordPlan(tuple(sends), after)

    def evicted(self, state: KeySequence) -> KeySequence:
        """The key's state once the function ENDed its sequence to free a slot for another
        key (the key's own state could not be changed then): the key's next record starts a
        new sequence, warmed up with the key's last inputs as after any interruption."""
        return replace(state, open=False, idle_timer_ms=None, interrupted=True)

    def without_replay(self, state: KeySequence) -> KeySequence:
        """``state`` with nothing to replay (its stored inputs no longer fit the model)."""
        return replace(state, recent=())

    def failed(self, state: KeySequence | None, plan: RecordPlan) -> KeySequence:
        """The key's state after its record failed for good: the sequence is abandoned (Triton
        may or may not hold it), so the key's next record starts a new one, replaying the
        inputs the abandoned one had."""
        if plan.continued:
            assert state is not None
            recent = state.recent
        else:
            recent = tuple(send.values for send in plan.sends[:-1])
        return replace(plan.state, open=False, idle_timer_ms=None, recent=recent,
                       interrupted=True)

    def idle(self, state: KeySequence | None, key: Any, now_ms: int) -> IdlePlan | None:
        """What the key's idle timer does at ``now_ms``; None: nothing (no sequence open)."""
        if state is None or not state.open:
            return None
        due = state.last_activity_ms + self._idle_ms
        if now_ms < due:  # a record came after the timer was set (and it was not deleted)
            return IdlePlan(None, replace(state, idle_timer_ms=due))
        if state.incarnation != self.incarnation or self.reaped(state, now_ms):
            # Restored from before a failover: never touch the old ID (an old worker may
            # still use it; Triton reaps it). The timer measured the outage too, and the
            # source replays the key's records since the checkpoint: keep the inputs, so that
            # the key's next sequence is warmed up as after any interruption. Or the timer
            # came so late that Triton reaped the sequence, untold: an END would meet a 400,
            # and the key's next sequence is warmed up just the same.
            return IdlePlan(None, replace(state, open=False, idle_timer_ms=None,
                                          interrupted=True))
        return self.end(state, key)

    def sequence_id_of(self, key: Any, state: KeySequence) -> str:
        """The ID of the key's sequence that ``state`` describes."""
        return self.policy.sequence_id(key, state.incarnation, state.number)

    def abandoned_end(self, plan: RecordPlan) -> Send:
        """An END for the sequence of a plan that failed in a way that may have reached the
        model (so Triton may hold it open): it repeats the record's input as a flush."""
        return Send(plan.sends[-1].values, SequenceParams(plan.sequence_id, False, True),
                    flush=True)

    def end(self, state: KeySequence, key: Any) -> IdlePlan:
        """The key's idle END, and its state after it."""
        return IdlePlan(self.flush_end(state, key),
                        replace(state, open=False, idle_timer_ms=None, recent=()))

    def flush_end(self, state: KeySequence, key: Any) -> Send:
        """The END of the key's open sequence of this incarnation, sent by the function (when
        idle, evicted, or at the end of the input): it repeats the key's last input as a
        flush."""
        assert state.open and state.incarnation == self.incarnation, state
        return Send(state.recent[-1],
                    SequenceParams(self.sequence_id_of(key, state), False, True), flush=True)
