"""The vectorized mode: columns of many records per call, sent as batched requests, several at
a time, on a private event loop. Cutting and reassembling is ``batches`` (pure); this module
sends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import TritonRequestError
from ..wire.loops import gather_or_cancel
from ..wire.request import AsyncTransport, InferRequest
from . import batches
from .batches import Answered, Chunk, ColumnBatch
from .context import InstanceContext
from .contract import InferenceSession

log = logging.getLogger(__name__)


class BatchInferenceSession(InferenceSession[[Sequence[Any]], Any, ColumnBatch,
                                             list[Sequence[Any]]]):
    """Columns of many records per call; sends them as batched requests, several at a time.

    Owns a private event loop, run for the duration of each :meth:`infer_many` call (from
    whichever thread calls it: PyFlink may change threads between calls, never within one).
    """

    mode = "vectorized"
    blocking = False
    _transport: AsyncTransport

    def __init__(self, context: InstanceContext, transport: AsyncTransport) -> None:
        super().__init__(context, transport)
        self._loop = asyncio.new_event_loop()
        bound, options = context.bound, context.options
        self._batched = bound.max_batch_size > 0
        self._rows_per_request = (options.batch_size or bound.max_batch_size) if (
            self._batched) else 1
        # Rows whose ARRAY values may differ in shape cannot share a request blindly.
        self._shapes_vary = any(c.column.rank and -1 in c.dims for c in bound.inputs)
        if not self._batched:
            log.warning("Model %s has max_batch_size 0 (no batch dimension), so the vectorized "
                        "mode sends one request per row, %d at a time.", context.model,
                        options.max_concurrent_requests)

    def infer(self, values: Sequence[Any]) -> Any:
        """One record, as a batch of one row: its result (a ``Row`` of the result fields, or
        the single field's value; None when it is skipped for a NULL)."""
        context = self.context
        if len(values) != len(context.bound.inputs):
            raise context.arity_error(len(values))
        if context.skip_nulls and any(value is None for value in values):
            return None
        # (numpy values of a batch as the plain Python values the other modes return)
        return context.results.of_fields([
            field[0].tolist() if isinstance(field[0], np.ndarray | np.generic) else field[0]
            for field in self.infer_many(ColumnBatch.of_rows([values]))])

    def infer_many(self, batch: ColumnBatch) -> list[Sequence[Any]]:
        """One sequence per result field (the outputs, then ok and error with
        'error-fields'); a row skipped for a NULL has None in every field."""
        columns, results = batch.columns, self.context.results
        rows = batch.rows
        if rows == 0:  # nothing to send (nor to concatenate): empty fields
            return batches.reassembled(0, [], [], results)
        null_rows, failures = self._null_rows(batch.nulls)
        indices = np.arange(rows) if null_rows is None else np.flatnonzero(~null_rows)
        chunks, in_order = batches.split(columns, indices, self.context.bound.inputs,
                                         self._rows_per_request,
                                         self._shapes_vary and self._batched)
        outcomes = self._loop.run_until_complete(self._send_all(columns, chunks))
        answered = [o for o in outcomes if not isinstance(o, TritonRequestError)]
        if in_order and len(answered) == len(chunks) and len(indices) == rows:
            # the common case: all sent, in order
            return batches.concatenated(answered, len(self.context.bound.outputs), rows,
                                        results.error_fields)
        failures += [(c, o) for c, o in zip(chunks, outcomes, strict=True)
                     if isinstance(o, TritonRequestError)]
        return batches.reassembled(rows, [(c, o) for c, o in zip(chunks, outcomes, strict=True)
                                          if not isinstance(o, TritonRequestError)],
                                   failures, results)

    def _null_rows(self, nulls: Sequence[np.ndarray | None]
                   ) -> tuple[np.ndarray | None, list[tuple[Chunk, TritonRequestError]]]:
        """The mask of rows with a NULL input (None: none), and those rows as failures unless
        they are skipped ('null-input'); raises without a fallback."""
        context = self.context
        null_rows = batches.null_rows(nulls)
        if null_rows is None or context.skip_nulls:
            return null_rows, []
        error = context.null_error(batches.null_columns(
            [codec.column.name for codec in context.bound.inputs], nulls, null_rows))
        context.failed(error, int(null_rows.sum()))
        return null_rows, [(np.flatnonzero(null_rows), error)]

    async def _send_all(self, columns: Sequence[Sequence[Any]], chunks: list[Chunk]
                        ) -> list[Answered | TritonRequestError]:
        # (the transport lets 'max-concurrent-requests' of them in flight at a time; one that
        # fails for good, without a fallback, cancels the others)
        return await gather_or_cancel(self._send(columns, chunk) for chunk in chunks)

    async def _send(self, columns: Sequence[Sequence[Any]], chunk: Chunk
                    ) -> Answered | TritonRequestError:
        """One request's output columns, or its error when a fallback answers for it."""
        context = self.context
        bound = context.bound
        try:
            if not self._batched:  # one row
                request = context.request([column[chunk[0]] for column in columns])
                assert request is not None  # NULL rows are never sent
                response = await context.guard.send_async(self._transport, request)
                return [[codec.decode(response.as_numpy(codec.column.tensor),
                                      context.model.name)] for codec in bound.outputs]
            with context.naming_the_model():
                tensors = [codec.encode_batch(batches.take(column, chunk))
                           for codec, column in zip(bound.inputs, columns, strict=True)]
            response = await context.guard.send_async(self._transport, InferRequest(
                context.model, tensors, context.outputs, None, context.priority))
            return [codec.decode_batch(response.as_numpy(codec.column.tensor), len(chunk),
                                       context.model.name) for codec in bound.outputs]
        except TritonRequestError as error:
            context.failed(error, len(chunk))  # (raises without a fallback)
            return error

    def close(self) -> None:
        self.context.close()
        try:
            self._loop.run_until_complete(self._transport.close())
        finally:
            self._loop.close()
