"""Fault injection on real processes: models that log what reached the server, and a proxy.

``make_fault_repository(dir)`` writes a model repository of Python-backend models that log
every request they receive (``read_request_log``, ``FaultRepository.records``): ``echo_log``
(stateless) and ``echo_log_seq`` (sequence batching, string or uint64 correlation IDs) answer
``Y = X + 1``; ``running_total`` (sequence batching, 256 open sequences) answers the running sum
of X per correlation ID (tests/fault_models/running_total.py); with ``slot_models``, also
``running_total_2slots`` (2 sequence slots) and ``running_total_4instances``. Serve it with
``LocalTritonServer``, whose ``kill()`` crashes the server and ``start()`` restarts it on the
same ports.

``CountingProxy`` sits between a client and the server and counts the TCP connections clients
open, and those it could not forward because the server was down; a test points the client at
the proxy to count connection attempts (retries, circuit breaker) without mocking Triton.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import struct
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

FAULT_MODELS = Path(__file__).resolve().parent / "fault_models"
ECHO_LOG = "echo_log"
ECHO_LOG_SEQ = "echo_log_seq"
RUNNING_TOTAL = "running_total"
# running_total with exactly 2 sequence slots (Direct, 2 instances, max_batch_size 0): a third
# sequence started while two are open waits in Triton's backlog.
RUNNING_TOTAL_2SLOTS = "running_total_2slots"
# running_total on 4 instances (Oldest, 64 candidates each: 256 slots). A Python-backend
# instance runs one request at a time, so requests of different sequences overlap only on
# different instances: measured with a 0.2 s delay, 4 concurrent sequences reach running_total
# 0.2 s apart, and running_total_4instances within 10 ms (Oldest spreads new sequences over
# the instances).
RUNNING_TOTAL_4INSTANCES = "running_total_4instances"
# The custom request parameter that marks a request to running_total as a flush (not counted).
SEQUENCE_FLUSH = "sequence_flush"

_TENSORS = """max_batch_size: 0
input [ { name: "X" data_type: TYPE_INT64 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_INT64 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
# START/END control inputs let the log show the flags each request carried. Oldest, not
# Direct: with max_batch_size 0 Direct has one sequence slot, so a sequence left open (no END)
# held back every other one until it was reaped (5 s, measured); Oldest keeps 16 open.
_SEQUENCE_BATCHING = """sequence_batching {
  max_sequence_idle_microseconds: 5000000
  oldest { max_candidate_sequences: 16 }
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] }
  ]
}
"""

# running_total: TOTAL (not Y), READY checked, 256 candidate sequences: measured on 2.51 with one
# instance, 256 sequences can be open (START without END) at once and the 257th START waits in a
# backlog until one ends or is reaped; 150 open ones cost nothing (p50 ~0.6 ms per request).
_RUNNING_TOTAL = """max_batch_size: 0
input [ { name: "X" data_type: TYPE_INT64 dims: [ 1 ] } ]
output [ { name: "TOTAL" data_type: TYPE_INT64 dims: [ 1 ] } ]
instance_group [ { count: %(instances)d kind: KIND_CPU } ]
sequence_batching {
  max_sequence_idle_microseconds: %(idle)d
  %(strategy)s
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] }
  ]
}
"""

RequestLogLine = tuple[Any, int, int]  # (correlation ID, X, tritonserver pid)


@dataclass(frozen=True)
class FaultRepository:
    """A generated model repository and the files its models log to and read."""

    path: Path

    def request_log(self, model: str) -> Path:
        return self.path.parent / f"{model}.requests.log"

    def requests(self, model: str) -> list[RequestLogLine]:
        return read_request_log(self.request_log(model))

    def records(self, model: str) -> list[dict[str, Any]]:
        """Every line ``model`` logged, as a dict (the fields are each model's: see
        ``read_request_records`` and tests/fault_models/running_total.py)."""
        return read_request_records(self.request_log(model))

    def wait_for_records(self, model: str, count: int, timeout: float = 10.0
                         ) -> list[dict[str, Any]]:
        """``records(model)`` once it has ``count`` lines."""
        deadline = time.monotonic() + timeout
        while len(lines := self.records(model)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{model} logged {len(lines)} requests, not {count}, "
                                   f"within {timeout:g} s: {lines}")
            time.sleep(0.01)
        return lines

    def wait_for_requests(self, model: str, count: int, timeout: float = 10.0
                          ) -> list[RequestLogLine]:
        """The log once it has ``count`` lines: e.g. to kill the server only after a request
        has reached the model."""
        return [_request_line(r) for r in self.wait_for_records(model, count, timeout)]

    @property
    def delay_file(self) -> Path:
        return self.path.parent / "delay_seconds"

    def set_delay(self, seconds: float) -> None:
        """Make every model sleep this long before answering, from the next request on."""
        partial = self.delay_file.with_suffix(".partial")
        partial.write_text(f"{seconds}\n")
        partial.replace(self.delay_file)  # atomic: a request never reads a half-written file


def make_fault_repository(directory: str | os.PathLike[str],
                          running_total_max_idle: float = 5.0, *,
                          slot_models: bool = False) -> FaultRepository:
    """Write ``echo_log``, ``echo_log_seq`` and ``running_total`` under ``directory/models``;
    their request logs and the delay file go next to it, in ``directory``.
    ``running_total_max_idle``: the seconds after which Triton ends (reaps) a running_total
    sequence that received no request; the model is not told, so its state for the ID stays.
    ``slot_models``: also ``running_total_2slots`` and ``running_total_4instances`` (the same
    model, other sequence slots and instances). Only on request: each Python-backend instance
    adds ~1 s to the server's stop (measured: 2 s without them, 5 s with them)."""
    repository = FaultRepository(Path(directory).resolve() / "models")
    idle = round(running_total_max_idle * 1_000_000)
    variants = ((RUNNING_TOTAL, 1, "oldest { max_candidate_sequences: 256 }"),
                (RUNNING_TOTAL_2SLOTS, 2, "direct { }"),
                (RUNNING_TOTAL_4INSTANCES, 4, "oldest { max_candidate_sequences: 64 }"))
    running_totals = {
        name: _RUNNING_TOTAL % {"instances": instances, "idle": idle, "strategy": strategy}
        for name, instances, strategy in variants[:None if slot_models else 1]}
    for model, source, config in ((ECHO_LOG, "echo_log.py", _TENSORS),
                                  (ECHO_LOG_SEQ, "echo_log.py", _TENSORS + _SEQUENCE_BATCHING),
                                  *((name, "running_total.py", config)
                                    for name, config in running_totals.items())):
        version = repository.path / model / "1"
        version.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FAULT_MODELS / source, version / "model.py")
        parameters = {"request_log": repository.request_log(model),
                      "delay_file": repository.delay_file}
        # json.dumps quotes a path as a valid protobuf text-format string.
        entries = "".join(f'parameters {{ key: "{key}" value: {{ string_value: '
                          f'{json.dumps(str(path))} }} }}\n' for key, path in parameters.items())
        (repository.path / model / "config.pbtxt").write_text(
            f'name: "{model}"\nbackend: "python"\n{config}{entries}')
    repository.set_delay(0)
    return repository


def read_request_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every line of a request log. echo_log's: corrid, x, pid, start and end (None on a model
    without those control inputs), time (the server's clock when the request arrived);
    running_total's add flush, total, unknown and open."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:  # the model creates it on load
        return []
    # A reader can catch a line while the model is writing it (one write() is atomic for
    # other writers, not for readers): only complete lines count.
    complete = text[:text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line]


def read_request_log(path: str | os.PathLike[str]) -> list[RequestLogLine]:
    """(correlation ID, X, tritonserver pid) per request received, in arrival order. The ID
    is 0 for a request without one, a str for a string sequence ID, an int for a uint64 one."""
    return [_request_line(r) for r in read_request_records(path)]


def _request_line(record: dict[str, Any]) -> RequestLogLine:
    return record["corrid"], record["x"], record["pid"]


@dataclass(frozen=True)
class ProxyCounts:
    """Counters of a CountingProxy at one moment; subtract two to get what happened between."""

    connections: int = 0  # client connections accepted
    upstream_refused: int = 0  # of those, not forwarded: the upstream was down

    def __sub__(self, other: ProxyCounts) -> ProxyCounts:
        return ProxyCounts(*(getattr(self, f.name) - getattr(other, f.name)
                             for f in fields(self)))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN, as a dead server's kernel answers."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class CountingProxy:
    """A byte-transparent TCP forwarder on a free loopback port, to ``upstream_host:port``.

    One upstream connection per client connection, so HTTP/1.1 keep-alive and gRPC's HTTP/2
    behave as with a direct connection. When the upstream refuses (the server is down), the
    client's connection is reset at once, so the client gets ECONNRESET (in ``connect()`` or
    its first read) where a dead server gives ECONNREFUSED. A client's connection
    is counted before anything is forwarded or reset, so once a client has seen a response or
    a reset, its connection is in the counts. It runs an asyncio loop in its own thread.
    """

    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1",
                 connect_timeout: float = 5.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._counts = ProxyCounts()
        self._down = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Bound here, so the port is known (and taken) before the first client connects.
        self._listener = socket.create_server((host, 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name=f"CountingProxy:{self.port}", daemon=True)
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, sock=self._listener))

    @property
    def http_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"grpc://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """host:port, as tritonclient takes it."""
        return f"{self.host}:{self.port}"

    def snapshot(self) -> ProxyCounts:
        with self._lock:
            return self._counts

    @property
    def connections(self) -> int:
        return self.snapshot().connections

    @property
    def upstream_refused(self) -> int:
        return self.snapshot().upstream_refused

    @property
    def active(self) -> int:
        """Client connections open now."""
        return self._call(self._count_active())

    def set_upstream_down(self, down: bool) -> None:
        """While down, act as if the upstream refused: reset every new connection (counted in
        ``upstream_refused``); going down also resets the open ones. Faster than killing the
        server when a test only needs refused connections."""
        with self._lock:
            self._down = down
        if down:
            self.reset_connections()

    def reset_connections(self) -> None:
        """Reset (RST) every open connection on both sides, as a crash of the server would."""
        self._call(self._reset_all())

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def _add(self, **deltas: int) -> None:
        with self._lock:
            self._counts = ProxyCounts(**{f.name: getattr(self._counts, f.name)
                                          + deltas.get(f.name, 0) for f in fields(ProxyCounts)})

    async def _count_active(self) -> int:
        return len(self._tasks)

    async def _reset_all(self) -> None:
        for writer in list(self._writers):
            _reset(writer)

    async def _shutdown(self) -> None:
        self._server.close()
        await self._reset_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_writer)
        try:
            with self._lock:
                down = self._down
            self._add(connections=1)
            try:
                if down:
                    raise ConnectionRefusedError("upstream marked down")
                upstream_reader, upstream_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream), self.connect_timeout)
            except (OSError, asyncio.TimeoutError):
                self._add(upstream_refused=1)
                _reset(client_writer)
                return
            self._writers.add(upstream_writer)
            try:
                await asyncio.gather(self._pump(client_reader, upstream_writer, client_writer),
                                     self._pump(upstream_reader, client_writer, upstream_writer))
            finally:
                self._writers.discard(upstream_writer)
                upstream_writer.close()
        except asyncio.CancelledError:
            # stop(): end quietly (asyncio reports a handler task that ends cancelled).
            _reset(client_writer)
        finally:
            self._writers.discard(client_writer)
            client_writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    source: asyncio.StreamWriter) -> None:
        """Copy one direction until EOF, which is passed on as a half-close; a reset or a
        failed write on either side resets both sides."""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
        except OSError:
            _reset(writer)
            _reset(source)
