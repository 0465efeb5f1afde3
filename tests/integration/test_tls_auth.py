"""TLS and credentials against a real nginx TLS gateway in front of the real Triton.

The gateway (tests/nginx.py) terminates TLS with a certificate of a test CA, checks the
Authorization header (401 otherwise) and, on its mutual-TLS blocks, a client certificate; its
access log tells how many requests each block received and whether their credentials were
accepted, without logging them. Every test also checks that no secret (token, password, custom
header value) appears in the logs it produced or in what it printed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyflink
import pytest
from pyflink.table.expressions import col

from pyflink_triton import TritonScalarFunction, create_model
from pyflink_triton.errors import TritonError, TritonServerError, TritonTlsError
from pyflink_triton.options import TritonOptions
from pyflink_triton.sessions.connect import connect, connect_async
from pyflink_triton.sessions.function import TritonInference

from nginx import Credentials, Mark, NginxGateway, NginxNotInstalled

CREDENTIALS = Credentials(
    token=f"tok-{secrets.token_urlsafe(12)}",
    read_only_token=f"ro-{secrets.token_urlsafe(12)}",
    user="flink",
    password=f"pa ss@w:rd/{secrets.token_urlsafe(8)}",  # characters that need quoting in a URL
)
HEADER_SECRET = f"hdr-{secrets.token_urlsafe(12)}"
SECRETS = (CREDENTIALS.token, CREDENTIALS.read_only_token, CREDENTIALS.password,
           quote(CREDENTIALS.password, safe=""), CREDENTIALS.basic().split()[1], HEADER_SECRET)

TOKEN = {"auth-token": CREDENTIALS.token, "custom-headers": f"X-Api-Key:{HEADER_SECRET}"}
ADD_ONE_IO: dict[str, Any] = {"inputs": [("x", "DOUBLE")], "output": ("y", "DOUBLE")}


def assert_no_secret(*texts: str) -> None:
    # Not `assert secret not in text`: pytest would print the secret when it fails.
    leaks = [(where, which) for where, text in enumerate(texts)
             for which, secret in enumerate(SECRETS) if secret in text]
    assert not leaks, f"(text, secret) pairs where a secret escaped: {leaks}"


@pytest.fixture(scope="module")
def gateway(triton, tmp_path_factory) -> Iterator[NginxGateway]:
    try:
        nginx = NginxGateway(tmp_path_factory.mktemp("nginx"), triton.http_endpoint,
                             triton.grpc_endpoint, CREDENTIALS)
    except NginxNotInstalled as e:
        pytest.fail(str(e), pytrace=False)  # never a skip: the TLS paths would go untested
    with nginx:
        yield nginx


@pytest.fixture(autouse=True)
def no_secret_in_logs_or_output(caplog, capfd) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    out, err = capfd.readouterr()
    assert_no_secret(out, err, caplog.text, *(r.getMessage() for r in caplog.records))


@pytest.fixture
def grpc_calls(monkeypatch) -> Counter[str]:
    """gRPC calls made through tritonclient, by method. After a failed handshake a gRPC
    channel fails the calls of the next ~second at once, without a new handshake, so nginx's
    log cannot count gRPC attempts; this can."""
    import tritonclient.grpc as grpc_client
    import tritonclient.grpc.aio as grpc_aio

    calls: Counter[str] = Counter()
    for cls in (grpc_client.InferenceServerClient, grpc_aio.InferenceServerClient):
        for name in ("infer", "get_model_metadata", "get_model_config"):
            monkeypatch.setattr(cls, name, _counted(getattr(cls, name), name, calls))
    return calls


def _counted(method: Any, name: str, calls: Counter[str]) -> Any:
    if inspect.iscoroutinefunction(method):
        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return await method(*args, **kwargs)
        return counted_async

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return method(*args, **kwargs)
    return counted


def options(gateway: NginxGateway, block: str, **extra: str) -> dict[str, str]:
    ca = {} if "tls-verify" in extra else {"tls-ca-cert": gateway.certs.ca}
    return {"endpoint": gateway.url(block), "model-name": "add_one", **ca, **TOKEN, **extra}


def infer_once(opts: dict[str, str], value: float = 1.0, declared: bool = True) -> Any:
    """One record through a sync session, as a UDF instance sends it."""
    inference = TritonInference.create(opts, **(ADD_ONE_IO if declared else {}))
    session = inference.open(0)
    try:
        return session.infer([value])
    finally:
        session.close()


def failure_of(opts: dict[str, str]) -> TritonError:
    """The error of one record (declared columns: the first request is open()'s)."""
    with pytest.raises(TritonError) as info:
        infer_once(opts)
    assert_no_secret(str(info.value), repr(info.value))
    return info.value


def assert_tried_once(gateway: NginxGateway, block: str, mark: Mark, grpc_calls: Counter[str],
                      method: str) -> None:
    """The request whose TLS handshake failed was not sent again: over HTTP, nginx saw one
    failed handshake; over gRPC, one call was made (the channel may have made more
    handshakes on its own)."""
    failed = gateway.failed_handshakes_since(mark)
    if block.startswith("grpcs"):
        assert failed and grpc_calls == Counter({method: 1}), (failed, grpc_calls)
    else:
        assert len(failed) == 1, failed
    assert gateway.requests_since(mark, block) == []


# --- it works ----------------------------------------------------------------------------------

@pytest.mark.parametrize("block", ["https", "grpcs"])
def test_token_and_ca_over_tls(gateway, block):
    mark = gateway.mark()
    # Columns derived from the served model: the registration-time fetch goes through TLS too.
    assert infer_once(options(gateway, block), 41.0, declared=False) == 42.0
    seen = gateway.requests_since(mark, block)
    assert seen and all(r.status == 200 and r.auth == "ok" for r in seen), seen
    assert any(r.uri.endswith(("/infer", "/ModelInfer")) for r in seen), seen


@pytest.mark.parametrize("client_cert", ["separate key", "combined file"])
@pytest.mark.parametrize("block", ["mtls", "grpcs_mtls"])
def test_mutual_tls_with_a_client_certificate(gateway, block, client_cert):
    certs = gateway.certs
    files = ({"tls-client-cert": certs.client, "tls-client-key": certs.client_key}
             if client_cert == "separate key" else {"tls-client-cert": certs.client_combined})
    mark = gateway.mark()
    assert infer_once(options(gateway, block, **files)) == 2.0
    seen = gateway.requests_since(mark, block)
    assert seen and {(r.status, r.client_cert) for r in seen} == {(200, "SUCCESS")}, seen


@pytest.mark.parametrize("block", ["mtls", "grpcs_mtls"])
def test_async_sessions_over_mutual_tls_keep_order(gateway, block):
    certs = gateway.certs
    inference = TritonInference.create(options(
        gateway, block, **{"tls-client-cert": certs.client, "tls-client-key": certs.client_key,
                           "max-concurrent-requests": "8"}), **ADD_ONE_IO)
    session = inference.open(0, mode="async")

    async def run() -> list[float]:
        try:
            return await asyncio.gather(*(session.infer([float(i)]) for i in range(100)))
        finally:
            await session.close()

    assert asyncio.run(run()) == [i + 1.0 for i in range(100)]


def test_tls_verify_false_accepts_the_certificate_and_warns(gateway, caplog):
    opts = options(gateway, "https", **{"tls-verify": "false"})
    assert infer_once(opts) == 2.0
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name == "pyflink_triton.wire.tls"]
    assert warnings and all(gateway.url("https") in w and "verification is off" in w
                            for w in warnings)


