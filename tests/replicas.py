"""Several Triton replicas for the tests of 'endpoint' lists, and nginx balancing them by a
sequence-ID header.

:class:`Replicas` starts several ``LocalTritonServer`` processes at once, all serving one fault
repository (tests/faults.py: ``echo_log``, ``echo_log_seq``, ``running_total``): replicas serve
the same model, config included (open() compares the servers' configs, and a repository per
server would differ in the paths its models log to). The models log the pid of the
tritonserver that received each request, and each replica remembers the pids it ran as, so
which server got which request is read from the log, never guessed. A test kills a replica
(``kill(i)``) and brings it back on the same ports, as a new process (``start(i)``).

``SEQUENCE_AFFINITY_NGINX`` is a working nginx configuration (the ``http`` block's part) that
keeps every request of a Triton sequence on one replica, by the header that
'sequence-id-header' = 'X-Sequence-Id' adds; :class:`NginxSequenceBalancer` runs exactly that
text, with the test's ports in place of the example addresses.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pyflink_triton.server import LocalTritonServer, free_port

from faults import FaultRepository, make_fault_repository
from nginx import NginxProcess

T = TypeVar("T")

# What the docs give as "a working nginx configuration" for replicas behind one address: put it
# in nginx's http block (e.g. /etc/nginx/conf.d/triton.conf), with your replicas' addresses, and
# set 'endpoint' = 'http://<nginx>:8000' and 'sequence-id-header' = 'X-Sequence-Id'.
# tests/integration/test_replicas.py (the nginx test) runs this very text.
SEQUENCE_AFFINITY_NGINX = """\
# Triton replicas behind one address. Every request of a sequence carries its ID in
# X-Sequence-Id ('sequence-id-header' = 'X-Sequence-Id'), and nginx sends all requests with
# the same ID to the same replica. (Requests without the header, such as the model metadata
# fetched at open(), hash alike: they all go to one replica.)
upstream triton_replicas {
    hash $http_x_sequence_id consistent;
    server triton-0:8000;
    server triton-1:8000;
    keepalive 32;
}

server {
    listen 8000;
    client_max_body_size 64m;
    location / {
        proxy_pass http://triton_replicas;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
}
"""
_EXAMPLE_SERVERS = ("server triton-0:8000;", "server triton-1:8000;")
_EXAMPLE_LISTEN = "listen 8000;"

Lines = list[dict[str, Any]]


class Replicas:
    """``count`` tritonserver processes serving one fault repository under ``directory``."""

    def __init__(self, directory: Path, count: int) -> None:
        self.repository: FaultRepository = make_fault_repository(directory, slot_models=False)
        # Fixed ports: a restart comes back on them, where the clients were pointed.
        self.servers = [
            LocalTritonServer(self.repository.path, http_port=free_port(),
                              grpc_port=free_port(), startup_timeout=90,
                              log_path=directory / f"replica{i}.tritonserver.log")
            for i in range(count)]
        self.pids: list[list[int]] = [[] for _ in range(count)]  # each replica's processes

    def __len__(self) -> int:
        return len(self.servers)

    def start(self, *indexes: int) -> None:
        """Start the replicas given (all by default) that are not running, together (each
        start waits mostly for its Python-backend stubs)."""
        down = [i for i in (indexes or range(len(self))) if self.servers[i].process is None]
        in_parallel([lambda i=i: self._start(i) for i in down])

    def _start(self, index: int) -> None:
        server = self.servers[index]
        server.start()
        assert server.process is not None
        self.pids[index].append(server.process.pid)  # (what the models log as "pid")

    def kill(self, index: int) -> int:
        """Crash replica ``index`` (SIGKILL, as in tests/faults.py); returns its pid."""
        pid = self.pid(index)
        assert pid is not None, f"replica {index} is not running"
        self.servers[index].kill()
        return pid

    def stop(self) -> None:
        in_parallel([server.stop for server in self.servers])

    def pid(self, index: int) -> int | None:
        process = self.servers[index].process
        return None if process is None else process.pid

    def address(self, index: int) -> str:
        """host:port of its HTTP endpoint, as nginx logs the upstream."""
        return f"127.0.0.1:{self.servers[index].http_port}"

    def endpoint_list(self, protocol: str = "http", indexes: Sequence[int] | None = None) -> str:
        """The 'endpoint' option naming the replicas: ``http://h:p,http://h:p,...`` (or
        grpc://)."""
        return ",".join(self.servers[i].http_endpoint if protocol == "http"
                        else self.servers[i].grpc_endpoint
                        for i in (range(len(self)) if indexes is None else indexes))

    def log_texts(self) -> list[str]:
        return [server.log_text() for server in self.servers]

    # --- what the models logged ---------------------------------------------------------------

    def mark(self, model: str) -> int:
        """Where ``model``'s request log ends now (a byte offset, of complete lines)."""
        return _read_complete(self.repository.request_log(model), 0)[1]

    def records(self, model: str, since: int = 0) -> list[Lines]:
        """The lines ``model`` logged after the mark ``since``, per replica (by the pid that
        logged them), in arrival order, each with the replica's index added as ``server``."""
        lines, _ = _read_complete(self.repository.request_log(model), since)
        owner = {pid: index for index, pids in enumerate(self.pids) for pid in pids}
        per: list[Lines] = [[] for _ in range(len(self))]
        for line in lines:
            assert line["pid"] in owner, f"a request logged by an unknown process: {line}"
            index = owner[line["pid"]]
            per[index].append({**line, "server": index})
        return per


def _read_complete(path: Path, offset: int) -> tuple[Lines, int]:
    """The complete lines of a JSON-lines log from byte ``offset``, and where they end (a
    model may be writing its next line)."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            data = log.read()
    except FileNotFoundError:  # (the model creates it on load)
        return [], offset
    complete = data[:data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line], offset + len(complete)


def in_parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run the calls in threads; their results in order, or the first call's error."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as e:  # (raised in the caller's thread)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def wait_for(what: str, check: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """Poll ``check`` (a look at the logs) until it returns something truthy, and return it;
    fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)
    return found


