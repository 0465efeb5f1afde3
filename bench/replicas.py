"""Replicas: rows/s of an async-mode PyFlink job against one Triton server versus two.

    .venv/bin/python bench/replicas.py              # ~3 min on 2 cores
    .venv/bin/python bench/replicas.py --quick      # 500 rows, one repeat: a smoke run (~40 s)

Starts two local Tritons (``pyflink_triton.server.LocalTritonServer``, two processes on
different ports) serving one repository generated in a temporary directory: only
``sleep_add_one`` (``bench/models/sleep_add_one.py``: INT64 ``x`` [1] -> ``y`` = x + 1 after a
5 ms sleep per request; Python backend, ``max_batch_size: 0``, one instance per server, no
dynamic batching), so one server executes at most ~200 requests/s.

Two functions are registered with ``create_model`` (``'mode' = 'async'``,
``'max-concurrent-requests' = '16'``), differing only in ``'endpoint'``:

- ``one``: ``'endpoint' = 'http://127.0.0.1:<p1>'``;
- ``two``: ``'endpoint' = 'http://127.0.0.1:<p1>,http://127.0.0.1:<p2>'`` (a list of servers).

Both servers run during every measurement, so the machine's load is the same. After direct
warm-up requests to each server and one small untimed job per function, the timed jobs run
interleaved, one, two, one, two, ... (``--repeats`` each). Every job runs in process mode (one
Python worker, as on a cluster) at parallelism 1: ``f(x)`` over a bounded ``datagen`` sequence
(``rows-per-second`` raised: its default of 10,000 would be a ceiling). Each run reads its own
x range, so a stale answer cannot pass.

**Time.** The model logs each request's start and end. "steady rows/s" counts the requests
that ended between the 10th and the 90th percentile of the run's end times, over that time:
no job start-up (a few seconds, which varies with the load, and would weigh twice as much on
the faster run), no ramp-up, no tail. The target compares the medians of the steady rates:
two >= 1.7 x one. The wall time (``execute()`` to the job's end) and its rows/s are reported
too.

**Correctness.** Every row is checked inside the job: its one sink gets COUNT(*), the number
of rows with y <> x + 1 (NULL included), COUNT(DISTINCT x), MIN(x) and MAX(x), which must say
that each x of the run came through exactly once with y = x + 1. The model's log must hold
each x once too. A wrong, missing or duplicated row, or a job that fails or times out, makes
the command exit with status 1; a missed target only prints FAIL.

**Split.** Each server's ``/v2/models/sleep_add_one/stats`` before and after a run gives its
share of the requests, its requests per execution, its busy time (compute_infer) as a share of
the run, and the mean time a request queued there.

Output: a Markdown table, the ratio, and ``bench/results/replicas.json`` (every number, the
options, the model config, the date and the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import statistics
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pyflink_triton.server import LocalTritonServer

from machine import machine_and_versions
from reporting import finish, fmt, run_in_scratch, short_error, target_line
from table_env import process_mode_table_env, sink_lines

ROOT = Path(__file__).resolve().parent.parent
MODEL_SOURCE = ROOT / "bench" / "models" / "sleep_add_one.py"
RESULTS_JSON = ROOT / "bench" / "results" / "replicas.json"

MODEL = "sleep_add_one"
SLEEP_SECONDS = 0.005  # per request, on the model's one instance: <= 200 requests/s a server
CONCURRENCY = 16  # 'max-concurrent-requests': enough that every instance always has a queue
# ~26 s at one server (~190 rows/s), ~13 s at two: the job start-up (~2-5 s) comes on top.
ROWS = 5_000
QUICK_ROWS = 500
REPEATS = 3
WARMUP_REQUESTS = 5  # direct requests to each server before any job
WARMUP_ROWS = 50  # an untimed (checked) job per function before the timed ones
RUN_OFFSET = 10_000_000  # run k reads x = k * RUN_OFFSET + 1 ..: each run its own x
STEADY = (0.10, 0.90)  # the part of a run's requests the steady rate is measured over
TARGET = 1.7  # two servers' steady rows/s >= TARGET x one server's (medians)
JOB_TIMEOUT = 300  # seconds per job; a job that takes longer ends the bench (status 1)
FLINK_CONFIG = {
    "parallelism.default": "1",
    "python.fn-execution.bundle.size": "100000",
}
CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "x" data_type: TYPE_INT64 dims: [ 1 ] }} ]
output [ {{ name: "y" data_type: TYPE_INT64 dims: [ 1 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "request_log" value: {{ string_value: {log} }} }}
parameters {{ key: "sleep_seconds" value: {{ string_value: "{sleep}" }} }}
"""