@pytest.mark.parametrize("block", ["https", "grpcs"])
def test_a_token_given_with_its_scheme_is_sent_as_is(gateway, block):
    # The gateway accepts exactly "Bearer <token>": "Bearer Bearer <token>" would be a 401.
    mark = gateway.mark()
    opts = options(gateway, block, **{"auth-token": f"Bearer {CREDENTIALS.token}"})
    assert infer_once(opts) == 2.0
    assert {r.auth for r in gateway.requests_since(mark, block)} == {"ok"}


def test_basic_auth_from_the_endpoint(gateway):
    userinfo = f"{quote(CREDENTIALS.user, safe='')}:{quote(CREDENTIALS.password, safe='')}@"
    opts = {"endpoint": gateway.url("https", userinfo=userinfo), "model-name": "add_one",
            "tls-ca-cert": gateway.certs.ca}
    mark = gateway.mark()
    assert infer_once(opts) == 2.0
    assert {(r.status, r.auth) for r in gateway.requests_since(mark, "https")} == {(200, "ok")}


def test_a_pyflink_job_over_https_with_token_and_ca(gateway, t_env):
    add_one = TritonScalarFunction(options(gateway, "https"))
    table = t_env.from_elements([(float(i),) for i in range(20)], ["x"])
    mark = gateway.mark()

    rows = list(table.select(col("x"), add_one.as_udf()(col("x"))).execute().collect())

    assert sorted((r[0], r[1]) for r in rows) == [(float(i), i + 1.0) for i in range(20)]
    infers = [r for r in gateway.requests_since(mark, "https") if r.uri.endswith("/infer")]
    assert len(infers) == 20 and {(r.status, r.auth) for r in infers} == {(200, "ok")}
    assert_no_secret(*flink_logs())


