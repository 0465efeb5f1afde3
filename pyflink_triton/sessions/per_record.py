"""The sync and async modes: one request per record, blocking or awaited.

The per-record steps are written once, in :class:`~.context.InstanceContext`: ``request``
(encode, draw the sequence ID), ``result`` (decode) and ``failed_result`` (the fallback, or
the error). The two sessions below are the two drivers of those steps and differ only in how
the request goes out: ``guard.send`` blocks, ``guard.send_async`` is awaited (their retry loops
share ``reliable._Run`` in the same way). One generator driven by both would write the driver
once too, but costs a generator object and about 0.3 µs per record (measured on Python 3.11),
which the records of these modes do not pay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from ..errors import TritonRequestError
from ..wire.loops import gather_or_cancel
from ..wire.request import AsyncTransport, Sender
from .contract import InferenceSession


class SyncInferenceSession(InferenceSession[[Sequence[Any]], Any, Iterable[Sequence[Any]],
                                            list[Any]]):
    """Blocking, one record at a time (not thread-safe)."""

    mode = "sync"
    blocking = True
    _transport: Sender

    def infer(self, values: Sequence[Any]) -> Any:
        """Send one record (one value per input column) and return its result."""
        context = self.context
        try:
            request = context.request(values)
            if request is None:
                return None
            return context.result(context.guard.send(self._transport, request))
        except TritonRequestError as error:
            return context.failed_result(error)

    def infer_many(self, records: Iterable[Sequence[Any]]) -> list[Any]:
        return [self.infer(values) for values in records]

    def close(self) -> None:
        self.context.close()
        self._transport.close()


class AsyncInferenceSession(InferenceSession[[Sequence[Any]], Awaitable[Any],
                                             Iterable[Sequence[Any]], Awaitable[list[Any]]]):
    """One request per record, many in flight; used from one event loop."""

    mode = "async"
    blocking = False
    _transport: AsyncTransport

    async def infer(self, values: Sequence[Any]) -> Any:
        # Everything up to the await runs as soon as the caller schedules the record, so
        # records draw their sequence IDs in arrival order, as in the sync mode.
        context = self.context
        try:
            request = context.request(values)
            if request is None:
                return None
            return context.result(await context.guard.send_async(self._transport, request))
        except TritonRequestError as error:
            return context.failed_result(error)

    async def infer_many(self, records: Iterable[Sequence[Any]]) -> list[Any]:
        # (started in their order, so they draw their IDs in that order; one that fails for
        # good, without a fallback, cancels the others)
        return await gather_or_cancel(self.infer(values) for values in records)

    def stop(self) -> None:
        """What close() does that needs no event loop (PyFlink stops its loop first)."""
        self.context.close()

    async def close(self) -> None:
        self.stop()
        await self._transport.close()