class Mismatch(Exception):
    """A run's outputs were wrong: values, or rows missing or duplicated."""


class JobTimeout(Exception):
    """A job did not finish within --timeout seconds."""


# --- servers -----------------------------------------------------------------------------------

def write_repository(scratch: Path) -> str:
    """The repository under ``scratch/models``; returns the model's config text."""
    version = scratch / "models" / MODEL / "1"
    version.mkdir(parents=True)
    shutil.copyfile(MODEL_SOURCE, version / "model.py")
    config = CONFIG.format(name=MODEL, log=json.dumps(str(request_log(scratch))),
                           sleep=SLEEP_SECONDS)
    (version.parent / "config.pbtxt").write_text(config)
    return config


def request_log(scratch: Path) -> Path:
    return scratch / f"{MODEL}.requests.jsonl"  # both servers' stubs append to it


def model_stats(endpoint: str) -> dict[str, int]:
    """The model's cumulative counters on one server."""
    with urllib.request.urlopen(f"{endpoint}/v2/models/{MODEL}/stats", timeout=5) as response:
        stats = json.load(response)["model_stats"][0]
    inference = stats["inference_stats"]
    return {"inference_count": int(stats["inference_count"]),
            "execution_count": int(stats["execution_count"]),
            "success_count": int(inference["success"]["count"]),
            "queue_ns": int(inference["queue"]["ns"]),
            "compute_infer_ns": int(inference["compute_infer"]["ns"])}


def infer_directly(endpoint: str, x: int) -> int:
    body = json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "INT64",
                                   "data": [x]}]}).encode()
    request = urllib.request.Request(f"{endpoint}/v2/models/{MODEL}/infer", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.load(response)["outputs"][0]["data"][0])


def warm_up_servers(endpoints: list[str]) -> None:
    """A few requests to each server (x < 0: no run reads those), answers checked."""
    for endpoint in endpoints:
        for x in range(-WARMUP_REQUESTS, 0):
            if (y := infer_directly(endpoint, x)) != x + 1:
                raise Mismatch(f"warm-up request to {endpoint}: y = {y} for x = {x}")


# --- PyFlink -----------------------------------------------------------------------------------

class FlinkBench:
    """One TableEnvironment (one JVM) running every job, each a fresh mini-cluster job."""

    def __init__(self) -> None:
        self.t_env = process_mode_table_env(FLINK_CONFIG)
        self._jobs = 0

    def register(self, name: str, options: dict[str, str]) -> None:
        from pyflink_triton import create_model

        create_model(self.t_env, name, options, inputs=[("x", "BIGINT")],
                     output=("y", "BIGINT"))

    def run(self, function: str, first: int, rows: int, out_dir: Path,
            timeout: float) -> tuple[float, float, list[str]]:
        """``function(x)`` over x = first .. first + rows - 1, checked inside the job.

        The job's one sink gets one row: COUNT(*), the rows with y <> x + 1 (NULL included),
        COUNT(DISTINCT x), MIN(x) and MAX(x), from a one-day event-time window (so the result
        is insert-only and fits a filesystem sink; ts = x - first ms). Collecting the 5,000
        rows in the driver instead would add ~2 ms per row after the job (PyFlink's collect
        iterator makes py4j calls per row, and the rows only come once the bundle ends), which
        would weigh on the wall time of the faster run.
        Returns (time.time() at execute(), seconds to the job's end, the sink's lines).
        """
        self._jobs += 1
        tag = f"j{self._jobs}"
        # rows-per-second: datagen's default is 10,000 rows/s, which would be a ceiling.
        self.t_env.execute_sql(f"""
            CREATE TEMPORARY TABLE src_{tag} (
              x BIGINT, ts AS TO_TIMESTAMP_LTZ(x - {first}, 3), WATERMARK FOR ts AS ts
            ) WITH (
              'connector' = 'datagen', 'number-of-rows' = '{rows}',
              'rows-per-second' = '1000000000', 'fields.x.kind' = 'sequence',
              'fields.x.start' = '{first}', 'fields.x.end' = '{first + rows - 1}')""")
        self.t_env.execute_sql(
            f"CREATE TEMPORARY VIEW v_{tag} AS SELECT x, ts, {function}(x) AS y FROM src_{tag}")
        self.t_env.execute_sql(
            f"CREATE TEMPORARY TABLE chk_{tag} (n BIGINT, bad BIGINT, distinct_x BIGINT, "
            f"min_x BIGINT, max_x BIGINT) WITH ("
            f"'connector' = 'filesystem', 'path' = '{out_dir}', 'format' = 'csv')")
        statement = f"""
            INSERT INTO chk_{tag}
            SELECT COUNT(*), SUM(CASE WHEN y = x + 1 THEN 0 ELSE 1 END), COUNT(DISTINCT x),
                   MIN(x), MAX(x)
            FROM TABLE(TUMBLE(TABLE v_{tag}, DESCRIPTOR(ts), INTERVAL '1' DAY))
            GROUP BY window_start, window_end"""
        signal.alarm(int(timeout))  # SIGALRM raises JobTimeout in this (the main) thread
        try:
            submitted, start = time.time(), time.perf_counter()
            self.t_env.execute_sql(statement).wait()
            seconds = time.perf_counter() - start
        finally:
            signal.alarm(0)
        return submitted, seconds, sink_lines(out_dir)


