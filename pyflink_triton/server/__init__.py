"""A real local Triton Inference Server, for users without Docker, the demo and the tests.

The ``tritonserver`` binary (2.51, CPU, Python backend) comes from the ``nvidia-pytriton``
0.7.0 wheel. That wheel is not a dependency (it pins a ``tritonclient`` whose gRPC stubs need a
newer ``grpcio`` than apache-flink allows): the launcher uses an importable ``pytriton`` package
if there is one, and otherwise downloads the wheel's files once with
``pip install --no-deps --target``. Its Python-backend stub embeds the system's
``libpython3.X`` and takes its standard library from the first ``python3`` on ``PATH``, so the
launcher gives it a virtual environment made from the matching system interpreter
(``/usr/bin/python3.X``) with ``numpy<2`` (numpy 2 breaks the stub's output tensors). The wheel's
files, that environment and the backend directory are prepared once, under
``$PYFLINK_TRITON_HOME`` (default ``~/.cache/pyflink-triton``).

    with LocalTritonServer("model_repository") as server:
        print(server.http_endpoint)   # http://127.0.0.1:<port>
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

STUB_NUMPY = "numpy<2"
# The wheel the tritonserver binary (2.51) and its Python backend come from.
PYTRITON_VERSION = "0.7.0"
PYTRITON_REQUIREMENT = f"nvidia-pytriton=={PYTRITON_VERSION}"
# How long a restart waits for the previous process's ports to be bindable again.
PORT_RELEASE_TIMEOUT = 30.0


class TritonServerSetupError(RuntimeError):
    """The local server could not be prepared or did not become ready."""


def cache_dir() -> Path:
    # (an empty value counts as unset: it would put the cache in the working directory)
    return Path(os.environ.get("PYFLINK_TRITON_HOME") or Path.home() / ".cache" / "pyflink-triton")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` now. SO_REUSEADDR, as Triton's HTTP and
    gRPC servers set it, so connections of a dead server still in TIME_WAIT do not count."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _pytriton_dir() -> Path:
    """The ``pytriton`` package directory: an importable one, else the cached wheel's."""
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return _cached_pytriton() / "pytriton"


def _cached_pytriton() -> Path:
    """The nvidia-pytriton wheel's files (not an installed package), downloaded once."""
    target = cache_dir() / f"nvidia-pytriton-{PYTRITON_VERSION}"
    ready = target / ".ready"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
               "--disable-pip-version-check", "--target", str(target), PYTRITON_REQUIREMENT]
    alternatives = (
        f"or set PYFLINK_TRITON_HOME to another writable directory (the files take ~150 MB); "
        f"or install the wheel into this Python environment: {sys.executable} -m pip install "
        f"--no-deps {PYTRITON_REQUIREMENT}")
    try:
        _prepare_once(target, f"Downloading the tritonserver binary ({PYTRITON_REQUIREMENT} "
                      "wheel)", [(command, "Downloading the tritonserver binary "
                                           f"({PYTRITON_REQUIREMENT})")])
    except TritonServerSetupError as e:
        raise TritonServerSetupError(
            f"{e}\nThe local Triton launcher takes its tritonserver binary from the "
            f"{PYTRITON_REQUIREMENT} wheel and downloads it once into {target} with pip. To fix "
            f"it: let that pip command reach PyPI or an index holding the wheel (proxy, "
            f"PIP_INDEX_URL), or run it yourself elsewhere and copy the directory, then touch "
            f"{ready}; {alternatives}") from None
    except OSError as e:
        raise TritonServerSetupError(
            f"Could not prepare {target} for the tritonserver binary of the "
            f"{PYTRITON_REQUIREMENT} wheel: {e}. To fix it: make {cache_dir()} writable; "
            f"{alternatives}") from e
    return target


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _prepare_once(directory: Path, what: str,
                  steps: Sequence[tuple[Sequence[str], str]]) -> None:
    """Run ``steps`` (command, what it does) to fill ``directory``, unless an earlier run
    finished (its ``.ready`` marker); under a lock, so parallel launchers prepare it once."""
    with _locked(directory.parent / f".{directory.name}.lock"):
        if (directory / ".ready").exists():
            return
        log.info("%s in %s (once)", what, directory)
        shutil.rmtree(directory, ignore_errors=True)
        for command, step in steps:
            _run(command, step)
        (directory / ".ready").touch()