def test_a_job_whose_token_is_refused_routes_the_rows_and_logs_no_secret(gateway, t_env):
    """The workers log the fallbacks (a WARNING with the latest failure). A token the gateway
    takes for reading only: open() reads the model's metadata, then every row fails with a 401
    that says to check 'auth-token'; no log shows a secret. (A token refused outright fails
    the job in open().)"""
    create_model(t_env, "add_one", {**options(gateway, "https"),
                                    "auth-token": CREDENTIALS.read_only_token,
                                    "error-fields": "true", "max-retries": "2"},
                 **ADD_ONE_IO)
    table = t_env.from_elements([(float(i),) for i in range(10)], ["x"])
    t_env.create_temporary_view("xs", table)

    rows = list(t_env.execute_sql("SELECT x, add_one(x).ok, add_one(x).error FROM xs").collect())

    assert len(rows) == 10 and all(ok is False and "HTTP 401" in error and "'auth-token'" in error
                                   for _, ok, error in rows), rows
    assert_no_secret(*(error for _, _, error in rows), *flink_logs())


def flink_logs() -> list[str]:
    """The JVM's log files, where PyFlink's workers log (in process mode)."""
    directory = Path(os.environ.get("FLINK_LOG_DIR") or Path(pyflink.__file__).parent / "log")
    return [path.read_text(errors="replace") for path in directory.glob("*.log")]


# --- clear errors, not retried -----------------------------------------------------------------

RETRIES = {"max-retries": "3", "retry-initial-backoff": "10 ms"}


@pytest.mark.parametrize("block", ["https", "grpcs"])
def test_a_wrong_token_is_a_clear_401_sent_once(gateway, block):
    mark = gateway.mark()
    error = failure_of(options(gateway, block, **{"auth-token": "not-the-token"}, **RETRIES))

    assert isinstance(error, TritonServerError) and not error.retryable
    assert error.status == (401 if block == "https" else "UNAUTHENTICATED")
    message = str(error)
    assert "'add_one'" in message and gateway.url(block) in message and "auth-token" in message
    assert "not-the-token" not in message
    assert [r.status for r in gateway.requests_since(mark, block)] == [401]  # not retried


def test_a_token_refused_for_inference_fails_the_record_once(gateway):
    # The read-only token passes open() (metadata) and is refused on the first record.
    inference = TritonInference.create(options(
        gateway, "https", **{"auth-token": CREDENTIALS.read_only_token}, **RETRIES),
        **ADD_ONE_IO)
    session = inference.open(0)
    mark = gateway.mark()
    try:
        with pytest.raises(TritonServerError) as info:
            session.infer([1.0])
    finally:
        session.close()
    assert info.value.status == 401 and "auth-token" in str(info.value)
    assert_no_secret(str(info.value))
    seen = gateway.requests_since(mark, "https")
    assert [(r.method, r.status) for r in seen] == [("POST", 401)]  # not retried


@pytest.mark.parametrize("block", ["https", "grpcs"])
def test_a_server_certificate_of_an_unknown_ca_is_a_tls_error_tried_once(gateway, block,
                                                                          grpc_calls):
    opts = options(gateway, block, **RETRIES)
    del opts["tls-ca-cert"]  # the system's CAs do not know the test CA
    mark = gateway.mark()
    error = failure_of(opts)

    assert isinstance(error, TritonTlsError) and not error.retryable
    message = str(error)
    assert "certificate verify failed" in message
    assert gateway.url(block) in message and "'add_one'" in message
    assert all(f"'{key}'" in message for key in ("tls-ca-cert", "tls-verify", "tls-client-cert"))
    assert_tried_once(gateway, block, mark, grpc_calls, "get_model_metadata")