def on_alarm(*_: object) -> None:
    raise JobTimeout("the job did not finish in time")


# --- one run -----------------------------------------------------------------------------------

@dataclass
class Run:
    config: str  # "one" or "two"
    endpoints: list[str]
    rows: int
    first_x: int
    warmup: bool = False
    wall_seconds: float | None = None  # execute() to the job's end
    wall_rows_per_s: float | None = None
    startup_seconds: float | None = None  # execute() to the model's first request
    span_rows_per_s: float | None = None  # rows / (first request start .. last request end)
    steady_rows_per_s: float | None = None  # what the target compares
    # per server (in the order of `endpoints` of "two"): deltas of /v2/models/<m>/stats
    servers: list[dict[str, Any]] = field(default_factory=list)
    cpu_busy_percent: float | None = None  # the whole machine, over the job
    load_average_1m: float | None = None
    model_requests: int | None = None  # log lines of the run's x range
    problems: list[str] = field(default_factory=list)  # wrong outputs (the first few)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or bool(self.problems)


def check_rows(run: Run, lines: list[str]) -> None:
    """The job's check row: every x of the run exactly once, each with y = x + 1."""
    if len(lines) != 1:
        run.problems.append(f"expected one check row, got {lines[:3]!r}")
        return
    n, bad, distinct, low, high = (int(v) for v in lines[0].split(","))
    last = run.first_x + run.rows - 1
    if bad:
        run.problems.append(f"{bad} of {n} rows with y <> x + 1")
    if (n, distinct, low, high) != (run.rows, run.rows, run.first_x, last):
        run.problems.append(f"{n} rows, {distinct} distinct x from {low} to {high}; expected "
                            f"{run.rows} rows, x = {run.first_x} .. {last} once each")


def read_log(path: Path, first: int, rows: int) -> list[dict[str, Any]]:
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        lines = (json.loads(line) for line in f if line.strip())
        return [r for r in lines if first <= r["x"] < first + rows]
    return []


def steady_rate(ends: list[float]) -> float | None:
    """Requests per second between the STEADY percentiles of the (sorted) end times."""
    n = len(ends)
    lo, hi = int(STEADY[0] * (n - 1)), int(STEADY[1] * (n - 1))
    if hi <= lo or ends[hi] <= ends[lo]:
        return None
    return (hi - lo) / (ends[hi] - ends[lo])


def server_deltas(before: dict[str, int], after: dict[str, int],
                  span: float | None) -> dict[str, Any]:
    d = {k: after[k] - before[k] for k in after}
    return {"inference_count": d["inference_count"], "execution_count": d["execution_count"],
            "rows_per_execution": (d["inference_count"] / d["execution_count"]
                                   if d["execution_count"] else None),
            "mean_queue_ms": d["queue_ns"] / d["success_count"] / 1e6
            if d["success_count"] else None,
            "busy_percent": 100 * d["compute_infer_ns"] / 1e9 / span if span else None}


def cpu_busy(before: Any, after: Any) -> float | None:
    total = sum(after) - sum(before)
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0) - getattr(before, "iowait", 0))
    return 100 * (1 - idle / total) if total > 0 else None


