"""Rows per second of the PyFlink UDF modes against raw tritonclient loops, and worker memory.

    .venv/bin/python bench/throughput.py            # ~5-6 minutes on 2 cores
    .venv/bin/python bench/throughput.py --quick    # every row count / 10, for a smoke run

Starts a local Triton with only ``add_one`` loaded (FP64 ``x`` [1] -> ``y`` = x + 1, dynamic
batching, max_batch_size 64) and measures, in this one process tree:

- ``noop``: a Python scalar UDF returning x + 1 in a real PyFlink job, the pipeline's ceiling;
- ``raw_sync``, ``raw_asyncio``, ``raw_batched``: tritonclient.http loops with no Flink at all
  (one row per request; one row per request with CONCURRENCY in flight; 64 rows per request);
- ``sync``, ``async``, ``vectorized``: this package's functions (``create_model``) in real
  PyFlink jobs over the same rows.

Every PyFlink job runs in process mode (one Python worker process, as on a cluster) at
parallelism 1, reads ``x`` = 1..N from a bounded ``datagen`` sequence, writes ``(x, y)`` to a
``blackhole`` sink and, in the same job, checks every row: a second sink gets COUNT(*), the
number of rows with y <> x + 1, and SUM(x). Wrong outputs exit with status 1. The Python
worker's RSS is sampled while each job runs; the 1M-row vectorized run also gives the RSS growth
after warm-up. Prints a Markdown table and the target ratios, and writes
``bench/results/throughput.json`` and ``bench/results/throughput.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient

from pyflink_triton.server import LocalTritonServer

from machine import machine_and_versions
from reporting import exit_status, fmt, short_error, write_results
from table_env import process_mode_table_env, sink_lines

ROOT = Path(__file__).resolve().parent.parent
RESULTS_JSON = ROOT / "bench" / "results" / "throughput.json"
RESULTS_PNG = ROOT / "bench" / "results" / "throughput.png"
MODEL = "add_one"
CONCURRENCY = 32  # requests in flight: raw_asyncio and the async/vectorized UDFs
RAW_BATCH = 64  # rows per request of raw_batched: add_one's max_batch_size
RSS_GROWTH_ROWS = 1_000_000
RSS_GROWTH_MODE = "vectorized"
RSS_GROWTH_TARGET_MB = 50.0
# Rows per mode. A PyFlink job costs ~2 s to start, so the fast ones (noop, vectorized) get 1M
# rows, or the start-up would be most of their time; vectorized's run is also the RSS-growth
# run. sync and raw_sync run at ~2k rows/s, so they get fewer (yet enough for the start-up to
# be a small part), to keep the whole run within ~5 minutes on 2 cores. --quick divides every
# count by QUICK_DIVISOR.
ROWS = {
    "raw_sync": 50_000,
    "raw_asyncio": 200_000,
    "raw_batched": 200_000,
    "noop": 1_000_000,
    "sync": 50_000,
    "async": 200_000,
    "vectorized": RSS_GROWTH_ROWS,
    "async_grpc": 200_000,
    "vectorized_grpc": 1_000_000,
}
UDF_MODES = ("sync", "async", "vectorized")
GRPC_MODES = ("async_grpc", "vectorized_grpc")  # only with --grpc (they add ~1-3 minutes)
QUICK_DIVISOR = 10
STARTUP_ROWS = 10  # the jobs that measure the fixed cost of starting a PyFlink job
STARTUP_REPEATS = 3  # warm 10-row noop jobs, median taken (the first, cold one reported apart)
RAW_WARMUP_ROWS = 200  # untimed requests first, as the corrected PyFlink numbers exclude start-up
RSS_SAMPLE_SECONDS = 0.2
FLINK_CONFIG = {
    "parallelism.default": "1",
    # Large bundles: with small ones the per-bundle round trip to the worker dominates.
    "python.fn-execution.bundle.size": "100000",
    "python.fn-execution.arrow.batch.size": "10000",
    # PyFlink's own cap on async calls in flight (default 10): the same as raw_asyncio.
    "table.exec.async-scalar.max-concurrent-operations": str(CONCURRENCY),
}
WORKER_MARKER = "pyflink.fn_execution"  # in the cmdline of the Python worker (beam_boot)
MB = 1024 * 1024


class Mismatch(Exception):
    """A mode's outputs were wrong (values, or rows missing or duplicated)."""


