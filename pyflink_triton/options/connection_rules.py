"""How the connection options combine: the protocol with the endpoint and 'binary-data', the TLS
options with the endpoint, and the ways of sending credentials with each other."""

from __future__ import annotations

import re

from ..errors import TritonConfigError
from .spec import OptionValues

_TLS_OPTIONS = ("tls-ca-cert", "tls-client-cert", "tls-client-key", "tls-verify")


def check_protocol(options: OptionValues) -> None:
    """The protocol fits the endpoint, and 'binary-data' the protocol."""
    if options.protocol == "http" and options.endpoint.protocol == "grpc":
        raise TritonConfigError(
            f"'protocol' = 'http' does not fit the gRPC endpoint '{options.endpoint}'; use an "
            "http:// endpoint (Triton's HTTP port, 8000 by default) or 'protocol' = 'grpc'.")
    if options.protocol == "grpc" and options.endpoint.has_path:
        raise TritonConfigError(
            f"'protocol' = 'grpc' cannot use the path of endpoint '{options.endpoint}': a gRPC "
            "endpoint is host:port (Triton's gRPC port, 8001 by default).")
    if options.effective_protocol == "grpc" and not options.binary_data:
        raise TritonConfigError(
            "'binary-data' = 'false' (JSON tensors) exists only over HTTP; gRPC always "
            "sends raw tensors. Remove it or use 'protocol' = 'http'.")


def check_tls(options: OptionValues) -> None:
    """TLS options need a TLS endpoint, and do not contradict each other."""
    tls_keys = [key for key in _TLS_OPTIONS if options.differs_from_default(key)]
    if tls_keys and not options.endpoint.use_tls:
        raise TritonConfigError(
            f"{', '.join(repr(k) for k in tls_keys)} need(s) a TLS endpoint (https:// or "
            f"grpcs://), and '{options.endpoint}' is not one.")
    if options.tls_client_key is not None and options.tls_client_cert is None:
        raise TritonConfigError("'tls-client-key' needs 'tls-client-cert' (the certificate "
                                "the key belongs to).")
    if not options.tls_verify:
        if options.tls_ca_cert is not None:
            raise TritonConfigError(
                "'tls-verify' = 'false' ignores 'tls-ca-cert'; keep one of them.")
        if options.effective_protocol == "grpc":
            raise TritonConfigError(
                "'tls-verify' = 'false' exists only over HTTP: gRPC always verifies the "
                "server. Give the server's CA with 'tls-ca-cert' instead.")


def check_credentials(options: OptionValues) -> None:
    """At most one source of the Authorization header: one would silently replace another."""
    credentials = [what for what, present in (
        ("user:password@ in 'endpoint'", options.endpoint.has_credentials),
        ("'auth-token'", options.auth_token is not None),
        ("an Authorization header in 'custom-headers'",
         any(name.lower() == "authorization" for name, _ in options.custom_headers)),
    ) if present]
    if len(credentials) > 1:
        raise TritonConfigError(
            f"{' and '.join(credentials)} are all sent as the Authorization header; keep "
            "one of them.")


def check_sequence_header(options: OptionValues) -> None:
    """'sequence-id-header' is not also a custom header: both lines would be sent."""
    name = options.sequence_id_header
    if name is not None and any(h.lower() == name.lower() for h, _ in options.custom_headers):
        raise TritonConfigError(
            f"'sequence-id-header' = '{name}' is also set in 'custom-headers': the header would "
            "be sent twice. Keep one of them.")


# What gRPC takes as a metadata key (lower-cased; a '-bin' key carries bytes, not text). grpcio
# refuses anything else with an error that shows all the metadata, credentials included.
_GRPC_METADATA_KEY = re.compile(r"[0-9a-z_.-]+")


def check_grpc_metadata(options: OptionValues) -> None:
    """Over gRPC, header names become metadata keys: only those gRPC can carry."""
    if options.effective_protocol != "grpc":
        return
    names = [("'sequence-id-header'", options.sequence_id_header)] + [
        ("a header name in 'custom-headers'", name) for name, _ in options.custom_headers]
    for what, name in names:
        if name is None:
            continue
        key = name.lower()
        if not _GRPC_METADATA_KEY.fullmatch(key) or key.endswith("-bin"):
            raise TritonConfigError(
                f"{what} '{name}' cannot be a gRPC metadata key: over gRPC, use letters, "
                "digits, '-', '_' and '.' only, not ending in '-bin'.")
