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
    """A call to the Triton server failed."""


class TritonConnectionError(TritonRequestError):
    """The server could not be reached, or did not answer within ``timeout``."""


class TritonServerError(TritonRequestError):
    """The server answered with an HTTP error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self):  # keep the status when PyFlink pickles the exception
        return type(self), (str(self), self.status)