@dataclass
class Measurement:
    mode: str
    rows: int
    seconds: float | None = None
    rows_per_s: float | None = None
    # PyFlink modes: rows / (seconds - the median time of a 10-row noop job).
    rows_per_s_startup_corrected: float | None = None
    startup_10_rows_seconds: float | None = None  # this mode's own 10-row job (a smoke test)
    peak_worker_rss_mb: float | None = None  # VmHWM of the Python worker
    rss_growth_mb: float | None = None  # after 10 % of the rows, see rss_growth()
    workers_seen: int | None = None
    triton_rows_per_execution: float | None = None  # the batches Triton formed
    client_cpu_seconds: float | None = None  # raw modes: this process's CPU time
    options: dict[str, str] | None = None
    load_average_1m: float | None = None
    wrong_outputs: bool = False
    error: str | None = None

    @property
    def comparable_rows_per_s(self) -> float | None:
        """What the targets compare: start-up corrected for PyFlink jobs, as is for raw loops."""
        return self.rows_per_s if self.mode in RAW_MODES else self.rows_per_s_startup_corrected


@dataclass
class RssGrowth:
    mode: str
    rows: int
    seconds: float | None = None
    baseline: str | None = None  # how "10 % of the run" was located
    rss_at_10pct_mb: float | None = None
    peak_after_10pct_mb: float | None = None
    growth_mb: float | None = None
    final_rss_mb: float | None = None
    vm_hwm_mb: float | None = None  # the kernel's peak RSS of the worker over its whole life
    samples: list[tuple[float, float]] = field(default_factory=list)  # (s, RSS MB), thinned
    error: str | None = None


# --- Triton ----------------------------------------------------------------------------------

def stats_url(endpoint: str) -> str:
    return f"{endpoint}/v2/models/{MODEL}/stats"


def triton_counts(url: str) -> tuple[int, int] | None:
    """(rows inferred, model executions) so far: progress, and the batches Triton formed."""
    with contextlib.suppress(OSError, ValueError, KeyError, IndexError), \
            urllib.request.urlopen(url, timeout=2) as response:
        stats = json.load(response)["model_stats"][0]
        return int(stats["inference_count"]), int(stats["execution_count"])
    return None


