"""The sans-I/O HTTP/1.1 response parser (pyflink_triton.wire.http1.ResponseParser) on its own:
fed what it asks for, as the blocking and the asyncio connection both feed it. (The
connections over real sockets: test_http1.py.)"""

from __future__ import annotations

import pytest

from pyflink_triton.wire.http1 import HEAD, LINE, TO_END, ProtocolError, Response, ResponseParser


def _parse(stream: bytes, parser: ResponseParser | None = None) -> tuple[Response, bytes]:
    """Drive ``parser`` over ``stream`` as a connection would; the response and what is left
    (the start of the next response)."""
    parser = parser or ResponseParser()
    while True:
        need = parser.need
        if need is TO_END:
            data, stream = stream, b""
        elif isinstance(need, int):
            assert len(stream) >= need, "the stream ended inside a body"
            data, stream = stream[:need], stream[need:]
        else:
            data, found, stream = stream.partition(need)
            assert found, f"the stream ended before {need!r}"
        response = parser.feed(data)
        if response is not None:
            return response, stream


def test_a_content_length_body_is_read_whole_and_the_next_response_stays_unread():
    stream = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"
              b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    parser = ResponseParser()
    assert parser.need == HEAD
    first, rest = _parse(stream, parser)
    assert first == Response(200, {"content-length": "5", "x-a": "b"}, b"hello")
    assert not first.will_close
    parser.start()
    second, rest = _parse(rest, parser)
    assert (second.status, second.body, rest) == (404, b"", b"")


def test_a_chunked_body_is_joined_and_its_trailers_skipped():
    stream = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"4;ext=1\r\nabcd\r\n1\r\ne\r\n0\r\nTrailer: x\r\n\r\n")
    parser = ResponseParser()
    response, rest = _parse(stream, parser)
    assert (response.body, rest) == (b"abcde", b"")
    # the chunk data was asked for by size, the framing by line
    parser.start()
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked")
    assert parser.need == LINE
    parser.feed(b"3")
    assert parser.need == 3


def test_a_body_without_length_runs_to_the_end_and_closes_the_connection():
    response, _ = _parse(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
    assert response.body == b"all of it"
    assert response.will_close


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_after_204_or_304_whatever_the_headers_say(status):
    head = f"HTTP/1.1 {status} X\r\nContent-Length: 7".encode()
    assert ResponseParser().feed(head) == Response(status, {"content-length": "7"}, b"")


@pytest.mark.parametrize(("head", "message"), [
    (b"SMTP ready", "not an HTTP/1.x response"),
    (b"HTTP/1.1 OK", "not an HTTP/1.x response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1", "invalid Content-Length"),
])
def test_a_malformed_head_is_a_protocol_error(head, message):
    with pytest.raises(ProtocolError, match=message):
        ResponseParser().feed(head)


@pytest.mark.parametrize("size", [b"-1", b"0x1f", b"1_f", b"", b"1234567890abcdef0"])
def test_a_malformed_chunk_size_is_a_protocol_error(size):
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked")
    with pytest.raises(ProtocolError, match="invalid chunk size"):
        parser.feed(size)


def test_feeding_a_complete_response_again_is_refused_until_start():
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0")
    with pytest.raises(RuntimeError, match="start"):
        parser.feed(b"more")
    parser.start()
    assert parser.need == HEAD
