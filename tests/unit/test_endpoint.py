"""Unit tests of pyflink_triton.options.endpoint: parsing, paths, basic auth and redaction."""

from __future__ import annotations

import base64

import pytest

from pyflink_triton.options.endpoint import Endpoint, Endpoints, redact_url_credentials

PASSWORD = "hunter2pass"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


# --- accepted forms ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, scheme, host, port, base_path", [
    # host:port (and bare host) default to http
    ("localhost:8000", "http", "localhost", 8000, ""),
    ("triton-server:8000", "http", "triton-server", 8000, ""),
    ("10.0.0.5:8001", "http", "10.0.0.5", 8001, ""),
    ("triton", "http", "triton", 80, ""),
    ("triton/v2", "http", "triton", 80, ""),
    # base URLs
    ("http://triton:8000", "http", "triton", 8000, ""),
    ("https://triton:8443", "https", "triton", 8443, ""),
    ("http://triton", "http", "triton", 80, ""),
    ("https://triton", "https", "triton", 443, ""),
    # /v2 and /v2/models suffixes, trailing slashes
    ("http://triton:8000/", "http", "triton", 8000, ""),
    ("http://triton:8000//", "http", "triton", 8000, ""),
    ("http://triton:8000/v2", "http", "triton", 8000, ""),
    ("http://triton:8000/v2/", "http", "triton", 8000, ""),
    ("http://triton:8000/v2/models", "http", "triton", 8000, ""),
    ("http://triton:8000/v2/models/", "http", "triton", 8000, ""),
    ("https://triton-server:8000/v2/models", "https", "triton-server", 8000, ""),
    ("https://triton/v2/models", "https", "triton", 443, ""),
    ("localhost:8000/v2/models", "http", "localhost", 8000, ""),
    # gateway prefixes
    ("https://gw.example.com/triton", "https", "gw.example.com", 443, "/triton"),
    ("https://gw.example.com/triton/", "https", "gw.example.com", 443, "/triton"),
    ("https://gw.example.com/ml/triton/v2", "https", "gw.example.com", 443, "/ml/triton"),
    ("https://gw.example.com/ml/triton/v2/models/", "https", "gw.example.com", 443,
     "/ml/triton"),
    ("http://gw:9000/a/b/c", "http", "gw", 9000, "/a/b/c"),
    ("http://gw/models", "http", "gw", 80, "/models"),
    ("http://gw/v2models", "http", "gw", 80, "/v2models"),
    ("http://gw/v2/v2", "http", "gw", 80, "/v2"),
    # scheme case, host case, whitespace
    ("HTTP://triton:1", "http", "triton", 1, ""),
    ("HttpS://Triton.Example.COM", "https", "triton.example.com", 443, ""),
    ("  http://triton:8000  ", "http", "triton", 8000, ""),
    ("http://triton:65535", "http", "triton", 65535, ""),
    # IPv6
    ("[::1]:8000", "http", "::1", 8000, ""),
    ("http://[::1]:8000/v2", "http", "::1", 8000, ""),
    ("https://[2001:db8::5]", "https", "2001:db8::5", 443, ""),
    ("http://[fe80::1]/gw/v2/models", "http", "fe80::1", 80, "/gw"),
    # gRPC
    ("grpc://triton:8001", "grpc", "triton", 8001, ""),
    ("grpc://triton", "grpc", "triton", 8001, ""),
    ("GRPCS://triton", "grpcs", "triton", 443, ""),
    ("grpc://[::1]:9001", "grpc", "::1", 9001, ""),
])
def test_parse_accepted_forms(text, scheme, host, port, base_path):
    endpoint = Endpoint.parse(text)
    assert (endpoint.scheme, endpoint.host, endpoint.port, endpoint.base_path) == (
        scheme, host, port, base_path)
    assert endpoint.username is None
    assert endpoint.password is None
    assert endpoint.has_credentials is False
    assert endpoint.basic_auth_header() is None


@pytest.mark.parametrize("text, use_tls", [
    ("http://h:1", False), ("h:1", False), ("https://h:1", True), ("HTTPS://h", True),
])
def test_use_tls(text, use_tls):
    assert Endpoint.parse(text).use_tls is use_tls


def test_all_forms_of_the_same_server_are_equal():
    forms = ["triton:8000", "http://triton:8000", "http://triton:8000/", "http://triton:8000/v2",
             "http://triton:8000/v2/", "http://triton:8000/v2/models",
             "http://triton:8000/v2/models/"]
    assert {Endpoint.parse(form) for form in forms} == {Endpoint("http", "triton", 8000)}


