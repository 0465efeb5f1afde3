"""KServe v2 over HTTP/1.1: a blocking transport and an asyncio one.

tritonclient builds and parses the bodies (its JSON + binary tensor extension); the HTTP itself
is ``http1``'s lean keep-alive framing. tritonclient's own HTTP client runs on gevent and may
only be used from the thread that created it, while PyFlink may call ``open()`` and ``eval()``
from different threads (in loopback mode, each bundle can run on another thread); its asyncio
client (aiohttp) spends about twice the CPU per request. The asyncio transport keeps a pool
of connections as large as the bound on requests in flight.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput, InferResult
from tritonclient.utils import InferenceServerException

from ..options import TritonOptions
from ..options.endpoint import Endpoint
from . import http1
from .failures import connection_error, server_error, unreadable_response
from .loops import LoopState, within
from .request import InferRequest, InputTensor, ModelRef, request_headers, sequence_header
from .tls import http_context

log = logging.getLogger(__name__)

_HTML_TITLE = re.compile(r"<title>([^<]{1,200})</title>", re.IGNORECASE)


class _KServeHttp:
    """What both HTTP transports share: paths, the bytes of every request, and the translation
    of responses and their errors. The transports only move those bytes (one blocking
    connection, or a pool of asyncio ones)."""

    def __init__(self, endpoint: Endpoint, timeout: timedelta, headers: Mapping[str, str],
                 compression: str | None, binary: bool, tls: ssl.SSLContext | None,
                 sequence_header_name: str | None = None) -> None:
        self.endpoint = endpoint
        self._sequence_header = sequence_header_name
        self._timeout = timeout.total_seconds()
        self._compression = compression
        self._binary = binary
        self._head = http1.encode_head(endpoint.host, endpoint.port, headers)
        # Built once per transport (for_options: from the TLS options), shared by its
        # connections; an https:// endpoint without one verifies with the system's CAs.
        self._tls = tls or (ssl.create_default_context() if endpoint.use_tls else None)
        self._paths: dict[tuple[str, ...], str] = {}  # URL-quoted once, not per record
        self._requested: dict[tuple[str, ...], list[InferRequestedOutput]] = {}

    def _path(self, segments: Sequence[str]) -> str:
        segments = tuple(segments)
        return self._paths.get(segments) or self._paths.setdefault(
            segments, self.endpoint.path(*segments))

    def _post(self, request: InferRequest) -> bytes:
        """The inference request, as bytes on the wire."""
        outputs = self._requested.get(request.outputs) or self._requested.setdefault(
            request.outputs, [InferRequestedOutput(name, binary_data=self._binary)
                              for name in request.outputs])
        sequence = request.sequence
        body, json_size = InferenceServerClient.generate_request_body(
            [http_input(tensor, self._binary) for tensor in request.inputs], outputs=outputs,
            sequence_id=sequence.sequence_id if sequence else 0,
            sequence_start=sequence.start if sequence else False,
            sequence_end=sequence.end if sequence else False,
            priority=request.priority or 0, parameters=request.parameters)
        headers = {"Content-Type": "application/octet-stream",
                   **sequence_header(self._sequence_header, request)}
        if json_size is not None:
            headers["Inference-Header-Content-Length"] = str(json_size)
        if self._compression == "gzip":
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        path = self._path((*request.model.path_segments(), "infer"))
        return http1.encode_request("POST", path, self._head, headers, body)

    def _get(self, segments: Sequence[str]) -> bytes:
        return http1.encode_request("GET", self._path(segments), self._head, {}, None)

    def _result(self, model: ModelRef, response: http1.Response) -> InferResult:
        status, data = response.status, response.body
        if status != 200:
            raise self._server_error(model, status, data)
        header_length = response.headers.get("inference-header-content-length")
        try:
            return InferResult.from_response_body(
                data, False, int(header_length) if header_length else None,
                response.headers.get("content-encoding"))
        except (InferenceServerException, ValueError) as e:  # e.g. raw bytes in JSON text
            reason = e.message() if isinstance(e, InferenceServerException) else str(e)
            raise unreadable_response(self.endpoint, model, reason, status) from None

    def _server_error(self, model: ModelRef, status: int, data: bytes) -> Exception:
        try:
            detail = json.loads(data).get("error") or data.decode(errors="replace")
        except (ValueError, AttributeError):
            detail = data.decode(errors="replace")[:500]
            # A gateway's error page (nginx: 401, 413, 502...): its title says it all.
            if title := _HTML_TITLE.search(detail):
                detail = title.group(1).strip()
        return server_error(self.endpoint, model, status, detail)


class HttpTransport(_KServeHttp):
    """Blocking, one keep-alive connection."""

    def __init__(self, endpoint: Endpoint, timeout: timedelta, headers: Mapping[str, str] = (),
                 compression: str | None = None, binary: bool = True,
                 tls: ssl.SSLContext | None = None,
                 sequence_header_name: str | None = None) -> None:
        super().__init__(endpoint, timeout, headers, compression, binary, tls,
                         sequence_header_name)
        self._connection: http1.Connection | None = None

    @classmethod
    def for_options(cls, options: TritonOptions, endpoint: Endpoint) -> HttpTransport:
        """The transport to ``endpoint``, one of the option's servers."""
        return cls(endpoint, options.timeout, request_headers(options, endpoint),
                   options.compression, options.binary_data, http_context(options),
                   options.sequence_id_header)

    def model_metadata(self, model: ModelRef, timeout: float | None = None) -> dict[str, Any]:
        return self._json(model, self._round_trip(
            model, self._get(model.path_segments()), timeout))

    def model_config(self, model: ModelRef, timeout: float | None = None) -> dict[str, Any]:
        return self._json(model, self._round_trip(
            model, self._get((*model.path_segments(), "config")), timeout))

    def infer(self, request: InferRequest) -> InferResult:
        return self._result(request.model, self._round_trip(
            request.model, self._post(request), request.timeout or self._timeout))

    def server_live(self, model: ModelRef) -> bool:
        return self._round_trip(model, self._get(("health", "live"))).status == 200

    def server_ready(self, model: ModelRef) -> bool:
        return self._round_trip(model, self._get(("health", "ready"))).status == 200

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _json(self, model: ModelRef, response: http1.Response) -> dict[str, Any]:
        """The body of a model metadata or config response."""
        if response.status != 200:
            raise self._server_error(model, response.status, response.body)
        try:
            return json.loads(response.body)
        except ValueError as e:
            raise unreadable_response(self.endpoint, model, str(e), response.status) from None

    def _connect(self, timeout: float) -> http1.Connection:
        """The keep-alive connection; a new one connects within ``timeout``."""
        connection = self._connection
        if connection is not None and connection.closed_by_peer:
            # The server closed the idle keep-alive connection: open a new one before sending,
            # so that a request is never sent twice.
            log.debug("keep-alive connection to %s was closed by the server", self.endpoint)
            self.close()
        if self._connection is None:
            self._connection = http1.Connection(self.endpoint.host, self.endpoint.port,
                                                timeout, self._tls)
        return self._connection

    def _round_trip(self, model: ModelRef, request: bytes,
                    timeout: float | None = None) -> http1.Response:
        timeout = timeout or self._timeout
        sent = False
        try:
            connection = self._connect(timeout)
            if connection.sock.gettimeout() != timeout:  # (a record's time running out)
                connection.sock.settimeout(timeout)
            connection.send(request)
            sent = True
            response = connection.receive()
        except OSError as e:
            self.close()
            raise connection_error(self.endpoint, model, e, timeout, maybe_delivered=sent
                                   ) from None
        except BaseException:
            self.close()  # (in an unknown state, e.g. half-read: never used again)
            raise
        if response.will_close:
            self.close()
        return response


