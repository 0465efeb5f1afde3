"""What asyncio callers need of the event loop: a deadline per request, requests gathered so
that one failure stops the rest, and resources (connections, a gRPC channel) that belong to
the loop that made them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """``await awaitable``, raising ``TimeoutError`` after ``seconds`` (``asyncio.timeout`` on
    Python 3.11+, which costs no extra task per call as ``wait_for`` does)."""
    timeout = getattr(asyncio, "timeout", None)
    if timeout is None:  # Python 3.10
        return await asyncio.wait_for(awaitable, seconds)
    async with timeout(seconds):
        return await awaitable


async def gather_or_cancel(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """The results of ``awaitables``, run concurrently and started in their order. When one
    raises, the others are cancelled (and waited for) before the error goes on: they must not
    run on into the loop's next run or its close, holding their connections. (What
    ``asyncio.TaskGroup`` does on 3.11+.)"""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        raise


class LoopState(Generic[R]):
    """What an asyncio transport holds per event loop: the bound on requests in flight and the
    loop's resources ``R`` (connections, a gRPC channel). Semaphores, streams and grpc.aio
    channels belong to the loop that made them, and PyFlink starts its loop after open().

    A loop's resources are closed on that loop, by a keeper task that waits until it is
    cancelled: by :meth:`close`, by a move to another loop, or when the loop shuts down
    (``asyncio.run`` cancels what is pending before it closes its loop, and so does PyFlink's
    async runner with the patch in ``_pyflink_fixes``). A loop closed without that leaves them
    to the garbage collector, which warns.
    """

    def __init__(self, max_in_flight: int, open_resources: Callable[[], R],
                 close_resources: Callable[[R], Awaitable[None]]) -> None:
        self._max_in_flight = max_in_flight
        self._open_resources = open_resources
        self._close_resources = close_resources
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._resources: R | None = None
        self.slots = asyncio.Semaphore(max_in_flight)  # requests in flight, at most

    def enter(self) -> R:
        """The running loop's resources, made on the first call from that loop."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._resources is None:
            self._retire()
            resources = self._open_resources()
            self._loop, self._resources = loop, resources
            self.slots = asyncio.Semaphore(self._max_in_flight)
            self._keeper = loop.create_task(self._keep(resources))
        return self._resources

    async def close(self) -> None:
        """Close the resources; call it on the loop that used them."""
        keeper = self._keeper
        if keeper is not None and keeper.get_loop() is asyncio.get_running_loop():
            self._keeper = self._resources = self._loop = None
            keeper.cancel()
            await asyncio.wait([keeper])  # (not ``await keeper``: that raises CancelledError)
        else:
            self._retire()

    async def _keep(self, resources: R) -> None:
        try:
            await asyncio.get_running_loop().create_future()  # (never done: until cancelled)
        finally:
            await self._close_resources(resources)

    def _retire(self) -> None:
        """Have the current loop's keeper close its resources, on that loop (whenever it runs
        again, if it is not running now: another loop's resources cannot be touched here)."""
        keeper, loop = self._keeper, self._loop
        self._keeper = self._resources = self._loop = None
        if keeper is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(keeper.cancel)
