"""The core every adapter wraps: records in, Triton requests out, results back.

:class:`TritonInference` is the picklable description of a model function (validated options
plus the column signature), built at registration. Each parallel function instance opens one
session with its subtask index; the session owns its connection(s), its sequence-ID counter and
the codecs checked against the model the server serves:

- :class:`InferenceSession`: one blocking request per record (``mode`` sync);
- :class:`AsyncInferenceSession`: one request per record, awaited, many in flight (async);
- :class:`BatchInferenceSession`: columns of many records, sent as requests of up to the
  model's ``max_batch_size`` rows with bounded concurrency (vectorized);
- :class:`KeyedInferenceSession`: one blocking request per record, in the record's key's
  long-lived sequence (keyed sequences; the key's state is kept by the caller, in Flink).

Every session sends through a :class:`~pyflink_triton.sessions.reliable.RequestGuard`
(retries, circuit breaker, metrics) and turns a record whose request failed for good into
its result with the
:class:`~pyflink_triton.codecs.fallback.ResultPolicy` ('default-value', 'error-fields') or an error.
The PyFlink adapters in ``table`` and ``datastream`` only translate between Flink's calling
conventions and these.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyflink.table.types import DataType

from ..codecs.fallback import ResultPolicy
from ..codecs.signature import BoundSignature, ColumnDeclaration, ModelSignature, OutputDeclaration
from ..errors import (
    TritonCircuitOpenError,
    TritonConfigError,
    TritonError,
    TritonRequestError,
)
from ..options import Mode, TritonOptions
from ..policies.keyed import (
    Inputs,
    KeyedSequencePolicy,
    KeyedSequences,
    KeySequence,
    RecordPlan,
    Send,
    new_incarnation,
)
from ..policies.resilience import RetryPolicy
from ..policies.sequence import (
    LIVE_SEQUENCES,
    SequenceIdGenerator,
    SequenceParams,
    SequencePolicy,
)
from ..wire.transport import (
    AsyncTransport,
    InferRequest,
    InferResponse,
    ModelRef,
    Transport,
    unknown_sequence,
)
from .connect import connect, connect_async
from .metrics import InferenceMetrics
from .reliable import HealthCheck, RequestGuard, call_with_retries

log = logging.getLogger(__name__)

_WARNING_INTERVAL = 10.0  # seconds between two warnings of one kind (an outage: not a flood)


class _Throttled:
    """Occurrences of one kind, to report at most once per interval."""

    def __init__(self, interval: float = _WARNING_INTERVAL) -> None:
        self._interval = interval
        self._count = 0
        self._reported_at = -float("inf")

    def count(self, n: int = 1) -> int:
        """Count ``n`` occurrences; returns how many to report now (0: not yet)."""
        self._count += n
        now = time.monotonic()
        if now - self._reported_at < self._interval:
            return 0
        count, self._count, self._reported_at = self._count, 0, now
        return count


@dataclass(frozen=True)
class TritonInference:
    options: TritonOptions
    signature: ModelSignature
    results: ResultPolicy

    @classmethod
    def create(cls, options: Mapping[str, object] | TritonOptions,
               inputs: Sequence[ColumnDeclaration] | None = None,
               output: OutputDeclaration | None = None, *,
               mode: Mode | None = None) -> TritonInference:
        """Validate everything that can be validated at registration. ``mode``: how the
        function calls the model ('sync', 'async', 'vectorized', or 'keyed' for keyed
        sequences), whose options differ; unset, only what holds in every per-record mode.

        Columns whose types are not declared are looked up in the model's metadata on the
        server, so the server must be reachable then; declared columns need no server.
        """
        parsed = options if isinstance(options, TritonOptions) else TritonOptions.from_dict(options)
        if mode is not None:
            parsed.check_mode(mode)
        else:
            parsed.check_sequence_scope(False)
        model = ModelRef(parsed.model_name, parsed.model_version)

        def fetch_served() -> tuple[dict[str, Any], dict[str, Any]]:
            transport = connect(parsed)
            try:
                return served_model(parsed, transport, model)
            except TritonError as e:
                raise TritonConfigError(
                    f"Cannot derive the input and output columns of model {model} from the "
                    f"server: {e} Declare the columns (INPUT (...) and OUTPUT (...) in CREATE "
                    "MODEL, inputs= and output= in Python) or make the server reachable when "
                    "the function is registered.") from None
            finally:
                transport.close()

        signature = ModelSignature.resolve(model, parsed, inputs, output, fetch_served)
        return cls(parsed, signature, ResultPolicy.from_options(
            parsed.default_value, parsed.error_fields, signature.outputs, signature.row_output))

    @property
    def model(self) -> ModelRef:
        return ModelRef(self.options.model_name, self.options.model_version)

    @property
    def result_type(self) -> DataType:
        return self.results.result_type

    def open(self, subtask_index: int, attempt: int = 0, metric_group: Any | None = None,
             parallelism: int = 1) -> InferenceSession:
        """Connect, check the signature against the served model, start the ID counter.
        ``metric_group``: Flink's metric group of the function, to report metrics in;
        ``parallelism``: how many parallel instances the function has."""
        return InferenceSession(*self._connected_records(
            _Instance(subtask_index, attempt, metric_group, parallelism), "sync"))

    def open_async(self, subtask_index: int, attempt: int = 0, metric_group: Any | None = None,
                   parallelism: int = 1) -> AsyncInferenceSession:
        """As :meth:`open`, for asyncio callers; the connections open on the first call."""
        # (made first: until a loop uses it, it holds nothing to close if the checks fail)
        transport = connect_async(self.options, self.options.max_concurrent_requests)
        return AsyncInferenceSession(self._checked_records(
            _Instance(subtask_index, attempt, metric_group, parallelism), "async"), transport)

    def open_batched(self, subtask_index: int, attempt: int = 0,
                     metric_group: Any | None = None,
                     parallelism: int = 1) -> BatchInferenceSession:
        """As :meth:`open`, for callers with columns of many records (vectorized)."""
        transport = connect_async(self.options, self.options.max_concurrent_requests)
        return BatchInferenceSession(self._checked_records(
            _Instance(subtask_index, attempt, metric_group, parallelism), "vectorized"),
            transport, self.options)

    def open_keyed(self, subtask_index: int, attempt: int = 0, metric_group: Any | None = None,
                   parallelism: int = 1) -> KeyedInferenceSession:
        """As :meth:`open`, for keyed sequences: also checks that the model is stateful and
        draws this open()'s incarnation."""
        records, transport = self._connected_records(
            _Instance(subtask_index, attempt, metric_group, parallelism), "keyed")
        assert records.keyed is not None
        return KeyedInferenceSession(records, transport, records.keyed)

    def _connected_records(self, instance: _Instance,
                           mode: Mode) -> tuple[RecordCodec, Transport]:
        """The records of a blocking session, and the transport it keeps."""
        transport = connect(self.options)
        try:
            return self._records(transport, instance, mode), transport
        except BaseException:
            transport.close()
            raise

    def _checked_records(self, instance: _Instance, mode: Mode) -> RecordCodec:
        transport = connect(self.options)  # a blocking one for the checks: open() is not async
        try:
            return self._records(transport, instance, mode)
        finally:
            transport.close()

    def _records(self, transport: Transport, instance: _Instance, mode: Mode) -> RecordCodec:
        options = self.options
        options.check_mode(mode)  # (also when the function was created for another mode)
        policy = SequencePolicy.from_options(options)
        if mode != "keyed":
            policy.check_senders(instance.parallelism)
        # Fetched anew by every open(): the served model may have changed since registration
        # (or since the last attempt).
        metadata, config = served_model(options, transport, self.model)
        bound = self.signature.bind(self.model, metadata, config, options)
        keyed = None
        if mode == "keyed":
            keyed = KeyedSequencePolicy.for_model(options, self.model.name, config
                                                  ).for_incarnation(new_incarnation())
        # (keyed sequences draw no IDs from it: theirs hold a random incarnation)
        sequence_ids = policy.for_subtask(instance.subtask_index, attempt=instance.attempt,
                                          live=None if keyed else LIVE_SEQUENCES)
        try:
            metrics = InferenceMetrics(instance.metric_group)
            metrics.gauge("sequenceCounter", lambda: sequence_ids.issued)
            guard = RequestGuard(options, metrics)
            log.info("Triton model %s at %s (%s, %s): subtask %d of %d, attempt %d, %s; %s; %s",
                     self.model, options.endpoint, options.effective_protocol, mode,
                     instance.subtask_index, instance.parallelism, instance.attempt,
                     sequence_ids.describe() if keyed is None else keyed.describe(),
                     guard.describe(), self.signature.describe())
            health = None
            if options.health_check_enabled:
                health = HealthCheck(options, guard.breaker, metrics,
                                     f"{self.model.name}-{instance.subtask_index}").start()
        except BaseException:
            sequence_ids.close()
            raise
        return RecordCodec(self, bound, sequence_ids, guard, health, keyed)