# --- request paths -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, segments, path", [
    ("h:1", (), "/v2"),
    ("h:1", ("models", "m", "infer"), "/v2/models/m/infer"),
    ("h:1/v2/models", ("models", "m", "versions", "3", "infer"),
     "/v2/models/m/versions/3/infer"),
    ("https://gw/triton/v2/models", ("models", "m", "infer"), "/triton/v2/models/m/infer"),
    ("h:1", ("models", "my model", "infer"), "/v2/models/my%20model/infer"),
    ("h:1", ("models", "a/b", "ready"), "/v2/models/a%2Fb/ready"),
    ("h:1", ("models", "q?x#y", "ready"), "/v2/models/q%3Fx%23y/ready"),
    ("h:1", ("health", "ready"), "/v2/health/ready"),
])
def test_path(text, segments, path):
    assert Endpoint.parse(text).path(*segments) == path


# --- credentials ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, user, password, host, port", [
    ("https://alice:s3cret@triton:8443", "alice", "s3cret", "triton", 8443),
    ("http://alice:s3cret@triton", "alice", "s3cret", "triton", 80),
    ("alice:s3cret@triton:8000", "alice", "s3cret", "triton", 8000),
    ("http://alice:s3cret@[::1]:8000/v2/models", "alice", "s3cret", "::1", 8000),
    ("http://alice:s3c:ret@triton:1", "alice", "s3c:ret", "triton", 1),
    ("http://alice:@triton:1", "alice", "", "triton", 1),
])
def test_credentials_become_basic_auth(text, user, password, host, port):
    endpoint = Endpoint.parse(text)
    assert endpoint.has_credentials is True
    assert endpoint.username == user
    assert endpoint.password == password
    assert (endpoint.host, endpoint.port) == (host, port)
    assert endpoint.basic_auth_header() == basic(user, password)


def test_username_only_gives_empty_password():
    endpoint = Endpoint.parse("http://alice@triton:8000")
    assert endpoint.has_credentials is True
    assert endpoint.basic_auth_header() == basic("alice", "")


def test_basic_auth_header_value():
    assert Endpoint.parse("https://u:p@h").basic_auth_header() == "Basic dTpw"


@pytest.mark.parametrize("text, user, password", [
    ("http://alice:p%40ss@triton:1", "alice", "p@ss"),
    ("http://alice:p%3Ass@triton:1", "alice", "p:ss"),
    ("http://al%20ice:p%2Fss@triton:1", "al ice", "p/ss"),
    ("http://alice:p%C3%A4ss@triton:1", "alice", "p\u00e4ss"),  # UTF-8, as browsers send it
])
def test_percent_encoded_credentials_are_decoded(text, user, password):
    """RFC 3986 userinfo is percent-encoded: the only way to put '@', ':' or '/' in it."""
    assert Endpoint.parse(text).basic_auth_header() == basic(user, password)


# --- str() and repr() redaction ------------------------------------------------------------------

@pytest.mark.parametrize("text, shown", [
    ("localhost:8000", "http://localhost:8000"),
    ("https://triton", "https://triton:443"),
    ("https://triton-server:8000/v2/models", "https://triton-server:8000"),
    ("https://gw/triton/v2", "https://gw:443/triton"),
    ("http://[::1]:8000", "http://[::1]:8000"),
    ("https://alice:hunter2pass@triton:8443/v2", "https://***@triton:8443"),
    ("http://alice@triton", "http://***@triton:80"),
    ("http://alice:hunter2pass@[::1]:8000/gw", "http://***@[::1]:8000/gw"),
])
def test_str(text, shown):
    assert str(Endpoint.parse(text)) == shown


def test_str_round_trips_without_credentials():
    for text in ["h:1", "https://h", "https://gw:9/p/q/v2/models", "http://[::1]:5"]:
        endpoint = Endpoint.parse(text)
        assert Endpoint.parse(str(endpoint)) == endpoint


def test_repr_and_format_never_show_credentials():
    endpoint = Endpoint.parse("https://alice:hunter2pass@triton:8443")
    for text in (str(endpoint), repr(endpoint), f"{endpoint}", f"{endpoint!r}"):
        assert PASSWORD not in text
        assert "alice" not in text


# --- rejected forms ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("ftp://triton:21", "scheme 'ftp'"),
    ("grpc://triton:8001/gateway", "a gRPC endpoint has no path"),
    ("file:///tmp/x", "scheme 'file'"),
    ("ws://triton:8000", "scheme 'ws'"),
    ("://triton", "scheme ''"),
    ("http://", "no host"),
    ("https:///v2", "no host"),
    ("http://:8000", "no host"),
    ("http://triton:notaport", "port"),
    ("http://triton:99999", "port"),
    ("http://triton:65536", "port"),
    ("http://triton:-1", "port"),
    ("triton:abc", "port"),
    ("http://triton:8000?x=1", "query string"),
    ("http://triton:8000/v2#frag", "fragment"),
])
def test_parse_rejects(text, fragment):
    with pytest.raises(ValueError) as info:
        Endpoint.parse(text)
    assert fragment in str(info.value)


