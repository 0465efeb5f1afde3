"""What a transport carries, whatever the protocol: the request, the response, and the calls.

A transport sends one :class:`InferRequest` (already encoded tensors, the outputs to return,
the sequence fields) and gives back the output tensors as numpy arrays. Four exist, chosen above
the wire by ``sessions.connect`` from the options:

- ``http``: KServe v2 over HTTP/1.1 (framed by ``http1``), blocking (one keep-alive
  connection) or asyncio (a pool of keep-alive connections);
- ``grpc``: KServe v2 over gRPC (tritonclient's sync and ``aio`` clients, one HTTP/2 channel
  multiplexing the requests in flight).

Whatever the protocol, failures are worded by ``failures``; the TLS settings come from ``tls``,
once per transport; what an asyncio transport holds per event loop is ``loops.LoopState``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import numpy as np

from ..options import TritonOptions
from ..options.endpoint import Endpoint
from ..policies.sequence import SequenceParams

# What a sequence ID keeps as is in a header value: printable ASCII but '%' and space.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


@dataclass(frozen=True)
class InputTensor:
    """An encoded input tensor, independent of the protocol that carries it."""

    name: str
    datatype: str
    array: np.ndarray  # in its final shape; BYTES as an object array of bytes

    @property
    def shape(self) -> list[int]:
        return list(self.array.shape)


@dataclass(frozen=True)
class ModelRef:
    """Which model a request is for; also how messages name it."""

    name: str
    version: str | None = None

    def path_segments(self) -> tuple[str, ...]:
        if self.version is None:
            return ("models", self.name)
        return ("models", self.name, "versions", self.version)

    def __str__(self) -> str:
        return f"'{self.name}'" + (f" version {self.version}" if self.version else "")


@dataclass(frozen=True)
class InferRequest:
    """One inference request, before a protocol puts it on the wire."""

    model: ModelRef
    inputs: Sequence[InputTensor]
    outputs: tuple[str, ...]  # names of the output tensors to return
    sequence: SequenceParams | None = None
    priority: int | None = None
    timeout: float | None = None  # seconds; None: the transport's 'timeout'
    # Custom request parameters, next to the sequence fields (a model reads them with
    # request.parameters()); e.g. the flush flag of a keyed sequence's idle END.
    parameters: Mapping[str, bool | int | str] | None = None


class InferResponse(Protocol):
    def as_numpy(self, name: str) -> np.ndarray | None: ...


class Sender(Protocol):
    """What sends records' requests, blocking: a transport, or a pool of them (one per
    server); used by one thread at a time."""

    def infer(self, request: InferRequest) -> InferResponse: ...

    def close(self) -> None: ...


class Transport(Sender, Protocol):
    """Blocking calls to one server; used by one thread at a time."""

    # ``timeout``: seconds for this call; None: the transport's 'timeout'.
    def model_metadata(self, model: ModelRef, timeout: float | None = None
                       ) -> dict[str, Any]: ...

    def model_config(self, model: ModelRef, timeout: float | None = None) -> dict[str, Any]: ...

    def infer(self, request: InferRequest) -> InferResponse: ...

    def server_live(self, model: ModelRef) -> bool: ...  # (the model: for messages)

    def server_ready(self, model: ModelRef) -> bool: ...

    def close(self) -> None: ...


def sequence_header(name: str | None, request: InferRequest) -> dict[str, str]:
    """The header ('sequence-id-header') that carries the request's sequence ID for a load
    balancer hashing on it; none for a request without a sequence. Percent-encoded (UTF-8)
    where not printable ASCII: a key's text may be any Unicode, and a header value may not."""
    if name is None or request.sequence is None:
        return {}
    return {name: quote(str(request.sequence.sequence_id), safe=_HEADER_SAFE)}


class AsyncTransport(Protocol):
    """asyncio calls, many requests in flight (up to its bound; more wait for a slot)."""

    async def infer(self, request: InferRequest) -> InferResponse: ...

    async def close(self) -> None: ...


def request_headers(options: TritonOptions, endpoint: Endpoint) -> Mapping[str, str]:
    """The headers every request to ``endpoint`` (one of the option's servers) carries: the
    user's custom headers and the credentials."""
    headers = dict(options.custom_headers)
    if options.auth_token is not None:
        token = options.auth_token  # sent as is when the user already wrote the scheme
        has_scheme = token.lower().startswith("bearer ")
        headers["Authorization"] = token if has_scheme else f"Bearer {token}"
    elif (basic := endpoint.basic_auth_header()) is not None:
        headers["Authorization"] = basic
    return headers