class AsyncHttpTransport(_KServeHttp):
    """asyncio, a pool of up to ``max_connections`` keep-alive connections (one request at a
    time on each), as many requests in flight."""

    def __init__(self, endpoint: Endpoint, timeout: timedelta, headers: Mapping[str, str],
                 compression: str | None, binary: bool, max_connections: int,
                 tls: ssl.SSLContext | None = None,
                 sequence_header_name: str | None = None) -> None:
        super().__init__(endpoint, timeout, headers, compression, binary, tls,
                         sequence_header_name)
        self._state = LoopState(max_connections, _ConnectionPool, _ConnectionPool.close)

    @classmethod
    def for_options(cls, options: TritonOptions, endpoint: Endpoint,
                    max_connections: int) -> AsyncHttpTransport:
        return cls(endpoint, options.timeout, request_headers(options, endpoint),
                   options.compression, options.binary_data, max_connections,
                   http_context(options), options.sequence_id_header)

    async def infer(self, request: InferRequest) -> InferResult:
        data = self._post(request)
        pool = self._state.enter()
        timeout = request.timeout or self._timeout
        sent = False

        async def exchange() -> http1.Response:
            nonlocal sent
            connection = await pool.connection(self.endpoint, self._tls)
            sent = True  # (written on the first read: from here on it may reach the server)
            return await pool.exchange(connection, data)

        async with self._state.slots:
            try:
                response = await within(timeout, exchange())
            except (OSError, TimeoutError) as e:
                raise connection_error(self.endpoint, request.model, e, timeout,
                                       maybe_delivered=sent) from None
        return self._result(request.model, response)

    async def close(self) -> None:
        await self._state.close()


class _ConnectionPool:
    """The keep-alive connections of one event loop: idle ones to reuse, and every open one,
    so that all are closed at the end (those in use too)."""

    def __init__(self) -> None:
        self._idle: list[http1.AsyncConnection] = []
        self._open: set[http1.AsyncConnection] = set()
        self._closed = False  # (an exchange still out when it closed closes its connection)

    async def connection(self, endpoint: Endpoint,
                         tls: ssl.SSLContext | None) -> http1.AsyncConnection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed_by_peer:  # (never send a request twice: see HttpTransport)
                return connection
            self._discard(connection)
        connection = await http1.AsyncConnection.open(endpoint.host, endpoint.port, tls)
        self._open.add(connection)
        return connection

    async def exchange(self, connection: http1.AsyncConnection,
                       data: bytes) -> http1.Response:
        try:
            response = await connection.exchange(data)
        except BaseException:  # (cancelled too: the connection is in an unknown state)
            self._discard(connection)
            raise
        if response.will_close or self._closed:
            self._discard(connection)
        else:
            self._idle.append(connection)
        return response

    def _discard(self, connection: http1.AsyncConnection) -> None:
        self._open.discard(connection)
        connection.close()

    async def close(self) -> None:
        self._closed = True
        connections, self._open, self._idle = list(self._open), set(), []
        await asyncio.gather(*(c.aclose() for c in connections))


def http_input(tensor: InputTensor, binary: bool) -> InferInput:
    """tritonclient's form of a tensor: raw bytes (binary extension) or JSON values."""
    result = InferInput(tensor.name, tensor.shape, tensor.datatype)
    result.set_data_from_numpy(tensor.array, binary_data=binary)
    return result
