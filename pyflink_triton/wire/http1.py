"""Just enough HTTP/1.1 for KServe v2: one request at a time per keep-alive connection.

The request is written with one ``sendall`` and the response is read into a buffer. This costs
far less CPU per request than ``http.client`` (whose header parsing goes through the ``email``
package) or aiohttp. At ~2k requests/s per subtask, that CPU is part of every row's latency.
Responses are delimited by Content-Length or chunked encoding; without either, the body runs
until the server closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

MAX_HEAD = 64 * 1024  # a response head larger than this is not a Triton server's
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")  # a chunk size, below 2^60 bytes


class ProtocolError(OSError):
    """The peer's answer is not HTTP/1.x as expected."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    @property
    def will_close(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


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


def _body_length(headers: Mapping[str, str]) -> int | None:
    """The body's length, or None when it is chunked or runs to the end of the connection."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None
    length = headers.get("content-length")
    if length is None:
        return None
    if not length.isdigit():
        raise ProtocolError(f"invalid Content-Length {length[:40]!r}")
    return int(length)


def chunk_size(line: bytes) -> int:
    """The size of a chunk from its size line (hex digits, optionally ``;extensions``)."""
    digits = line.split(b";")[0].strip()
    if not _HEX.fullmatch(digits):  # (int() would also take "-1", "0x1f" and "1_f")
        raise ProtocolError(f"invalid chunk size {digits[:40]!r}")
    return int(digits, 16)


class Connection:
    """A blocking keep-alive connection."""

    def __init__(self, host: str, port: int, timeout: float,
                 tls: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = tls.wrap_socket(sock, server_hostname=host) if tls else sock
        self._buffer = bytearray()

    def exchange(self, request: bytes) -> Response:
        self.send(request)
        return self.receive()

    def send(self, request: bytes) -> None:
        """Write the whole request. If this fails, the server has not got all of it, so it
        cannot have processed it; a failure after it (:meth:`receive`) says nothing."""
        self.sock.sendall(request)

    def receive(self) -> Response:
        head = self._read_until(b"\r\n\r\n")
        status, headers = parse_head(head)
        if status in (204, 304):
            return Response(status, headers, b"")
        length = _body_length(headers)
        if length is not None:
            body = self._read_exactly(length)
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        else:
            body = self._read_to_end()
            headers["connection"] = "close"
        return Response(status, headers, body)

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionResetError("the server closed the connection")
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
        while len(self._buffer) < length:
            self._fill()
        data = bytes(self._buffer[:length])
        del self._buffer[:length]
        return data

    def _read_chunked(self) -> bytes:
        chunks = []
        while size := chunk_size(self._read_until(b"\r\n")):
            chunks.append(self._read_exactly(size))
            self._read_until(b"\r\n")
        while self._read_until(b"\r\n"):  # trailers, up to the blank line
            pass
        return b"".join(chunks)

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

    @classmethod
    async def open(cls, host: str, port: int, tls: ssl.SSLContext | None) -> AsyncConnection:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls, limit=MAX_HEAD)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    @property
    def closed_by_peer(self) -> bool:
        return self._reader.at_eof() or self._writer.is_closing()

    async def exchange(self, request: bytes) -> Response:
        self._writer.write(request)
        reader = self._reader
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("the server closed the connection") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError("response head too large") from None
        status, headers = parse_head(head[:-4])
        length = _body_length(headers)
        try:
            if length is not None:
                body = await reader.readexactly(length)
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                body = await self._read_chunked()
            else:
                body = await reader.read()
                headers["connection"] = "close"
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("the server closed the connection") from None
        return Response(status, headers, body)

    async def _read_chunked(self) -> bytes:
        reader, chunks = self._reader, []
        while size := chunk_size(await self._line()):
            chunks.append(await reader.readexactly(size))
            await self._line()
        while (await self._line()).strip():  # trailers, up to the blank line
            pass
        return b"".join(chunks)

    async def _line(self) -> bytes:
        line = await self._reader.readline()
        if not line.endswith(b"\n"):  # (the stream ended: the body was cut short)
            raise ConnectionResetError("the server closed the connection")
        return line

    def close(self) -> None:
        """Start closing (the socket is released once the loop runs on); see :meth:`aclose`."""
        self._writer.close()

    async def aclose(self) -> None:
        """Close and wait until the socket is released."""
        self._writer.close()
        with contextlib.suppress(OSError):  # (a reset connection closes all the same)
            await self._writer.wait_closed()
