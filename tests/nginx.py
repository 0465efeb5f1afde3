"""A real nginx TLS gateway in front of the test Triton, for the TLS and auth tests.

:class:`NginxProcess` runs nginx in the foreground with a configuration it writes into a directory
(its logs, pid and temporary files there too) and stops it by its PID; tests/replicas.py's
balancer is one too.

:class:`NginxGateway` writes certificates made with ``trustme`` (a test CA, a server certificate
for 127.0.0.1 and localhost, client certificates) and an nginx configuration into a directory,
runs ``nginx -g 'daemon off;'`` in the foreground and stops it by its PID. Its server blocks,
each on a free loopback port:

- ``https``: HTTP/1.1 proxy to Triton's HTTP port, requiring the bearer token (or the basic
  credentials) in ``Authorization``, else 401;
- ``mtls``: the same, and a client certificate signed by the test CA (``ssl_verify_client on``);
- ``grpcs``: gRPC over TLS (HTTP/2) to Triton's gRPC port, requiring the token (401 otherwise);
- ``grpcs_mtls``: the same with a client certificate;
- ``wrong_name``: as ``https``, with a certificate issued for another host name.

Every request is logged as ``<port> <status> <method> <uri> auth=<ok|none|refused>
client_cert=<nginx's verdict>``: the Authorization header itself is never logged, only whether
it was accepted. The error log (level ``info``) records the TLS handshakes that failed.
:meth:`NginxGateway.serving` swaps a block's certificate for a while (a reload, as after a
certificate rotation), for failures that happen after a session opened.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from base64 import b64encode
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pyflink_triton.server import free_port

PORTS = ("https", "mtls", "grpcs", "grpcs_mtls", "wrong_name")
N = TypeVar("N", bound="NginxProcess")


class NginxNotInstalled(RuntimeError):
    pass


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                     else None)
    if path is None:
        raise NginxNotInstalled(
            "The TLS tests need a real nginx, which is not installed. scripts/test.sh installs "
            "it; or run: apt-get install nginx (Debian/Ubuntu).")
    return path


class NginxProcess:
    """nginx in the foreground, with the ``nginx.conf`` that :meth:`config` makes (around the
    ``http`` block's content from :meth:`http_block`) in ``directory``, and its logs, pid and
    temporary files there; stopped by its PID. :meth:`start` waits until it listens on every
    port of :meth:`listen_ports`."""

    def __init__(self, directory: Path) -> None:
        self.binary = nginx_binary()  # first: fail before making anything
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.access_log = directory / "access.log"
        self.error_log = directory / "error.log"
        self._process: subprocess.Popen[bytes] | None = None

    def listen_ports(self) -> list[int]:
        raise NotImplementedError

    def http_block(self) -> str:
        """What goes in the ``http`` block, after the temporary paths."""
        raise NotImplementedError

    def config(self) -> str:
        d = self.directory
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the tmp dir
        temp = "\n".join(f"    {kind}_temp_path {d}/temp/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""{user}worker_processes 1;
pid {d}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 256; }}
http {{
{temp}
{self.http_block()}
}}
"""

    def start(self: N, timeout: float = 15.0) -> N:
        conf = self.directory / "nginx.conf"
        conf.write_text(self.config())
        (self.directory / "temp").mkdir(exist_ok=True)  # nginx makes only the last level
        with open(self.directory / "nginx.out", "wb") as out:
            self._process = subprocess.Popen(
                [self.binary, "-p", str(self.directory), "-c", str(conf), "-e",
                 str(self.error_log), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_terminate_with_parent)
        deadline = time.monotonic() + timeout
        waiting = set(self.listen_ports())
        while waiting:
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited with code {self._process.returncode}:\n"
                                   f"{self.logs()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not listen within {timeout:g} s:\n{self.logs()}")
            for port in list(waiting):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    waiting.discard(port)
                except OSError:
                    time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop nginx by its PID: SIGTERM is its fast shutdown (the master stops its workers);
        SIGKILL if it does not stop in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self: N) -> N:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        parts = []
        for path in (self.directory / "nginx.out", self.error_log, self.access_log):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-5000:]}")
        return "\n".join(parts)


