"""Keyed sequences: each key of a keyed stream in its own long-lived Triton sequence.

The decisions (which sequence a record goes to, what to replay, when an idle key ends) are the
pure ``policies.keyed``; this module carries them out: it sends a record's plan in order on a
blocking transport, restarts a key's sequence once when Triton no longer holds it (or a
request may have reached it), keeps the sequences it holds open within the subtask's slot
budget (ENDing the least recently used one before a START that would exceed it), ends idle
keys at their timers and, at close(), the sequences it still holds open. The key's state is
the caller's (Flink keyed state): it goes in with each call and the new state comes back.

Records of different keys may be sent from several threads at once (``keyed_flight``), each
key's from one thread at a time: the sequences held open are ``keyed_slots.HeldSequences``
(locked), the counters are locked, and each thread sends on its own connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from ..errors import TritonCircuitOpenError, TritonRequestError, TritonSequenceServerLostError
from ..options import format_duration
from ..policies.keyed import Inputs, KeySequence, RecordPlan, Send
from ..policies.slots import Held
from ..wire.failures import no_sequence_slot, unknown_sequence
from ..wire.request import InferRequest, InferResponse
from .context import InstanceContext, Throttled
from .contract import InferenceSession
from .keyed_slots import EVICTION_WARNING_SECONDS, HeldSequences
from .servers import ServerPool

log = logging.getLogger(__name__)


class _StaleReplay(Exception):
    """An input kept in a key's state no longer encodes for the served model."""

    def __init__(self, error: TritonRequestError) -> None:
        self.error = error


# What a keyed function's close() may take to END the sequences still open: Flink interrupts
# a task that does not stop within 'task.cancellation.interval' (30 s).
CLOSE_SECONDS = 10.0
# The one attempt at ending a sequence abandoned after a request that may have reached it.
ABANDONED_END_SECONDS = 2.0

# The request parameters of a keyed sequence's requests that no record asked for. An idle or
# eviction END repeats the key's last input only because a request needs inputs: a model
# should end the sequence without using it. A replayed input warms up a restarted sequence: a
# model uses it as any input, but may skip side effects (its answer is dropped).
FLUSH_PARAMETER = "sequence_flush"
REPLAY_PARAMETER = "sequence_replay"
# Triton's own request parameter: a request not scheduled within this many microseconds fails
# (HTTP 503). Every START carries it, so that none waits silently in Triton's backlog for a
# sequence slot that someone else holds.
TRITON_TIMEOUT_PARAMETER = "timeout"


KeyedRecord = tuple[KeySequence | None, Any, Sequence[Any], bool, int]  # infer()'s arguments
Keyed = tuple[Any, KeySequence | None]  # a record's result and its key's new state


