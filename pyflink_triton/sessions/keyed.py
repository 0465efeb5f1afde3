"""Keyed sequences: each key of a keyed stream in its own long-lived Triton sequence.

The decisions (which sequence a record goes to, what to replay, when an idle key ends) are the
pure ``policies.keyed``; this module carries them out: it sends a record's plan in order on a
blocking transport, restarts a key's sequence once when Triton no longer holds it (or a
request may have reached it), ends idle keys at their timers and, at close(), the sequences it
still holds open. The key's state is the caller's (Flink keyed state): it goes in with each
call and the new state comes back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import TritonCircuitOpenError, TritonRequestError
from ..policies.keyed import Inputs, KeySequence, RecordPlan, Send
from ..wire.failures import unknown_sequence
from ..wire.request import InferRequest, InferResponse, Transport
from .context import InstanceContext, Throttled
from .contract import InferenceSession

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

# The request parameters of a keyed sequence's requests that no record asked for. An idle END
# repeats the key's last input only because a request needs inputs: a model should end the
# sequence without using it. A replayed input warms up a restarted sequence: a model uses it
# as any input, but may skip side effects (its answer is dropped).
FLUSH_PARAMETER = "sequence_flush"
REPLAY_PARAMETER = "sequence_replay"


KeyedRecord = tuple[KeySequence | None, Any, Sequence[Any], bool, int]  # infer()'s arguments
Keyed = tuple[Any, KeySequence | None]  # a record's result and its key's new state


class KeyedInferenceSession(InferenceSession[[KeySequence | None, Any, Sequence[Any], bool, int],
                                             Keyed, Iterable[KeyedRecord], list[Keyed]]):
    """Blocking requests in each key's own long-lived sequence (not thread-safe).

    The caller keeps each key's :class:`KeySequence` (Flink keyed state) and passes it in;
    every call returns the state to store. Decisions come from :class:`KeyedSequences`.
    The session also remembers which keys it holds a sequence open for, because
    :meth:`close` ends them: when the input ends, Flink drops pending processing-time timers,
    so idle ENDs would never come.
    """

    mode = "keyed"
    blocking = True
    sequence_per_key = True
    _transport: Transport

    def __init__(self, context: InstanceContext, transport: Transport) -> None:
        super().__init__(context, transport)
        assert context.keyed is not None  # (open() draws it for a sequence_per_key mode)
        self.sequences = context.keyed
        self.started = self.restarted = self.replayed = self.idle_ends = 0
        self._open: dict[str | int, tuple[Any, KeySequence]] = {}  # by sequence ID
        self._restarts = Throttled()
        metrics = context.guard.metrics
        for name, value in (("sequencesStarted", lambda: self.started),
                            ("sequencesRestarted", lambda: self.restarted),
                            ("replayedInputs", lambda: self.replayed),
                            ("idleEnds", lambda: self.idle_ends)):
            metrics.gauge(name, value)

    def infer(self, state: KeySequence | None, key: Any, values: Sequence[Any], end: bool,
              now_ms: int) -> Keyed:
        """Send one record of ``key`` (whose stored state is ``state``) in the key's
        sequence, ending it if ``end``; returns the record's result and the key's new state.

        A step of a sequence is never sent twice into it (the model would apply it twice):
        when a request fails in a way that may have reached the model, or Triton no longer
        knows the sequence (restarted, or reaped it), the key's sequence restarts once, as a
        new sequence warmed up with the key's last inputs, and the record goes there."""
        context = self.context
        values = tuple(values)
        restarts_left = 1
        while True:
            try:  # all encoded first: a record that cannot be sent leaves the sequence as it was
                plan, requests = self._plan(state, key, values, end, now_ms)
            except TritonRequestError as error:
                return context.failed_result(error), state
            self._count(state, plan)
            try:
                response = self._send(requests)
                result = context.result(response)
            except TritonRequestError as error:
                abandoned = self.sequences.failed(state, plan)
                self._open.pop(plan.sequence_id, None)
                cause = error.last_attempt or error
                if cause.maybe_delivered and cause.retryable:
                    self._end_abandoned(plan)  # (Triton may hold it open: free its slot)
                if restarts_left and (unknown_sequence(cause) or (
                        cause.retryable and cause.maybe_delivered)):
                    restarts_left -= 1
                    self._log_restart(plan, error)
                    state = abandoned
                    continue
                log.warning("Abandoned sequence %s of model %s after a failed request; the "
                            "key's next record starts a new one.", plan.sequence_id,
                            context.model)
                return context.failed_result(error), abandoned
            self._track(key, state, plan)
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

    def _send(self, requests: Sequence[InferRequest]) -> InferResponse:
        """Send a plan's requests in order; the last one's response."""
        for request in requests:
            response = self.context.guard.send(self._transport, request,
                                                resend_delivered=False)
        return response

    def _end_abandoned(self, plan: RecordPlan) -> None:
        """One quick attempt at ending the sequence of a plan that failed after its request
        may have reached the model: Triton may hold it open, and a slot until it reaps it."""
        try:
            self.context.guard.send(
                self._transport, self._request(self.sequences.abandoned_end(plan)),
                resend_delivered=False, within=ABANDONED_END_SECONDS)
        except TritonRequestError as error:
            log.debug("Could not end the abandoned sequence %s of model %s: %s",
                      plan.sequence_id, self.context.model, error)

    def _log_restart(self, plan: RecordPlan, error: TritonRequestError) -> None:
        if restarts := self._restarts.count():
            log.warning(
                "Restarted %d sequence(s) of model %s as new one(s), warmed up with their "
                "keys' last inputs ('sequence-replay-records'), since the last such message: "
                "Triton no longer held them, or a request may have reached the model (it is "
                "never sent into its sequence again). The latest: %s, after: %s", restarts,
                self.context.model, plan.sequence_id, error)

    def end_if_idle(self, state: KeySequence | None, key: Any,
                    now_ms: int) -> KeySequence | None:
        """At the key's idle timer: END its sequence if it is idle; returns the new state."""
        plan = self.sequences.idle(state, key, now_ms)
        if plan is None:
            return state
        if plan.end is not None and self._end(plan.end):
            self.idle_ends += 1
        return plan.state

    def _end(self, end: Send) -> bool:
        """Send an END the function decided on (no record asked for it); whether it worked."""
        self._open.pop(end.sequence.sequence_id, None)
        try:
            self._send([self._request(end)])
            return True
        except TritonRequestError as error:  # Triton reaps it later, untold: not fatal
            log.warning("Could not end sequence %s of model %s (Triton drops it after "
                        "max_sequence_idle_microseconds): %s", end.sequence.sequence_id,
                        self.context.model, error)
            return False

    def _track(self, key: Any, before: KeySequence | None, plan: RecordPlan) -> None:
        """Keep the sequences open in this incarnation: the plan's, not one it replaced (a
        sequence Triton reaped, say)."""
        if before is not None and not plan.continued:
            self._open.pop(self.sequences.sequence_id_of(key, before), None)
        if plan.state.open:
            self._open[plan.sequence_id] = (key, plan.state)
        else:
            self._open.pop(plan.sequence_id, None)

    def end_open_sequences(self, within: float = CLOSE_SECONDS) -> None:
        """END every sequence this session holds open (at the end of the input, or when the
        task is cancelled): one attempt each, all within ``within`` seconds, and none after a
        sign that the server is unwell (the others would wait as long). Triton reaps what is
        left, untold."""
        pending, self._open = list(self._open.values()), {}
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
            end = self.sequences.end(state, key).end
            assert end is not None
            try:
                context.guard.send(self._transport, self._request(end),
                                   resend_delivered=False, within=left)
                ended += 1
            except TritonRequestError as error:
                why = str(error)
                if (error.last_attempt or error).retryable or isinstance(
                        error, TritonCircuitOpenError):
                    break
        if ended < len(pending):
            log.warning(
                "%d of %d open sequence(s) of model %s were not ended at close (%s); Triton "
                "ends them after the model's max_sequence_idle_microseconds without telling "
                "the model.", len(pending) - ended, len(pending), context.model, why)

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
        parameters = ({FLUSH_PARAMETER: True} if send.flush
                      else {REPLAY_PARAMETER: True} if send.replay else None)
        request = self.context.request(send.values, send.sequence, parameters)
        assert request is not None  # ('null-input' = 'skip' is refused for DataStreams)
        return request

    def _count(self, state: KeySequence | None, plan: RecordPlan) -> None:
        if plan.sends[0].sequence.start:
            self.started += 1
            self.restarted += state is not None and state.replaceable
            self.replayed += plan.replayed

    def close(self) -> None:
        try:
            self.end_open_sequences()
        finally:
            self.context.close()
            self._transport.close()