@dataclass(frozen=True)
class Credentials:
    """What the gateway accepts. ``read_only_token`` may read model metadata (GET) but not
    infer (POST): a token that passes open() and fails on the first record."""

    token: str
    read_only_token: str
    user: str
    password: str

    def basic(self) -> str:
        return "Basic " + b64encode(f"{self.user}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class AccessLine:
    port: int
    status: int
    method: str
    uri: str
    auth: str
    client_cert: str


@dataclass(frozen=True)
class Mark:
    access: int
    error: int


class Certificates:
    """PEM files made by trustme, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        import trustme

        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        ca, other_ca = trustme.CA(), trustme.CA()
        self.ca = self._write("ca.pem", ca.cert_pem.bytes())
        self.other_ca = self._write("other-ca.pem", other_ca.cert_pem.bytes())
        server = ca.issue_cert("127.0.0.1", "localhost")
        self.server, self.server_key = self._pair("server", server)
        self.wrong_name, self.wrong_name_key = self._pair(
            "wrong-name", ca.issue_cert("triton.example"))
        client = ca.issue_cert("flink-client.example")
        self.client, self.client_key = self._pair("client", client)
        self.client_combined = self._write(  # certificate and key in one file
            "client-combined.pem", client.private_key_and_cert_chain_pem.bytes())
        self.untrusted_client, self.untrusted_client_key = self._pair(
            "untrusted-client", other_ca.issue_cert("flink-client.example"))
        self.untrusted_server, self.untrusted_server_key = self._pair(
            "untrusted-server", other_ca.issue_cert("127.0.0.1", "localhost"))

    def _pair(self, name: str, cert) -> tuple[str, str]:
        chain = b"".join(pem.bytes() for pem in cert.cert_chain_pems)
        return (self._write(f"{name}.pem", chain),
                self._write(f"{name}.key", cert.private_key_pem.bytes()))

    def _write(self, name: str, data: bytes) -> str:
        path = self.directory / name
        path.write_bytes(data)
        return str(path)


class NginxGateway(NginxProcess):
    def __init__(self, directory: Path, triton_http: str, triton_grpc: str,
                 credentials: Credentials) -> None:
        super().__init__(directory)
        self.credentials = credentials
        self.certs = Certificates(directory / "certs")
        self.ports = {name: free_port() for name in PORTS}
        self._upstream_http = _host_port(triton_http)
        self._upstream_grpc = _host_port(triton_grpc)
        # The certificate (and key) each block serves; serving() swaps one for a while.
        self._served = {name: (self.certs.server, self.certs.server_key) for name in PORTS}
        self._served["wrong_name"] = (self.certs.wrong_name, self.certs.wrong_name_key)

    def url(self, block: str, scheme: str | None = None, userinfo: str = "") -> str:
        scheme = scheme or ("grpcs" if block.startswith("grpcs") else "https")
        return f"{scheme}://{userinfo}127.0.0.1:{self.ports[block]}"

    def listen_ports(self) -> list[int]:
        return list(self.ports.values())

    @contextmanager
    def serving(self, block: str, cert: str, key: str) -> Iterator[None]:
        """Serve another certificate on ``block`` for a while, as after a certificate rotation
        on the gateway: nginx reloads its configuration, and its old worker closes the idle
        keep-alive connections, so clients connect (and verify) again."""
        original = self._served[block]
        self._served[block] = (cert, key)
        self._reload(block)
        try:
            yield
        finally:
            self._served[block] = original
            self._reload(block)

    def _reload(self, block: str) -> None:
        assert self._process is not None
        (self.directory / "nginx.conf").write_text(self.config())
        self._process.send_signal(signal.SIGHUP)
        expected = ssl.PEM_cert_to_DER_cert(Path(self._served[block][0]).read_text())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                served = ssl.get_server_certificate(("127.0.0.1", self.ports[block]), timeout=2)
                if ssl.PEM_cert_to_DER_cert(served) == expected:
                    time.sleep(0.3)  # (the old worker closes its idle connections meanwhile)
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"nginx did not reload within 10 s:\n{self.logs()}")

    # --- what nginx saw ------------------------------------------------------------------------

    def mark(self) -> Mark:
        """Where the logs end now: once they stopped growing, as nginx logs a request just
        after sending its response (the client may already have it)."""
        mark, deadline = Mark(-1, -1), time.monotonic() + 2
        while time.monotonic() < deadline:
            now = Mark(_size(self.access_log), _size(self.error_log))
            if now == mark:
                break
            mark = now
            time.sleep(0.15)
        return mark

    def requests_since(self, mark: Mark, block: str | None = None) -> list[AccessLine]:
        """Requests logged after ``mark``, on one server block or all."""
        time.sleep(0.2)  # nginx logs a request just after sending its response
        lines = []
        for text in _read_from(self.access_log, mark.access).splitlines():
            port, status, method, uri, auth, cert = text.split(" ", 5)  # cert: may have spaces
            lines.append(AccessLine(int(port), int(status), method, uri,
                                    auth.removeprefix("auth="), cert.removeprefix("client_cert=")))
        if block is None:
            return lines
        return [line for line in lines if line.port == self.ports[block]]

    def failed_handshakes_since(self, mark: Mark) -> list[str]:
        """TLS handshakes the client gave up: with an alert (OpenSSL: Python, nginx's
        "SSL_do_handshake() failed") or by closing the connection (BoringSSL: gRPC). A TCP
        connection closed before any hello ("client closed connection") is not counted."""
        time.sleep(0.2)
        return [line for line in _read_from(self.error_log, mark.error).splitlines()
                if "SSL_do_handshake() failed" in line
                or "peer closed connection in SSL handshake" in line]

    # --- the configuration ---------------------------------------------------------------------

    def http_block(self) -> str:
        c, p = self.certs, self.ports
        creds = self.credentials
        # The one place the secrets appear: nginx compares the whole header with them.
        accepted = "\n".join(
            f'        "{method}:{value}" ok;'
            for value in (f"Bearer {creds.token}", creds.basic())
            for method in ("GET", "POST"))
        return f"""    client_max_body_size 64m;
    map_hash_bucket_size 256;  # (the keys hold whole Authorization values)
    map "$request_method:$http_authorization" $auth_state {{
        default refused;
        "~^[A-Z]+:$" none;
{accepted}
        "GET:Bearer {creds.read_only_token}" ok;
    }}
    log_format counted '$server_port $status $request_method $uri auth=$auth_state '
                       'client_cert=$ssl_client_verify';
    access_log {self.access_log} counted;
    upstream triton_http {{ server {self._upstream_http}; keepalive 8; }}
    upstream triton_grpc {{ server {self._upstream_grpc}; keepalive 8; }}
    ssl_client_certificate {c.ca};

    server {{
        listen 127.0.0.1:{p["https"]} ssl;
{self._certificate("https")}
{_HTTP_PROXY}
    }}
    server {{
        listen 127.0.0.1:{p["mtls"]} ssl;
{self._certificate("mtls")}
        ssl_verify_client on;
{_HTTP_PROXY}
    }}
    server {{
        listen 127.0.0.1:{p["wrong_name"]} ssl http2;  # (so gRPC gets to check the name)
{self._certificate("wrong_name")}
{_HTTP_PROXY}
    }}
    server {{
        listen 127.0.0.1:{p["grpcs"]} ssl http2;
{self._certificate("grpcs")}
{_GRPC_PROXY}
    }}
    server {{
        listen 127.0.0.1:{p["grpcs_mtls"]} ssl http2;
{self._certificate("grpcs_mtls")}
        ssl_verify_client on;
{_GRPC_PROXY}
    }}"""

    def _certificate(self, block: str) -> str:
        cert, key = self._served[block]
        return f"        ssl_certificate {cert};\n        ssl_certificate_key {key};"


_HTTP_PROXY = """        if ($auth_state != ok) { return 401; }
        location / {
            proxy_pass http://triton_http;
            proxy_http_version 1.1;          # keep-alive to Triton
            proxy_set_header Connection "";
            proxy_set_header Authorization "";  # the gateway's business, not Triton's
        }"""
_GRPC_PROXY = """        if ($auth_state != ok) { return 401; }
        location / {
            grpc_pass grpc://triton_grpc;
            grpc_set_header Authorization "";
        }"""


def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # resolved now, not in the child
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def _terminate_with_parent() -> None:
    """In the child, before exec: SIGTERM when the test process dies, even by SIGKILL, so that
    no nginx outlives its tests (Linux's PR_SET_PDEATHSIG; elsewhere only stop() does it)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _read_from(path: Path, offset: int) -> str:
    if not path.exists():
        return ""
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read().decode(errors="replace")
