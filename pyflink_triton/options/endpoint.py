"""The Triton endpoints: parsing the ``endpoint`` option, building request paths, redaction.

The option names one server, or several replicas serving the same models as a comma-separated
list (:class:`Endpoints`), each in one of the forms below, all with one scheme.

Accepted forms (as Flink's Java provider accepts them): ``host:port``, a base URL
(``http://host:8000``, possibly behind a gateway path), or that URL followed by ``/v2`` or
``/v2/models``; for gRPC, ``grpc://host:8001`` (``grpcs://`` with TLS). ``user:password@`` in
the URL becomes HTTP basic auth and is never shown:
``str(endpoint)`` and every message use the redacted form.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 8001, "grpcs": 443}
_API_SUFFIXES = ("/v2/models", "/v2")
_HOST = re.compile(r"[A-Za-z0-9._:%-]+")  # a DNS name, IPv4, or IPv6 (with a zone)


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    base_path: str = ""  # a gateway prefix before /v2, without a trailing slash
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse an endpoint; raises ``ValueError`` saying what is wrong (never echoing secrets)."""
        text = text.strip()
        if not text:
            raise ValueError("the endpoint is empty")
        # urlsplit silently drops tabs and line breaks, and other control characters would
        # reach the Host header or the credentials: refuse them all, without saying where.
        if not text.isprintable():
            raise ValueError("the endpoint contains a control character (such as a tab, line "
                             "break or NUL) or another non-printable character")
        if "://" not in text:
            text = "http://" + text
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:  # its message can echo the netloc, credentials included
            raise ValueError("not a valid URL (check the host, and that the port is a number "
                             "between 1 and 65535)") from None
        if parts.scheme != text.partition("://")[0].lower():
            # urlsplit took the text before the first ':' for the scheme: 'user:pw@h/x://y'
            # gives 'user', which must not be echoed as a scheme.
            raise ValueError("not a valid URL: '://' must come right after the scheme (http, "
                             "https, grpc or grpcs)")
        scheme = parts.scheme
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"the scheme '{scheme}' is not supported; use http, https, grpc "
                             "or grpcs")
        if not parts.hostname:
            raise ValueError("the endpoint has no host")
        host = _ascii_host(parts.hostname)
        if parts.query or parts.fragment:
            raise ValueError("the endpoint must not have a query string or fragment")
        if port == 0:
            raise ValueError("the port must be between 1 and 65535")
        # (percent-encoded where it is not ASCII: it goes into every request line as is)
        path = quote(parts.path.rstrip("/"), safe="/%:@!$&'()*+,;=")
        for suffix in _API_SUFFIXES:
            if path.endswith(suffix):
                path = path[: -len(suffix)]
                break
        if path and scheme.startswith("grpc"):
            raise ValueError("a gRPC endpoint has no path; use grpc://host:port")
        # Credentials are percent-encoded in URLs: that is how '@' or ':' get into a password.
        username = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        # Basic auth is base64, so a control character cannot inject; it is still a mistake.
        if not f"{username or ''}{password or ''}".isprintable():
            raise ValueError("the user name or password contains a percent-encoded control "
                             "character or another non-printable character")
        return cls(scheme, host, port or _DEFAULT_PORTS[scheme], path, username, password)

    @property
    def use_tls(self) -> bool:
        return self.scheme in ("https", "grpcs")

    @property
    def protocol(self) -> str:
        """The protocol the scheme names: 'grpc' for grpc(s)://, else 'http'."""
        return "grpc" if self.scheme.startswith("grpc") else "http"

    @property
    def address(self) -> str:
        """host:port, as gRPC channels take it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def has_credentials(self) -> bool:
        return self.username is not None

    def path(self, *segments: str) -> str:
        """The request path for ``/v2/<segments...>``, each segment URL-quoted."""
        return self.base_path + "/v2" + "".join("/" + quote(s, safe="") for s in segments)

    def basic_auth_header(self) -> str | None:
        if self.username is None:
            return None
        token = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        userinfo = "***@" if self.has_credentials else ""
        return f"{self.scheme}://{userinfo}{host}:{self.port}{self.base_path}"


@dataclass(frozen=True)
class Endpoints:
    """The ``endpoint`` option: the servers a function sends to, in the order given (which
    decides nothing: sequences are placed by a hash of the server's URL, not its position)."""

    servers: tuple[Endpoint, ...]

    @classmethod
    def parse(cls, text: str) -> Endpoints:
        """One endpoint, or several separated by commas; raises ``ValueError`` naming the
        server at fault by its position (never echoing secrets)."""
        parts = text.split(",")
        if len(parts) == 1:
            return cls((Endpoint.parse(text),))
        servers = []
        for number, part in enumerate(parts, start=1):
            where = f"server {number} of {len(parts)} in the comma-separated list"
            if not part.strip():
                raise ValueError(f"{where} is empty")
            try:
                servers.append(Endpoint.parse(part))
            except ValueError as e:
                raise ValueError(f"{where}: {e} (a ',' in a user name or password is written "
                                 "%2C)") from None
        schemes = sorted({server.scheme for server in servers})
        if len(schemes) > 1:
            raise ValueError(f"the servers mix the schemes {' and '.join(schemes)}; replicas "
                             "of one model are reached in one way (one protocol, TLS or not)")
        seen: set[str] = set()
        for server in servers:
            if str(server) in seen:
                raise ValueError(f"the server {server} is listed twice")
            seen.add(str(server))
        return cls(tuple(servers))

    @property
    def protocol(self) -> str:
        return self.servers[0].protocol  # (one scheme for all: parse() checks it)

    @property
    def use_tls(self) -> bool:
        return self.servers[0].use_tls

    @property
    def has_credentials(self) -> bool:
        return any(server.has_credentials for server in self.servers)

    @property
    def has_path(self) -> bool:
        return any(server.base_path for server in self.servers)

    def __len__(self) -> int:
        return len(self.servers)

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self.servers)

    def __str__(self) -> str:
        return ", ".join(str(server) for server in self.servers)


def _ascii_host(host: str) -> str:
    """The host as it goes on the wire (Host header, TLS name, DNS): an internationalized
    domain name in its IDNA (punycode) form."""
    try:
        ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    if not _HOST.fullmatch(ascii_host):
        raise ValueError("the host is not a valid host name or IP address (letters, digits, "
                         "'.', '-' and '_'; an internationalized domain name may be written "
                         "in its punycode form, xn--...)")
    return ascii_host


def redact_url_credentials(url: str) -> str:
    """``url`` with everything before the last ``@`` of its authority replaced by ``***``.

    Works on text that is not a valid URL too (it is used to echo rejected endpoint values):
    a password may contain '@', spaces or anything else, so nothing before the last '@' is kept.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or "@" in scheme:  # no scheme, or '://' after the credentials
        scheme, separator, rest = "", "", url
    if "@" not in rest:
        return url
    return f"{scheme}{separator}***@{rest.rsplit('@', 1)[1]}"