def test_scheme_error_lists_the_supported_schemes():
    with pytest.raises(ValueError, match="use http, https, grpc or grpcs"):
        Endpoint.parse("ftp://h")


def test_port_zero_is_not_silently_replaced():
    """Port 0 cannot be connected to; it must not turn into the scheme's default port."""
    try:
        endpoint = Endpoint.parse("http://triton:0")
    except ValueError as e:
        assert "port" in str(e)
    else:
        assert endpoint.port == 0


# --- no password in any error message ------------------------------------------------------------

@pytest.mark.parametrize("text", [
    f"ftp://alice:{PASSWORD}@triton:21",
    f"http://alice:{PASSWORD}@triton:notaport",
    f"http://alice:{PASSWORD}@triton:99999",
    f"https://alice:{PASSWORD}@triton:-5",
    f"http://alice:{PASSWORD}@triton:8000?x=1",
    f"http://alice:{PASSWORD}@triton:8000#frag",
    f"http://alice:{PASSWORD}@",
    f"http://alice:{PASSWORD}@:8000",
    f"http://alice:{PASSWORD}@[::1:8000",
    f"http://alice:{PASSWORD}@[zz]:8000",
    f"alice:{PASSWORD}@triton:notaport",
    f"http://alice:top@{PASSWORD}@triton:notaport",
])
def test_parse_errors_never_contain_the_password(text):
    with pytest.raises(ValueError) as info:
        Endpoint.parse(text)
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize("text", [
    # urlsplit drops tabs and line breaks: these used to parse as http://triton:8000
    f"http://alice:{PASSWORD}@tri\nton:8000",
    f"http://alice:{PASSWORD}@triton:80\r\n00",
    f"http://alice:{PASSWORD}\t@triton:8000",
    f"http://alice:{PASSWORD}@triton:8000/v\n2",
    # other control characters used to reach the Host header or the credentials
    f"http://alice:{PASSWORD}@triton\x00:8000",
    f"http://alice:{PASSWORD}\x1b@triton:8000",
    f"http://alice:{PASSWORD}@triton\x7f:8000",
    f"http://alice:{PASSWORD}@triton\u2028:8000",
    f"alice:{PASSWORD}@triton\x0b:8000",
])
def test_control_characters_are_refused_without_echo(text):
    with pytest.raises(ValueError) as info:
        Endpoint.parse(text)
    assert "control character" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert "alice" not in str(info.value)


@pytest.mark.parametrize("text", [
    f"http://alice:{PASSWORD}%0D%0AX-Injected:%201@triton:8000",
    f"http://alice:{PASSWORD}%00@triton:8000",
    f"http://al%0Aice:{PASSWORD}@triton:8000",
    "http://alice%09@triton:8000",
    f"http://alice:{PASSWORD}%E2%80%A8@triton:8000",
])
def test_percent_encoded_control_characters_in_credentials_are_refused(text):
    """Basic auth is base64, so they cannot inject a header, but they are certainly a mistake."""
    with pytest.raises(ValueError) as info:
        Endpoint.parse(text)
    assert "user name or password contains a percent-encoded control character" in str(
        info.value)
    assert PASSWORD not in str(info.value)
    assert "alice" not in str(info.value)


def test_a_user_name_before_a_misplaced_scheme_is_not_echoed():
    """urlsplit takes the text before the first ':' for the scheme: here the user name."""
    with pytest.raises(ValueError) as info:
        Endpoint.parse(f"alice:{PASSWORD}@triton/x://y")
    assert "'://' must come right after the scheme" in str(info.value)
    assert "alice" not in str(info.value)


def test_nfkc_netloc_error_does_not_echo_the_password():
    """urlsplit rejects a netloc that NFKC-normalises to URL syntax, quoting the netloc."""
    with pytest.raises(ValueError) as info:
        Endpoint.parse(f"http://alice:{PASSWORD}\uff03x@triton:8000")
    assert PASSWORD not in str(info.value)


# --- redact_url_credentials ----------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("http://alice:pw@h:1/v2", "http://***@h:1/v2"),
    ("https://alice@h", "https://***@h"),
    ("HTTPS://Alice:PW@h", "HTTPS://***@h"),
    ("alice:pw@h:1", "***@h:1"),  # the host:port form
    ("http://alice:top@secret@h:1", "http://***@h:1"),  # '@' inside the password
    ("http://alice:with space@h:x", "http://***@h:x"),
    ("http://h:1/v2/models/m", "http://h:1/v2/models/m"),
    ("no url here", "no url here"),
    ("", ""),
    ("grpc+tls://a:b@h:1", "grpc+tls://***@h:1"),
    ("alice:pw@h/x://y", "***@h/x://y"),  # '://' after the credentials is no scheme's
])
def test_redact_url_credentials(text, expected):
    assert redact_url_credentials(text) == expected