def rows_per_execution(before: tuple[int, int] | None,
                       after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


# --- worker memory -----------------------------------------------------------------------------

def vm_hwm_mb(pid: int) -> float | None:
    """The kernel's high-water mark of the process's RSS, which sampling could miss."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


@dataclass
class WorkerSamples:
    """What the sampler saw during one job."""

    samples: list[tuple[float, int, float, int | None]]  # (s, pid, RSS MB, Triton rows done)
    hwm: dict[int, float]  # pid -> VmHWM MB

    @property
    def peak_mb(self) -> float | None:
        return max(self.hwm.values(), default=None)


def sample_workers(parent: int, endpoint: str) -> None:
    """The sampler process: between 'start' and 'stop' on stdin, every RSS_SAMPLE_SECONDS,
    record the RSS of the PyFlink Python workers among ``parent``'s descendants, and Triton's
    row count.

    The worker is ``python -m pyflink.fn_execution.beam.beam_boot``, started through
    pyflink-udf-runner.sh by the Flink JVM, a child of the bench. Only the bench's descendants
    are searched, so other people's PyFlink jobs on the machine are not counted.

    It is a separate process, not a thread of the bench, because a second Python thread in the
    PyFlink driver makes py4j calls of its own (garbage-collected Java references are released
    from whichever thread runs the collection); py4j can then move the driver's later calls to
    another JVM thread, where the planner fails with ``NullPointerException:
    metadataHandlerProvider`` (Calcite's thread-local, FLINK-23020). This bench hit it.
    """
    url = stats_url(endpoint)
    samples: list[tuple[float, int, float, int | None]] = []
    hwm: dict[int, float] = {}
    started: float | None = None
    bench = psutil.Process(parent)
    while True:
        if select.select([sys.stdin], [], [], RSS_SAMPLE_SECONDS)[0]:
            command = sys.stdin.readline().strip()  # one command at a time, each answered
            if not command:
                return  # EOF: the bench has ended
            if command == "start":
                samples, hwm, started = [], {}, time.monotonic()
                print("ok", flush=True)
            elif command == "stop":
                print(json.dumps({"samples": samples, "hwm": hwm}), flush=True)
                started = None
        elif started is not None:
            counts = triton_counts(url)
            for process in bench.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if WORKER_MARKER in " ".join(process.cmdline()):
                        rss = process.memory_info().rss / MB
                        samples.append((time.monotonic() - started, process.pid, rss,
                                        counts[0] if counts else None))
                        hwm[process.pid] = max(hwm.get(process.pid, 0.0),
                                               vm_hwm_mb(process.pid) or rss)


class WorkerSampler:
    """The bench's side of the sampler process (see :func:`sample_workers`)."""

    def __init__(self, endpoint: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--sample-workers-of", str(os.getpid()), endpoint],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def _ask(self, command: str) -> str:
        assert self._process.stdin and self._process.stdout
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        answer = self._process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the RSS sampler exited (status {self._process.poll()})")
        return answer

    @contextlib.contextmanager
    def sampling(self) -> Iterator[list[WorkerSamples]]:
        """Samples while the block runs; the list holds the result afterwards."""
        self._ask("start")
        result: list[WorkerSamples] = []
        try:
            yield result
        finally:
            data = json.loads(self._ask("stop"))
            result.append(WorkerSamples([tuple(s) for s in data["samples"]],
                                        {int(pid): mb for pid, mb in data["hwm"].items()}))

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()  # EOF ends the sampler
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()


def rss_growth(seen: WorkerSamples, mode: str, rows: int, seconds: float) -> RssGrowth:
    """RSS once 10 % of the rows are done (imports and warm-up behind) versus the peak after.

    Progress is Triton's inference_count for the model, so a mode that does not call Triton
    (noop) has no growth figure: 10 % of its wall time would still be in the worker's imports.
    """
    if not seen.samples:
        return RssGrowth(mode, rows, seconds, error="no worker process was seen")
    # The worker that lived longest is the one that processed the rows.
    pid = max(seen.hwm, key=lambda p: sum(1 for s in seen.samples if s[1] == p))
    series = [(t, rss, done) for t, p, rss, done in seen.samples if p == pid]
    first_done, last_done = series[0][2], series[-1][2]
    if first_done is None or last_done is None or last_done - first_done < rows / 10:
        return RssGrowth(mode, rows, seconds, error="no progress seen in Triton's statistics")
    after = [rss for _, rss, done in series if (done or 0) - first_done >= rows / 10]
    step = max(1, len(series) // 200)  # keep the JSON small
    return RssGrowth(mode, rows, seconds, "10 % of the rows done (Triton's inference_count)",
                     rss_at_10pct_mb=after[0], peak_after_10pct_mb=max(after),
                     growth_mb=max(after) - after[0], final_rss_mb=series[-1][1],
                     vm_hwm_mb=seen.hwm[pid],
                     samples=[(round(t, 2), round(r, 1)) for t, r, _ in series[::step]])


# --- raw tritonclient loops --------------------------------------------------------------------

def host_port(endpoint: str) -> str:
    return endpoint.split("://", 1)[-1]


def check_raw(xs: np.ndarray, ys: np.ndarray, mode: str) -> None:
    wrong = int(np.count_nonzero(ys.reshape(-1) != xs.reshape(-1) + 1))
    if wrong:
        raise Mismatch(f"{mode}: {wrong} of {xs.size} outputs differ from x + 1")


def timed_and_checked(mode: str, rows: int, run: Callable[[np.ndarray], np.ndarray]) -> float:
    """A warm-up (connections, first-request costs), then ``run`` over x = 1..rows, timed."""
    run(np.arange(1, RAW_WARMUP_ROWS + 1, dtype=np.float64))
    xs = np.arange(1, rows + 1, dtype=np.float64)
    start = time.perf_counter()
    ys = run(xs)
    seconds = time.perf_counter() - start
    check_raw(xs, ys, mode)
    return seconds


def raw_sync(endpoint: str, rows: int) -> float:
    """One [1, 1] request per row, each waiting for the previous one. Returns the seconds."""
    client = httpclient.InferenceServerClient(host_port(endpoint))

    def run(xs: np.ndarray) -> np.ndarray:
        ys = np.empty_like(xs)
        for i in range(xs.size):  # the request is built per row, as a per-row caller must
            tensor = httpclient.InferInput("x", [1, 1], "FP64")
            tensor.set_data_from_numpy(xs[i:i + 1].reshape(1, 1), binary_data=True)
            output = httpclient.InferRequestedOutput("y", binary_data=True)
            ys[i] = client.infer(MODEL, [tensor], outputs=[output]).as_numpy("y")[0, 0]
        return ys

    try:
        return timed_and_checked("raw_sync", rows, run)
    finally:
        client.close()


def raw_asyncio(endpoint: str, rows: int) -> float:
    """One [1, 1] request per row, CONCURRENCY in flight on one aio client. Returns seconds."""

    async def run_async(xs: np.ndarray) -> np.ndarray:
        ys = np.empty_like(xs)
        todo = iter(range(xs.size))  # shared by the workers: each row is taken once
        client = aiohttpclient.InferenceServerClient(host_port(endpoint))

        async def worker() -> None:
            for i in todo:
                tensor = aiohttpclient.InferInput("x", [1, 1], "FP64")
                tensor.set_data_from_numpy(xs[i:i + 1].reshape(1, 1), binary_data=True)
                output = aiohttpclient.InferRequestedOutput("y", binary_data=True)
                result = await client.infer(MODEL, [tensor], outputs=[output])
                ys[i] = result.as_numpy("y")[0, 0]

        try:
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        finally:
            await client.close()
        return ys

    # One event loop per call, so the client is opened in the warm-up and again when timed:
    # its connections are opened while the first CONCURRENCY requests go out.
    return timed_and_checked("raw_asyncio", rows, lambda xs: asyncio.run(run_async(xs)))


def raw_batched(endpoint: str, rows: int) -> float:
    """RAW_BATCH rows per [RAW_BATCH, 1] request, one request at a time. Returns the seconds."""
    client = httpclient.InferenceServerClient(host_port(endpoint))

    def run(xs: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, xs.size, RAW_BATCH):
            batch = xs[start:start + RAW_BATCH].reshape(-1, 1)
            tensor = httpclient.InferInput("x", list(batch.shape), "FP64")
            tensor.set_data_from_numpy(batch, binary_data=True)
            output = httpclient.InferRequestedOutput("y", binary_data=True)
            outputs.append(client.infer(MODEL, [tensor], outputs=[output]).as_numpy("y"))
        return np.concatenate(outputs)

    try:
        return timed_and_checked("raw_batched", rows, run)
    finally:
        client.close()


RAW_MODES: dict[str, Callable[[str, int], float]] = {
    "raw_sync": raw_sync, "raw_asyncio": raw_asyncio, "raw_batched": raw_batched}


def measure_raw(m: Measurement, endpoint: str) -> None:
    before, cpu_before = triton_counts(stats_url(endpoint)), time.process_time()
    m.seconds = RAW_MODES[m.mode](endpoint, m.rows)
    # Includes the warm-up: a few hundred rows more than timed, a small share.
    m.client_cpu_seconds = time.process_time() - cpu_before
    m.triton_rows_per_execution = rows_per_execution(before, triton_counts(stats_url(endpoint)))
    m.rows_per_s = m.rows / m.seconds


# --- PyFlink jobs ------------------------------------------------------------------------------

@dataclass
class JobResult:
    seconds: float
    workers: WorkerSamples
    triton_rows_per_execution: float | None


class FlinkBench:
    """One TableEnvironment (one JVM) running every job, each a fresh mini-cluster job."""

    def __init__(self, scratch: Path, sampler: WorkerSampler, endpoint: str) -> None:
        # First (it sets process mode before PyFlink starts). It ships the package for the noop
        # jobs too, so that every job pays the same start-up.
        self.t_env = process_mode_table_env(FLINK_CONFIG)
        from pyflink.table import DataTypes
        from pyflink.table.udf import udf

        # A lambda is pickled by value, so the workers need not import this file.
        self.t_env.create_temporary_function(
            "noop", udf(lambda x: x + 1.0, result_type=DataTypes.DOUBLE(), deterministic=True))
        self.t_env.execute_sql(
            "CREATE TEMPORARY TABLE bh (x DOUBLE, ts TIMESTAMP_LTZ(3), y DOUBLE) "
            "WITH ('connector' = 'blackhole')")
        self.scratch = scratch
        self.sampler = sampler
        self.stats_url = stats_url(endpoint)
        self.functions: dict[str, tuple[str, dict[str, str]]] = {}  # mode -> (name, options)
        self._sources: set[int] = set()
        self._jobs = 0

    def source(self, rows: int) -> str:
        """x = 1.0 .. rows, with an event time (x ms) for the one-window check aggregate."""
        name = f"src_{rows}"
        if rows not in self._sources:
            # rows-per-second: datagen's default is 10,000 rows/s, which would be the ceiling.
            self.t_env.execute_sql(f"""
                CREATE TEMPORARY TABLE {name} (
                  i BIGINT, x AS CAST(i AS DOUBLE), ts AS TO_TIMESTAMP_LTZ(i, 3),
                  WATERMARK FOR ts AS ts
                ) WITH (
                  'connector' = 'datagen', 'number-of-rows' = '{rows}',
                  'rows-per-second' = '1000000000', 'fields.i.kind' = 'sequence',
                  'fields.i.start' = '1', 'fields.i.end' = '{rows}')""")
            self._sources.add(rows)
        return name

    def run(self, function: str, rows: int, check_plan: bool = False) -> JobResult:
        """Run ``function(x)`` over ``rows`` rows into the blackhole and check every output.

        Both sinks read one view; the planner reuses its PythonCalc, so the UDF runs once per
        row (``check_plan`` verifies that). The check counts rows with y <> x + 1 (NULL
        included), which also catches outputs paired with the wrong input, as in FLINK-39532;
        SUM(y - x) would not. COUNT and SUM(x) catch lost or duplicated rows. It is a one-day
        event-time window, not a plain aggregate, so that its result is insert-only and fits
        a filesystem sink; all x (ms) fall in the first day.
        """
        self._jobs += 1
        tag = f"j{self._jobs}"
        out_dir = self.scratch / tag
        self.t_env.execute_sql(
            f"CREATE TEMPORARY VIEW v_{tag} AS SELECT x, ts, {function}(x) AS y "
            f"FROM {self.source(rows)}")
        self.t_env.execute_sql(
            f"CREATE TEMPORARY TABLE chk_{tag} (n BIGINT, bad BIGINT, sum_x DOUBLE) WITH ("
            f"'connector' = 'filesystem', 'path' = '{out_dir}', 'format' = 'csv')")
        statements = self.t_env.create_statement_set()
        statements.add_insert_sql(f"INSERT INTO bh SELECT x, ts, y FROM v_{tag}")
        statements.add_insert_sql(f"""
            INSERT INTO chk_{tag}
            SELECT COUNT(*), SUM(CASE WHEN y = x + 1 THEN 0 ELSE 1 END), SUM(x)
            FROM TABLE(TUMBLE(TABLE v_{tag}, DESCRIPTOR(ts), INTERVAL '1' DAY))
            GROUP BY window_start, window_end""")
        if check_plan:
            check_reused(statements.explain(), function)
        before = triton_counts(self.stats_url)
        with self.sampler.sampling() as seen:
            start = time.perf_counter()
            statements.execute().wait()
            seconds = time.perf_counter() - start
        after = triton_counts(self.stats_url)
        check_job_output(out_dir, rows)
        return JobResult(seconds, seen[0], rows_per_execution(before, after))


def check_reused(plan: str, function: str) -> None:
    execution_plan = plan.split("== Optimized Execution Plan ==", 1)[-1]
    calls = execution_plan.count(f"{function}(")
    if calls != 1:
        raise RuntimeError(f"{function} appears {calls} times in the execution plan: the "
                           "check sink would call the model again")


def check_job_output(out_dir: Path, rows: int) -> None:
    lines = sink_lines(out_dir)
    if len(lines) != 1:
        raise Mismatch(f"expected one check row, got {lines!r}")
    count, bad, sum_x = lines[0].split(",")
    expected_sum = rows * (rows + 1) / 2  # exact in a double for these sizes
    if int(count) != rows or int(bad) != 0 or float(sum_x) != expected_sum:
        raise Mismatch(f"{int(count)} rows out of {rows}, {int(bad)} with y <> x + 1, "
                       f"SUM(x) = {float(sum_x)!r} (expected {expected_sum!r})")


def udf_options(mode: str, server: LocalTritonServer) -> dict[str, str]:
    base, _, protocol = mode.partition("_")
    options = {"endpoint": server.http_endpoint, "model-name": MODEL, "mode": base}
    if base != "sync":  # (a sync function has one request in flight: the option is refused)
        options["max-concurrent-requests"] = str(CONCURRENCY)
    if protocol == "grpc":
        options.update({"protocol": "grpc", "endpoint": server.grpc_endpoint})
    return options


def register(bench: FlinkBench, mode: str, server: LocalTritonServer) -> tuple[str, dict]:
    """Register ``f_<mode>`` with create_model (once); returns its name and the options used."""
    if mode in bench.functions:
        return bench.functions[mode]
    from pyflink_triton import create_model  # (imported here: a broken package fails a mode)

    name = f"f_{mode}"
    options = udf_options(mode, server)
    create_model(bench.t_env, name, options, inputs=[("x", "DOUBLE")], output=("y", "DOUBLE"))
    bench.functions[mode] = name, options
    return name, options


def measure_startup(bench: FlinkBench) -> dict[str, Any]:
    """The fixed cost of a PyFlink job: the noop job on 10 rows, cold and then warm."""
    cold = bench.run("noop", STARTUP_ROWS, check_plan=True).seconds
    warm = [bench.run("noop", STARTUP_ROWS).seconds for _ in range(STARTUP_REPEATS)]
    return {"rows": STARTUP_ROWS, "first_job_seconds": cold, "warm_jobs_seconds": warm,
            "overhead_seconds": statistics.median(warm)}


def measure_flink(bench: FlinkBench, m: Measurement, function: str,
                  overhead: float) -> JobResult:
    # A 10-row job first: a smoke test that fails fast, and this mode's own start-up time.
    m.startup_10_rows_seconds = bench.run(function, STARTUP_ROWS, check_plan=True).seconds
    job = bench.run(function, m.rows)
    m.seconds, m.rows_per_s = job.seconds, m.rows / job.seconds
    net = job.seconds - overhead
    m.rows_per_s_startup_corrected = m.rows / net if net > 0 else None
    m.peak_worker_rss_mb, m.workers_seen = job.workers.peak_mb, len(job.workers.hwm)
    m.rss_growth_mb = rss_growth(job.workers, m.mode, m.rows, job.seconds).growth_mb
    m.triton_rows_per_execution = job.triton_rows_per_execution
    return job


# --- report ------------------------------------------------------------------------------------

def markdown_table(results: list[Measurement]) -> str:
    lines = ["| mode | rows | seconds | rows/s | rows/s excl. job start-up | 10-row job s "
             "| peak worker RSS MB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.error:
            what = "WRONG OUTPUTS" if r.wrong_outputs else "ERROR"
            lines.append(f"| {r.mode} | {r.rows:,} | {what}: {r.error.splitlines()[0][:90]} "
                         "| | | | |")
            continue
        raw = r.mode in RAW_MODES
        lines.append(
            f"| {r.mode} | {r.rows:,} | {fmt(r.seconds, '.2f')} | {fmt(r.rows_per_s)} "
            f"| {'-' if raw else fmt(r.rows_per_s_startup_corrected)} "
            f"| {'-' if raw else fmt(r.startup_10_rows_seconds, '.2f')} "
            f"| {'-' if raw else fmt(r.peak_worker_rss_mb, '.0f')} |")
    return "\n".join(lines)


def evaluate_targets(results: list[Measurement], growth: RssGrowth | None) -> list[dict]:
    """The targets, on start-up corrected rows/s for PyFlink modes (raw loops have none)."""
    rate = {r.mode: r.comparable_rows_per_s for r in results if not r.error}
    targets = []
    for mode, factor, baseline in [("sync", 0.8, "raw_sync"), ("async", 0.7, "raw_asyncio"),
                                   ("async", 3.0, "sync"), ("vectorized", 0.5, "noop")]:
        ours, theirs = rate.get(mode), rate.get(baseline)
        ratio = ours / theirs if ours and theirs else None
        targets.append({"target": f"{mode} >= {factor} x {baseline}", "ratio": ratio,
                        "status": "n/a" if ratio is None else
                        ("PASS" if ratio >= factor else "FAIL")})
    grown = growth.growth_mb if growth else None
    described = f"{growth.rows:,} rows {growth.mode}" if growth else "(not run)"
    targets.append({
        "target": f"RSS growth <= {RSS_GROWTH_TARGET_MB:g} MB over {described}",
        "growth_mb": grown,
        "status": "n/a" if grown is None else
        ("PASS" if grown <= RSS_GROWTH_TARGET_MB else "FAIL")})
    return targets


def plot(results: list[Measurement], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in results if not r.error and r.rows_per_s]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    positions = range(len(done))  # numeric: category axes order bars by first appearance
    corrected = [r.comparable_rows_per_s or r.rows_per_s for r in done]
    flink = [i for i, r in enumerate(done) if r.mode not in RAW_MODES]
    ax.bar(flink, [corrected[i] for i in flink], color="#9fbfe6",
           label="PyFlink job, excl. its start-up")
    ax.bar(positions, [r.rows_per_s for r in done], width=0.5,
           color=["#8c8c8c" if r.mode in RAW_MODES else "#1f5fa8" for r in done],
           label="as measured (grey: raw tritonclient loops)")
    ax.set_xticks(list(positions), [r.mode for r in done])
    for i, value in enumerate(corrected):
        ax.annotate(f"{value:,.0f}", (i, value), ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("rows/s (log scale)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_report(report: dict[str, Any]) -> None:
    print()
    print(report["table"])
    startup = report["startup"]
    if startup:
        print(f"\nJob start-up: first job {startup['first_job_seconds']:.2f} s (cold JVM), then "
              f"{startup['overhead_seconds']:.2f} s (median of {STARTUP_REPEATS} 10-row noop "
              "jobs), subtracted in 'excl. job start-up'.")
    print("Targets (PyFlink modes on start-up corrected rows/s):")
    for t in report["targets"]:
        value = (f"{t['ratio']:.2f}x" if t.get("ratio") is not None else
                 f"{t['growth_mb']:.1f} MB" if t.get("growth_mb") is not None else "not measured")
        print(f"  {t['status']:4}  {t['target']}: {value}")


# --- main --------------------------------------------------------------------------------------

@dataclass
class Run:
    """Everything measured, and which modes had wrong outputs or crashed."""

    results: list[Measurement] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def mode(self, measurement: Measurement) -> Iterator[Measurement]:
        measurement.load_average_1m = os.getloadavg()[0]  # other processes skew the times
        print(f"{measurement.mode}: {measurement.rows:,} rows ...", end=" ", flush=True)
        try:
            yield measurement
        except Exception as e:  # recorded; the other modes still run
            measurement.wrong_outputs = isinstance(e, Mismatch)
            measurement.error = short_error(e)
            self.failed.append(measurement.mode)
            print(f"{'WRONG OUTPUTS' if measurement.wrong_outputs else 'ERROR'}: "
                  f"{measurement.error}", flush=True)
        else:
            corrected = (f" (excl. start-up: {fmt(measurement.rows_per_s_startup_corrected)}), "
                         f"worker RSS {fmt(measurement.peak_worker_rss_mb)} MB"
                         if measurement.mode not in RAW_MODES else "")
            print(f"{fmt(measurement.seconds, '.2f')} s, {fmt(measurement.rows_per_s)} rows/s"
                  f"{corrected}", flush=True)
        self.results.append(measurement)


def measure_rss_growth(bench: FlinkBench, run: Run, server: LocalTritonServer, mode: str,
                       rows: int, jobs: dict[str, JobResult]) -> RssGrowth:
    """RSS growth of ``mode`` over ``rows`` rows: from its throughput job if it had that many
    rows (the default: vectorized over 1M), else from a run of its own."""
    main_run = next((r for r in run.results if r.mode == mode), None)
    if main_run and main_run.rows == rows:
        if mode not in jobs:
            return RssGrowth(mode, rows, error=f"the {mode} run failed: {main_run.error}")
        return rss_growth(jobs[mode].workers, mode, rows, jobs[mode].seconds)
    print(f"RSS growth: {mode} over {rows:,} rows ...", end=" ", flush=True)
    try:
        job = bench.run(register(bench, mode, server)[0], rows)
        growth = rss_growth(job.workers, mode, rows, job.seconds)
        print(f"{job.seconds:.1f} s", flush=True)
    except Exception as e:
        run.failed.append(f"rss_growth ({mode})")
        growth = RssGrowth(mode, rows, error=short_error(e))
        print(f"ERROR: {growth.error}", flush=True)
    return growth


def run_all(server: LocalTritonServer, sampler: WorkerSampler, args: argparse.Namespace,
            scratch: Path) -> dict[str, Any]:
    divisor = QUICK_DIVISOR if args.quick else 1
    rows = {mode: count // divisor for mode, count in ROWS.items()}
    load_before = os.getloadavg()
    run = Run()
    for mode in RAW_MODES:
        with run.mode(Measurement(mode, rows[mode])) as m:
            measure_raw(m, server.http_endpoint)

    print("PyFlink start-up (noop on 10 rows) ...", end=" ", flush=True)
    bench = FlinkBench(scratch, sampler, server.http_endpoint)
    startup = measure_startup(bench)
    overhead = startup["overhead_seconds"]
    print(f"first job {startup['first_job_seconds']:.2f} s, then {overhead:.2f} s", flush=True)

    jobs: dict[str, JobResult] = {}
    with run.mode(Measurement("noop", rows["noop"])) as m:
        jobs["noop"] = measure_flink(bench, m, "noop", overhead)
    for mode in [*args.modes, *(GRPC_MODES if args.grpc else ())]:
        with run.mode(Measurement(mode, rows[mode])) as m:
            function, m.options = register(bench, mode, server)
            jobs[mode] = measure_flink(bench, m, function, overhead)

    growth = measure_rss_growth(bench, run, server, args.rss_mode, RSS_GROWTH_ROWS // divisor,
                                jobs)
    print(f"RSS growth ({growth.mode}, {growth.rows:,} rows): "
          + (f"{fmt(growth.rss_at_10pct_mb)} MB at 10 % -> peak "
             f"{fmt(growth.peak_after_10pct_mb)} MB" if not growth.error else growth.error))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_and_versions(server.http_endpoint, load_before),
        "model": MODEL,
        "quick": args.quick,
        "config": {"concurrency": CONCURRENCY, "raw_batch": RAW_BATCH, "flink": FLINK_CONFIG,
                   "raw_warmup_rows": RAW_WARMUP_ROWS, "rss_sample_seconds": RSS_SAMPLE_SECONDS,
                   "parallelism": 1, "python_worker_execution_mode": "process"},
        "measured": ("PyFlink modes: wall time of statement_set.execute().wait(): a datagen "
                     "sequence through the UDF into a blackhole sink, plus a one-window check "
                     "aggregate in the same job. 'Corrected' subtracts the median time of the "
                     "same noop job on 10 rows. Raw modes: the loop only, after a warm-up. "
                     "The target ratios use the corrected PyFlink numbers."),
        "startup": startup,
        "results": [asdict(r) for r in run.results],
        "rss_growth": asdict(growth),
        "targets": evaluate_targets(run.results, growth),
        "failed_modes": run.failed,
        "table": markdown_table(run.results),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"divide every row count by {QUICK_DIVISOR} (a smoke run)")
    parser.add_argument("--modes", nargs="+", default=UDF_MODES, choices=UDF_MODES,
                        help="the modes of this package to measure (default: all three)")
    parser.add_argument("--grpc", action="store_true",
                        help=f"also run {', '.join(GRPC_MODES)} ('protocol' = 'grpc')")
    parser.add_argument("--rss-mode", default=RSS_GROWTH_MODE,
                        choices=[*UDF_MODES, *GRPC_MODES],
                        help=f"the mode of the RSS-growth run (default {RSS_GROWTH_MODE})")
    parser.add_argument("--sample-workers-of", nargs=2, metavar=("PID", "ENDPOINT"),
                        help=argparse.SUPPRESS)  # internal: the sampler process
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.sample_workers_of:
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            sample_workers(int(args.sample_workers_of[0]), args.sample_workers_of[1])
        return 0
    # SIGTERM should stop the server too (it runs in its own session, so it is not signalled).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    server = LocalTritonServer(ROOT / "model_repository", extra_args=[
        "--model-control-mode=explicit", f"--load-model={MODEL}"])
    started = time.monotonic()
    sampler: WorkerSampler | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="throughput-") as scratch:
            server.start()
            sampler = WorkerSampler(server.http_endpoint)
            report = run_all(server, sampler, args, Path(scratch))
    except KeyboardInterrupt:
        print("Interrupted; stopping Triton.", file=sys.stderr)
        return 130
    finally:
        if sampler:
            sampler.close()
        server.stop()
    print_report(report)
    write_results(report, RESULTS_JSON)
    plot([Measurement(**r) for r in report["results"]], RESULTS_PNG,
         f"{MODEL} on a local Triton, parallelism 1: rows/s per mode "
         f"({report['date'][:10]}{', --quick' if args.quick else ''})")
    print(f"\nResults written to {RESULTS_JSON} and {RESULTS_PNG.name} "
          f"({time.monotonic() - started:.0f} s in all)")
    return exit_status(report["failed_modes"], "wrong outputs or errors")


if __name__ == "__main__":
    sys.exit(main())
