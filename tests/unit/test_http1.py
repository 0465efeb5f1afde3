"""HTTP/1.1 framing (pyflink_triton.wire.http1) against canned server bytes over a socket pair:
Content-Length, chunked and close-delimited bodies, keep-alive reuse, malformed answers."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from pyflink_triton.wire import http1


def serve(answer: bytes, close: bool = False) -> tuple[socket.socket, threading.Thread]:
    """A socket whose peer reads one request and writes ``answer``."""
    client, server = socket.socketpair()

    def run() -> None:
        server.recv(65536)
        server.sendall(answer)
        if close:
            server.close()

    thread = threading.Thread(target=run)
    thread.start()
    return client, thread


def connection_over(sock: socket.socket) -> http1.Connection:
    connection = http1.Connection.__new__(http1.Connection)
    connection.sock, connection._buffer = sock, bytearray()
    return connection


@pytest.mark.parametrize("answer, body", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nX-Trailer: t\r\n\r\n", b"hello"),
    (b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nhello", b"hello"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
])
def test_bodies_by_length_chunks_or_close(answer, body):
    sock, thread = serve(answer, close=True)
    response = connection_over(sock).exchange(b"GET / HTTP/1.1\r\n\r\n")
    thread.join()
    assert response.body == body


def test_headers_are_lower_case_and_connection_close_is_seen():
    sock, thread = serve(b"HTTP/1.1 400 Bad Request\r\nInference-Header-Content-Length: 2\r\n"
                         b"Connection: close\r\nContent-Length: 2\r\n\r\n{}")
    response = connection_over(sock).exchange(b"POST /x HTTP/1.1\r\n\r\n")
    thread.join()
    assert (response.status, response.headers["inference-header-content-length"]) == (400, "2")
    assert response.will_close


@pytest.mark.parametrize("answer, error", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x1\r\n\r\n", "invalid Content-Length"),
])
def test_malformed_answers_are_protocol_errors(answer, error):
    sock, thread = serve(answer)
    with pytest.raises(http1.ProtocolError, match=error):
        connection_over(sock).exchange(b"GET / HTTP/1.1\r\n\r\n")
    thread.join()


def test_a_body_cut_short_is_a_connection_error():
    sock, thread = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close=True)
    with pytest.raises(ConnectionResetError):
        connection_over(sock).exchange(b"GET / HTTP/1.1\r\n\r\n")
    thread.join()


def test_encode_request_frames_one_write():
    head = http1.encode_head("::1", 8000, {"Authorization": "Bearer t"})
    wire = http1.encode_request("POST", "/v2/models/m/infer", head, {"X-A": "1"}, b"body")
    assert wire == (b"POST /v2/models/m/infer HTTP/1.1\r\nHost: [::1]:8000\r\n"
                    b"Authorization: Bearer t\r\nX-A: 1\r\nContent-Length: 4\r\n\r\nbody")


def test_async_connection_reads_two_responses_on_one_connection():
    async def run() -> list[bytes]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for body in (b"one", b"second"):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connection = await http1.AsyncConnection.open("127.0.0.1", port, None)
        bodies = [(await connection.exchange(b"GET / HTTP/1.1\r\n\r\n")).body
                  for _ in range(2)]
        connection.close()
        server.close()
        return bodies

    assert asyncio.run(run()) == [b"one", b"second"]


# --- malformed chunk sizes: a protocol error, and the connection is never used again (issue 15)

@pytest.mark.parametrize("size", [b"zz", b"-1", b"0x5", b"1_0", b"+5", b"12345678901234567"])
def test_a_malformed_chunk_size_is_a_protocol_error(size):
    sock, thread = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size
                         + b"\r\nhello\r\n0\r\n\r\n")
    with pytest.raises(http1.ProtocolError, match="invalid chunk size"):
        connection_over(sock).exchange(b"GET / HTTP/1.1\r\n\r\n")
    thread.join()


async def exchange_async(answer: bytes, close: bool = False) -> http1.Response:
    """One exchange of an AsyncConnection with a server that answers ``answer`` (and then
    closes the connection, if ``close``)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        if close:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection = await http1.AsyncConnection.open("127.0.0.1", port, None)
    try:
        return await connection.exchange(b"GET / HTTP/1.1\r\n\r\n")
    finally:
        await connection.aclose()
        server.close()
        await server.wait_closed()