def measure(bench: FlinkBench, run: Run, function: str | None, all_endpoints: list[str],
            scratch: Path, timeout: float) -> None:
    """Do the run and check it; errors are recorded (a JobTimeout is raised on)."""
    label = f"{'warm-up ' if run.warmup else ''}{run.config}: {run.rows:,} rows"
    print(f"{label} ...", end=" ", flush=True)
    run.load_average_1m = os.getloadavg()[0]
    if function is None:
        run.error = "the function could not be registered (see the notes)"
        print("SKIPPED: not registered", flush=True)
        return
    before = [model_stats(e) for e in all_endpoints]
    cpu_before = psutil.cpu_times()
    try:
        submitted, run.wall_seconds, check = bench.run(
            function, run.first_x, run.rows, scratch / f"check-{run.first_x // RUN_OFFSET}",
            timeout)
    except JobTimeout:
        run.error = f"timed out: not finished after {timeout:g} s"
        print(f"ERROR: {run.error}", flush=True)
        raise
    except Exception as e:  # recorded; the other runs still go
        run.error = short_error(e)
        print(f"ERROR: {run.error.splitlines()[0][:300]}", flush=True)
        return
    run.cpu_busy_percent = cpu_busy(cpu_before, psutil.cpu_times())
    after = [model_stats(e) for e in all_endpoints]
    run.wall_rows_per_s = run.rows / run.wall_seconds
    check_rows(run, check)
    lines = read_log(request_log(scratch), run.first_x, run.rows)
    run.model_requests = len(lines)
    if len(lines) != run.rows or len({r["x"] for r in lines}) != run.rows:
        run.problems.append(f"the model logged {len(lines)} requests for "
                            f"{len({r['x'] for r in lines})} distinct x of {run.rows}")
    span = None
    if lines:
        first_start = min(r["start"] for r in lines)
        span = max(r["end"] for r in lines) - first_start
        run.startup_seconds = first_start - submitted
        run.span_rows_per_s = len(lines) / span if span > 0 else None
        run.steady_rows_per_s = steady_rate(sorted(r["end"] for r in lines))
    run.servers = [{"endpoint": e, **server_deltas(b, a, span)}
                   for e, b, a in zip(all_endpoints, before, after, strict=True)]
    if run.problems:
        print(f"WRONG: {len(run.problems)} problems, e.g. {run.problems[:3]}", flush=True)
    else:
        print(f"{run.wall_seconds:.1f} s, {fmt(run.steady_rows_per_s)} rows/s steady, split "
              f"{split(run)}", flush=True)
    del run.problems[20:]  # keep the JSON small


# --- report ------------------------------------------------------------------------------------

def split(run: Run) -> str:
    return " / ".join(f"{s['inference_count']:,}" for s in run.servers) or "n/a"


def markdown_table(runs: list[Run]) -> str:
    lines = ["| run | servers | rows | wall s | start-up s | rows/s (wall) | steady rows/s "
             "| requests per server | busy % per server | queue ms per server "
             "| machine CPU % | check |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|---|"]
    for r in runs:
        status = (f"ERROR: {r.error.splitlines()[0][:80]}" if r.error else
                  f"WRONG ({len(r.problems)})" if r.problems else "ok")
        busy = " / ".join(fmt(s["busy_percent"], ".0f") for s in r.servers) or "n/a"
        queue = " / ".join(fmt(s["mean_queue_ms"], ".1f") for s in r.servers) or "n/a"
        lines.append(
            f"| {r.config}{' (warm-up)' if r.warmup else ''} | {len(r.endpoints)} | {r.rows:,} "
            f"| {fmt(r.wall_seconds, '.1f')} "
            f"| {fmt(r.startup_seconds, '.1f')} | {fmt(r.wall_rows_per_s)} "
            f"| {fmt(r.steady_rows_per_s)} | {split(r)} | {busy} | {queue} "
            f"| {fmt(r.cpu_busy_percent, '.0f')} | {status} |")
    return "\n".join(lines)


def summarize(runs: list[Run]) -> dict[str, Any]:
    timed = [r for r in runs if not r.warmup]

    def rates(config: str, what: str) -> list[float]:
        return [getattr(r, what) for r in timed
                if r.config == config and not r.failed and getattr(r, what) is not None]

    summary: dict[str, Any] = {}
    for what in ("steady_rows_per_s", "wall_rows_per_s"):
        one, two = rates("one", what), rates("two", what)
        median_one = statistics.median(one) if one else None
        median_two = statistics.median(two) if two else None
        summary[what] = {"one": one, "two": two, "median_one": median_one,
                         "median_two": median_two,
                         "ratio": median_two / median_one if median_one and median_two
                         else None}
    ratio = summary["steady_rows_per_s"]["ratio"]
    summary["target"] = {
        "target": f"two servers >= {TARGET} x one server (median steady rows/s)",
        "ratio": ratio,
        "status": "n/a" if ratio is None else ("PASS" if ratio >= TARGET else "FAIL")}
    return summary


# --- main --------------------------------------------------------------------------------------