def _run(command: Sequence[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise TritonServerSetupError(
            f"{what} failed ({' '.join(command)}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


class TritonInstallation:
    """The binary, its libraries, and a backend directory plus stub Python ready to use."""

    def __init__(self, stub_python: str | None = None) -> None:
        root = _pytriton_dir()
        self.binary = root / "tritonserver" / "bin" / "tritonserver"
        self.libraries = root.parent / "nvidia_pytriton.libs"
        if not self.binary.exists():
            raise TritonServerSetupError(f"No tritonserver binary at {self.binary}.")
        self._stubs = root / "tritonserver" / "python_backend_stubs"
        self._backend_files = root / "tritonserver" / "backends" / "python"
        stub_python = stub_python or os.environ.get("PYFLINK_TRITON_STUB_PYTHON")
        self.stub_python = Path(stub_python) if stub_python else self._default_stub_python()
        self.backend_directory = self._prepare_backends()

    def _python_version(self, python: Path) -> str:
        version_code = "import sys; print('%d.%d' % sys.version_info[:2])"
        out = subprocess.run([str(python), "-c", version_code], capture_output=True, text=True,
                             check=True)
        return out.stdout.strip()

    def _default_stub_python(self) -> Path:
        """A venv from a system Python whose libpython the matching stub links to."""
        available = sorted((p.name for p in self._stubs.iterdir()),
                           key=lambda v: tuple(map(int, v.split("."))), reverse=True)
        for version in available:
            system_python = Path(f"/usr/bin/python{version}")
            if system_python.exists() and self._has_libpython(version):
                return self._stub_venv(system_python, version)
        raise TritonServerSetupError(
            "The Triton Python backend stub needs a system Python with its shared library "
            f"(one of {', '.join('python' + v for v in available)} in /usr/bin plus "
            "libpython3.X.so.1.0, e.g. Debian's python3.11 and libpython3.11); or set "
            "PYFLINK_TRITON_STUB_PYTHON to the python3 of such an environment.")

    @staticmethod
    def _has_libpython(version: str) -> bool:
        name = f"libpython{version}.so.1.0"
        return any(Path(d, name).exists() for d in
                   ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib",
                    "/usr/lib64", "/lib/x86_64-linux-gnu"))

    def _stub_venv(self, system_python: Path, version: str) -> Path:
        venv = cache_dir() / f"stub-python-{version}"
        python = venv / "bin" / "python3"
        _prepare_once(venv, f"Preparing the Python environment of Triton's Python backend "
                      f"({system_python} with {STUB_NUMPY})", [
            ([str(system_python), "-m", "venv", str(venv)],
             f"Creating a venv with {system_python} (on Debian: apt-get install "
             f"python{version}-venv)"),
            ([str(python), "-m", "pip", "install", "--quiet", STUB_NUMPY],
             f"Installing {STUB_NUMPY} for the backend stub"),
        ])
        return python

    def _prepare_backends(self) -> Path:
        version = self._python_version(self.stub_python)
        stub = self._stubs / version / "triton_python_backend_stub"
        if not stub.exists():
            raise TritonServerSetupError(
                f"nvidia-pytriton has no Python backend stub for Python {version} "
                f"({self.stub_python}).")
        backends = cache_dir() / f"backends-py{version}"
        python_backend = backends / "python"
        with _locked(cache_dir() / ".backends.lock"):
            python_backend.mkdir(parents=True, exist_ok=True)
            for source in [*self._backend_files.glob("*.*"), stub]:
                target = python_backend / source.name
                if not target.exists() or target.stat().st_size != source.stat().st_size:
                    shutil.copy2(source, target)
        return backends

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(self.libraries), env.get("LD_LIBRARY_PATH", "")) if p)
        env["PATH"] = os.pathsep.join((str(self.stub_python.parent), env.get("PATH", "")))
        return env


