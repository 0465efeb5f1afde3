"""Triton transport: how requests reach the server, whatever the protocol.

A transport sends one :class:`InferRequest` (already encoded tensors, the outputs to return,
the sequence fields) and gives back the output tensors as numpy arrays. Four exist, chosen by
:func:`connect` and :func:`connect_async` from the options:

- ``http_transport``: KServe v2 over HTTP/1.1 (framed by ``http1``), blocking (one keep-alive
  connection) or asyncio (a pool of keep-alive connections);
- ``grpc_transport``: KServe v2 over gRPC (tritonclient's sync and ``aio`` clients, one
  HTTP/2 channel multiplexing the requests in flight).

Whatever the protocol, failures become :class:`TritonConnectionError`, :class:`TritonTlsError`
(a TLS handshake refused: never retried) or :class:`TritonServerError`, whose messages name the
model and the (redacted) endpoint. The TLS settings come from ``tls``, once per transport.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from ..errors import TritonConnectionError, TritonRequestError, TritonServerError, TritonTlsError
from ..options import TritonOptions
from ..options.endpoint import Endpoint
from ..policies.sequence import SequenceParams

T = TypeVar("T")
R = TypeVar("R")


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


class Transport(Protocol):
    """Blocking calls; used by one thread at a time."""

    # ``timeout``: seconds for this call; None: the transport's 'timeout'.
    def model_metadata(self, model: ModelRef, timeout: float | None = None
                       ) -> dict[str, Any]: ...

    def model_config(self, model: ModelRef, timeout: float | None = None) -> dict[str, Any]: ...

    def infer(self, request: InferRequest) -> InferResponse: ...

    def server_live(self, model: ModelRef) -> bool: ...  # (the model: for messages)

    def server_ready(self, model: ModelRef) -> bool: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """asyncio calls, many requests in flight (up to its bound; more wait for a slot)."""

    async def infer(self, request: InferRequest) -> InferResponse: ...

    async def close(self) -> None: ...


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """``await awaitable``, raising ``TimeoutError`` after ``seconds`` (``asyncio.timeout`` on
    Python 3.11+, which costs no extra task per call as ``wait_for`` does)."""
    timeout = getattr(asyncio, "timeout", None)
    if timeout is None:  # Python 3.10
        return await asyncio.wait_for(awaitable, seconds)
    async with timeout(seconds):
        return await awaitable


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


def connection_error(endpoint: Endpoint, model: ModelRef, cause: BaseException,
                     timeout: float, maybe_delivered: bool = True) -> TritonRequestError:
    """The error for a failed exchange: a ``TritonTlsError`` when TLS refused the connection
    (sending again cannot help), else a retryable ``TritonConnectionError``.
    ``maybe_delivered``: False when the request was certainly not sent (no connection)."""
    if is_tls_failure(cause):
        return tls_error(endpoint, model, _ssl_reason(cause))
    if isinstance(cause, socket.timeout | TimeoutError):
        reason = f"no answer within the timeout of {timeout:g} s (option 'timeout')"
    else:
        reason = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    if isinstance(cause, ssl.SSLEOFError):  # (what a plain HTTP port does to a TLS hello)
        reason += "; if this persists, check that the https:// 'endpoint' is a TLS port"
    return TritonConnectionError(
        f"Cannot reach the Triton server at {endpoint} (option 'endpoint') for model "
        f"{model}: {reason}.", maybe_delivered)


def as_request_error(error: Exception, endpoint: Endpoint, model: ModelRef) -> TritonRequestError:
    """``error`` as a :class:`TritonRequestError`, so that the failure policy (retries,
    'default-value', 'error-fields') sees every failure of a request: this package's errors as
    they are; anything else (a surprise of a library below, such as a value protobuf cannot
    carry) as a non-retryable error naming the model and the endpoint."""
    if isinstance(error, TritonRequestError):
        return error
    return TritonRequestError(
        f"A request to the Triton server at {endpoint} for model {model} failed: "
        f"{type(error).__name__}: {error}")


# TLS errors that say a connection was cut rather than refused: transient, like a reset.
_TLS_TRANSPORT_ERRORS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError,
                         ssl.SSLWantReadError, ssl.SSLWantWriteError)


def is_tls_failure(cause: BaseException) -> bool:
    """Whether TLS refused the connection: an untrusted or misnamed server certificate, a
    client certificate the server wants or rejects, a peer that does not speak TLS..."""
    return isinstance(cause, ssl.SSLError) and not isinstance(cause, _TLS_TRANSPORT_ERRORS)


def tls_error(endpoint: Endpoint, model: ModelRef, reason: str) -> TritonTlsError:
    lowered = reason.lower()
    if any(word in lowered for word in ("hostname", "peer name", "ip address mismatch")):
        check = ("that the host in 'endpoint' is one the server's certificate is issued for, "
                 "then 'tls-ca-cert' and 'tls-verify'")
    elif "certificate required" in lowered or "peer did not return a certificate" in lowered:
        check = ("'tls-client-cert' and 'tls-client-key': the server asks for a client "
                 "certificate; then 'tls-ca-cert' and 'tls-verify'")
    else:
        check = ("'tls-ca-cert' (the CA that signed the server's certificate; unset, the "
                 "system's CAs are used), 'tls-verify', and 'tls-client-cert' / "
                 "'tls-client-key' if the server asks for a client certificate; and that the "
                 "https:// or grpcs:// 'endpoint' is a TLS port")
    return TritonTlsError(
        f"The TLS handshake with the Triton server at {endpoint} failed for model {model}: "
        f"{reason.rstrip('. ')}. Check {check}.")


def _ssl_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.replace("_", " ").lower()
    return str(error)


def server_error(endpoint: Endpoint, model: ModelRef, status: int | str, detail: str
                 ) -> TritonServerError:
    what = f"HTTP {status}" if isinstance(status, int) else f"gRPC {status}"
    return TritonServerError(
        f"The Triton server at {endpoint} answered {what} for model {model}: "
        f"{detail}{_hint(status, detail)}", status)


def unreadable_response(endpoint: Endpoint, model: ModelRef, reason: str,
                        status: int) -> TritonServerError:
    return TritonServerError(
        f"The Triton server at {endpoint} answered model {model} with a response "
        f"that cannot be read: {reason}", status)


def request_headers(options: TritonOptions) -> Mapping[str, str]:
    """The headers every request carries: the user's custom headers and the credentials."""
    headers = dict(options.custom_headers)
    if options.auth_token is not None:
        token = options.auth_token  # sent as is when the user already wrote the scheme
        has_scheme = token.lower().startswith("bearer ")
        headers["Authorization"] = token if has_scheme else f"Bearer {token}"
    elif (basic := options.endpoint.basic_auth_header()) is not None:
        headers["Authorization"] = basic
    return headers