@dataclass(frozen=True)
class _Instance:
    """Which parallel instance of the function opens a session."""

    subtask_index: int
    attempt: int
    metric_group: Any | None
    parallelism: int


def served_model(options: TritonOptions, transport: Transport,
                 model: ModelRef) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's metadata and config from the server, fetched under the retry policy of
    the records: a job that starts while Triton (re)starts waits for it as records would."""
    def fetch(timeout: float) -> tuple[dict[str, Any], dict[str, Any]]:
        deadline = time.monotonic() + timeout
        metadata = transport.model_metadata(model, timeout)
        return metadata, transport.model_config(model, max(deadline - time.monotonic(), 0.001))

    return call_with_retries(RetryPolicy.from_options(options), fetch,
                             f"fetching the metadata and config of model {model}",
                             options.endpoint, model)


class RecordCodec:
    """One record's values -> an :class:`InferRequest`; a response (or a failure) -> the
    record's result. Holds what every session of a function instance needs."""

    def __init__(self, inference: TritonInference, bound: BoundSignature,
                 sequence_ids: SequenceIdGenerator, guard: RequestGuard,
                 health: HealthCheck | None, keyed: KeyedSequences | None = None) -> None:
        self.model = inference.model
        self.bound = bound
        self.sequence_ids = sequence_ids
        self.keyed = keyed
        self.guard = guard
        self.health = health
        self.results = inference.results
        self.priority = inference.options.priority
        self.skip_nulls = inference.options.null_input == "skip"
        self.outputs = tuple(codec.column.tensor for codec in bound.outputs)
        self._fallbacks = _Throttled()

    def request(self, values: Sequence[Any], sequence: SequenceParams | None = None,
                parameters: Mapping[str, bool | int | str] | None = None
                ) -> InferRequest | None:
        """The request for one record, or None for a record that is skipped (a NULL).
        ``sequence``: the record's sequence fields when the caller decides them (keyed
        sequences); otherwise the record draws them from the subtask's sequence IDs."""
        inputs = self.bound.inputs
        if len(values) != len(inputs):
            raise TritonRequestError(
                f"Model {self.model} takes {len(inputs)} argument(s) "
                f"({', '.join(c.column.name for c in inputs)}), got {len(values)}.")
        if any(value is None for value in values):
            if self.skip_nulls:
                return None
            raise self.null_error([c.column.name for c, v in zip(inputs, values, strict=True)
                                   if v is None])
        with self.naming_the_model():
            tensors = [codec.encode(value) for codec, value in zip(inputs, values, strict=True)]
        # Drawn after encoding, so a record that cannot be encoded uses up no ID.
        return InferRequest(self.model, tensors, self.outputs,
                            sequence or self.sequence_ids.next(), self.priority,
                            parameters=parameters)

    def result(self, response: InferResponse) -> Any:
        """The record's result: the output column's value, or a ``Row`` of them."""
        return self.results.succeeded([
            codec.decode(response.as_numpy(codec.column.tensor), self.model.name)
            for codec in self.bound.outputs])

    def failed(self, error: TritonRequestError, records: int = 1) -> None:
        """Count (and now and then log) ``records`` that failed for good; raises ``error``
        unless 'default-value' or 'error-fields' turn them into results."""
        if not self.results.handles_failures:
            raise error
        self.guard.metrics.fallbacks.inc(records)
        if reported := self._fallbacks.count(records):
            log.warning("%d record(s) for model %s got the fallback result since the last "
                        "such message; the latest failure: %s", reported, self.model, error)

    def failed_result(self, error: TritonRequestError) -> Any:
        self.failed(error)
        return self.results.failed(error)

    def close(self) -> None:
        self.sequence_ids.close()
        if self.health is not None:
            self.health.stop()

    @contextmanager
    def naming_the_model(self) -> Iterator[None]:
        """Prefix encoding errors with the model: a job may call several."""
        try:
            yield
        except TritonRequestError as e:
            raise TritonRequestError(f"Model {self.model}: {e}") from None

    def null_error(self, columns: Sequence[str]) -> TritonRequestError:
        return TritonRequestError(
            f"Column(s) {list(columns)} are NULL, and a Triton tensor cannot hold NULL (model "
            f"{self.model}). Filter NULLs out or replace them with COALESCE, or set "
            "'null-input' = 'skip' to return NULL for such records without calling the model.")


