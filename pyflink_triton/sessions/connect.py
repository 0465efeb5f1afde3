"""The choice of transport: which protocol's client the options ask for.

Above the wire layer, as tritonclient chooses ``tritonclient.http`` or ``tritonclient.grpc``
above their shared base: the transports know nothing of each other.
"""

from __future__ import annotations

from ..options import TritonOptions
from ..wire.request import AsyncTransport, Transport


def connect(options: TritonOptions) -> Transport:
    if options.effective_protocol == "grpc":
        from ..wire.grpc import GrpcTransport  # imports grpc only when asked for
        return GrpcTransport.for_options(options)
    from ..wire.http import HttpTransport
    return HttpTransport.for_options(options)


def connect_async(options: TritonOptions, max_in_flight: int) -> AsyncTransport:
    """An asyncio transport with at most ``max_in_flight`` requests in flight (over HTTP, one
    keep-alive connection each)."""
    if options.effective_protocol == "grpc":
        from ..wire.grpc import AsyncGrpcTransport
        return AsyncGrpcTransport.for_options(options, max_in_flight)
    from ..wire.http import AsyncHttpTransport
    return AsyncHttpTransport.for_options(options, max_in_flight)
