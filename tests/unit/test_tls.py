"""tls.py: the client TLS settings built in open(), and what a bad file or option does."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from pyflink_triton.errors import TritonConfigError
from pyflink_triton.options import TritonOptions
from pyflink_triton.wire import tls as tls_module
from pyflink_triton.wire.http import AsyncHttpTransport, HttpTransport
from pyflink_triton.wire.tls import grpc_client_args, http_context


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    client = ca.issue_cert("client.example")
    other = ca.issue_cert("other.example")
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"secret-pw"))
    contents = {
        "ca.pem": ca.cert_pem.bytes(),
        "client.pem": client.cert_chain_pems[0].bytes(),
        "client.key": client.private_key_pem.bytes(),
        "combined.pem": client.private_key_and_cert_chain_pem.bytes(),
        "other.key": other.private_key_pem.bytes(),
        "encrypted.key": encrypted,
        "garbage.pem": b"not a certificate\n",
        "broken.pem": b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    }
    paths = {}
    for name, data in contents.items():
        (directory / name).write_bytes(data)
        paths[name] = str(directory / name)
    paths["missing"] = str(directory / "missing.pem")
    paths["directory"] = str(directory)
    return paths


def options(endpoint: str = "https://triton:8000", **tls: str) -> TritonOptions:
    return TritonOptions.from_dict({"endpoint": endpoint, "model-name": "m", **tls})


def test_plain_endpoints_have_no_tls():
    assert http_context(options("http://triton:8000")) is None
    assert grpc_client_args(options("grpc://triton:8001")) == {"ssl": False}


def test_by_default_the_server_is_verified_with_the_system_cas():
    context = http_context(options())
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert grpc_client_args(options("grpcs://triton:443")) == {
        "ssl": True, "root_certificates": None, "private_key": None, "certificate_chain": None}


def test_a_ca_file_replaces_the_system_cas(files):
    context = http_context(options(**{"tls-ca-cert": files["ca.pem"]}))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1  # this CA only, not the system's too


@pytest.mark.parametrize("key", ["separate", "in the certificate's file"])
def test_client_certificate_for_http_and_grpc(files, key):
    tls = ({"tls-client-cert": files["client.pem"], "tls-client-key": files["client.key"]}
           if key == "separate" else {"tls-client-cert": files["combined.pem"]})
    tls["tls-ca-cert"] = files["ca.pem"]
    assert http_context(options(**tls)) is not None  # loaded (a bad pair raises)
    args = grpc_client_args(options("grpcs://triton:443", **tls))
    assert args == {"ssl": True, "root_certificates": files["ca.pem"],
                    "private_key": tls.get("tls-client-key", tls["tls-client-cert"]),
                    "certificate_chain": tls["tls-client-cert"]}


def test_tls_verify_false_accepts_anything_and_warns_at_every_build(caplog):
    opts = options("https://user:pw-secret@triton:8443", **{"tls-verify": "false"})
    with caplog.at_level(logging.WARNING, logger="pyflink_triton.wire.tls"):
        context = http_context(opts)
        HttpTransport.for_options(opts, opts.endpoint.servers[0])
        AsyncHttpTransport.for_options(opts, opts.endpoint.servers[0], 4)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # once per transport, not per connection
    assert all("https://***@triton:8443" in w and "'tls-verify' = 'false'" in w
               for w in warnings)
    assert "pw-secret" not in caplog.text


def test_a_transport_builds_its_context_once_for_all_its_connections(files):
    opts = options(**{"tls-ca-cert": files["ca.pem"]})
    transport = AsyncHttpTransport.for_options(opts, opts.endpoint.servers[0], 4)
    assert isinstance(transport._tls, ssl.SSLContext)
    assert len(transport._tls.get_ca_certs()) == 1


# --- bad files: TritonConfigError naming the option, the path and what was expected ------------

BAD_FILES = [
    ({"tls-ca-cert": "missing"}, "'tls-ca-cert'", "cannot be read on this machine",
     "a PEM file of CA certificates"),
    ({"tls-ca-cert": "directory"}, "'tls-ca-cert'", "cannot be read on this machine",
     "a PEM file of CA certificates"),
    ({"tls-ca-cert": "garbage.pem"}, "'tls-ca-cert'", "holds no PEM certificate",
     "a PEM file of CA certificates"),
    ({"tls-ca-cert": "client.key"}, "'tls-ca-cert'", "holds no PEM certificate",
     "a PEM file of CA certificates"),
    ({"tls-ca-cert": "broken.pem"}, "'tls-ca-cert'", "cannot be loaded",
     "a PEM file of CA certificates"),
    ({"tls-client-cert": "missing", "tls-client-key": "client.key"}, "'tls-client-cert'",
     "cannot be read", "the client certificate"),
    ({"tls-client-cert": "client.pem", "tls-client-key": "missing"}, "'tls-client-key'",
     "cannot be read", "an unencrypted PEM key"),
    ({"tls-client-cert": "client.key", "tls-client-key": "client.pem"}, "'tls-client-cert'",
     "holds no PEM certificate", "the client certificate"),
    ({"tls-client-cert": "client.pem"}, "'tls-client-cert'",
     "holds no PEM private key; give the key's file with 'tls-client-key'",
     "the client certificate and its private key"),
    ({"tls-client-cert": "client.pem", "tls-client-key": "garbage.pem"}, "'tls-client-key'",
     "holds no PEM private key", "an unencrypted PEM key"),
    ({"tls-client-cert": "client.pem", "tls-client-key": "encrypted.key"}, "'tls-client-key'",
     "the key is encrypted", "an unencrypted PEM key"),
    ({"tls-client-cert": "client.pem", "tls-client-key": "other.key"}, "'tls-client-key'",
     "does not belong to the certificate in 'tls-client-cert'", ""),
    ({"tls-client-cert": "broken.pem", "tls-client-key": "client.key"}, "'tls-client-cert'",
     "cannot be loaded", "the client certificate"),
]


@pytest.mark.parametrize("protocol", ["https", "grpcs"])
@pytest.mark.parametrize(("tls", "option", "reason", "expected"), BAD_FILES,
                         ids=[" ".join(f"{k}={v}" for k, v in c[0].items()) for c in BAD_FILES])
def test_a_bad_file_names_the_option_the_path_and_what_was_expected(files, protocol, tls,
                                                                     option, reason, expected):
    tls = {key: files[name] for key, name in tls.items()}
    opts = options(f"{protocol}://triton:443", **tls)
    build = http_context if protocol == "https" else grpc_client_args
    with pytest.raises(TritonConfigError) as info:
        build(opts)
    message = str(info.value)
    option_key = option.strip("'")
    assert f"{option} = '{tls[option_key]}'" in message
    assert reason in message and expected in message
    for path in tls.values():  # never a file's contents
        if Path(path).is_file():
            for line in Path(path).read_bytes().decode().splitlines()[1:2]:
                assert line not in message


def test_an_encrypted_key_never_prompts_for_its_password(files, monkeypatch):
    # Without a password callback, OpenSSL would read a password from the terminal and hang
    # the worker. The check of the PEM markers comes first; the callback guards what it misses.
    monkeypatch.setattr(tls_module, "_ENCRYPTED", ())
    opts = options(**{"tls-client-cert": files["client.pem"],
                      "tls-client-key": files["encrypted.key"]})
    with pytest.raises(TritonConfigError, match=r"'tls-client-key' = .*: the key is encrypted"):
        http_context(opts)


@pytest.mark.parametrize(("tls", "expected"), [
    ({"tls-client-key": "k.pem"}, "'tls-client-key' needs 'tls-client-cert'"),
    ({"tls-verify": "false", "tls-ca-cert": "ca.pem"}, "ignores 'tls-ca-cert'"),
])
def test_combinations_are_refused_at_registration(tls, expected):
    with pytest.raises(TritonConfigError, match=expected):
        options(**tls)


def test_tls_options_need_a_tls_endpoint():
    with pytest.raises(TritonConfigError, match=r"need.* a TLS endpoint"):
        options("http://triton:8000", **{"tls-ca-cert": "ca.pem"})
    with pytest.raises(TritonConfigError, match="only over HTTP"):
        options("grpcs://triton:443", **{"tls-verify": "false"})