def servers_of_sequences(per_server: Sequence[Lines], base: str) -> dict[str, set[int]]:
    """Sequence ID ``{base}-...`` -> the indexes of the replicas that received it."""
    servers: dict[str, set[int]] = defaultdict(set)
    for index, lines in enumerate(per_server):
        for line in lines:
            if isinstance(line["corrid"], str) and line["corrid"].startswith(f"{base}-"):
                servers[line["corrid"]].add(index)
    return dict(servers)


def assert_each_sequence_on_one_server(per_server: Sequence[Lines], base: str
                                       ) -> dict[str, int]:
    """No sequence ID ``{base}-...`` received by two replicas; returns each ID's replica."""
    servers = servers_of_sequences(per_server, base)
    split = {sid: sorted(found) for sid, found in servers.items() if len(found) > 1}
    assert not split, f"sequence IDs at several replicas: {dict(list(split.items())[:10])}"
    return {sid: next(iter(found)) for sid, found in servers.items()}


# --- nginx in front of two replicas ---------------------------------------------------------

def sequence_affinity_config(listen_port: int, upstreams: Sequence[str]) -> str:
    """SEQUENCE_AFFINITY_NGINX with the example addresses replaced: nginx listens on
    127.0.0.1:``listen_port`` and balances ``upstreams`` (two host:port)."""
    assert len(upstreams) == len(_EXAMPLE_SERVERS)
    config = SEQUENCE_AFFINITY_NGINX
    for example, actual in ((_EXAMPLE_LISTEN, f"listen 127.0.0.1:{listen_port};"),
                            *((e, f"server {u};") for e, u in zip(_EXAMPLE_SERVERS, upstreams,
                                                                  strict=True))):
        assert config.count(example) == 1, f"{example!r} is not once in the configuration"
        config = config.replace(example, actual)
    return config


@dataclass(frozen=True)
class BalancedRequest:
    """One request nginx passed on (its access log line)."""

    status: int
    upstream: str  # host:port that answered; several, comma-separated, if nginx tried others
    method: str
    uri: str
    sequence_header: str | None  # X-Sequence-Id as received, None without one


class NginxSequenceBalancer(NginxProcess):
    """nginx running SEQUENCE_AFFINITY_NGINX in front of ``upstreams``, in the foreground,
    stopped by its pid (an NginxProcess). Its access log records, per request, the status, the
    replica that answered and the X-Sequence-Id header."""

    def __init__(self, directory: Path, upstreams: Sequence[str]) -> None:
        super().__init__(directory)
        self.port = free_port()
        self.upstreams = list(upstreams)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def listen_ports(self) -> list[int]:
        return [self.port]

    def http_block(self) -> str:
        """The log format, then the documented part itself (NginxProcess.config puts what a
        test needs around it: pid, logs, temporary directories)."""
        documented = sequence_affinity_config(self.port, self.upstreams)
        return f"""\
    log_format balanced '$status|$upstream_addr|$request_method|$uri|$http_x_sequence_id';
    access_log {self.access_log} balanced;
{documented}"""

    def requests(self) -> list[BalancedRequest]:
        """Every request logged so far (nginx logs one just after its response)."""
        if not self.access_log.exists():
            return []
        found = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            status, upstream, method, uri, header = line.split("|", 4)
            found.append(BalancedRequest(int(status), upstream, method, uri,
                                         None if header in ("", "-") else header))
        return found