class InferenceSession:
    """Blocking, one record at a time (not thread-safe)."""

    def __init__(self, records: RecordCodec, transport: Transport) -> None:
        self._records = records
        self._transport = transport
        self.sequence_ids = records.sequence_ids

    def infer(self, values: Sequence[Any]) -> Any:
        """Send one record (one value per input column) and return its result."""
        records = self._records
        try:
            request = records.request(values)
            if request is None:
                return None
            return records.result(records.guard.send(self._transport, request))
        except TritonRequestError as error:
            return records.failed_result(error)

    def close(self) -> None:
        self._records.close()
        self._transport.close()


class AsyncInferenceSession:
    """One request per record, many in flight; used from one event loop."""

    def __init__(self, records: RecordCodec, transport: AsyncTransport) -> None:
        self._records = records
        self._transport = transport
        self.sequence_ids = records.sequence_ids

    async def infer(self, values: Sequence[Any]) -> Any:
        # Everything up to the await runs as soon as the caller schedules the record, so
        # records draw their sequence IDs in arrival order, as in the sync mode.
        records = self._records
        try:
            request = records.request(values)
            if request is None:
                return None
            return records.result(await records.guard.send_async(self._transport, request))
        except TritonRequestError as error:
            return records.failed_result(error)

    def stop(self) -> None:
        """What close() does that needs no event loop (PyFlink stops its loop first)."""
        self._records.close()

    async def close(self) -> None:
        self.stop()
        await self._transport.close()


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


