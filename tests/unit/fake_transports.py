"""An asyncio transport that never answers, for the tests of what a cancelled request frees."""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

import pytest


class HangingTransport:
    async def infer(self, request: Any) -> NoReturn:
        await asyncio.Event().wait()
        raise AssertionError("never answers")

    async def close(self) -> None:
        pass


def hang_async_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every asyncio connection pyflink_triton.sessions.servers opens is a HangingTransport."""
    monkeypatch.setattr("pyflink_triton.sessions.servers.connect_async",
                        lambda options, endpoint, bound: HangingTransport())
