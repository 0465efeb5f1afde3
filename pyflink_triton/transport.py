"""Triton transport: KServe v2 over HTTP/1.1, one keep-alive connection per function instance.

tritonclient builds and parses the bodies (its JSON + binary tensor extension); the HTTP itself
is ``http.client``, because tritonclient's own HTTP client runs on gevent and may only be used
from the thread that created it, while PyFlink may call ``open()`` and ``eval()`` from different
threads (in loopback mode, each bundle can run on another thread). Failures become
:class:`TritonConnectionError` or :class:`TritonServerError` whose messages name the model and
the (redacted) endpoint.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import select
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput, InferResult
from tritonclient.utils import InferenceServerException

from .endpoint import Endpoint
from .errors import TritonConnectionError, TritonServerError
from .options import TritonOptions
from .sequence import SequenceParams

log = logging.getLogger(__name__)


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


class HttpTransport:
    def __init__(self, endpoint: Endpoint, timeout: timedelta,
                 headers: Mapping[str, str] = (), compression: str | None = None) -> None:
        self.endpoint = endpoint
        self._timeout = timeout.total_seconds()
        self._compression = compression
        self._headers = dict(headers)
        self._connection: http.client.HTTPConnection | None = None
        self._paths: dict[tuple[str, ...], str] = {}  # URL-quoted once, not per record

    @classmethod
    def for_options(cls, options: TritonOptions) -> HttpTransport:
        return cls(options.endpoint, options.timeout, request_headers(options),
                   options.compression)

    # --- the calls ---------------------------------------------------------------------------

    def model_metadata(self, model: ModelRef) -> dict[str, Any]:
        return self._get_json(model, model.path_segments())

    def model_config(self, model: ModelRef) -> dict[str, Any]:
        return self._get_json(model, (*model.path_segments(), "config"))

    def infer(self, model: ModelRef, inputs: Sequence[InferInput],
              outputs: Sequence[InferRequestedOutput], sequence: SequenceParams | None,
              priority: int | None) -> InferResult:
        body, json_size = InferenceServerClient.generate_request_body(
            list(inputs), outputs=list(outputs),
            sequence_id=sequence.sequence_id if sequence else 0,
            sequence_start=sequence.start if sequence else False,
            sequence_end=sequence.end if sequence else False,
            priority=priority or 0)
        headers = {"Content-Type": "application/octet-stream"}
        if json_size is not None:
            headers["Inference-Header-Content-Length"] = str(json_size)
        if self._compression == "gzip":
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        response, data = self._round_trip(model, "POST", (*model.path_segments(), "infer"),
                                          body, headers)
        header_length = response.getheader("Inference-Header-Content-Length")
        try:
            return InferResult.from_response_body(
                data, False, int(header_length) if header_length else None,
                response.getheader("Content-Encoding"))
        except (InferenceServerException, ValueError) as e:  # e.g. raw bytes in JSON text
            reason = e.message() if isinstance(e, InferenceServerException) else str(e)
            raise TritonServerError(
                f"The Triton server at {self.endpoint} answered model {model} with a response "
                f"that cannot be read: {reason}", response.status) from None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # --- plumbing ----------------------------------------------------------------------------

    def _get_json(self, model: ModelRef, segments: Sequence[str]) -> dict[str, Any]:
        _, data = self._round_trip(model, "GET", segments, None, {})
        return json.loads(data)

    def _connect(self) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is not None and connection.sock is not None and _closed_by_peer(
                connection.sock):
            # The server closed the idle keep-alive connection: open a new one before sending,
            # so that a request is never sent twice.
            log.debug("keep-alive connection to %s was closed by the server", self.endpoint)
            self.close()
        if self._connection is None:
            host, port = self.endpoint.host, self.endpoint.port
            if self.endpoint.use_tls:
                self._connection = http.client.HTTPSConnection(
                    host, port, timeout=self._timeout, context=ssl.create_default_context())
            else:
                self._connection = http.client.HTTPConnection(host, port, timeout=self._timeout)
        return self._connection

    def _round_trip(self, model: ModelRef, method: str, segments: Sequence[str],
                    body: bytes | None, headers: dict[str, str]
                    ) -> tuple[http.client.HTTPResponse, bytes]:
        segments = tuple(segments)
        path = self._paths.get(segments) or self._paths.setdefault(
            segments, self.endpoint.path(*segments))
        connection = self._connect()
        try:
            connection.request(method, path, body=body,
                               headers={**self._headers, **headers})
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise self._connection_error(model, e) from None
        if response.will_close:
            self.close()
        if response.status != 200:
            raise self._server_error(model, response.status, data)
        return response, data

    def _connection_error(self, model: ModelRef, cause: BaseException) -> TritonConnectionError:
        if isinstance(cause, socket.timeout | TimeoutError):
            reason = f"no answer within the timeout of {self._timeout:g} s (option 'timeout')"
        else:
            reason = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        return TritonConnectionError(
            f"Cannot reach the Triton server at {self.endpoint} (option 'endpoint') for model "
            f"{model}: {reason}.")

    def _server_error(self, model: ModelRef, status: int, data: bytes) -> TritonServerError:
        try:
            detail = json.loads(data).get("error") or data.decode(errors="replace")
        except (ValueError, AttributeError):
            detail = data.decode(errors="replace")[:500]
        return TritonServerError(
            f"The Triton server at {self.endpoint} answered HTTP {status} for model {model}: "
            f"{detail}{_hint(status, detail)}", status)


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle keep-alive socket has nothing to read; readable means the server closed it."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def request_headers(options: TritonOptions) -> dict[str, str]:
    """The headers every request carries: the user's custom headers and the credentials."""
    headers = dict(options.custom_headers)
    if options.auth_token is not None:
        token = options.auth_token  # sent as is when the user already wrote the scheme
        has_scheme = token.lower().startswith("bearer ")
        headers["Authorization"] = token if has_scheme else f"Bearer {token}"
    elif (basic := options.endpoint.basic_auth_header()) is not None:
        headers["Authorization"] = basic
    return headers


def _hint(status: int, detail: str) -> str:
    if status == 404 or "unknown model" in detail:
        return (" (check 'model-name', which is case-sensitive, and 'model-version'; the "
                "model must be loaded and ready on this server)")
    if "must specify the START flag" in detail:
        return (" (Triton does not know this sequence: it was never started, already ended, or "
                "reaped after the model's max_sequence_idle_microseconds; the first request of "
                "a sequence needs 'sequence-start' = 'true')")
    if "correlation ID" in detail:
        return " (this is a stateful model: set 'sequence-id' and the sequence flags)"
    return ""
