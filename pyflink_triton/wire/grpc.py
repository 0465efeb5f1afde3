"""KServe v2 over gRPC: tritonclient's blocking and asyncio gRPC clients.

One HTTP/2 channel per function instance multiplexes all its requests in flight, so there is no
pool to size. tritonclient 2.49.0 is pinned: its gRPC stubs are the newest that import with the
grpcio (< 1.66) apache-flink 2.3 allows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcclient_aio
from tritonclient.utils import InferenceServerException

from ..errors import TritonRequestError
from ..options import TritonOptions
from ..options.endpoint import Endpoint
from .failures import connection_error, server_error, tls_error
from .loops import LoopState
from .request import InferRequest, InputTensor, ModelRef, request_headers, sequence_header
from .tls import grpc_client_args

# Status codes that mean the server was not reached or did not answer in time.
_UNREACHABLE = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED",
                "StatusCode.CANCELLED"}
# gRPC reports a failed TLS handshake as UNAVAILABLE, e.g. "failed to connect to all addresses;
# last error: UNKNOWN: ipv4:127.0.0.1:443: Ssl handshake failed (TSI_PROTOCOL_FAILURE):
# SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED".
# Not "handshake" alone: "tcp handshaker shutdown" is a connection attempt cut short.
_TLS_FAILURE = re.compile(r"\bssl|certificate|\btsi_|\btls", re.IGNORECASE)
_OPENSSL_REASON = re.compile(r"OPENSSL_internal:([A-Z0-9_]+)")
# What gRPC says when the channel has no connection to send on ("failed to connect to all
# addresses; last error: ... Connection refused"): the request never left the client.
_NOT_CONNECTED = re.compile(r"failed to connect|connection refused", re.IGNORECASE)
# What gRPC says when the answer is an HTTP status instead of a gRPC one (a proxy's answer).
_GATEWAY_STATUS = re.compile(r"Received http2 header with status: (\d{3})")


_CHANNEL_ARGS = [
    # tritonclient's defaults: no limit on message sizes.
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    # Reconnect soon after an outage. With gRPC's default backoff (1 s, growing up to 120 s)
    # a channel went on failing at once, without trying to connect, for 8 s after Triton was
    # back (measured), while a record's retries ran out.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class _KServeGrpc:
    """What both gRPC transports share: the arguments of every call and the translation of
    its errors. The transports only make the calls (blocking, or awaited on the loop's client).
    """

    def __init__(self, endpoint: Endpoint, timeout: timedelta, headers: Mapping[str, str],
                 compression: str | None, tls_args: Mapping[str, Any] | None,
                 sequence_header_name: str | None = None) -> None:
        self.endpoint = endpoint
        self._sequence_header = (sequence_header_name.lower() if sequence_header_name
                                 else None)
        # Checked once per transport (for_options: from the TLS options); the asyncio client is
        # made again on every new event loop, from the same arguments.
        self._tls_args = dict(tls_args) if tls_args is not None else {"ssl": endpoint.use_tls}
        self._timeout = timeout.total_seconds()
        self._compression = compression
        # gRPC metadata keys must be lower case.
        self._headers = {name.lower(): value for name, value in headers.items()}
        self._requested: dict[tuple[str, ...], list[grpcclient.InferRequestedOutput]] = {}

    def _client_args(self) -> dict[str, Any]:
        return {"url": self.endpoint.address, "channel_args": _CHANNEL_ARGS, **self._tls_args}

    def _infer_args(self, request: InferRequest) -> dict[str, Any]:
        outputs = self._requested.get(request.outputs) or self._requested.setdefault(
            request.outputs, [grpcclient.InferRequestedOutput(n) for n in request.outputs])
        sequence = request.sequence
        return {
            "model_name": request.model.name, "model_version": request.model.version or "",
            "inputs": [_grpc_input(tensor) for tensor in request.inputs], "outputs": outputs,
            "sequence_id": sequence.sequence_id if sequence else 0,
            "sequence_start": sequence.start if sequence else False,
            "sequence_end": sequence.end if sequence else False,
            "priority": request.priority or 0, "parameters": request.parameters,
            "client_timeout": request.timeout or self._timeout,
            "headers": ({**self._headers, **sequence_header(self._sequence_header, request)}
                        if self._sequence_header else self._headers),
            "compression_algorithm": self._compression,
        }

    def _error(self, model: ModelRef, error: InferenceServerException,
               timeout: float | None = None) -> TritonRequestError:
        status = str(error.status() or "")
        message = error.message() or ""
        if (self.endpoint.use_tls and status == "StatusCode.UNAVAILABLE"
                and _TLS_FAILURE.search(message)):
            return tls_error(self.endpoint, model, _tls_reason(message))
        gateway = _GATEWAY_STATUS.search(message)
        if gateway and status in ("StatusCode.INTERNAL", "StatusCode.UNKNOWN"):
            # An HTTP proxy (nginx...) answered instead of Triton, and gRPC turned its status
            # into INTERNAL or UNKNOWN, which would look retryable: judge the HTTP status.
            return server_error(self.endpoint, model, int(gateway.group(1)), message)
        if status in _UNREACHABLE:
            cause: BaseException = (TimeoutError() if status == "StatusCode.DEADLINE_EXCEEDED"
                                    else ConnectionError(error.message()))
            return connection_error(self.endpoint, model, cause, timeout or self._timeout,
                                    maybe_delivered=not _NOT_CONNECTED.search(message))
        return server_error(self.endpoint, model, status.removeprefix("StatusCode."), message)


class GrpcTransport(_KServeGrpc):
    """Blocking; the channel is thread-safe."""

    @classmethod
    def for_options(cls, options: TritonOptions, endpoint: Endpoint) -> GrpcTransport:
        """The transport to ``endpoint``, one of the option's servers."""
        return cls(endpoint, options.timeout, request_headers(options, endpoint),
                   options.compression, grpc_client_args(options), options.sequence_id_header)

    def __init__(self, endpoint: Endpoint, timeout: timedelta, headers: Mapping[str, str] = (),
                 compression: str | None = None,
                 tls_args: Mapping[str, Any] | None = None,
                 sequence_header_name: str | None = None) -> None:
        super().__init__(endpoint, timeout, dict(headers), compression, tls_args,
                         sequence_header_name)
        self._client = grpcclient.InferenceServerClient(**self._client_args())

    def _model_args(self, model: ModelRef, timeout: float | None) -> dict[str, Any]:
        """Arguments of the model metadata and config calls, as JSON."""
        return {"model_name": model.name, "model_version": model.version or "",
                "headers": self._headers, "as_json": True,
                "client_timeout": timeout or self._timeout}

    def _health_args(self) -> dict[str, Any]:
        return {"headers": self._headers, "client_timeout": self._timeout}

    def model_metadata(self, model: ModelRef, timeout: float | None = None) -> dict[str, Any]:
        try:
            return self._client.get_model_metadata(**self._model_args(model, timeout))
        except InferenceServerException as e:
            raise self._error(model, e, timeout) from None

    def model_config(self, model: ModelRef, timeout: float | None = None) -> dict[str, Any]:
        try:
            return self._client.get_model_config(**self._model_args(model, timeout))["config"]
        except InferenceServerException as e:
            raise self._error(model, e, timeout) from None

    def infer(self, request: InferRequest) -> grpcclient.InferResult:
        try:
            return self._client.infer(**self._infer_args(request))
        except InferenceServerException as e:
            raise self._error(request.model, e, request.timeout) from None

    def server_live(self, model: ModelRef) -> bool:
        try:
            return self._client.is_server_live(**self._health_args())
        except InferenceServerException as e:
            raise self._error(model, e) from None

    def server_ready(self, model: ModelRef) -> bool:
        try:
            return self._client.is_server_ready(**self._health_args())
        except InferenceServerException as e:
            raise self._error(model, e) from None

    def close(self) -> None:
        self._client.close()


class AsyncGrpcTransport(_KServeGrpc):
    """asyncio, up to ``max_in_flight`` requests at a time on one channel."""

    def __init__(self, endpoint: Endpoint, timeout: timedelta, headers: Mapping[str, str],
                 compression: str | None, max_in_flight: int,
                 tls_args: Mapping[str, Any] | None = None,
                 sequence_header_name: str | None = None) -> None:
        super().__init__(endpoint, timeout, headers, compression, tls_args,
                         sequence_header_name)
        # grpc.aio binds a channel to the running loop: one client per loop.
        self._state = LoopState(
            max_in_flight, lambda: grpcclient_aio.InferenceServerClient(**self._client_args()),
            grpcclient_aio.InferenceServerClient.close)

    @classmethod
    def for_options(cls, options: TritonOptions, endpoint: Endpoint,
                    max_in_flight: int) -> AsyncGrpcTransport:
        return cls(endpoint, options.timeout, request_headers(options, endpoint),
                   options.compression, max_in_flight, grpc_client_args(options),
                   options.sequence_id_header)

    async def infer(self, request: InferRequest) -> grpcclient.InferResult:
        client = self._state.enter()
        async with self._state.slots:
            try:
                return await client.infer(**self._infer_args(request))
            except InferenceServerException as e:
                raise self._error(request.model, e, request.timeout) from None

    async def close(self) -> None:
        await self._state.close()


def _tls_reason(message: str) -> str:
    """OpenSSL's reason (CERTIFICATE_VERIFY_FAILED -> 'certificate verify failed'), or the
    message when it has none."""
    reason = _OPENSSL_REASON.search(message)
    if reason is None:
        return message
    return f"{reason.group(1).replace('_', ' ').lower()} (gRPC: {message.rstrip('. ')})"


def _grpc_input(tensor: InputTensor) -> grpcclient.InferInput:
    grpc_input = grpcclient.InferInput(tensor.name, tensor.shape, tensor.datatype)
    grpc_input.set_data_from_numpy(tensor.array)
    return grpc_input
