"""How TLS and credential failures are classified and worded (no server needed); the messages
are those measured against nginx and Triton in tests/integration/test_tls_auth.py."""

from __future__ import annotations

import ssl
from datetime import timedelta

import pytest
from tritonclient.utils import InferenceServerException

from pyflink_triton.errors import TritonConnectionError, TritonServerError, TritonTlsError
from pyflink_triton.options.endpoint import Endpoint
from pyflink_triton.wire.failures import connection_error, server_error
from pyflink_triton.wire.grpc import _KServeGrpc
from pyflink_triton.wire.http import _KServeHttp
from pyflink_triton.wire.request import ModelRef

ENDPOINT = Endpoint.parse("https://alice:pw-secret@gateway:8443")
MODEL = ModelRef("add_one")


def verify_failed() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                            "verify failed: unable to get local issuer certificate")
    error.verify_message = "unable to get local issuer certificate"
    return error


def ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    error.reason = reason
    return error


def test_an_untrusted_server_certificate_is_a_tls_error_naming_what_to_check():
    error = connection_error(ENDPOINT, MODEL, verify_failed(), 30)
    assert isinstance(error, TritonTlsError) and not error.retryable
    message = str(error)
    assert message.startswith("The TLS handshake with the Triton server at "
                              "https://***@gateway:8443 failed for model 'add_one': certificate "
                              "verify failed: unable to get local issuer certificate. Check ")
    assert all(f"'{key}'" in message for key in ("tls-ca-cert", "tls-verify", "tls-client-cert"))
    assert "pw-secret" not in message and "alice" not in message


@pytest.mark.parametrize(("reason", "advice"), [
    ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "'tls-client-cert' and 'tls-client-key': the server "
                                          "asks for a client certificate"),
    ("WRONG_VERSION_NUMBER", "is a TLS port"),
    ("SSLV3_ALERT_HANDSHAKE_FAILURE", "'tls-ca-cert'"),
])
def test_other_handshake_failures_are_tls_errors(reason, advice):
    error = connection_error(ENDPOINT, MODEL, ssl_error(reason), 30)
    assert isinstance(error, TritonTlsError) and not error.retryable
    assert advice in str(error)


def test_a_host_name_mismatch_points_at_the_endpoint():
    error = verify_failed()
    error.verify_message = "IP address mismatch, certificate is not valid for '127.0.0.1'."
    message = str(connection_error(ENDPOINT, MODEL, error, 30))
    assert "not valid for '127.0.0.1'. Check that the host in 'endpoint'" in message


@pytest.mark.parametrize("cause", [
    ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
    ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed (EOF)"),
    ConnectionResetError("reset"), TimeoutError(),
])
def test_a_connection_cut_over_tls_stays_a_retryable_connection_error(cause):
    error = connection_error(ENDPOINT, MODEL, cause, 30)
    assert type(error) is TritonConnectionError and error.retryable
    if isinstance(cause, ssl.SSLEOFError):  # (a plain HTTP port answers a TLS hello so)
        assert "check that the https:// 'endpoint' is a TLS port" in str(error)


@pytest.mark.parametrize(("status", "advice"), [
    (401, "did not accept the credentials: check 'auth-token'"),
    ("UNAUTHENTICATED", "did not accept the credentials: check 'auth-token'"),
    (403, "do not allow this request: check 'auth-token'"),
    ("PERMISSION_DENIED", "do not allow this request: check 'auth-token'"),
])
def test_refused_credentials_name_the_options_and_are_not_retried(status, advice):
    error = server_error(ENDPOINT, MODEL, status, "401 Authorization Required")
    assert not error.retryable and advice in str(error)
    assert "custom-headers" in str(error) and "user:password@ in 'endpoint'" in str(error)
    assert "https://***@gateway:8443" in str(error) and "'add_one'" in str(error)


def test_a_gateway_error_page_is_shown_by_its_title():
    http = _KServeHttp(ENDPOINT, timedelta(seconds=1), {}, None, True, None)
    page = (b"<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>"
            b"\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n</body></html>")
    error = http._server_error(MODEL, 400, page)
    assert str(error) == (
        "The Triton server at https://***@gateway:8443 answered HTTP 400 for model 'add_one': "
        "400 No required SSL certificate was sent (a TLS gateway answers 400 when it requires "
        "a client certificate and gets none, or one it does not trust: check 'tls-client-cert' "
        "and 'tls-client-key')")
    assert not error.retryable


# --- gRPC: statuses and messages as grpcio 1.65 reports them ---------------------------------

GRPC_ENDPOINT = Endpoint.parse("grpcs://gateway:443")
GRPC_VERIFY_FAILED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:443: Ssl "
    "handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
    "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED")
GRPC_WRONG_NAME = ("failed to connect to all addresses; last error: UNKNOWN: "
                   "ipv4:127.0.0.1:443: Peer name 127.0.0.1 is not in peer certificate")


def grpc_error(status: str, message: str, endpoint: Endpoint = GRPC_ENDPOINT):
    grpc = _KServeGrpc(endpoint, timedelta(seconds=1), {}, None, None)
    return grpc._error(MODEL, InferenceServerException(message, f"StatusCode.{status}"))


def test_grpc_handshake_failures_are_tls_errors():
    error = grpc_error("UNAVAILABLE", GRPC_VERIFY_FAILED)
    assert isinstance(error, TritonTlsError) and not error.retryable
    assert ("at grpcs://gateway:443 failed for model 'add_one': certificate verify failed "
            "(gRPC: failed to connect") in str(error)
    wrong_name = grpc_error("UNAVAILABLE", GRPC_WRONG_NAME)
    assert isinstance(wrong_name, TritonTlsError)
    assert "Check that the host in 'endpoint'" in str(wrong_name)


@pytest.mark.parametrize("endpoint", ["grpcs://gateway:443", "grpc://triton:8001"])
@pytest.mark.parametrize("message", [
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to "
    "connect to remote host: Connection refused",
    # Seen when a connection attempt is cut short (a server going away), over plain gRPC.
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:34319: tcp "
    "handshaker shutdown",
])
def test_grpc_unreachable_without_tls_words_stays_a_connection_error(endpoint, message):
    error = grpc_error("UNAVAILABLE", message, Endpoint.parse(endpoint))
    assert type(error) is TritonConnectionError and error.retryable


def test_grpc_tls_words_on_a_plain_endpoint_are_no_tls_error():
    error = grpc_error("UNAVAILABLE", GRPC_VERIFY_FAILED, Endpoint.parse("grpc://triton:8001"))
    assert type(error) is TritonConnectionError


@pytest.mark.parametrize(("grpc_status", "http_status", "retryable"), [
    ("INTERNAL", 400, False),   # nginx: no client certificate (gRPC maps 400 to INTERNAL)
    ("UNKNOWN", 413, False),    # nginx: body too large
    ("UNKNOWN", 500, True),
])
def test_an_http_status_from_a_grpc_gateway_is_judged_as_http(grpc_status, http_status,
                                                              retryable):
    error = grpc_error(grpc_status, f"Received http2 header with status: {http_status}")
    assert isinstance(error, TritonServerError)
    assert error.status == http_status and error.retryable is retryable
    assert f"answered HTTP {http_status}" in str(error)


def test_grpc_unauthenticated_from_a_gateway_names_auth_token():
    error = grpc_error("UNAUTHENTICATED", "Received http2 header with status: 401")
    assert isinstance(error, TritonServerError) and error.status == "UNAUTHENTICATED"
    assert not error.retryable and "'auth-token'" in str(error)