@pytest.mark.parametrize("block", ["https", "grpcs"])
def test_a_certificate_for_another_host_name_is_a_tls_error(gateway, block):
    scheme = "grpcs" if block == "grpcs" else "https"
    opts = options(gateway, "wrong_name", endpoint=gateway.url("wrong_name", scheme=scheme))
    error = failure_of(opts)
    assert isinstance(error, TritonTlsError) and not error.retryable
    assert "host in 'endpoint'" in str(error) and gateway.url("wrong_name", scheme) in str(error)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("block", ["https", "grpcs"])
def test_a_certificate_rejected_on_reconnect_fails_the_record_once(gateway, block, mode,
                                                                   grpc_calls):
    # The session is open and has sent a record; then the gateway's certificate changes to one
    # of a CA the client does not trust, and the next record's connection fails verification.
    # (Not a certificate for another host name: gRPC checks the name after the handshake, so
    # nginx would not log the failure.)
    inference = TritonInference.create(options(gateway, block, **RETRIES), **ADD_ONE_IO)
    certs = gateway.certs

    async def records_around_a_rotation() -> BaseException:
        session = inference.open(0, mode="async") if mode == "async" else inference.open(0)

        async def infer(value: float) -> Any:
            result = session.infer([value])
            return await result if mode == "async" else result

        try:
            assert await infer(1.0) == 2.0
            with gateway.serving(block, certs.untrusted_server, certs.untrusted_server_key):
                # serving() blocked this loop: let it see the old connection's end, as a
                # running loop would have.
                await asyncio.sleep(0.1)
                mark = gateway.mark()
                grpc_calls.clear()
                with pytest.raises(TritonTlsError) as info:
                    await infer(2.0)
                assert_tried_once(gateway, block, mark, grpc_calls, "infer")
                return info.value
        finally:
            closed = session.close()
            if mode == "async":
                await closed

    error = asyncio.run(records_around_a_rotation())
    assert not error.retryable and "certificate verify failed" in str(error)


@pytest.mark.parametrize("block", ["mtls", "grpcs_mtls"])
@pytest.mark.parametrize("client_cert", ["none", "of an untrusted CA"])
def test_mutual_tls_without_a_trusted_client_certificate_is_a_clear_error(gateway, block,
                                                                          client_cert):
    certs = gateway.certs
    files = {} if client_cert == "none" else {"tls-client-cert": certs.untrusted_client,
                                              "tls-client-key": certs.untrusted_client_key}
    mark = gateway.mark()
    error = failure_of(options(gateway, block, **files, **RETRIES))
    # nginx finishes the handshake and answers 400 (over gRPC: "Received http2 header with
    # status: 400", which gRPC calls INTERNAL); judged as the HTTP 400 it is.
    assert isinstance(error, TritonServerError) and error.status == 400 and not error.retryable
    message = str(error)
    assert "'tls-client-cert'" in message and gateway.url(block) in message
    assert "'add_one'" in message
    assert [r.status for r in gateway.requests_since(mark, block)] == [400]


# --- secrets -----------------------------------------------------------------------------------

@pytest.mark.parametrize("block", ["https", "grpcs"])
def test_no_secret_in_repr_or_str_of_options_sessions_and_transports(gateway, block):
    userinfo = f"{CREDENTIALS.user}:{quote(CREDENTIALS.password, safe='')}@"
    with_password = {**options(gateway, block), "endpoint": gateway.url(block, userinfo=userinfo)}
    del with_password["auth-token"]  # (one source of Authorization at a time)
    texts: list[str] = []
    for opts in (options(gateway, block), with_password):
        parsed = TritonOptions.from_dict(opts)
        inference = TritonInference.create(parsed, **ADD_ONE_IO)
        session = inference.open(0)
        server = parsed.endpoint.servers[0]
        transport, async_transport = connect(parsed, server), connect_async(parsed, server, 2)
        try:
            for thing in (parsed, inference, session, transport, async_transport,
                          parsed.endpoint):
                texts += [repr(thing), str(thing)]
        finally:
            session.close()
            transport.close()
            asyncio.run(async_transport.close())
    assert_no_secret(*texts)
