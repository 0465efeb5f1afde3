"""A real standalone Flink cluster for integration tests, run from the ``apache-flink`` wheel.

Why a real cluster: a local mini-cluster runs in the test's own JVM, so it cannot lose a
TaskManager. Here a JobManager and TaskManagers are separate processes started with the
wheel's own ``bin/jobmanager.sh`` / ``bin/taskmanager.sh start-foreground`` (the script
``exec``s the JVM, so the PID we hold is the JVM's), jobs go through ``bin/flink run``, and a
test can ``kill -9`` a TaskManager and watch Flink fail over.

What was measured (PyFlink 2.3.0, Java 17, 2 cores):

- Each script start runs ~3 short helper JVMs (config flattening, memory sizing) before the
  real one: JobManager plus two registered TaskManagers take ~10 s; one more TaskManager
  registers ~4 s after its start. ``bin/flink run -d -py`` of a small Table API job returns
  after ~6-9 s (a client JVM and a Python driver); its first checkpoint ~3-6 s later.
- ``-D taskmanager.resource-id=tm-<n>`` names a TaskManager: the REST API shows that id in
  ``/taskmanagers`` and ``/jobs/<id>/vertices/<vid>/taskmanagers``, which is how ``TaskManager``
  objects (and so PIDs) are found from a job.
- Python UDF workers are children of the TaskManager JVM (``pyflink-udf-runner.sh`` -> ``python
  -m beam_boot`` -> worker). They inherit the cluster's environment, so every process this
  module started, directly or not, carries ``FLINK_TEST_CLUSTER=<cluster id>`` and ``stop()``
  finds even orphaned workers (re-parented after a ``kill -9`` of their TaskManager) by it.
- With ``heartbeat.interval`` 1 s a killed TaskManager is noticed in ~3 s ("TaskManager with
  id tm-1 is no longer reachable") and the job runs again on the other one (attempt 1) ~6 s
  after the kill, restored from the last checkpoint.
- A TaskManager stops in ~0.2 s on SIGTERM, but ~5 s if its JobManager is already gone:
  ``stop()`` ends TaskManagers first.

Job-side helpers (``sequence_source``, ``file_sink``) live here too: ``submit`` ships this
module with every job (``-pyfs``), so job scripts under tests/cluster_jobs import it.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER_ENV = "FLINK_TEST_CLUSTER"
TERMINAL_STATES = frozenset({"FINISHED", "FAILED", "CANCELED", "SUSPENDED"})
_JOB_ID = re.compile(r"Job has been submitted with JobID ([0-9a-f]{32})")
_PR_SET_PDEATHSIG = 1


def flink_home() -> Path:
    """The wheel's Flink distribution: the installed ``pyflink`` package folder."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def free_port() -> int:
    """A TCP port free on localhost now (the usual small race: we bind it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


# --- processes, by PID and start time (a PID alone may be reused) ---------------------------

@dataclass(frozen=True)
class Proc:
    """One process, identified by PID *and* its start time, so a reused PID is never hit."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        stat = _stat(pid)
        return cls(pid, stat[1]) if stat else None

    def alive(self) -> bool:
        """Running (a zombie counts as gone: it only waits to be reaped)."""
        stat = _stat(self.pid)
        return stat is not None and stat[1] == self.start and stat[2] != "Z"

    def send(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, start time in clock ticks, state) from /proc/<pid>/stat, or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces
    return int(fields[1]), int(fields[19]), fields[0]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(pid: int) -> list[Proc]:
    """All living descendants of ``pid`` (children, grandchildren...), walking /proc ppids."""
    children: dict[int, list[int]] = {}
    for child in _pids():
        stat = _stat(child)
        if stat:
            children.setdefault(stat[0], []).append(child)
    found: list[Proc] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        proc = Proc.of(child)
        if proc and proc.alive():
            found.append(proc)
            todo.extend(children.get(child, []))
    return found


