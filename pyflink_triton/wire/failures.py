"""How a failed request is reported, whatever the protocol.

Failures become :class:`TritonConnectionError` (retryable), :class:`TritonTlsError` (a TLS
handshake refused: never retried) or :class:`TritonServerError`, whose messages name the model
and the (redacted) endpoint, and say which option to check when one is likely at fault.
"""

from __future__ import annotations

import socket
import ssl

from ..errors import TritonConnectionError, TritonRequestError, TritonServerError, TritonTlsError
from ..options.endpoint import Endpoint
from .request import ModelRef

# Triton's answer (HTTP 400, gRPC INVALID_ARGUMENT) to a request without START in a sequence it
# does not know: never started, already ended, reaped when idle, or lost in a restart.
UNKNOWN_SEQUENCE = "must specify the START flag"
# Triton's answer (HTTP 503, gRPC UNAVAILABLE) to a START that waited in its backlog for a free
# sequence slot for longer than the request's 'timeout' parameter: sending it again would wait
# again.
SEQUENCE_BACKLOG_EXPIRED = "timeout of the corresponding sequence has been expired"

# TLS errors that say a connection was cut rather than refused: transient, like a reset.
_TLS_TRANSPORT_ERRORS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError,
                         ssl.SSLWantReadError, ssl.SSLWantWriteError)


def connection_error(endpoint: Endpoint, model: ModelRef, cause: BaseException,
                     timeout: float, maybe_delivered: bool = True) -> TritonRequestError:
    """The error for a failed exchange: a ``TritonTlsError`` when TLS refused the connection
    (sending again cannot help), else a retryable ``TritonConnectionError``.
    ``maybe_delivered``: False when the request was certainly not sent (no connection)."""
    if is_tls_failure(cause):
        return tls_error(endpoint, model, _ssl_reason(cause))
    timed_out = isinstance(cause, socket.timeout | TimeoutError)
    if timed_out:
        reason = f"no answer within the timeout of {timeout:g} s (option 'timeout')"
    else:
        reason = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    if isinstance(cause, ssl.SSLEOFError):  # (what a plain HTTP port does to a TLS hello)
        reason += "; if this persists, check that the https:// 'endpoint' is a TLS port"
    return TritonConnectionError(
        f"Cannot reach the Triton server at {endpoint} (option 'endpoint') for model "
        f"{model}: {reason}.", maybe_delivered, timed_out)


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


def server_error(endpoint: Endpoint, model: ModelRef, status: int | str, detail: str
                 ) -> TritonServerError:
    """Triton (or a gateway in front of it) answered with an error: ``status`` is the HTTP
    status, or the gRPC status name without its ``StatusCode.`` prefix."""
    what = f"HTTP {status}" if isinstance(status, int) else f"gRPC {status}"
    return TritonServerError(
        f"The Triton server at {endpoint} answered {what} for model {model}: "
        f"{detail}{_hint(status, detail)}", status, final=SEQUENCE_BACKLOG_EXPIRED in detail)


def unreadable_response(endpoint: Endpoint, model: ModelRef, reason: str,
                        status: int) -> TritonServerError:
    return TritonServerError(
        f"The Triton server at {endpoint} answered model {model} with a response "
        f"that cannot be read: {reason}", status)


def unknown_sequence(error: TritonRequestError) -> bool:
    """Whether Triton refused the request because it does not know its sequence."""
    return isinstance(error, TritonServerError) and UNKNOWN_SEQUENCE in str(error)


def no_sequence_slot(error: TritonRequestError) -> bool:
    """Whether Triton gave up a START that waited in its backlog for a sequence slot."""
    return isinstance(error, TritonServerError) and SEQUENCE_BACKLOG_EXPIRED in str(error)


def _ssl_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.replace("_", " ").lower()
    return str(error)


def _hint(status: int | str, detail: str) -> str:
    """Which option to check, for the failures a user's settings most often cause."""
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
