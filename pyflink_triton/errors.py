"""The exceptions this package raises.

Configuration problems surface when a function is registered (``TritonConfigError``); problems
talking to the server surface when a job runs (``TritonRequestError`` and its subclasses). Every
message names what it is about (option, column, model, endpoint) and never carries a secret:
endpoints appear in their redacted form only.
"""

from __future__ import annotations


class TritonError(Exception):
    """Base class of every error raised by pyflink-triton."""


class TritonConfigError(TritonError, ValueError):
    """An option, column mapping or SQL statement is invalid; raised at registration."""


class TritonRequestError(TritonError, RuntimeError):
    """A call to the Triton server failed (or a record could not be turned into one)."""

    #: Whether sending the same request again may succeed ('max-retries' applies).
    retryable: bool = False
    #: False only when the request certainly never reached the server (no connection could be
    #: made to send it on): sending it again cannot make the model see it twice.
    maybe_delivered: bool = True
    #: The failure of the last attempt, when this error reports a request given up after
    #: several attempts.
    last_attempt: TritonRequestError | None = None
    #: False when the request was refused before any server was tried (an open circuit
    #: breaker, a sequence whose server is lost): no attempt to time.
    attempted: bool = True


class TritonConnectionError(TritonRequestError):
    """The server could not be reached, or did not answer within ``timeout``."""

    retryable = True

    def __init__(self, message: str, maybe_delivered: bool = True,
                 timed_out: bool = False) -> None:
        super().__init__(message)
        self.maybe_delivered = maybe_delivered
        #: No answer within the timeout: the server may be alive, only slow (not refused or
        #: cut off, which says it is gone).
        self.timed_out = timed_out

    def __reduce__(self):  # keep the flags when PyFlink pickles the exception
        return type(self), (str(self), self.maybe_delivered, self.timed_out)


class TritonTlsError(TritonRequestError):
    """The TLS handshake failed (server certificate not trusted, wrong host name, or a client
    certificate refused by a server that checks it in the handshake): sending again cannot
    help. (nginx checks client certificates after the handshake and answers HTTP 400.)"""


class TritonServerError(TritonRequestError):
    """The server answered with an error status: an HTTP status code, or a gRPC status name
    such as ``'UNAVAILABLE'``."""

    #: gRPC statuses that, like HTTP 5xx, say the server could not serve the request now.
    RETRYABLE_GRPC_STATUSES = frozenset({"UNAVAILABLE", "INTERNAL", "UNKNOWN",
                                         "RESOURCE_EXHAUSTED", "ABORTED"})

    def __init__(self, message: str, status: int | str, final: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.final = final  # an error status that sending again cannot help, whatever it is

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        if self.final:
            return False
        if isinstance(self.status, int):
            return self.status >= 500
        return self.status in self.RETRYABLE_GRPC_STATUSES

    def __reduce__(self):  # keep the status when PyFlink pickles the exception
        return type(self), (str(self), self.status, self.final)


class TritonCircuitOpenError(TritonRequestError):
    """The circuit breaker is open: the request was not sent (never retried)."""

    maybe_delivered = False
    attempted = False


class TritonSequenceServerLostError(TritonRequestError):
    """A continuation of a sequence whose server is unavailable, while other servers of the
    'endpoint' list are up: Triton holds a sequence on one server only, so it is not sent
    elsewhere (never retried; a keyed function starts the key's sequence anew)."""

    maybe_delivered = False
    attempted = False