def marked(marker: str) -> list[Proc]:
    """Living processes whose environment holds ``FLINK_TEST_CLUSTER=marker``."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            proc = Proc.of(pid)
            if proc and proc.alive():
                found.append(proc)
    return found


def orphans(marker: str) -> list[Proc]:
    """Marked processes whose parent is neither marked nor this process: re-parented
    leftovers, e.g. the Python workers of a TaskManager killed with ``kill -9``."""
    procs = marked(marker)
    pids = {p.pid for p in procs} | {os.getpid()}
    return [p for p in procs if (_stat(p.pid) or (0,))[0] not in pids]


def terminate(procs: Iterable[Proc], grace: float = 10.0) -> list[Proc]:
    """SIGTERM ``procs``, SIGKILL what is left after ``grace`` s; returns the ones still alive."""
    procs = [p for p in procs if p.alive()]
    for proc in procs:
        proc.send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(p.alive() for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in procs:
        proc.send(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(p.alive() for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in procs if p.alive()]


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # not Linux: no parent-death signal, atexit and stop() remain
        return None


_LIBC = _libc()


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child if the test process dies, even by SIGKILL (Linux only).

    Best effort against leftovers when pytest is killed; the signal fires when the *thread*
    that started the child ends, so start clusters from the main thread.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# --- the cluster ----------------------------------------------------------------------------

@dataclass
class TaskManager:
    """A TaskManager we started; ``name`` is its Flink resource id, as the REST API shows it."""

    name: str
    process: subprocess.Popen[bytes]
    proc: Proc
    log_dir: Path
    workers_seen: set[Proc] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def children(self) -> list[Proc]:
        """Its living descendants now: the Python workers (and their runner shells)."""
        found = descendants(self.pid) if self.alive() else []
        self.workers_seen.update(found)
        return found

    def python_workers(self) -> list[Proc]:
        """Its Python UDF worker processes now (``python -m ...beam_boot``, one a subtask)."""
        return [p for p in self.children() if b"beam_boot" in _cmdline(p.pid)]

    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob(f"flink-{self.name}-*"))


def default_config(work_dir: Path, python: str) -> dict[str, Any]:
    """Our settings over the wheel's config.yaml: localhost, small memory, checkpoints, restarts.

    ``jobmanager.rpc.port`` and ``rest.port`` are picked free here; the other ports are 0
    (blob server, TaskManager RPC and data ports: the OS picks free ones, no race).
    """
    return {
        "jobmanager.rpc.address": "localhost",
        "jobmanager.bind-host": "localhost",
        "jobmanager.rpc.port": free_port(),
        "jobmanager.memory.process.size": "1g",
        "taskmanager.host": "localhost",
        "taskmanager.bind-host": "localhost",
        "taskmanager.rpc.port": "0",
        "taskmanager.data.port": 0,
        "taskmanager.numberOfTaskSlots": 2,
        "taskmanager.memory.process.size": "1728m",
        "blob.server.port": "0",
        "rest.address": "localhost",
        "rest.bind-address": "localhost",
        "rest.port": free_port(),
        "parallelism.default": 2,
        # A lost TaskManager is noticed in seconds, not after the default 50 s.
        "heartbeat.interval": 1000,
        "heartbeat.timeout": 10000,
        "metrics.fetcher.update-interval": 1000,  # numRestarts & co. fresh over REST
        # The REST API caches subtask states and checkpoint statistics for 3 s by default
        # (web.refresh-interval): a checkpoint restore showed up after the subtasks ran again.
        "rest.cache.execution-graph.timeout": "0 ms",
        "rest.cache.checkpoint-statistics.timeout": "0 ms",
        "python.executable": python,
        "python.client.executable": python,
        "execution.checkpointing.interval": "1 s",
        "execution.checkpointing.dir": (work_dir / "checkpoints").as_uri(),
        "execution.checkpointing.storage": "filesystem",
        "state.backend.type": "hashmap",
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": 5,
        "restart-strategy.fixed-delay.delay": "1 s",
        "io.tmp.dirs": str(work_dir / "tmp"),  # the Python workers' files too
        "env.pid.dir": str(work_dir / "pids"),
        "env.log.dir": str(work_dir / "log"),
    }


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class FlinkCluster:
    """A JobManager and ``task_managers`` TaskManagers on localhost, in ``work_dir``.

    ``config`` entries override ``default_config`` (a value of None removes a key). Use as a
    context manager, or call ``start()`` and ``stop()``; ``stop()`` also runs at interpreter
    exit for a cluster still running.
    """

    def __init__(self, work_dir: Path, *, task_managers: int = 2,
                 config: Mapping[str, Any] | None = None, python: str = sys.executable) -> None:
        self.work_dir = Path(work_dir)
        self.python = python
        self.home = flink_home()
        self.marker = uuid.uuid4().hex
        self.conf_dir = self.work_dir / "conf"
        self.log_dir = self.work_dir / "log"
        self.initial_task_managers = task_managers
        self.config = default_config(self.work_dir, python)
        for key, value in (config or {}).items():
            if value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = value
        self.jobmanager: subprocess.Popen[bytes] | None = None
        self.taskmanagers: list[TaskManager] = []
        self._clients: list[subprocess.Popen[bytes]] = []
        self._seen: set[Proc] = set()
        self._lock = threading.Lock()
        self._stopped = False

    # -- lifecycle --

    @property
    def rest_url(self) -> str:
        return f"http://localhost:{self.config['rest.port']}"

    def __enter__(self) -> FlinkCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> FlinkCluster:
        """Start the JobManager and the TaskManagers; return once all TaskManagers registered."""
        self._write_conf()
        _live_clusters.add(self)
        try:
            self.jobmanager = self._spawn("jm", ["jobmanager.sh", "start-foreground"])
            self.wait_until(lambda: self._get("/overview") is not None, timeout,
                            "the JobManager's REST API")
            for _ in range(self.initial_task_managers):
                self.start_taskmanager(wait=False)
            self.wait_for_taskmanagers(self.initial_task_managers, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _write_conf(self) -> None:
        import yaml

        for sub in ("conf", "log", "pids", "checkpoints", "tmp"):
            (self.work_dir / sub).mkdir(parents=True, exist_ok=True)
        wheel_conf = self.home / "conf"
        config = _flatten(yaml.safe_load((wheel_conf / "config.yaml").read_text()) or {})
        config.update(self.config)
        text = "".join(yaml.safe_dump({key: value}, width=1 << 16)
                       for key, value in config.items())
        (self.conf_dir / "config.yaml").write_text(text)
        for name in ("log4j-console.properties", "log4j-cli.properties", "log4j.properties",
                     "logback-console.xml"):
            (self.conf_dir / name).write_bytes((wheel_conf / name).read_bytes())
        (self.conf_dir / "masters").write_text(f"localhost:{self.config['rest.port']}\n")
        (self.conf_dir / "workers").write_text("localhost\n")

    def _env(self, ident: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "FLINK_CONF_DIR": str(self.conf_dir),
            "FLINK_IDENT_STRING": ident,  # names its log and pid files
            # JVM stdout/stderr to <log>.out/.err, not a second copy of the log on the console.
            "STD_REDIRECT_TO_FILE": "true",
            "PYFLINK_CLIENT_EXECUTABLE": self.python,
            MARKER_ENV: self.marker,
        })
        env.pop("FLINK_HOME", None)
        return env

    def _spawn(self, ident: str, command: list[str]) -> subprocess.Popen[bytes]:
        """Run ``bin/<command>`` in the background, its console output in log/<ident>.console."""
        with open(self.log_dir / f"{ident}.console", "ab") as console:
            process = subprocess.Popen(
                [str(self.home / "bin" / command[0]), *command[1:]], env=self._env(ident),
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                cwd=self.work_dir, preexec_fn=_die_with_parent)
        proc = Proc.of(process.pid)
        if proc:
            self._seen.add(proc)
        return process

    def start_taskmanager(self, wait: bool = True, timeout: float = 60.0) -> TaskManager:
        """Add a TaskManager (resource id ``tm-<n>``, a new n each time), e.g. after a kill."""
        name = f"tm-{len(self.taskmanagers) + 1}"
        process = self._spawn(name, ["taskmanager.sh", "start-foreground",
                                     "-D", f"taskmanager.resource-id={name}"])
        proc = Proc.of(process.pid) or Proc(process.pid, -1)
        tm = TaskManager(name, process, proc, self.log_dir)
        self.taskmanagers.append(tm)
        if wait:
            self.wait_for_taskmanagers(len(self.alive_taskmanagers()), timeout)
        return tm

    def alive_taskmanagers(self) -> list[TaskManager]:
        return [tm for tm in self.taskmanagers if tm.alive()]

    def registered_taskmanagers(self) -> set[str]:
        """Resource ids of the TaskManagers the JobManager knows now (dead ones linger ~2 s)."""
        return {tm["id"] for tm in self._get("/taskmanagers")["taskmanagers"]}

    def wait_for_taskmanagers(self, count: int, timeout: float = 60.0) -> None:
        """Until ``count`` TaskManagers live and exactly those are registered (dead ones
        dropped). Fails at once, with the logs, if fewer processes are alive: one crashed."""
        def ready() -> bool:
            alive = {tm.name for tm in self.alive_taskmanagers()}
            if len(alive) < count:
                raise AssertionError(f"{count - len(alive)} TaskManager(s) exited; alive: "
                                     f"{sorted(alive)}\n{self.log_tail()}")
            return self.registered_taskmanagers() == alive
        self.wait_until(ready, timeout, f"{count} TaskManagers to register",
                        lambda: f"registered {sorted(self.registered_taskmanagers())}, alive "
                                f"{[tm.name for tm in self.alive_taskmanagers()]}")

    def ensure_taskmanagers(self, count: int | None = None, timeout: float = 60.0) -> None:
        """Heal the cluster for the next test: ``count`` (default: as started) TaskManagers
        alive and registered, and the workers of killed ones gone."""
        count = self.initial_task_managers if count is None else count
        for tm in self.taskmanagers:
            if not tm.alive():
                terminate(tm.workers_seen, grace=0)
        terminate(orphans(self.marker), grace=0)
        missing = count - len(self.alive_taskmanagers())
        for _ in range(missing):
            self.start_taskmanager(wait=False)
        self.wait_for_taskmanagers(max(count, len(self.alive_taskmanagers())), timeout)

    def kill_taskmanager(self, tm: TaskManager) -> list[Proc]:
        """SIGKILL a TaskManager and its Python workers (found before the kill: one can survive
        its TaskManager as an orphan). Returns the processes killed."""
        victims = [tm.proc, *tm.children()]
        tm.process.kill()
        tm.process.wait(10)
        for proc in victims[1:]:
            proc.send(signal.SIGKILL)
        return victims

    def stop(self, grace: float = 10.0) -> None:
        """Stop everything this cluster started, by PID: SIGTERM, then SIGKILL after ``grace``.

        Covers the flink clients, TaskManagers, the JobManager, every Python worker seen and
        any process still carrying our marker (orphans). Idempotent; raises nothing.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        _live_clusters.discard(self)
        with contextlib.suppress(Exception):
            for tm in self.taskmanagers:
                tm.children()  # remember the workers while their parent still lives
            jobmanager = {p for p in self._seen if self.jobmanager and p.pid ==
                          self.jobmanager.pid}
            ours = self._seen | set(marked(self.marker))
            for tm in self.taskmanagers:
                ours |= tm.workers_seen
            # TaskManagers first: one whose JobManager is gone takes ~5 s to exit on SIGTERM.
            terminate(ours - jobmanager, grace)
            terminate(jobmanager, grace)
            terminate(marked(self.marker), grace=1.0)  # anything spawned meanwhile
        for process in [*self._clients, *(tm.process for tm in self.taskmanagers),
                        *([self.jobmanager] if self.jobmanager else [])]:
            with contextlib.suppress(Exception):
                process.kill()
                process.wait(5)  # reap our direct children: no zombies

    def processes(self) -> list[Proc]:
        """Every living process this cluster started, directly or not (for leak checks)."""
        return sorted(set(marked(self.marker)) | {p for p in self._seen if p.alive()},
                      key=lambda p: p.pid)

    # -- jobs --

    def submit(self, script: str | Path, *args: object, pyfs: Sequence[str | Path] = (),
               parallelism: int | None = None, flink_args: Sequence[str] = (),
               timeout: float = 120.0) -> str:
        """``bin/flink run -d -py script -pyfs <this module>,pyfs... args``; returns the job id.

        This module is always shipped, so job scripts can use its job-side helpers. Raises
        AssertionError with the client's output if no job id was printed.
        """
        files = [str(Path(__file__).resolve()), *(str(Path(f).resolve()) for f in pyfs)]
        command = ["-d", *flink_args]
        if parallelism is not None:
            command += ["-p", str(parallelism)]
        command += ["-py", str(Path(script).resolve()), "-pyfs", ",".join(files),
                    *(str(a) for a in args)]
        text = self.flink_run(command, timeout)
        match = _JOB_ID.search(text)
        if not match:
            raise AssertionError(f"flink run printed no job id: {' '.join(command)}\n"
                                 f"{text[-5000:]}")
        return match.group(1)

    def flink_run(self, args: Sequence[object], timeout: float = 120.0) -> str:
        """``bin/flink run args`` against this cluster; returns the client's output.

        Raises AssertionError with that output if the client fails or outlives ``timeout``.
        """
        command = [str(self.home / "bin" / "flink"), "run", *(str(a) for a in args)]
        client = subprocess.Popen(command, env=self._env("client"), cwd=self.work_dir,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self._clients.append(client)
        try:
            output, _ = client.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            terminate([*descendants(client.pid), Proc.of(client.pid) or Proc(client.pid, -1)],
                      grace=1.0)
            output, _ = client.communicate()
            text = output.decode(errors="replace")
            raise AssertionError(
                f"flink run timed out after {timeout} s:\n{text[-5000:]}") from None
        finally:
            self._clients.remove(client)
        text = output.decode(errors="replace")
        if client.returncode != 0:
            raise AssertionError(f"flink run failed (exit {client.returncode}): "
                                 f"{' '.join(command)}\n{text[-5000:]}")
        return text

    def job(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/jobs/{job_id}")

    def job_status(self, job_id: str) -> str:
        return self.job(job_id)["state"]

    def job_exceptions(self, job_id: str, lines: int = 6) -> str:
        """The job's failure history, newest first, a few stack trace lines each."""
        try:
            history = self._get(f"/jobs/{job_id}/exceptions")
        except urllib.error.URLError as error:
            return f"(no exceptions: {error})"
        entries = history.get("exceptionHistory", {}).get("entries", [])
        parts = []
        for entry in entries:
            trace = "\n    ".join(str(entry.get("stacktrace", "")).splitlines()[:lines])
            parts.append(f"- {entry.get('exceptionName')} on {entry.get('taskManagerId')} "
                         f"({entry.get('taskName')}):\n    {trace}")
        return "\n".join(parts) or "(no exceptions)"

    def wait_for_status(self, job_id: str, states: Iterable[str] | str,
                        timeout: float = 60.0) -> str:
        """Until the job is in one of ``states``; raises AssertionError, with the job's
        exceptions, on timeout or when it ends in another state (e.g. FAILED)."""
        wanted = {states} if isinstance(states, str) else set(states)
        seen: list[str] = []

        def reached() -> bool:
            state = self.job_status(job_id)
            if not seen or seen[-1] != state:
                seen.append(state)
            if state not in wanted and state in TERMINAL_STATES:
                raise AssertionError(f"job {job_id} ended {state}, not {sorted(wanted)} "
                                     f"(states seen {seen}); exceptions:\n"
                                     f"{self.job_exceptions(job_id)}")
            return state in wanted
        self.wait_until(reached, timeout, f"job {job_id} to be {sorted(wanted)}",
                        lambda: f"states seen {seen}; exceptions:\n"
                                f"{self.job_exceptions(job_id)}")
        return seen[-1]

    def cancel(self, job_id: str) -> None:
        self._request("PATCH", f"/jobs/{job_id}?mode=cancel")

    def cancel_all_jobs(self, timeout: float = 30.0) -> None:
        """Cancel every job not ended yet, so the next test finds all slots free."""
        running = [j["id"] for j in self._get("/jobs")["jobs"] if j["status"] not in
                   TERMINAL_STATES]
        for job_id in running:
            with contextlib.suppress(urllib.error.HTTPError):
                self.cancel(job_id)
        for job_id in running:
            self.wait_for_status(job_id, TERMINAL_STATES, timeout)

    def completed_checkpoints(self, job_id: str) -> int:
        return self._get(f"/jobs/{job_id}/checkpoints")["counts"]["completed"]

    def wait_for_checkpoints(self, job_id: str, count: int = 1, timeout: float = 60.0) -> int:
        """Until the job has ``count`` completed checkpoints; raises if it ends first."""
        def enough() -> bool:
            if self.job_status(job_id) in TERMINAL_STATES:
                raise AssertionError(f"job {job_id} ended {self.job_status(job_id)} before "
                                     f"{count} checkpoints:\n{self.job_exceptions(job_id)}")
            return self.completed_checkpoints(job_id) >= count
        self.wait_until(enough, timeout, f"{count} checkpoints of job {job_id}",
                        lambda: f"{self.completed_checkpoints(job_id)} completed; "
                                f"{self.job_exceptions(job_id)}")
        return self.completed_checkpoints(job_id)

    def subtasks(self, job_id: str) -> list[dict[str, Any]]:
        """Every subtask's current execution: vertex name, subtask, status, attempt, TM id."""
        found = []
        for vertex in self.job(job_id)["vertices"]:
            detail = self._get(f"/jobs/{job_id}/vertices/{vertex['id']}")
            for sub in detail["subtasks"]:
                found.append({"vertex": vertex["name"], "subtask": sub["subtask"],
                              "status": sub["status"], "attempt": sub["attempt"],
                              "taskmanager": sub.get("taskmanager-id")})
        return found

    def max_attempt(self, job_id: str) -> int:
        """The highest attempt number of any subtask: >= 1 once a subtask was restarted.
        Still readable after the job finished (unlike the ``numRestarts`` metric)."""
        return max(s["attempt"] for s in self.subtasks(job_id))

    def wait_for_recovery(self, job_id: str, min_attempt: int = 1,
                          timeout: float = 60.0) -> None:
        """Until a restarted job runs again: every subtask RUNNING (or FINISHED) and some
        subtask at attempt >= ``min_attempt``."""
        def recovered() -> bool:
            subtasks = self.subtasks(job_id)
            return (all(s["status"] in ("RUNNING", "FINISHED") for s in subtasks)
                    and max(s["attempt"] for s in subtasks) >= min_attempt)
        self.wait_until(recovered, timeout, f"job {job_id} to run again (attempt {min_attempt})",
                        lambda: f"state {self.job_status(job_id)}, subtasks "
                                f"{self.subtasks(job_id)}; exceptions:\n"
                                f"{self.job_exceptions(job_id)}")

    def restored_checkpoint(self, job_id: str) -> dict[str, Any] | None:
        """The checkpoint the job last restored from (id, time...), None if it never did."""
        return self._get(f"/jobs/{job_id}/checkpoints")["latest"].get("restored")

    def num_restarts(self, job_id: str) -> int | None:
        """The job's ``numRestarts`` metric while it runs, None once it is gone."""
        try:
            metrics = self._get(f"/jobs/{job_id}/metrics?get=numRestarts")
        except urllib.error.URLError:
            return None
        return int(metrics[0]["value"]) if metrics else None

    def taskmanagers_of(self, job_id: str) -> list[TaskManager]:
        """The TaskManagers (ours, so with PIDs) running some subtask of the job now."""
        names = {s["taskmanager"] for s in self.subtasks(job_id)
                 if s["status"] in ("DEPLOYING", "INITIALIZING", "RUNNING")}
        return [tm for tm in self.taskmanagers if tm.name in names]

    # -- logs --

    def log_files(self) -> list[Path]:
        return sorted(p for p in self.log_dir.iterdir() if p.is_file())

    def log_tail(self, lines: int = 40, only: Sequence[str] = (".log", ".out", ".err", ".console")
                 ) -> str:
        """The last ``lines`` of each JobManager/TaskManager/client log, for test reports."""
        parts = []
        for path in self.log_files():
            if not path.name.endswith(tuple(only)) or path.stat().st_size == 0:
                continue
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"==> {path.name} <==\n" + "\n".join(tail))
        return "\n\n".join(parts)

    # -- REST and waiting --

    def _request(self, method: str, path: str) -> Any:
        """One REST call; AssertionError at once if the JobManager process has exited."""
        request = urllib.request.Request(self.rest_url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = response.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            if not isinstance(error, urllib.error.HTTPError) and self.jobmanager is not None \
                    and self.jobmanager.poll() is not None:
                raise AssertionError(f"the JobManager exited ({self.jobmanager.returncode}):\n"
                                     f"{self.log_tail()}") from error
            raise
        return json.loads(body) if body else None

    def _get(self, path: str) -> Any:
        return self._request("GET", path)

    @staticmethod
    def wait_until(done: Callable[[], bool], timeout: float, what: str,
                   details: Callable[[], str] | None = None, poll: float = 0.25) -> None:
        """Poll ``done`` until true; AssertionError with ``details()`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                if done():
                    return
            if time.monotonic() >= deadline:
                info = ""
                if details:
                    try:
                        info = ": " + details()
                    except Exception as error:  # the details are best effort
                        info = f": ({error})"
                raise AssertionError(f"timed out after {timeout} s waiting for {what}{info}")
            time.sleep(poll)


_live_clusters: set[FlinkCluster] = set()


@atexit.register
def _stop_leftover_clusters() -> None:
    """If pytest is interrupted past the fixtures' finally blocks, still stop our processes."""
    for cluster in list(_live_clusters):
        cluster.stop(grace=3.0)


# --- job side: a replayable source, an exactly-once file sink, and its reader -------------

def sequence_source(t_env: Any, name: str, rows: int, rows_per_second: int,
                    start: int = 1) -> None:
    """A table ``name (id BIGINT)`` of ids start..start+rows-1, ``rows_per_second`` in all.

    A ``datagen`` *sequence* keeps the ids still to emit in checkpointed state, so after a
    failover it resumes exactly from the last checkpoint (a random datagen would not). Its
    subtasks split the range; the rate limit lets a test kill a TaskManager mid-stream. The
    whole range is held in memory (~25 bytes an id).
    """
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE {name} (id BIGINT) WITH (
          'connector' = 'datagen', 'rows-per-second' = '{int(rows_per_second)}',
          'fields.id.kind' = 'sequence', 'fields.id.start' = '{start}',
          'fields.id.end' = '{start + rows - 1}')""")


def file_sink(t_env: Any, name: str, path: str | Path, schema: str, fmt: str = "csv",
              rollover: str = "1 s") -> None:
    """A ``filesystem`` table ``name (schema)`` writing ``fmt`` (csv or json) files to ``path``.

    Exactly-once: part files are written hidden (``.part-...inprogress...``) and renamed to
    ``part-...`` only once closed (``rollover``) *and* covered by a completed checkpoint, or at
    the end of a bounded job; after a failover the writers resume from the checkpoint (a
    TaskManager killed mid-job left no row lost or duplicated, and no hidden file behind).
    So committed rows lag the input by a rollover plus a checkpoint. The planner adds an
    ``end: Writer`` vertex (parallelism 1) behind the writers. From a DataStream:
    ``t_env.from_data_stream(ds).execute_insert(name)`` (verified, as ``to_data_stream`` of
    the source).
    """
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE {name} ({schema}) WITH (
          'connector' = 'filesystem', 'path' = '{Path(path).resolve().as_uri()}',
          'format' = '{fmt}', 'sink.rolling-policy.rollover-interval' = '{rollover}',
          'sink.rolling-policy.check-interval' = '{rollover}')""")


def committed_files(directory: str | Path) -> list[Path]:
    """Finished part files under ``directory``; hidden (``.``) and ``_`` files are skipped:
    they are in-progress or pending files (a crash leaves some behind) or markers."""
    root = Path(directory)
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and not any(
        part.startswith((".", "_")) for part in p.relative_to(root).parts))


def committed_rows(directory: str | Path) -> list[list[str]]:
    """The rows of the committed csv part files under ``directory``, as lists of strings."""
    rows: list[list[str]] = []
    for path in committed_files(directory):
        with open(path, newline="") as handle:
            rows.extend(row for row in csv.reader(handle) if row)
    return rows


def committed_json_rows(directory: str | Path) -> list[dict[str, Any]]:
    """The rows of the committed json part files (one object a line) under ``directory``."""
    return [json.loads(line) for path in committed_files(directory)
            for line in path.read_text().splitlines() if line.strip()]