# Triton's answer (HTTP 400, gRPC INVALID_ARGUMENT) to a request without START in a sequence it
# does not know: never started, already ended, reaped when idle, or lost in a restart.
UNKNOWN_SEQUENCE = "must specify the START flag"


def unknown_sequence(error: TritonRequestError) -> bool:
    """Whether Triton refused the request because it does not know its sequence."""
    return isinstance(error, TritonServerError) and UNKNOWN_SEQUENCE in str(error)


def _hint(status: int | str, detail: str) -> str:
    if status in (401, "UNAUTHENTICATED"):
        return (" (the server, or a gateway in front of it, did not accept the credentials: "
                "check 'auth-token' (sent as 'Authorization: Bearer <token>'), user:password@ "
                "in 'endpoint', and 'custom-headers')")
    if status in (403, "PERMISSION_DENIED"):
        return (" (the credentials were accepted but do not allow this request: check "
                "'auth-token', user:password@ in 'endpoint', and 'custom-headers')")
    if "SSL certificate" in detail or (  # nginx: "No required SSL certificate was sent"...
            "http2 header with status: 400" in detail):  # ...which gRPC cannot show
        return (" (a TLS gateway answers 400 when it requires a client certificate and gets "
                "none, or one it does not trust: check 'tls-client-cert' and 'tls-client-key')")
    if "plain HTTP request was sent to HTTPS port" in detail:
        return " (use https:// in 'endpoint')"
    if status in (404, "NOT_FOUND") or "unknown model" in detail:
        return (" (check 'model-name', which is case-sensitive, and 'model-version'; the "
                "model must be loaded and ready on this server)")
    if UNKNOWN_SEQUENCE in detail:
        return (" (Triton does not know this sequence: it was never started, already ended, or "
                "reaped after the model's max_sequence_idle_microseconds; the first request of "
                "a sequence needs 'sequence-start' = 'true')")
    if "correlation ID" in detail:
        return " (this is a stateful model: set 'sequence-id' and the sequence flags)"
    return ""