class KeyedInferenceSession(InferenceSession[[KeySequence | None, Any, Sequence[Any], bool, int],
                                             Keyed, Iterable[KeyedRecord], list[Keyed]]):
    """Blocking requests in each key's own long-lived sequence.

    The caller keeps each key's :class:`KeySequence` (Flink keyed state) and passes it in;
    every call returns the state to store. Decisions come from :class:`KeyedSequences`.
    The session keeps the sequences it holds open (:class:`OpenSequences`): it ENDs the least
    recently used one when a START would exceed the subtask's budget, and :meth:`close` ends
    them all (when the input ends, Flink drops pending processing-time timers, so idle ENDs
    would never come). Thread-safe for different keys; one key's records one at a time.
    """

    mode = "keyed"
    blocking = True
    sequence_per_key = True

    def __init__(self, context: InstanceContext, transport: ServerPool) -> None:
        super().__init__(context, transport)
        assert context.keyed is not None  # (open() draws it for a sequence_per_key mode)
        self.sequences = context.keyed
        assert self.sequences.budget is not None  # (open() derives it from the model)
        self._held = HeldSequences(self.sequences, self.sequences.budget, context.model)
        # A START waits at most this long in Triton's backlog for a slot someone else holds:
        # the idle timeout, so clearly before Triton's reaper, which would drop the holders
        # untold (this subtask's own too: they wait for the START's chunk to be answered),
        # and within the request's own timeout, so that Triton's answer comes first.
        self._start_wait = min(self.sequences.policy.idle_timeout,
                               context.options.timeout * 0.8)
        self._counts = threading.Lock()
        self.started = self.restarted = self.replayed = self.idle_ends = 0
        self._restarts = Throttled()
        self._local = threading.local()  # each thread's own connection
        self._local.transport = transport
        self._transports = [transport]
        metrics = context.guard.metrics
        for name, value in (("sequencesStarted", lambda: self.started),
                            ("sequencesRestarted", lambda: self.restarted),
                            ("replayedInputs", lambda: self.replayed),
                            ("idleEnds", lambda: self.idle_ends),
                            ("sequenceEvictions", lambda: self._held.evictions),
                            ("openSequences", lambda: len(self._held)),
                            ("sequenceSlotBudget", lambda: self.budget)):
            metrics.gauge(name, value)

    @property
    def budget(self) -> int:
        """How many sequences this subtask holds open at most."""
        return self._held.budget.per_subtask

    @property
    def evictions(self) -> int:
        return self._held.evictions

    @property
    def transport(self) -> ServerPool:
        """This thread's connections (a blocking transport is not thread-safe); the routing
        state behind them is the instance's."""
        transport = getattr(self._local, "transport", None)
        if transport is None:
            transport = self._local.transport = ServerPool(self.context.servers)
            with self._counts:
                self._transports.append(transport)
        return transport

    def infer(self, state: KeySequence | None, key: Any, values: Sequence[Any], end: bool,
              now_ms: int) -> Keyed:
        """Send one record of ``key`` (whose stored state is ``state``) in the key's
        sequence, ending it if ``end``; returns the record's result and the key's new state.

        A step of a sequence is never sent twice into it (the model would apply it twice):
        when a request fails in a way that may have reached the model, Triton no longer
        knows the sequence (restarted, or reaped it), or its server is unavailable while
        another of 'endpoint' is up, the key's sequence restarts once, as a new sequence
        (on the first available server in its ID's order) warmed up with the key's last
        inputs, and the record goes there."""
        context = self.context
        values = tuple(values)
        restarts_left = 1
        while True:
            state = self._held.unless_evicted(key, state, now_ms)
            try:  # all encoded first: a record that cannot be sent leaves the sequence as it was
                plan, requests = self._plan(state, key, values, end, now_ms)
            except TritonRequestError as error:
                return context.failed_result(error), state
            evicted = self._held.take(key, state, plan)
            if evicted is None:
                continue  # (another key's record evicted its sequence since: plan it again)
            try:
                for victim in evicted:  # (before the START: its slot is needed)
                    self._evict(victim, now_ms)
                self._count(state, plan)
                response = self._send(requests)
                result = context.result(response)
            except TritonRequestError as error:
                self._held.let_go(plan.sequence_id)
                abandoned = self.sequences.failed(state, plan)
                cause = error.last_attempt or error
                if no_sequence_slot(cause):
                    error = self._no_slot_error(plan, error)
                if cause.maybe_delivered and cause.retryable:
                    self._end_abandoned(plan)  # (Triton may hold it open: free its slot)
                elif isinstance(cause, TritonSequenceServerLostError):
                    # (its server may only be cut off from here, holding the slot until it
                    # reaps the sequence)
                    self._held.linger(plan.sequence_id, plan.state.last_activity_ms)
                if restarts_left and (unknown_sequence(cause) or isinstance(
                        cause, TritonSequenceServerLostError) or (
                        cause.retryable and cause.maybe_delivered)):
                    restarts_left -= 1
                    self._log_restart(plan, error)
                    state = abandoned
                    continue
                log.warning("Abandoned sequence %s of model %s after a failed request; the "
                            "key's next record starts a new one.", plan.sequence_id,
                            context.model)
                return context.failed_result(error), abandoned
            except BaseException:  # (not a request's failure: the slot must not stay taken)
                self._held.let_go(plan.sequence_id)
                raise
            self._held.answered(key, plan)
            return result, plan.state

    def infer_many(self, records: Iterable[KeyedRecord]) -> list[Keyed]:
        """Each record as :meth:`infer`'s arguments, in order. A key's sequence goes on from
        record to record: after a key's first record here, its next ones take the state the
        one before returned (the state given with them is not used)."""
        states: dict[Any, KeySequence | None] = {}
        results = []
        for state, key, values, end, now_ms in records:
            result, states[key] = self.infer(states.get(key, state), key, values, end, now_ms)
            results.append((result, states[key]))
        return results

    def _plan(self, state: KeySequence | None, key: Any, values: Inputs, end: bool,
              now_ms: int) -> tuple[RecordPlan, list[InferRequest]]:
        """The record's plan and its requests; a plan whose stored inputs no longer encode for
        the served model (it changed since they were kept) is made again without them."""
        sequences = self.sequences
        plan = sequences.record(state, key, values, end, now_ms)
        try:
            return plan, self._requests(plan)
        except _StaleReplay as stale:
            assert state is not None
            log.warning("Not replaying the %d stored input(s) of sequence %s of model %s: "
                        "%s", plan.replayed, plan.sequence_id, self.context.model,
                        stale.error)
            plan = sequences.record(sequences.without_replay(state), key, values, end, now_ms)
            return plan, self._requests(plan)

    def _send(self, requests: Sequence[InferRequest], within: float | None = None
              ) -> InferResponse:
        """Send a plan's requests in order; the last one's response."""
        for request in requests:
            response = self.context.guard.send(self.transport, request,
                                               resend_delivered=False, within=within)
        return response

    # --- the slot budget ----------------------------------------------------------------

    def _evict(self, victim: Held, now_ms: int) -> None:
        """END a sequence to free its slot for another key (unless Triton reaped it by
        ``now_ms``, the evicting record's time: an END would meet a 400)."""
        key, state = victim
        if not self.sequences.reaped(state, now_ms):
            self._end_decided(key, state)
        if self._held.evicting_often():
            log.warning(
                "Model %s: this subtask ended %d least recently used sequence(s) within %g s "
                "to free slots for other keys (its budget: %s). Each evicted key that returns "
                "starts a new sequence, replaying its last %d input(s) "
                "('sequence-replay-records'). More keys are live per subtask than its budget "
                "holds: give the model more sequence slots, raise the parallelism, or set "
                "'sequence-slots' if the model has room.", self.context.model, self.budget,
                EVICTION_WARNING_SECONDS, self._held.budget.describe(),
                self.sequences.policy.replay_records)

    def _no_slot_error(self, plan: RecordPlan, error: TritonRequestError) -> TritonRequestError:
        budget = self._held.budget
        return TritonRequestError(
            f"The START of sequence {plan.sequence_id} waited "
            f"{format_duration(self._start_wait)} in Triton's backlog without getting a "
            f"sequence slot of model {self.context.model}: the model has {budget.slots} and "
            f"this subtask's budget is {budget.describe()}, and every slot was held (by "
            "another job or client of the model, or because 'sequence-slots' is above this "
            "subtask's share). Give the model more slots (instances; max_batch_size for "
            "Direct, max_candidate_sequences for Oldest) or lower 'sequence-slots'. Triton "
            f"said: {error}")

    # --- ENDs the function decides on ---------------------------------------------------

    def _end_abandoned(self, plan: RecordPlan) -> None:
        """One quick attempt at ending the sequence of a plan that failed after its request
        may have reached the model: Triton may hold it open, and a slot until it reaps it."""
        try:
            self._send([self._request(self.sequences.abandoned_end(plan))],
                       within=ABANDONED_END_SECONDS)
        except TritonRequestError as error:
            self._held.linger(plan.sequence_id, plan.state.last_activity_ms)
            log.debug("Could not end the abandoned sequence %s of model %s: %s",
                      plan.sequence_id, self.context.model, error)

    def _log_restart(self, plan: RecordPlan, error: TritonRequestError) -> None:
        with self._counts:
            restarts = self._restarts.count()
        if restarts:
            log.warning(
                "Restarted %d sequence(s) of model %s as new one(s), warmed up with their "
                "keys' last inputs ('sequence-replay-records'), since the last such message: "
                "Triton no longer held them, their server became unavailable, or a request "
                "may have reached the model (it is never sent into its sequence again). The "
                "latest: %s, after: %s", restarts,
                self.context.model, plan.sequence_id, error)

    def end_if_idle(self, state: KeySequence | None, key: Any,
                    now_ms: int) -> KeySequence | None:
        """At the key's idle timer: END its sequence if it is idle; returns the new state."""
        state = self._held.unless_evicted(key, state, now_ms)
        plan = self.sequences.idle(state, key, now_ms)
        if plan is None:
            return state
        assert state is not None
        if plan.end is not None:
            if self._end_decided(key, state):
                with self._counts:
                    self.idle_ends += 1
        elif not plan.state.open:  # (Triton reaped it, or an older incarnation opened it)
            self._held.let_go(self.sequences.sequence_id_of(key, state))
        return plan.state

    def _end_decided(self, key: Any, state: KeySequence) -> bool:
        """Send the END of the key's open sequence that the function decided on (no record
        asked for it: idle, or evicted), and let its slot go; whether it worked. A failed END
        keeps the slot counted until Triton would reap the sequence."""
        end = self.sequences.flush_end(state, key)
        sequence_id = end.sequence.sequence_id
        self._held.let_go(sequence_id)
        try:
            self._send([self._request(end)])
            return True
        except TritonRequestError as error:  # Triton reaps it later, untold: not fatal
            self._held.linger(sequence_id, state.last_activity_ms)
            log.warning("Could not end sequence %s of model %s (Triton drops it after "
                        "max_sequence_idle_microseconds): %s", sequence_id,
                        self.context.model, error)
            return False

    def end_open_sequences(self, within: float = CLOSE_SECONDS) -> None:
        """END every sequence this session holds open (at the end of the input, or when the
        task is cancelled): one attempt each, all within ``within`` seconds, and, with one
        server, none after a sign that it is unwell (the others would wait as long). Triton
        reaps what is left, untold."""
        pending = self._held.take_all()
        if not pending:
            return
        context = self.context
        log.info("Ending %d open sequence(s) of model %s.", len(pending), context.model)
        deadline = time.monotonic() + within
        ended, why = 0, f"close() ends sequences for at most {within:g} s"
        for key, state in pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            end = self.sequences.flush_end(state, key)
            try:
                self._send([self._request(end)], within=left)
                ended += 1
            except TritonRequestError as error:
                why = str(error)
                # (with several servers, the others' sequences still end; each END is
                # bounded by what is left of ``within``)
                if len(context.servers) == 1 and ((error.last_attempt or error).retryable
                                                  or isinstance(error, TritonCircuitOpenError)):
                    break
        if ended < len(pending):
            log.warning(
                "%d of %d open sequence(s) of model %s were not ended at close (%s); Triton "
                "ends them after the model's max_sequence_idle_microseconds without telling "
                "the model.", len(pending) - ended, len(pending), context.model, why)

    # --- requests ---------------------------------------------------------------------------

    def _requests(self, plan: RecordPlan) -> list[InferRequest]:
        """The plan's requests; raises :class:`_StaleReplay` if a replayed input (kept in
        state from before) cannot be encoded any more."""
        requests = []
        for index, send in enumerate(plan.sends):
            try:
                requests.append(self._request(send))
            except TritonRequestError as error:
                if index < plan.replayed:
                    raise _StaleReplay(error) from None
                raise
        return requests

    def _request(self, send: Send) -> InferRequest:
        parameters: dict[str, bool | int] = (
            {FLUSH_PARAMETER: True} if send.flush else {REPLAY_PARAMETER: True} if send.replay
            else {})
        if send.sequence.start:
            parameters[TRITON_TIMEOUT_PARAMETER] = self._start_wait // timedelta(microseconds=1)
        request = self.context.request(send.values, send.sequence, parameters or None)
        assert request is not None  # ('null-input' = 'skip' is refused for DataStreams)
        return request

    def _count(self, state: KeySequence | None, plan: RecordPlan) -> None:
        if plan.sends[0].sequence.start:
            with self._counts:
                self.started += 1
                self.restarted += state is not None and state.replaceable
                self.replayed += plan.replayed

    def close(self) -> None:
        try:
            self.end_open_sequences()
        finally:
            self.context.close()
            with self._counts:
                transports, self._transports = self._transports, []
            for transport in transports:
                transport.close()
