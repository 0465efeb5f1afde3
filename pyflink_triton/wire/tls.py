"""Client TLS settings from the options: an ``ssl.SSLContext`` for HTTP, tritonclient's
arguments for gRPC.

Both are built in ``open()``, on the machine that runs the function, because that is where the
files named by 'tls-ca-cert', 'tls-client-cert' and 'tls-client-key' must be (the options are
only parsed at registration, on the client). Every file is read and checked here, for gRPC too
(tritonclient reads them again itself, and gRPC's own errors about them only surface as a
failed connection), so that a missing, unreadable or malformed file fails with a
``TritonConfigError`` naming the option, the path and what was expected. Messages never show a
file's contents.

Without 'tls-ca-cert', HTTP verifies the server with the system's CAs, and gRPC with the roots
grpcio ships (or ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``).
"""

from __future__ import annotations

import logging
import re
import ssl
from typing import Any

from ..errors import TritonConfigError
from ..options import TritonOptions

log = logging.getLogger(__name__)

_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PRIVATE_KEY = b"PRIVATE KEY-----"  # PKCS#8, RSA, EC...: "-----BEGIN <kind>PRIVATE KEY-----"
_ENCRYPTED = (b"ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


def http_context(options: TritonOptions) -> ssl.SSLContext | None:
    """The context for an https:// endpoint (None for http://); build it once per transport:
    with 'tls-verify' = 'false' every build logs a warning."""
    if not options.endpoint.use_tls:
        return None
    if options.tls_verify:
        context = _verifying_context(options)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        log.warning("TLS certificate verification is off for endpoint %s ('tls-verify' = "
                    "'false'): any server certificate and host name is accepted, so anyone on "
                    "the path can read and change the requests. Use it for tests only.",
                    options.endpoint)
    _load_client_certificate(context, options)
    return context


def grpc_client_args(options: TritonOptions) -> dict[str, Any]:
    """The TLS arguments of tritonclient's gRPC ``InferenceServerClient`` (sync and aio):
    ``ssl`` and the paths of the PEM files, which the client reads."""
    if not options.endpoint.use_tls:
        return {"ssl": False}
    # The same checks as for HTTP, so a bad file is named here rather than failing the channel.
    _load_client_certificate(_verifying_context(options), options)
    cert, key = options.tls_client_cert, options.tls_client_key
    return {
        "ssl": True,
        "root_certificates": options.tls_ca_cert,
        # gRPC finds the key among the PEM blocks when the certificate file holds both.
        "private_key": key if key is not None else cert,
        "certificate_chain": cert,
    }


def _verifying_context(options: TritonOptions) -> ssl.SSLContext:
    path = options.tls_ca_cert
    if path is None:
        return ssl.create_default_context()  # the system's CAs
    data = _read("tls-ca-cert", path, "a PEM file of CA certificates")
    if _CERTIFICATE not in data:
        raise _file_error("tls-ca-cert", path, "a PEM file of CA certificates",
                          "it holds no PEM certificate ('-----BEGIN CERTIFICATE-----'); "
                          "a DER file can be converted with 'openssl x509 -inform der'")
    try:
        # cafile alone: only these CAs are trusted, not the system's too.
        return ssl.create_default_context(cafile=path)
    except ssl.SSLError as e:
        raise _file_error("tls-ca-cert", path, "a PEM file of CA certificates",
                          f"it cannot be loaded ({_reason(e)})") from None


def _load_client_certificate(context: ssl.SSLContext, options: TritonOptions) -> None:
    cert_path, key_path = options.tls_client_cert, options.tls_client_key
    if cert_path is None:
        return
    what_cert = "a PEM file of the client certificate" + (
        "" if key_path else " and its private key")
    cert = _read("tls-client-cert", cert_path, what_cert)
    if _CERTIFICATE not in cert:
        raise _file_error("tls-client-cert", cert_path, what_cert,
                          "it holds no PEM certificate ('-----BEGIN CERTIFICATE-----')")
    if key_path is None:
        key_option, key_file, key, what_key = "tls-client-cert", cert_path, cert, what_cert
    else:
        key_option, key_file, what_key = "tls-client-key", key_path, "an unencrypted PEM key"
        key = _read(key_option, key_file, what_key)
    if _PRIVATE_KEY not in key:
        reason = "it holds no PEM private key"
        if key_path is None:
            reason += "; give the key's file with 'tls-client-key'"
        raise _file_error(key_option, key_file, what_key, reason)
    if any(marker in key for marker in _ENCRYPTED):
        raise _file_error(key_option, key_file, what_key,
                          "the key is encrypted; decrypt it (e.g. 'openssl pkey -in KEY -out "
                          "PLAIN'), as there is no option for its password")
    try:
        # A password callback that refuses: without one, OpenSSL would prompt on the terminal.
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except _PasswordAsked:
        raise _file_error(key_option, key_file, what_key, "the key is encrypted") from None
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise TritonConfigError(
                f"The private key in '{key_option}' = '{key_file}' does not belong to the "
                f"certificate in 'tls-client-cert' = '{cert_path}'.") from None
        raise TritonConfigError(
            f"'tls-client-cert' = '{cert_path}'"
            + (f" with 'tls-client-key' = '{key_path}'" if key_path else "")
            + f" cannot be loaded ({_reason(e)}): expected {what_cert}"
            + (" and an unencrypted PEM key." if key_path else ".")) from None


class _PasswordAsked(Exception):
    pass


def _no_password() -> bytes:
    raise _PasswordAsked


def _read(option: str, path: str, expected: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise _file_error(option, path, expected,
                          f"it cannot be read on this machine ({reason})") from None


def _file_error(option: str, path: str, expected: str, reason: str) -> TritonConfigError:
    return TritonConfigError(f"'{option}' = '{path}': {reason}. Expected {expected}, readable "
                             "on every machine that runs the function.")


def _reason(error: ssl.SSLError) -> str:
    # Without the C source location that str(error) ends with, which helps nobody.
    return error.reason or re.sub(r" \(_ssl\.c:\d+\)$", "", str(error.args[-1]))
