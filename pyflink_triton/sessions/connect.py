"""The choice of transport: which protocol's client the options ask for, to one server.

Above the wire layer, as tritonclient chooses ``tritonclient.http`` or ``tritonclient.grpc``
above their shared base: the transports know nothing of each other. Several servers are
``servers``' business, above this.
"""

from __future__ import annotations

from ..options import TritonOptions
from ..options.endpoint import Endpoint
from ..wire.request import AsyncTransport, Transport


def connect(options: TritonOptions, endpoint: Endpoint) -> Transport:
    """A blocking transport to ``endpoint``, one of the option's servers."""
    if options.effective_protocol == "grpc":
        from ..wire.grpc import GrpcTransport  # imports grpc only when asked for
        return GrpcTransport.for_options(options, endpoint)
    from ..wire.http import HttpTransport
    return HttpTransport.for_options(options, endpoint)


def connect_async(options: TritonOptions, endpoint: Endpoint,
                  max_in_flight: int) -> AsyncTransport:
    """An asyncio transport to ``endpoint`` with at most ``max_in_flight`` requests in flight
    (over HTTP, one keep-alive connection each)."""
    if options.effective_protocol == "grpc":
        from ..wire.grpc import AsyncGrpcTransport
        return AsyncGrpcTransport.for_options(options, endpoint, max_in_flight)
    from ..wire.http import AsyncHttpTransport
    return AsyncHttpTransport.for_options(options, endpoint, max_in_flight)