def test_redact_is_idempotent():
    once = redact_url_credentials("see http://a:b@h:1 and https://c@d")
    assert redact_url_credentials(once) == once


@pytest.mark.parametrize("text", [
    f"http://alice:{PASSWORD}@h:1",
    f"https://alice:{PASSWORD}@h",
    f"http://alice:top@{PASSWORD}@h:1",
    f"http://alice:x {PASSWORD}@h:1",
])
def test_redact_removes_passwords_that_endpoint_parse_accepts(text):
    assert Endpoint.parse(text).password is not None  # parse reads a password here
    redacted = redact_url_credentials(text)
    assert PASSWORD not in redacted
    assert "***@" in redacted


@pytest.mark.parametrize("text, protocol, tls, address", [
    ("http://triton:8000", "http", False, "triton:8000"),
    ("https://triton", "http", True, "triton:443"),
    ("grpc://triton", "grpc", False, "triton:8001"),
    ("grpcs://triton:9443", "grpc", True, "triton:9443"),
    ("grpc://[::1]:8001", "grpc", False, "[::1]:8001"),
])
def test_protocol_tls_and_address_follow_the_scheme(text, protocol, tls, address):
    endpoint = Endpoint.parse(text)
    assert (endpoint.protocol, endpoint.use_tls, endpoint.address) == (protocol, tls, address)


# --- what goes on the wire is ASCII (issue 15) ----------------------------------------------------

@pytest.mark.parametrize("text, host, base_path", [
    ("http://bücher.example:8000", "xn--bcher-kva.example", ""),
    ("http://h:8000/prä fix/v2", "h", "/pr%C3%A4%20fix"),
])
def test_an_international_host_and_path_go_on_the_wire_encoded(text, host, base_path):
    """Before, they reached the request line and Host header as they were: a raw
    UnicodeEncodeError in open(), outside every handler."""
    endpoint = Endpoint.parse(text)
    assert (endpoint.host, endpoint.base_path) == (host, base_path)
    assert endpoint.path("health", "live").isascii()


@pytest.mark.parametrize("text", ["http://a b:8000", "http://h*st:8000", "http://h,x:1"])
def test_a_host_that_is_no_host_name_is_refused(text):
    with pytest.raises(ValueError, match="not a valid host name"):
        Endpoint.parse(text)


# --- several servers (Endpoints) ------------------------------------------------------------------

def test_a_comma_separated_list_gives_the_servers_in_order():
    servers = Endpoints.parse(" http://a:8000 , http://u:%2C%40@b:8010/gw,c:8020 ")
    assert [(s.host, s.port, s.base_path) for s in servers] == [
        ("a", 8000, ""), ("b", 8010, "/gw"), ("c", 8020, "")]
    assert servers.servers[1].password == ",@"  # (a ',' in a password is written %2C)
    assert len(servers) == 3 and servers.protocol == "http" and not servers.use_tls
    assert servers.has_credentials and servers.has_path
    assert str(servers) == "http://a:8000, http://***@b:8010/gw, http://c:8020"


def test_one_server_is_a_list_of_one():
    servers = Endpoints.parse("grpcs://triton:8001")
    assert servers.servers == (Endpoint.parse("grpcs://triton:8001"),)
    assert servers.protocol == "grpc" and servers.use_tls and str(servers) == (
        "grpcs://triton:8001")


@pytest.mark.parametrize("text, fragment", [
    ("http://a:1,", "server 2 of 2 in the comma-separated list is empty"),
    ("http://a:1,,http://b:2", "server 2 of 3 in the comma-separated list is empty"),
    ("http://a:1,ftp://b:2", "server 2 of 2 in the comma-separated list: the scheme 'ftp'"),
    ("http://a:1,grpc://b:2", "the servers mix the schemes grpc and http"),
    ("http://a:1,https://b:2", "the servers mix the schemes http and https"),
    ("http://a:1,a:1", "the server http://a:1 is listed twice"),
])
def test_a_bad_list_names_the_server_at_fault(text, fragment):
    with pytest.raises(ValueError) as info:
        Endpoints.parse(text)
    assert fragment in str(info.value)


def test_a_raw_comma_in_a_password_is_refused_without_showing_it():
    with pytest.raises(ValueError) as info:
        Endpoints.parse(f"http://user:{PASSWORD[:4]},{PASSWORD[4:]}@triton:8000")
    message = str(info.value)
    assert "%2C" in message and PASSWORD[:4] not in message and PASSWORD[4:] not in message
