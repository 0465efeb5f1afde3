"""Just enough HTTP/1.1 for KServe v2: one request at a time per keep-alive connection.

The request is written with one ``sendall`` and the response is read into a buffer. This costs
far less CPU per request than ``http.client`` (whose header parsing goes through the ``email``
package) or aiohttp. At ~2k requests/s per subtask, that CPU is part of every row's latency.
Responses are delimited by Content-Length or chunked encoding; without either, the body runs
until the server closes the connection.

The framing rules exist once, without I/O (as in h11, scaled down): :func:`encode_request`
builds the bytes to write, and a :class:`ResponseParser` says what it needs next (the bytes up
to a delimiter, exactly N bytes, or the rest of the stream), is fed exactly that, and gives the
:class:`Response`. :class:`Connection` (blocking socket) and :class:`AsyncConnection` (asyncio
streams) only read what the parser asks for, in bulk, each with its own buffering.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import socket
import ssl
from collections.abc import Mapping
from typing import NamedTuple

MAX_HEAD = 64 * 1024  # a response head larger than this is not a Triton server's
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")  # a chunk size, below 2^60 bytes


class ProtocolError(OSError):
    """The peer's answer is not HTTP/1.x as expected."""


class Response(NamedTuple):  # (immutable, and cheaper to make than a frozen dataclass)
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    @property
    def will_close(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


# --- requests -------------------------------------------------------------------------------

def encode_request(method: str, path: str, head: bytes, headers: Mapping[str, str],
                   body: bytes | None) -> bytes:
    """``head``: the encoded header lines common to every request (Host, auth...)."""
    lines = [f"{method} {path} HTTP/1.1\r\n".encode("latin-1"), head]
    lines.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items())
    if body is not None:
        lines.append(f"Content-Length: {len(body)}\r\n".encode("latin-1"))
    lines.append(b"\r\n")
    if body:
        lines.append(body)
    return b"".join(lines)


def encode_head(host: str, port: int, headers: Mapping[str, str]) -> bytes:
    host_value = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    fields = {"Host": host_value, **headers}
    return "".join(f"{name}: {value}\r\n" for name, value in fields.items()).encode("latin-1")


# --- responses, without I/O -----------------------------------------------------------------

# What a ResponseParser needs next, read whole by the connection and fed to it:
#   an int N  -> exactly N bytes (a body, a chunk's data); the stream ending first is a
#                ConnectionResetError;
#   bytes D   -> the bytes up to the delimiter D, which is consumed but not fed; more than
#                MAX_HEAD bytes without it is a ProtocolError ("response head too large"), the
#                stream ending first a ConnectionResetError;
#   TO_END    -> every byte until the peer closes the connection (a body with no length).
# (Plain values rather than classes: the needs are read on every request, at ~2k/s.)
Need = int | bytes | None
HEAD: bytes = b"\r\n\r\n"  # the status line and the header lines
LINE: bytes = b"\r\n"  # a chunk-size line, the end of a chunk, a trailer line
TO_END = None

# ResponseParser's states: what the next bytes fed are.
(_AT_HEAD, _AT_BODY, _AT_REST, _AT_CHUNK_SIZE, _AT_CHUNK_DATA, _AT_CHUNK_END, _AT_TRAILER,
 _COMPLETE) = range(8)