def test_the_async_connection_refuses_a_malformed_chunk_size_too():
    with pytest.raises(http1.ProtocolError, match="invalid chunk size"):
        asyncio.run(exchange_async(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))


def test_the_blocking_transport_discards_a_connection_after_a_protocol_error():
    """The first answer is garbled: its request fails as a connection error naming model and
    endpoint, and the next request opens a new connection rather than reading the rest."""
    from pyflink_triton.errors import TritonConnectionError
    from pyflink_triton.options import TritonOptions
    from pyflink_triton.wire.http import HttpTransport
    from pyflink_triton.wire.request import ModelRef

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []  # (kept open: a reused one would wait for an answer)

    def run() -> None:
        for answer in (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                       b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}'):
            listener.settimeout(5)
            peer, _ = listener.accept()
            accepted.append(peer)
            peer.recv(65536)
            peer.sendall(answer)

    thread = threading.Thread(target=run)
    thread.start()
    options = TritonOptions.from_dict(
        {"endpoint": f"http://127.0.0.1:{port}", "model-name": "m", "timeout": "3 s"})
    transport = HttpTransport.for_options(options, options.endpoint.servers[0])
    try:
        with pytest.raises(TritonConnectionError) as info:
            transport.model_config(ModelRef("m"))
        assert f"http://127.0.0.1:{port}" in str(info.value) and "'m'" in str(info.value)
        assert "invalid chunk size" in str(info.value)
        assert transport.model_config(ModelRef("m")) == {}
    finally:
        transport.close()
        thread.join()
        listener.close()
        for peer in accepted:
            peer.close()
    assert len(accepted) == 2


@pytest.mark.parametrize("rest, error", [
    (b"5\r\nhello\r\n", ConnectionResetError),  # cut short: a transient failure
    (b"", ConnectionResetError),
    (b"5\r\nhello\r\n\r\n", http1.ProtocolError),  # a blank size line: malformed
])
def test_a_chunked_body_cut_short_is_never_a_shorter_answer(rest, error):
    """Before, the end of the stream read as the last chunk: the partial body was returned."""
    with pytest.raises(error):
        asyncio.run(exchange_async(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + rest, close=True))


def test_a_body_larger_than_one_allocation_step_is_read_whole():
    body = bytes(range(256)) * (3 * http1._BODY_STEP // 256 + 7)  # over three steps
    sock, thread = serve(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    response = connection_over(sock).exchange(b"GET / HTTP/1.1\r\n\r\n")
    thread.join()
    assert response.body == body


def test_a_bogus_content_length_is_a_cut_body_not_an_allocation_of_it():
    # (a terabyte announced, five bytes sent: the connection fails as a cut body does, having
    # allocated one step)
    sock, thread = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\nhello",
                         close=True)
    with pytest.raises(ConnectionResetError):
        connection_over(sock).exchange(b"GET / HTTP/1.1\r\n\r\n")
    thread.join()


@pytest.mark.parametrize("answer, body", [
    (b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", b""),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n", b"hello"),
])
def test_the_async_connection_frames_bodies_as_the_blocking_one(answer, body):
    sock, thread = serve(answer, close=True)
    blocking = connection_over(sock).exchange(b"GET / HTTP/1.1\r\n\r\n").body
    thread.join()
    assert blocking == asyncio.run(exchange_async(answer, close=True)).body == body


def test_the_async_connection_refuses_an_overlong_chunk_size_line_as_the_blocking_one():
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              + b"0" * (http1.MAX_HEAD + 10) + b"\r\n")
    # (a ProtocolError either way: not a bare ValueError, which would not be retried)
    sock, thread = serve(answer, close=True)
    with pytest.raises(http1.ProtocolError):
        connection_over(sock).exchange(b"GET / HTTP/1.1\r\n\r\n")
    thread.join()
    with pytest.raises(http1.ProtocolError):
        asyncio.run(exchange_async(answer, close=True))
