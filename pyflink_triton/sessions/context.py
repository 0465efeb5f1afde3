"""What every session of one function instance works with: :class:`InstanceContext`.

A function instance's open() builds one (``function.TritonInference.open``) once the served
model is checked: the column codecs bound to that model, the subtask's sequence IDs (or the
keyed-sequence policy), the request guard (retries, metrics), its servers (routing,
breakers, health checks) and the result policy. Its methods are the per-record steps every
mode shares: a record's values -> an :class:`InferRequest`, a response -> the record's
result, a failure -> the fallback result or the error. It sends nothing itself: sending
(blocking, awaited, batched, in a key's sequence) is each mode's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..codecs.fallback import ResultPolicy
from ..codecs.signature import BoundSignature
from ..errors import TritonRequestError
from ..options import TritonOptions
from ..policies.keyed import KeyedSequences
from ..policies.sequence import SequenceIdGenerator, SequenceParams
from ..wire.request import InferRequest, InferResponse, ModelRef
from .reliable import RequestGuard
from .servers import Servers

log = logging.getLogger(__name__)

_WARNING_INTERVAL = 10.0  # seconds between two warnings of one kind (an outage: not a flood)


class Throttled:
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


class InstanceContext:
    """One function instance's model binding and policies, shared by its session's records.

    ``keyed``: the keyed-sequence decisions of this open() (keyed sequences only); the other
    modes draw their records' sequence fields from ``sequence_ids``.
    """

    def __init__(self, model: ModelRef, options: TritonOptions, results: ResultPolicy,
                 bound: BoundSignature, sequence_ids: SequenceIdGenerator, guard: RequestGuard,
                 servers: Servers, keyed: KeyedSequences | None = None) -> None:
        self.model = model
        self.options = options
        self.bound = bound
        self.sequence_ids = sequence_ids
        self.keyed = keyed
        self.guard = guard
        self.servers = servers
        self.results = results
        self.priority = options.priority
        self.skip_nulls = options.null_input == "skip"
        self.outputs = tuple(codec.column.tensor for codec in bound.outputs)
        self._fallbacks = Throttled()

    def request(self, values: Sequence[Any], sequence: SequenceParams | None = None,
                parameters: Mapping[str, bool | int | str] | None = None
                ) -> InferRequest | None:
        """The request for one record, or None for a record that is skipped (a NULL).
        ``sequence``: the record's sequence fields when the caller decides them (keyed
        sequences); otherwise the record draws them from the subtask's sequence IDs."""
        inputs = self.bound.inputs
        if len(values) != len(inputs):
            raise self.arity_error(len(values))
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
        """The result of a record whose request failed for good (or raises ``error``)."""
        self.failed(error)
        return self.results.failed(error)

    def close(self) -> None:
        self.sequence_ids.close()
        self.servers.close()

    @contextmanager
    def naming_the_model(self) -> Iterator[None]:
        """Prefix encoding errors with the model: a job may call several."""
        try:
            yield
        except TritonRequestError as e:
            raise TritonRequestError(f"Model {self.model}: {e}") from None

    def arity_error(self, count: int) -> TritonRequestError:
        inputs = self.bound.inputs
        return TritonRequestError(
            f"Model {self.model} takes {len(inputs)} argument(s) "
            f"({', '.join(c.column.name for c in inputs)}), got {count}.")

    def null_error(self, columns: Sequence[str]) -> TritonRequestError:
        return TritonRequestError(
            f"Column(s) {list(columns)} are NULL, and a Triton tensor cannot hold NULL (model "
            f"{self.model}). Filter NULLs out or replace them with COALESCE, or set "
            "'null-input' = 'skip' to return NULL for such records without calling the model.")