def run_all(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    config_text = write_repository(scratch)
    servers = [LocalTritonServer(scratch / "models", log_path=scratch / f"tritonserver-{i}.log")
               for i in (1, 2)]
    load_before = os.getloadavg()
    rows = QUICK_ROWS if args.quick else ROWS
    repeats = 1 if args.quick else args.repeats
    runs: list[Run] = []
    notes: list[str] = []
    try:
        for server in servers:  # both run during every measurement: the same machine load
            server.start()
        endpoints = [s.http_endpoint for s in servers]
        warm_up_servers(endpoints)
        configs = {"one": endpoints[:1], "two": endpoints}
        options = {name: {"endpoint": ",".join(eps), "model-name": MODEL, "mode": "async",
                          "max-concurrent-requests": str(args.concurrency)}
                   for name, eps in configs.items()}
        print(f"Servers: {', '.join(endpoints)}; starting PyFlink ...", flush=True)
        bench = FlinkBench()
        functions: dict[str, str | None] = {}
        for name in configs:
            try:
                bench.register(f"f_{name}", options[name])
                functions[name] = f"f_{name}"
            except Exception as e:  # e.g. a package that does not take a list of endpoints
                functions[name] = None
                notes.append(f"{name}: create_model({options[name]!r}) failed: "
                             f"{short_error(e)}")
                print(f"Note: {notes[-1]}", flush=True)
        order = [(name, True) for name in configs] + [
            (name, False) for _ in range(repeats) for name in configs]
        try:
            for k, (name, warmup) in enumerate(order, start=1):
                run = Run(name, configs[name], WARMUP_ROWS if warmup else rows,
                          k * RUN_OFFSET + 1, warmup)
                runs.append(run)
                measure(bench, run, functions[name], endpoints, scratch, args.timeout)
        except JobTimeout:
            notes.append(f"a job timed out after {args.timeout:g} s; the bench stopped there")
        facts = machine_and_versions(endpoints[0], load_before)
    finally:
        for server in servers:
            server.stop()
    summary = summarize(runs)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": facts,
        "quick": args.quick,
        "config": {"model": MODEL, "model_config": config_text, "sleep_seconds": SLEEP_SECONDS,
                   "rows": rows, "repeats": repeats, "warmup_rows": WARMUP_ROWS,
                   "warmup_requests_per_server": WARMUP_REQUESTS, "options": options,
                   "flink": FLINK_CONFIG, "parallelism": 1,
                   "python_worker_execution_mode": "process",
                   "steady_percentiles": list(STEADY), "job_timeout_seconds": args.timeout},
        "measured": ("steady rows/s: the model's requests (from its own log, both servers) "
                     "that ended between the 10th and the 90th percentile of the run's end "
                     "times, over that time; no job start-up, ramp-up or tail. wall s: "
                     "execute() to the job's end (job start-up included). start-up s: "
                     "execute() to the model's first request. Per server, from "
                     "/v2/models/<m>/stats over the job: requests "
                     "(inference_count), busy % (compute_infer time / the run's span from its "
                     "first request's start to its last one's end), queue ms (mean queue time "
                     "of a request). machine CPU %: all cores, over the job. The target "
                     "compares the medians of the steady rates."),
        "runs": [asdict(r) for r in runs],
        "summary": summary,
        "notes": notes,
        "failed_runs": [f"{r.config} (run {i})" for i, r in enumerate(runs, start=1)
                        if r.failed],
        "table": markdown_table(runs),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_ROWS:,} rows instead of {ROWS:,}, one repeat (a smoke run)")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help=f"timed runs of each configuration, interleaved (default {REPEATS})")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help=f"'max-concurrent-requests' of both functions (default "
                             f"{CONCURRENCY})")
    parser.add_argument("--timeout", type=float, default=JOB_TIMEOUT,
                        help=f"seconds after which a job ends the bench (default {JOB_TIMEOUT})")
    parser.add_argument("--scratch", type=Path, metavar="DIR",
                        help="keep the model repository, the model's request log and the "
                             "servers' logs in DIR (a new directory) instead of a temporary one")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    # SIGTERM should stop the servers too (they run in their own sessions, so they are not
    # signalled): sys.exit runs the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    report = run_in_scratch(lambda scratch: run_all(args, scratch), args.scratch, "replicas-")
    if report is None:
        return 130
    s = report["summary"]
    steady, wall = s["steady_rows_per_s"], s["wall_rows_per_s"]
    print(f"\nMedian steady rows/s: one server {fmt(steady['median_one'])}, two servers "
          f"{fmt(steady['median_two'])}; ratio "
          + (f"{steady['ratio']:.2f}x" if steady["ratio"] is not None else "not measured")
          + " (wall rows/s, job start-up included: "
          + (f"{wall['ratio']:.2f}x)" if wall["ratio"] is not None else "not measured)"))
    print(target_line(s["target"]))
    return finish(report, RESULTS_JSON, started)


if __name__ == "__main__":
    sys.exit(main())