class KeyedInferenceSession:
    """Blocking requests in each key's own long-lived sequence (not thread-safe).

    The caller keeps each key's :class:`KeySequence` (Flink keyed state) and passes it in;
    every call returns the state to store. Decisions come from :class:`KeyedSequences`.
    The session also remembers which keys it holds a sequence open for, because
    :meth:`close` ends them: when the input ends, Flink drops pending processing-time timers,
    so idle ENDs would never come.
    """

    def __init__(self, records: RecordCodec, transport: Transport,
                 sequences: KeyedSequences) -> None:
        self._records = records
        self._transport = transport
        self.sequences = sequences
        self.started = self.restarted = self.replayed = self.idle_ends = 0
        self._open: dict[str | int, tuple[Any, KeySequence]] = {}  # by sequence ID
        self._restarts = _Throttled()
        metrics = records.guard.metrics
        for name, value in (("sequencesStarted", lambda: self.started),
                            ("sequencesRestarted", lambda: self.restarted),
                            ("replayedInputs", lambda: self.replayed),
                            ("idleEnds", lambda: self.idle_ends)):
            metrics.gauge(name, value)

    def infer(self, state: KeySequence | None, key: Any, values: Sequence[Any], end: bool,
              now_ms: int) -> tuple[Any, KeySequence | None]:
        """Send one record of ``key`` (whose stored state is ``state``) in the key's
        sequence, ending it if ``end``; returns the record's result and the key's new state.

        A step of a sequence is never sent twice into it (the model would apply it twice):
        when a request fails in a way that may have reached the model, or Triton no longer
        knows the sequence (restarted, or reaped it), the key's sequence restarts once, as a
        new sequence warmed up with the key's last inputs, and the record goes there."""
        records = self._records
        values = tuple(values)
        restarts_left = 1
        while True:
            try:  # all encoded first: a record that cannot be sent leaves the sequence as it was
                plan, requests = self._plan(state, key, values, end, now_ms)
            except TritonRequestError as error:
                return records.failed_result(error), state
            self._count(state, plan)
            try:
                response = self._send(requests)
                result = records.result(response)
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
                            records.model)
                return records.failed_result(error), abandoned
            self._track(key, state, plan)
            return result, plan.state

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
                        "%s", plan.replayed, plan.sequence_id, self._records.model,
                        stale.error)
            plan = sequences.record(sequences.without_replay(state), key, values, end, now_ms)
            return plan, self._requests(plan)

    def _send(self, requests: Sequence[InferRequest]) -> InferResponse:
        """Send a plan's requests in order; the last one's response."""
        for request in requests:
            response = self._records.guard.send(self._transport, request,
                                                resend_delivered=False)
        return response

    def _end_abandoned(self, plan: RecordPlan) -> None:
        """One quick attempt at ending the sequence of a plan that failed after its request
        may have reached the model: Triton may hold it open, and a slot until it reaps it."""
        try:
            self._records.guard.send(
                self._transport, self._request(self.sequences.abandoned_end(plan)),
                resend_delivered=False, within=ABANDONED_END_SECONDS)
        except TritonRequestError as error:
            log.debug("Could not end the abandoned sequence %s of model %s: %s",
                      plan.sequence_id, self._records.model, error)

    def _log_restart(self, plan: RecordPlan, error: TritonRequestError) -> None:
        if restarts := self._restarts.count():
            log.warning(
                "Restarted %d sequence(s) of model %s as new one(s), warmed up with their "
                "keys' last inputs ('sequence-replay-records'), since the last such message: "
                "Triton no longer held them, or a request may have reached the model (it is "
                "never sent into its sequence again). The latest: %s, after: %s", restarts,
                self._records.model, plan.sequence_id, error)

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
                        self._records.model, error)
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
        records = self._records
        log.info("Ending %d open sequence(s) of model %s.", len(pending), records.model)
        deadline = time.monotonic() + within
        ended, why = 0, f"close() ends sequences for at most {within:g} s"
        for key, state in pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            end = self.sequences.end(state, key).end
            assert end is not None
            try:
                records.guard.send(self._transport, self._request(end),
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
                "the model.", len(pending) - ended, len(pending), records.model, why)

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
        request = self._records.request(send.values, send.sequence, parameters)
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
            self._records.close()
            self._transport.close()