class ResponseParser:
    """The responses of one connection, without I/O: :attr:`need` says what to read next;
    :meth:`feed` takes exactly that and returns the :class:`Response` once complete (None until
    then); :meth:`start` begins the next response (h11's ``start_next_cycle``).

    One parser per connection rather than per response: every object made per request also
    costs garbage-collector time. What is read past a response stays in the connection's
    buffer, for the next one.
    """

    __slots__ = ("_chunks", "_headers", "_state", "_status", "need")
    need: Need
    _state: int
    _status: int  # } set by the head: not before
    _headers: dict[str, str]  # }
    _chunks: list[bytes]  # set by the head of a chunked body

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        """Expect a new response (whatever the state: after an error too)."""
        self.need = HEAD
        self._state = _AT_HEAD

    def feed(self, data: bytes) -> Response | None:
        state = self._state
        if state == _AT_HEAD:
            self._status, self._headers = parse_head(data)
            return self._after_head()
        if state == _AT_BODY:
            self._state = _COMPLETE
            return Response(self._status, self._headers, data)
        if state == _AT_CHUNK_SIZE:
            size = chunk_size(data)
            if size:
                self._state, self.need = _AT_CHUNK_DATA, size
            else:  # the last chunk: trailers follow, up to a blank line (need: LINE still)
                self._state = _AT_TRAILER
            return None
        if state == _AT_CHUNK_DATA:
            self._chunks.append(data)
            self._state, self.need = _AT_CHUNK_END, LINE  # (the CR LF after the data)
            return None
        if state == _AT_CHUNK_END:
            self._state = _AT_CHUNK_SIZE
            return None
        if state == _AT_TRAILER:  # (trailer fields are not used: skipped)
            if data:
                return None
            body = b"".join(self._chunks)
            self._chunks.clear()  # (not kept until the next response)
            return self._done(body)
        if state == _AT_REST:
            self._headers["connection"] = "close"  # (the end of the body closed it)
            return self._done(data)
        raise RuntimeError("the response is complete: start() the next one first")

    def _after_head(self) -> Response | None:
        """How the body is delimited (the next need), or the response if it has none."""
        headers = self._headers
        if self._status in (204, 304):  # never a body, whatever the headers say
            return self._done(b"")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state, self.need, self._chunks = _AT_CHUNK_SIZE, LINE, []
            return None
        length = headers.get("content-length")
        if length is None:
            self._state, self.need = _AT_REST, TO_END
            return None
        if not length.isdigit():
            raise ProtocolError(f"invalid Content-Length {length[:40]!r}")
        if length == "0":
            return self._done(b"")
        self._state, self.need = _AT_BODY, int(length)
        return None

    def _done(self, body: bytes) -> Response:
        self._state = _COMPLETE
        return Response(self._status, self._headers, body)


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and headers of a response head (the bytes before the blank line)."""
    status_line, _, rest = head.partition(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x response: {status_line[:80]!r}")
    headers = {}
    for line in rest.split(b"\r\n"):
        name, separator, value = line.partition(b":")
        if separator:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return int(parts[1]), headers


def chunk_size(line: bytes) -> int:
    """The size of a chunk from its size line (hex digits, optionally ``;extensions``)."""
    digits = line.split(b";")[0].strip()
    if not _HEX.fullmatch(digits):  # (int() would also take "-1", "0x1f" and "1_f")
        raise ProtocolError(f"invalid chunk size {digits[:40]!r}")
    return int(digits, 16)


# --- the I/O: read what the parser needs ----------------------------------------------------

_CLOSED = "the server closed the connection"
_BODY_STEP = 16 * 1024 * 1024  # bytes of a body allocated ahead of their arrival, at most


class Connection:
    """A blocking keep-alive connection."""

    _parser: ResponseParser | None = None  # made by the first receive()

    def __init__(self, host: str, port: int, timeout: float,
                 tls: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = tls.wrap_socket(sock, server_hostname=host) if tls else sock
        self._buffer = bytearray()  # read from the socket, not parsed yet

    def exchange(self, request: bytes) -> Response:
        self.send(request)
        return self.receive()

    def send(self, request: bytes) -> None:
        """Write the whole request. If this fails, the server has not got all of it, so it
        cannot have processed it; a failure after it (:meth:`receive`) says nothing."""
        self.sock.sendall(request)

    def receive(self) -> Response:
        parser = self._parser
        if parser is None:
            parser = self._parser = ResponseParser()
        else:
            parser.start()
        while True:
            need = parser.need
            if isinstance(need, int):
                data = self._read_exactly(need)
            elif need is TO_END:
                data = self._read_to_end()
            else:
                data = self._read_until(need)
            if (response := parser.feed(data)) is not None:
                return response

    @property
    def closed_by_peer(self) -> bool:
        """An idle keep-alive socket has nothing to read; readable means the server closed
        it (checked before reuse, so that a request is never sent on a dead connection)."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionResetError(_CLOSED)
        self._buffer += data

    def _read_until(self, delimiter: bytes) -> bytes:
        start = 0
        while (end := self._buffer.find(delimiter, start)) < 0:
            if len(self._buffer) > MAX_HEAD:
                raise ProtocolError("response head too large")
            start = max(0, len(self._buffer) - len(delimiter) + 1)
            self._fill()
        line = bytes(self._buffer[:end])
        del self._buffer[:end + len(delimiter)]
        return line

    def _read_exactly(self, length: int) -> bytes:
        buffer = self._buffer
        have = len(buffer)
        if have >= length:
            data = bytes(buffer[:length])
            del buffer[:length]
            return data
        # The rest is read straight into the body (one copy from the kernel), not through the
        # buffer. Never past the body: the next response's bytes stay in the socket. The body
        # grows by at most _BODY_STEP ahead of what arrived: a bogus Content-Length must not
        # take the worker's memory before any byte of it comes.
        body = bytearray(min(length, have + _BODY_STEP))
        body[:have] = buffer
        buffer.clear()
        while have < length:
            if have == len(body):
                body += bytes(min(length - have, _BODY_STEP))
            with memoryview(body) as view:
                received = self.sock.recv_into(view[have:])
            if not received:
                raise ConnectionResetError(_CLOSED)
            have += received
        return bytes(body)

    def _read_to_end(self) -> bytes:
        try:
            while True:
                self._fill()
        except ConnectionResetError:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data


class AsyncConnection:
    """An asyncio keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._parser = ResponseParser()

    @classmethod
    async def open(cls, host: str, port: int, tls: ssl.SSLContext | None) -> AsyncConnection:
        # limit: readuntil() fails past MAX_HEAD bytes without the delimiter.
        reader, writer = await asyncio.open_connection(host, port, ssl=tls, limit=MAX_HEAD)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    @property
    def closed_by_peer(self) -> bool:
        return self._reader.at_eof() or self._writer.is_closing()

    async def exchange(self, request: bytes) -> Response:
        self._writer.write(request)  # (flushed while the answer is awaited)
        reader, parser = self._reader, self._parser
        parser.start()
        try:
            while True:
                need = parser.need
                if isinstance(need, int):
                    data = await reader.readexactly(need)
                elif need is TO_END:
                    data = await reader.read()
                else:
                    data = (await reader.readuntil(need))[:-len(need)]
                if (response := parser.feed(data)) is not None:
                    return response
        except asyncio.IncompleteReadError:
            raise ConnectionResetError(_CLOSED) from None
        except asyncio.LimitOverrunError:
            raise ProtocolError("response head too large") from None

    def close(self) -> None:
        """Start closing (the socket is released once the loop runs on); see :meth:`aclose`."""
        self._writer.close()

    async def aclose(self) -> None:
        """Close and wait until the socket is released."""
        self._writer.close()
        with contextlib.suppress(OSError):  # (a reset connection closes all the same)
            await self._writer.wait_closed()