class LocalTritonServer:
    """A ``tritonserver`` process on loopback ports, with its log in a file.

    It can be stopped (``stop()``) or crashed (``kill()``) and started again: a restart keeps
    the ports, so clients and proxies see the same server come back, and appends to the log
    after a marker line.
    """

    def __init__(self, model_repository: str | os.PathLike[str], http_port: int | None = None,
                 grpc_port: int | None = None, log_path: str | os.PathLike[str] | None = None,
                 startup_timeout: float = 120.0, exit_timeout: int = 5,
                 extra_args: Sequence[str] = (), stub_python: str | None = None) -> None:
        self.model_repository = Path(model_repository).resolve()
        if not self.model_repository.is_dir():
            raise TritonServerSetupError(f"No model repository at {self.model_repository}.")
        self._fixed_ports = http_port is not None or grpc_port is not None
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.log_path = Path(log_path) if log_path else Path(
            tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        self.startup_timeout = startup_timeout
        # On SIGTERM Triton waits this long for in-flight requests and for clients to close
        # their connections (its own default is 30 s, and idle keep-alive clients never do).
        self.exit_timeout = exit_timeout
        self.extra_args = list(extra_args)
        self._stub_python = stub_python
        self.process: subprocess.Popen[bytes] | None = None
        self.launches = 0
        self._log_offset = 0  # where the current launch's output starts in the log
        # The Python backend's shared-memory regions (/dev/shm) are only removed by a graceful
        # exit; a prefix of our own lets kill() remove what the killed stubs leave behind.
        self._shm_prefix = f"triton_python_backend_shm_region_pft{uuid.uuid4().hex[:12]}_"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> LocalTritonServer:
        installation = TritonInstallation(self._stub_python)
        # A restart keeps the ports, which clients (and proxies) are pointed at, once the
        # previous process has let go of them.
        restart = self.launches > 0
        keep_ports = self._fixed_ports or restart
        if restart:
            self._wait_for_free_ports(PORT_RELEASE_TIMEOUT)
        for attempt in (1, 2):
            self._launch(installation)
            try:
                self._wait_until_ready()
                return self
            except TritonServerSetupError:
                self.stop()
                in_use = "Address already in use" in self._launch_log_text()
                if attempt == 1 and in_use and not keep_ports:
                    self.http_port, self.grpc_port = free_port(), free_port()
                    continue
                raise
        raise AssertionError("unreachable")

    def _launch(self, installation: TritonInstallation) -> None:
        command = [
            str(installation.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={installation.backend_directory}",
            f"--http-port={self.http_port}", "--http-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}", "--grpc-address=127.0.0.1",
            "--allow-metrics=false",
            f"--exit-timeout-secs={self.exit_timeout}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            # Each Python-backend model starts its own stub process (~0.4 s); loading them in
            # parallel cuts the start of a 27-model repository from ~11 s to ~8 s on 2 cores.
            "--model-load-thread-count=8",
            *self.extra_args,
        ]
        log.info("Starting %s (log: %s)", " ".join(command), self.log_path)
        # The first launch truncates the log; restarts append, so a test still sees what the
        # server logged before it was killed.
        with open(self.log_path, "ab" if self.launches else "wb") as log_file:
            if self.launches:
                log_file.write(f"\n===== pyflink_triton: restarting tritonserver (launch "
                               f"{self.launches + 1}) at {time.strftime('%H:%M:%S')} =====\n"
                               .encode())
                log_file.flush()
            self._log_offset = log_file.tell()
            self.process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=installation.environment(), start_new_session=True)
        self.launches += 1

    def _launch_log_text(self) -> str:
        """The log of the current (or last) launch only."""
        with contextlib.suppress(FileNotFoundError), open(self.log_path, "rb") as log_file:
            log_file.seek(self._log_offset)
            return log_file.read().decode(errors="replace")
        return ""

    def _wait_for_free_ports(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(port_is_free(p) for p in (self.http_port, self.grpc_port)):
            if time.monotonic() > deadline:
                raise TritonServerSetupError(
                    f"Ports {self.http_port} (HTTP) and {self.grpc_port} (gRPC) are not both "
                    f"free after {timeout:g} s; another process listens on one of them.")
            time.sleep(0.05)

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.http_endpoint}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonServerSetupError(
                    f"tritonserver exited with code {self.process.returncode} while starting. "
                    f"Log ({self.log_path}):\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    log.info("Triton is ready at %s", self.http_endpoint)
                    return
            time.sleep(0.2)
        raise TritonServerSetupError(
            f"tritonserver was not ready after {self.startup_timeout:g} s. Log "
            f"({self.log_path}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server and its backend stub processes (its whole process group)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        timeout = self.exit_timeout + 15
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("tritonserver did not stop within %g s; killing it", timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stub processes left behind, if any
        process.wait()
        self._remove_shared_memory()

    def kill(self) -> None:
        """Crash the server: SIGKILL its process group (server and backend stubs) with no
        graceful shutdown, so in-flight requests and open connections die with it. Returns
        once the server process is gone; ``start()`` then brings it back on the same ports."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self._remove_shared_memory()

    def _remove_shared_memory(self) -> None:
        for region in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            with contextlib.suppress(OSError):
                region.unlink()

    def __enter__(self) -> LocalTritonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