class BatchInferenceSession:
    """Columns of many records per call; sends them as batched requests, several at a time.

    Owns a private event loop, run for the duration of each :meth:`infer_columns` call (from
    whichever thread calls it: PyFlink may change threads between calls, never within one).
    """

    def __init__(self, records: RecordCodec, transport: AsyncTransport,
                 options: TritonOptions) -> None:
        self._records = records
        self._transport = transport
        self._loop = asyncio.new_event_loop()
        bound = records.bound
        self._batched = bound.max_batch_size > 0
        self._rows_per_request = (options.batch_size or bound.max_batch_size) if (
            self._batched) else 1
        # Rows whose ARRAY values may differ in shape cannot share a request blindly.
        self._shapes_vary = any(c.column.rank and -1 in c.dims for c in bound.inputs)
        if not self._batched:
            log.warning("Model %s has max_batch_size 0 (no batch dimension), so the vectorized "
                        "mode sends one request per row, %d at a time.", records.model,
                        options.max_concurrent_requests)

    def infer_columns(self, columns: Sequence[Sequence[Any]],
                      nulls: Sequence[np.ndarray | None] = ()) -> list[Sequence[Any]]:
        """``columns``: one sequence of values per input column, all of one length;
        ``nulls``: per column, a mask of its NULL values (None: no NULLs). Returns one
        sequence per result field (the outputs, then ok and error with 'error-fields'); a
        row skipped for a NULL has None in every field."""
        rows = len(columns[0]) if columns else 0
        if rows == 0:  # nothing to send (nor to concatenate): empty fields
            return self._merged(0, [], [])
        null_rows, failures = self._null_rows(nulls)
        indices = np.arange(rows) if null_rows is None else np.flatnonzero(~null_rows)
        chunks, in_order = self._chunks(columns, indices)
        outcomes = self._loop.run_until_complete(self._send_all(columns, chunks))
        answered = [o for o in outcomes if not isinstance(o, TritonRequestError)]
        if in_order and len(answered) == len(chunks) and len(indices) == rows:
            return self._concatenated(answered, rows)  # the common case: all sent, in order
        failures += [(c, o) for c, o in zip(chunks, outcomes, strict=True)
                     if isinstance(o, TritonRequestError)]
        return self._merged(rows, [(c, o) for c, o in zip(chunks, outcomes, strict=True)
                                   if not isinstance(o, TritonRequestError)], failures)

    def _null_rows(self, nulls: Sequence[np.ndarray | None]
                   ) -> tuple[np.ndarray | None, list[tuple[np.ndarray, TritonRequestError]]]:
        """The mask of rows with a NULL input (None: none), and those rows as failures unless
        they are skipped ('null-input'); raises without a fallback."""
        records = self._records
        masks = [m for m in nulls if m is not None and m.any()]
        if not masks:
            return None, []
        null_rows = np.logical_or.reduce(masks)
        if records.skip_nulls:
            return null_rows, []
        first = int(np.flatnonzero(null_rows)[0])
        error = records.null_error([
            codec.column.name for codec, mask in zip(records.bound.inputs, nulls, strict=False)
            if mask is not None and mask[first]])
        records.failed(error, int(null_rows.sum()))
        return null_rows, [(np.flatnonzero(null_rows), error)]

    def _concatenated(self, answered: list[list[Sequence[Any]]],
                      rows: int) -> list[Sequence[Any]]:
        outputs = range(len(self._records.bound.outputs))
        merged: list[Sequence[Any]]
        if len(answered) == 1:
            merged = list(answered[0])
        elif all(isinstance(r[i], np.ndarray) for r in answered for i in outputs):
            merged = [np.concatenate([r[i] for r in answered]) for i in outputs]
        else:
            merged = [[v for r in answered for v in r[i]] for i in outputs]
        if self._records.results.error_fields:
            merged += [np.ones(rows, dtype=bool), [None] * rows]
        return merged

    def _merged(self, rows: int, answered: list[tuple[np.ndarray, list[Sequence[Any]]]],
                failures: list[tuple[np.ndarray, TritonRequestError]]) -> list[Sequence[Any]]:
        """Each row's values put back in its place: answered, failed (fallback) or skipped."""
        results = self._records.results
        merged: list[list[Any]] = [[None] * rows
                                   for _ in range(len(results.field_names or [None]))]
        for chunk, columns in answered:
            for column, values in zip(merged, columns, strict=False):
                for row, value in zip(chunk.tolist(), values, strict=True):
                    column[row] = value
            if results.error_fields:
                for row in chunk.tolist():
                    merged[-2][row] = True
        for chunk, error in failures:
            for row in chunk.tolist():
                for column, value in zip(merged, results.failed_values(), strict=False):
                    column[row] = value
                if results.error_fields:
                    merged[-2][row], merged[-1][row] = False, str(error)
        return merged

    def _chunks(self, columns: Sequence[Sequence[Any]],
                indices: np.ndarray) -> tuple[list[np.ndarray], bool]:
        """The row indices of each request (rows of equal shapes, at most the rows per
        request), and whether they are the rows in order."""
        groups = [indices]
        if self._shapes_vary and self._batched:
            by_shape: dict[tuple[Any, ...], list[int]] = {}
            codecs = self._records.bound.inputs
            for row in indices.tolist():
                key = tuple(codec.value_shape(column[row])
                            for codec, column in zip(codecs, columns, strict=True))
                by_shape.setdefault(key, []).append(row)
            groups = [np.asarray(g) for g in by_shape.values()]
        size = self._rows_per_request
        chunks = [g[start:start + size] for g in groups for start in range(0, len(g), size)]
        return chunks, len(groups) == 1

    async def _send_all(self, columns: Sequence[Sequence[Any]], chunks: list[np.ndarray]
                        ) -> list[list[Sequence[Any]] | TritonRequestError]:
        # (the transport lets 'max-concurrent-requests' of them in flight at a time)
        tasks = [asyncio.ensure_future(self._send(columns, chunk)) for chunk in chunks]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            # One failed for good (no fallback): the others must not run on into the loop's
            # next run or its close, holding their connections. (asyncio.TaskGroup, 3.11+)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
            raise

    async def _send(self, columns: Sequence[Sequence[Any]], chunk: np.ndarray
                    ) -> list[Sequence[Any]] | TritonRequestError:
        """One request's output columns, or its error when a fallback answers for it."""
        records = self._records
        bound = records.bound
        try:
            if not self._batched:  # one row
                request = records.request([column[chunk[0]] for column in columns])
                assert request is not None  # NULL rows are never sent
                response = await records.guard.send_async(self._transport, request)
                return [[codec.decode(response.as_numpy(codec.column.tensor),
                                      records.model.name)] for codec in bound.outputs]
            with records.naming_the_model():
                tensors = [codec.encode_batch(_take(column, chunk))
                           for codec, column in zip(bound.inputs, columns, strict=True)]
            response = await records.guard.send_async(self._transport, InferRequest(
                records.model, tensors, records.outputs, None, records.priority))
            return [codec.decode_batch(response.as_numpy(codec.column.tensor), len(chunk),
                                       records.model.name) for codec in bound.outputs]
        except TritonRequestError as error:
            records.failed(error, len(chunk))  # (raises without a fallback)
            return error

    def close(self) -> None:
        self._records.close()
        try:
            self._loop.run_until_complete(self._transport.close())
        finally:
            self._loop.close()


def _take(column: Sequence[Any], rows: np.ndarray) -> Sequence[Any]:
    if isinstance(column, np.ndarray):
        return column[rows]
    return [column[row] for row in rows.tolist()]
