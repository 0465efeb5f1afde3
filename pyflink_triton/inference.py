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

Every session sends through a :class:`~pyflink_triton.reliable.RequestGuard` (retries, circuit
breaker, metrics) and turns a record whose request failed for good into its result with the
:class:`~pyflink_triton.fallback.ResultPolicy` ('default-value', 'error-fields') or an error.
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

from .errors import TritonConfigError, TritonError, TritonRequestError
from .fallback import ResultPolicy
from .metrics import InferenceMetrics
from .options import VECTORIZED_SEQUENCE_ERROR, TritonOptions
from .reliable import HealthCheck, RequestGuard
from .sequence import (
    KeyedSequencePolicy,
    KeyedSequences,
    KeySequence,
    RecordPlan,
    Send,
    SequenceIdGenerator,
    SequenceParams,
    SequencePolicy,
    new_incarnation,
)
from .signature import BoundSignature, ColumnDeclaration, ModelSignature, OutputDeclaration
from .transport import (
    AsyncTransport,
    InferRequest,
    InferResponse,
    ModelRef,
    Transport,
    connect,
    connect_async,
)

log = logging.getLogger(__name__)

_FAILURE_LOG_INTERVAL = 10.0  # seconds between two warnings about fallback results


@dataclass(frozen=True)
class TritonInference:
    options: TritonOptions
    signature: ModelSignature
    results: ResultPolicy

    @classmethod
    def create(cls, options: Mapping[str, object] | TritonOptions,
               inputs: Sequence[ColumnDeclaration] | None = None,
               output: OutputDeclaration | None = None, *,
               keyed: bool = False) -> TritonInference:
        """Validate everything that can be validated at registration. ``keyed``: for a
        keyed-sequence function, whose sequence options differ.

        Columns whose types are not declared are looked up in the model's metadata on the
        server, so the server must be reachable then; declared columns need no server.
        """
        parsed = options if isinstance(options, TritonOptions) else TritonOptions.from_dict(options)
        parsed.check_sequence_scope(keyed)
        model = ModelRef(parsed.model_name, parsed.model_version)

        def fetch_served() -> tuple[dict[str, Any], dict[str, Any]]:
            transport = connect(parsed)
            try:
                return transport.model_metadata(model), transport.model_config(model)
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

    def open(self, subtask_index: int, attempt: int = 0,
             metric_group: Any | None = None) -> InferenceSession:
        """Connect, check the signature against the served model, start the ID counter.
        ``metric_group``: Flink's metric group of the function, to report metrics in."""
        return InferenceSession(*self._connected_records(subtask_index, attempt, "sync",
                                                         metric_group))

    def open_async(self, subtask_index: int, attempt: int = 0,
                   metric_group: Any | None = None) -> AsyncInferenceSession:
        """As :meth:`open`, for asyncio callers; the connections open on the first call."""
        records = self._checked_records(subtask_index, attempt, "async", metric_group)
        return AsyncInferenceSession(
            records, connect_async(self.options, self.options.max_concurrent_requests))

    def open_batched(self, subtask_index: int, attempt: int = 0,
                     metric_group: Any | None = None) -> BatchInferenceSession:
        """As :meth:`open`, for callers with columns of many records (vectorized)."""
        if self.options.sequence_id is not None:
            raise TritonConfigError(VECTORIZED_SEQUENCE_ERROR)
        records = self._checked_records(subtask_index, attempt, "vectorized", metric_group)
        return BatchInferenceSession(
            records, connect_async(self.options, self.options.max_concurrent_requests),
            self.options)

    def open_keyed(self, subtask_index: int, attempt: int = 0,
                   metric_group: Any | None = None) -> KeyedInferenceSession:
        """As :meth:`open`, for keyed sequences: also checks that the model is stateful and
        draws this open()'s incarnation."""
        records, transport = self._connected_records(subtask_index, attempt, "keyed",
                                                     metric_group)
        assert records.keyed is not None
        return KeyedInferenceSession(records, transport, records.keyed)

    def _connected_records(self, subtask_index: int, attempt: int, mode: str,
                           metric_group: Any | None) -> tuple[RecordCodec, Transport]:
        """The records of a blocking session, and the transport it keeps."""
        transport = connect(self.options)
        try:
            return self._records(transport, subtask_index, attempt, mode, metric_group), transport
        except BaseException:
            transport.close()
            raise

    def _checked_records(self, subtask_index: int, attempt: int, mode: str,
                         metric_group: Any | None) -> RecordCodec:
        transport = connect(self.options)  # a blocking one for the checks: open() is not async
        try:
            return self._records(transport, subtask_index, attempt, mode, metric_group)
        finally:
            transport.close()

    def _records(self, transport: Transport, subtask_index: int, attempt: int,
                 mode: str, metric_group: Any | None) -> RecordCodec:
        # Fetched anew by every open(): the served model may have changed since registration
        # (or since the last attempt).
        metadata = transport.model_metadata(self.model)
        config = transport.model_config(self.model)
        bound = self.signature.bind(self.model, metadata, config, self.options)
        sequence_ids = SequencePolicy.from_options(self.options).for_subtask(subtask_index)
        keyed = None
        if mode == "keyed":
            keyed = KeyedSequencePolicy.for_model(self.options, self.model.name, config
                                                  ).for_incarnation(new_incarnation())
        metrics = InferenceMetrics(metric_group)
        metrics.gauge("sequenceCounter", lambda: sequence_ids.issued)
        guard = RequestGuard(self.options, metrics)
        log.info("Triton model %s at %s (%s, %s): subtask %d, attempt %d, %s; %s; %s",
                 self.model, self.options.endpoint, self.options.effective_protocol, mode,
                 subtask_index, attempt,
                 sequence_ids.describe() if keyed is None else keyed.describe(),
                 guard.describe(), self.signature.describe())
        health = None
        if self.options.health_check_enabled:
            health = HealthCheck(self.options, guard.breaker, metrics,
                                 f"{self.model.name}-{subtask_index}").start()
        return RecordCodec(self, bound, sequence_ids, guard, health, keyed)


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
        self._unlogged_failures = 0
        self._failure_logged_at = -_FAILURE_LOG_INTERVAL

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
        self._unlogged_failures += records
        now = time.monotonic()
        if now - self._failure_logged_at >= _FAILURE_LOG_INTERVAL:  # an outage: not a flood
            log.warning("%d record(s) for model %s got the fallback result since the last "
                        "such message; the latest failure: %s", self._unlogged_failures,
                        self.model, error)
            self._unlogged_failures, self._failure_logged_at = 0, now

    def failed_result(self, error: TritonRequestError) -> Any:
        self.failed(error)
        return self.results.failed(error)

    def close(self) -> None:
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
        self._open: dict[str, tuple[Any, KeySequence]] = {}  # by sequence ID
        metrics = records.guard.metrics
        for name, value in (("sequencesStarted", lambda: self.started),
                            ("sequencesRestarted", lambda: self.restarted),
                            ("replayedInputs", lambda: self.replayed),
                            ("idleEnds", lambda: self.idle_ends)):
            metrics.gauge(name, value)

    def infer(self, state: KeySequence | None, key: Any, values: Sequence[Any], end: bool,
              now_ms: int) -> tuple[Any, KeySequence | None]:
        """Send one record of ``key`` (whose stored state is ``state``) in the key's
        sequence, ending it if ``end``; returns the record's result and the key's new state."""
        records, sequences = self._records, self.sequences
        plan = sequences.record(state, key, tuple(values), end, now_ms)
        try:  # all encoded first: a record that cannot be sent leaves the sequence as it was
            requests = self._requests(plan)
        except TritonRequestError as error:
            return records.failed_result(error), state
        except _StaleReplay as stale:  # (the model changed since the inputs were kept)
            assert state is not None
            log.warning("Not replaying the %d stored input(s) of sequence %s of model %s: "
                        "%s", plan.replayed, plan.sends[-1].sequence.sequence_id,
                        records.model, stale.error)
            return self.infer(sequences.without_replay(state), key, values, end, now_ms)
        self._count(state, plan)
        try:
            for request in requests:
                response = records.guard.send(self._transport, request)
            self._track(key, plan)
            return records.result(response), plan.state
        except TritonRequestError as error:
            after = sequences.failed(state, plan)
            self._open.pop(plan.sends[-1].sequence.sequence_id, None)
            log.warning("Abandoned sequence %s of model %s after a failed request; the key's "
                        "next record starts a new one.", plan.sends[-1].sequence.sequence_id,
                        records.model)
            return records.failed_result(error), after

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
            self._records.guard.send(self._transport, self._request(end))
            return True
        except TritonRequestError as error:  # Triton reaps it later, untold: not fatal
            log.warning("Could not end sequence %s of model %s (Triton drops it after "
                        "max_sequence_idle_microseconds): %s", end.sequence.sequence_id,
                        self._records.model, error)
            return False

    def _track(self, key: Any, plan: RecordPlan) -> None:
        sequence_id = plan.sends[-1].sequence.sequence_id
        if plan.state.open:
            self._open[sequence_id] = (key, plan.state)
        else:
            self._open.pop(sequence_id, None)

    def end_open_sequences(self) -> None:
        """END every sequence this session holds open (at the end of the input)."""
        if self._open:
            log.info("Ending %d open sequence(s) of model %s.", len(self._open),
                     self._records.model)
        for key, state in list(self._open.values()):
            end = self.sequences.end(state, key).end
            assert end is not None
            self._end(end)

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
        return list(await asyncio.gather(*(self._send(columns, chunk) for chunk in chunks)))

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
