"""Keyed sequences (issue 17): rows/s of ``keyed_sequence_map`` against a plain tritonclient
loop on a sequence-batched model whose batched step costs 3 ms, and a 1000-key run.

    .venv/bin/python bench/keyed.py                 # ~1.5 min on 2 idle cores (3 loaded)
    .venv/bin/python bench/keyed.py --quick         # fewer rows, a smoke run (~45 s)
    .venv/bin/python bench/keyed.py --skip-large    # without the 1000-key run

Starts a local Triton with two copies of ``bench/models/keyed_total.py`` (TOTAL = the running
sum of X per correlation ID, reset on START; one ``time.sleep(0.003)`` per ``execute()``,
however many requests the batch holds: one accelerator step), in a repository generated in a
temporary directory: Python backend, one instance, Direct sequence batching with
START/END/READY control inputs and max_sequence_idle_microseconds 60 s;
``keyed_total_8`` has max_batch_size 8 (8 Direct slots), ``keyed_total_16`` 16.

Readings are x = 1..N with key = x mod K, interleaved (K = 8 or 1000); a key's first reading
starts its sequence (START), its last ends it (END). Runs, in this order:

- ``loop``: tritonclient.http, one blocking request after another in this process, over the
  8-key readings on ``keyed_total_8`` (after a 100-request warm-up in a sequence of its own);
- ``keyed_8``: the same readings through ``keyed_sequence_map`` at parallelism 1 on
  ``keyed_total_8``, with 'max-concurrent-requests' = 8 when the package accepts it for keyed
  functions (else without, and a note says so);
- ``keyed_1000`` (not with ``--skip-large``): 1000 keys at parallelism 2 on ``keyed_total_16``,
  options left at their defaults ('sequence-slots': the model's 16 slots / 2 per subtask).

Every PyFlink job runs in a child process (``--job``; in process mode: one Python worker per
subtask, as on a cluster), killed with its JVM and workers after ``--timeout`` seconds, so the
bench never hangs (a sequence that cannot get a Triton slot waits in Triton's backlog). The
job reads the readings from a bounded ``datagen`` sequence (``rows-per-second`` raised: its
default of 10,000 would be a ceiling) at parallelism 1, so each key's readings stay in order,
turns them into a DataStream (``to_data_stream``), keys it by ``k`` and collects
``(k, x, total)`` with ``execute_and_collect()``.

**Time.** The model logs every request (one JSON line, one ``os.write`` on an O_APPEND
descriptor) with the time its step began. Job start-up (a new JVM per job: ~10 s on an idle
machine, 30 s and more under load) is left out by measuring on the server's side: "rows/s" is
the rows over the time from the first to the last record request the model saw; "steady
rows/s", which the 3x target uses for both the loop and keyed_8, counts the rows between the
10th and the 90th percentile of those times (no start-up, no ramp-up, no tail). The wall time
of each job (child process start to the last row collected, JVM start included) and its
start-up (to the first request) are reported too.

**Batching.** Mean batch = the run's logged requests / the model steps (``execute()`` calls)
they were in; Triton's ``/v2/models/<m>/stats`` (inference_count / execution_count over the run)
is shown beside it.

**Correctness.** Every emitted row is checked: each x in 1..N exactly once, with its key, and
its total equal to the sum of its key's readings (from the input, in order) from the start of
the sequence that answered it up to x. The sequences come from the model's log: a sequence
restarted after an eviction starts with the key's replayed inputs, which must be exactly the
key's preceding readings, so its totals start there; without restarts this is the key's full
running total. The log itself is checked too (START first, END last, no unknown ID, each
sequence's own readings consecutive). Evictions = requests with ``sequence_flush`` (ENDs the
function sent, not a record's own); replays = requests with ``sequence_replay``. Any wrong,
missing or duplicated row, a failed job or one that timed out makes the command exit with
status 1; a missed target only prints FAIL.

Output: a Markdown table, and ``bench/results/keyed.json`` (every number, the options, the
model config, the date and the machine).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from machine import machine_and_versions
from reporting import finish, fmt, run_in_scratch, short_error, target_line

ROOT = Path(__file__).resolve().parent.parent
MODEL_SOURCE = ROOT / "bench" / "models" / "keyed_total.py"
RESULTS_JSON = ROOT / "bench" / "results" / "keyed.json"

STEP_SECONDS = 0.003  # the model's batched step
IDLE_MICROS = 60_000_000  # max_sequence_idle_microseconds
# Direct waits up to max_queue_delay_microseconds for more slots to be ready only while fewer
# than minimum_slot_utilization x slots are; at 0.0 (Triton's default) a batch starts as soon
# as one slot is ready, and the delay changes nothing. Measured here with 8 sequences in flight
# (a Python asyncio client, and keyed_8): delays of 500-2000 us at a utilization of 0.5-1.0
# gave hardly larger batches (~4 per step either way: the other keys' next requests come back
# later than that) and slowed the one-at-a-time loop by about the delay (~245 -> ~157 rows/s
# at 2000 us and 1.0), which would flatter the ratio. Both are flags.
QUEUE_DELAY_US = 1000
MIN_SLOT_UTILIZATION = 0.0
MODELS = {"keyed_total_8": 8, "keyed_total_16": 16}  # name -> max_batch_size (= Direct slots)
SMALL_MODEL, LARGE_MODEL = "keyed_total_8", "keyed_total_16"
SMALL_KEYS, LARGE_KEYS = 8, 1000
SMALL_PARALLELISM, LARGE_PARALLELISM = 1, 2
CONCURRENCY = 8  # 'max-concurrent-requests' of keyed_8: one request per live key
REPLAY_RECORDS = 2
ROWS = {"small": 6_000, "large": 8_000}  # readings of loop and keyed_8; of keyed_1000
QUICK_ROWS = {"small": 600, "large": 2_000}
LOOP_WARMUP = 100
JOB_TIMEOUT = 240.0  # seconds per PyFlink job, start-up included
STEADY = (0.10, 0.90)  # the part of a run's requests the steady rate is measured over


class Mismatch(Exception):
    """A run's outputs were wrong: values, or rows missing or duplicated."""


# --- the model repository ------------------------------------------------------------------

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: {slots}
input [ {{ name: "X" data_type: TYPE_INT64 dims: [ 1 ] }} ]
output [ {{ name: "TOTAL" data_type: TYPE_INT64 dims: [ 1 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
sequence_batching {{
  max_sequence_idle_microseconds: {idle}
  direct {{
    max_queue_delay_microseconds: {delay}
    minimum_slot_utilization: {utilization}
  }}
  control_input [
    {{ name: "START" control [ {{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "END" control [ {{ kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "READY" control [ {{ kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] }} ] }}
  ]
}}
parameters {{ key: "request_log" value: {{ string_value: {log} }} }}
parameters {{ key: "step_seconds" value: {{ string_value: "{step}" }} }}
"""


def request_log(scratch: Path, model: str) -> Path:
    return scratch / f"{model}.requests.jsonl"


def write_repository(scratch: Path, delay_us: int, utilization: float) -> dict[str, str]:
    """The models under ``scratch/models``; returns each model's config text."""
    configs = {}
    for model, slots in MODELS.items():
        version = scratch / "models" / model / "1"
        version.mkdir(parents=True)
        shutil.copyfile(MODEL_SOURCE, version / "model.py")
        configs[model] = CONFIG.format(
            name=model, slots=slots, idle=IDLE_MICROS, delay=delay_us, utilization=utilization,
            log=json.dumps(str(request_log(scratch, model))), step=STEP_SECONDS)
        (version.parent / "config.pbtxt").write_text(configs[model])
    return configs


def read_log(path: Path, base: str) -> list[dict[str, Any]]:
    """The logged requests of the sequences ``{base}-...``, in arrival order."""
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        lines = (json.loads(line) for line in f if line.strip())
        return [r for r in lines if isinstance(r["corrid"], str)
                and r["corrid"].startswith(f"{base}-")]
    return []


def triton_counts(endpoint: str, model: str) -> tuple[int, int] | None:
    """(inference_count, execution_count) of ``model`` so far."""
    with contextlib.suppress(OSError, ValueError, KeyError, IndexError), \
            urllib.request.urlopen(f"{endpoint}/v2/models/{model}/stats", timeout=5) as r:
        stats = json.load(r)["model_stats"][0]
        return int(stats["inference_count"]), int(stats["execution_count"])
    return None


# --- the readings and what a run must answer -------------------------------------------------

def key_of(x: int, keys: int) -> int:
    return x % keys


def readings(rows: int, keys: int) -> dict[int, list[int]]:
    """Each key's readings, in order."""
    by_key: dict[int, list[int]] = defaultdict(list)
    for x in range(1, rows + 1):
        by_key[key_of(x, keys)].append(x)
    return dict(by_key)


@dataclass
class Checked:
    """What the outputs and the model's log of one run show."""

    rows_out: int = 0
    wrong: list[str] = field(default_factory=list)  # the first few problems found
    wrong_count: int = 0
    sequences: int = 0
    restarts: int = 0  # sequences beyond each key's first
    evictions: int = 0  # requests with sequence_flush: ENDs no record asked for
    replays: int = 0  # requests with sequence_replay
    resent: int = 0  # readings the model saw more than once as a record's own request
    readings_seen: int = 0  # readings that reached the model as a record's own request
    requests: int = 0  # all requests the model logged for the run
    steps: int = 0  # model steps (execute() calls) they were in
    mean_batch: float | None = None
    seconds_first_to_last: float | None = None
    rows_per_s: float | None = None  # rows / (last record request - first)
    steady_rows_per_s: float | None = None  # between the STEADY percentiles
    first_request: float | None = None  # server time (epoch s)

    def problem(self, text: str) -> None:
        self.wrong_count += 1
        if len(self.wrong) < 10:
            self.wrong.append(text)


def sequence_key(corrid: str, base: str, keyed: bool) -> str:
    """The key in ``{base}-{key}`` (loop) or ``{base}-{key}-{incarnation}-{n}`` (keyed)."""
    rest = corrid.removeprefix(f"{base}-")
    return rest.rsplit("-", 2)[0] if keyed else rest


def check_run(lines: list[dict[str, Any]], outputs: dict[int, list[tuple[int, int]]] | None,
              rows: int, keys: int, base: str, keyed: bool) -> Checked:
    """Check the model's log of a run and the run's outputs (x -> [(key, total), ...]; None
    for the loop, which checked its own), and measure the rates from the log's times."""
    c = Checked(requests=len(lines), steps=len({line["step"] for line in lines}))
    c.mean_batch = c.requests / c.steps if c.steps else None
    by_key = readings(rows, keys)
    position = {x: i for xs in by_key.values() for i, x in enumerate(xs)}
    prefix = {k: np.concatenate([[0], np.cumsum(xs)]).tolist() for k, xs in by_key.items()}
    sequences: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        sequences[line["corrid"]].append(line)
    c.sequences = len(sequences)
    c.restarts = c.sequences - len({sequence_key(s, base, keyed) for s in sequences})
    c.evictions = sum(1 for line in lines if line["flush"])
    c.replays = sum(1 for line in lines if line["replay"])
    expected: dict[int, int] = {}  # x -> the total its last own request should have had
    answered: dict[int, int] = {}  # x -> the total the model logged for it
    seen: dict[int, int] = defaultdict(int)
    own_times = []
    for corrid, seq in sequences.items():
        key = int(sequence_key(corrid, base, keyed))
        if key not in by_key:
            c.problem(f"{corrid}: no such key")
            continue
        xs = by_key[key]
        if not seq[0]["start"] or any(line["start"] for line in seq[1:]):
            c.problem(f"{corrid}: START not (only) first")
        if any(line["unknown"] for line in seq):
            c.problem(f"{corrid}: a request without START reached a sequence with no state")
        if any(line["end"] for line in seq[:-1]):
            c.problem(f"{corrid}: END before its last request")
        replayed = 0
        while replayed < len(seq) and seq[replayed]["replay"]:
            replayed += 1
        own = [line for line in seq if not line["flush"] and not line["replay"]]
        if any(line["replay"] for line in seq[replayed:]):
            c.problem(f"{corrid}: a replayed input after the sequence's own readings")
        if any(line["flush"] and not line["end"] for line in seq):
            c.problem(f"{corrid}: a flush that is not an END")
        if not own:
            continue
        first = position.get(own[0]["x"])
        if first is None or key_of(own[0]["x"], keys) != key:
            c.problem(f"{corrid}: reading {own[0]['x']} is not key {key}'s")
            continue
        if [line["x"] for line in own] != xs[first:first + len(own)]:
            c.problem(f"{corrid}: its readings are not consecutive readings of key {key}")
            continue
        origin = first - replayed  # the sequence's totals start at this reading
        if origin < 0 or [line["x"] for line in seq[:replayed]] != xs[origin:first]:
            c.problem(f"{corrid}: replayed {[line['x'] for line in seq[:replayed]]}, not the "
                      f"key's preceding readings {xs[max(0, origin):first]}")
            continue
        running = 0
        for line in seq:
            running = (0 if line["start"] else running) + (0 if line["flush"] else line["x"])
            if line["total"] != running:
                c.problem(f"{corrid}: the model answered {line['total']} for {line['x']}, "
                          f"not the sum of the sequence's inputs {running}")
        for line in own:
            x = line["x"]
            seen[x] += 1
            expected[x] = prefix[key][position[x] + 1] - prefix[key][origin]
            answered[x] = line["total"]
            own_times.append(line["time"])
    c.resent = sum(n - 1 for n in seen.values())
    c.readings_seen = len(seen)
    missing_requests = rows - len(seen)
    if missing_requests:
        c.problem(f"{missing_requests} readings never reached the model")
    if outputs is None:  # (the loop compared every answer as it went)
        for x, total in answered.items():
            if total != expected[x]:
                c.problem(f"x={x}: total {total}, expected {expected[x]}")
        c.rows_out = len(answered)
    else:
        c.rows_out = sum(len(v) for v in outputs.values())
        for x in range(1, rows + 1):
            got = outputs.get(x, [])
            if len(got) != 1:
                c.problem(f"x={x}: {len(got)} output rows")
                continue
            key, total = got[0]
            if key != key_of(x, keys):
                c.problem(f"x={x}: key {key}, expected {key_of(x, keys)}")
            if x in expected and total != expected[x]:
                c.problem(f"x={x}: total {total}, expected {expected[x]} (the model "
                          f"answered {answered[x]})")
        extra = sorted(set(outputs) - set(range(1, rows + 1)))
        if extra:
            c.problem(f"outputs for readings that do not exist: {extra[:5]}")
    measure_rates(c, own_times, len(seen))
    return c


def measure_rates(c: Checked, times: list[float], rows: int) -> None:
    """Rates from the server's times of the records' own requests (start-up excluded);
    ``rows``: the readings they answered."""
    if len(times) < 10:
        return
    times.sort()
    c.first_request = times[0]
    c.seconds_first_to_last = times[-1] - times[0]
    if c.seconds_first_to_last > 0:
        c.rows_per_s = (rows - 1) / c.seconds_first_to_last
    low, high = (int(len(times) * share) for share in STEADY)
    # (requests in one step share a time: count whole steps at the edges)
    low = bisect.bisect_left(times, times[low])
    high = bisect.bisect_left(times, times[high])
    if times[high] > times[low]:
        c.steady_rows_per_s = (high - low) / (times[high] - times[low])


# --- the tritonclient loop -------------------------------------------------------------------

def run_loop(endpoint: str, model: str, rows: int, keys: int, base: str) -> float:
    """One blocking request after another; every answer compared with the key's running
    total. Returns the seconds of the timed part."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(endpoint.split("://", 1)[-1])

    def send(sequence_id: str, x: int, start: bool, end: bool) -> int:
        tensor = httpclient.InferInput("X", [1, 1], "INT64")
        tensor.set_data_from_numpy(np.array([[x]], dtype=np.int64), binary_data=True)
        output = httpclient.InferRequestedOutput("TOTAL", binary_data=True)
        result = client.infer(model, [tensor], outputs=[output], sequence_id=sequence_id,
                              sequence_start=start, sequence_end=end)
        return int(result.as_numpy("TOTAL").reshape(-1)[0])

    try:
        for i in range(LOOP_WARMUP):  # (connection, first-request costs; its own sequence)
            send(f"warmup-{base}", 1, i == 0, i == LOOP_WARMUP - 1)
        running: dict[int, int] = defaultdict(int)
        wrong = []
        start = time.perf_counter()
        for x in range(1, rows + 1):
            key = key_of(x, keys)
            total = send(f"{base}-{key}", x, x <= keys, x > rows - keys)
            running[key] += x
            if total != running[key]:
                wrong.append((x, total, running[key]))
        seconds = time.perf_counter() - start
    finally:
        client.close()
    if wrong:
        raise Mismatch(f"{len(wrong)} wrong totals, e.g. (x, got, expected) {wrong[:3]}")
    return seconds


# --- PyFlink jobs (each in a child process) ----------------------------------------------------

def job_main(spec_path: str) -> int:
    """The child process: one keyed job; writes its rows and times next to the spec."""
    started = time.time()
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    try:
        # Process mode: one Python worker process per subtask, as on a cluster. Must be set
        # before the JVM starts.
        os.environ["_python_worker_execution_mode"] = "process"  # noqa: SIM112 (PyFlink's)
        from pyflink.common.typeinfo import Types
        from pyflink.datastream import StreamExecutionEnvironment
        from pyflink.table import StreamTableEnvironment

        from pyflink_triton import TritonKeyedSequenceFunction, keyed_sequence_map

        rows, keys = spec["rows"], spec["keys"]
        env = StreamExecutionEnvironment.get_execution_environment()
        env.set_parallelism(1)  # the source: each key's readings stay in order
        env.add_python_file(str(ROOT / "pyflink_triton"))  # the workers import this copy
        t_env = StreamTableEnvironment.create(env)
        t_env.get_config().set("python.executable", sys.executable)
        # rows-per-second: datagen's default is 10,000 rows/s, which would be a ceiling.
        t_env.execute_sql(f"""
            CREATE TEMPORARY TABLE readings (x BIGINT) WITH (
              'connector' = 'datagen', 'number-of-rows' = '{rows}',
              'rows-per-second' = '1000000', 'fields.x.kind' = 'sequence',
              'fields.x.start' = '1', 'fields.x.end' = '{rows}')""")
        table = t_env.sql_query(f"SELECT MOD(x, {keys}) AS k, x FROM readings")
        last = rows - keys  # a key's last reading is among the last `keys` ones
        function = TritonKeyedSequenceFunction(
            spec["options"], inputs=[("x", "BIGINT")], output=("total", "BIGINT"),
            end_when=lambda row: row.x > last)
        keyed = t_env.to_data_stream(table).key_by(lambda row: row.k, key_type=Types.LONG())
        results = keyed_sequence_map(keyed, function).set_parallelism(spec["parallelism"])
        submitted = time.time()
        collected, first_row = [], None
        with results.execute_and_collect() as rows_out:
            for row in rows_out:
                if first_row is None:
                    first_row = time.time()
                collected.append((row.k, row.x, row.total))
        out.write_text(json.dumps({"started": started, "submitted": submitted,
                                   "first_row": first_row, "finished": time.time(),
                                   "rows": collected}))
        return 0
    except Exception as e:
        out.write_text(json.dumps({"error": short_error(e)}))
        return 2


def run_job(scratch: Path, name: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run a job in a child process of its own session (its JVM and Python workers are in
    its process group); kill the group after ``timeout`` seconds."""
    spec = {**spec, "out": str(scratch / f"{name}.out.json")}
    spec_path = scratch / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    log_path = scratch / f"{name}.job.log"
    with open(log_path, "wb") as log_file:
        child = subprocess.Popen([sys.executable, __file__, "--job", str(spec_path)],
                                 stdout=log_file, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out: the job did not finish within {timeout:g} s (killed)",
                    "timed_out": True}
        finally:
            stop_group(child)
    out = Path(spec["out"])
    if not out.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        return {"error": f"the job process exited with status {child.returncode}:\n{tail}"}
    return json.loads(out.read_text())


def stop_group(child: subprocess.Popen) -> None:
    """Stop the child's process group (the job, its JVM, its Python workers): SIGTERM while
    the child runs, then SIGKILL to whatever is left."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def keyed_options(endpoint: str, model: str, base: str,
                  concurrency: int | None) -> tuple[dict[str, str], str | None]:
    """The keyed function's options, with 'max-concurrent-requests' if the package takes it
    for keyed functions; and a note when it does not."""
    from pyflink_triton import TritonConfigError, TritonKeyedSequenceFunction

    options = {"endpoint": endpoint, "model-name": model, "sequence-id": base,
               "input-names": "x:X", "output-names": "total:TOTAL",
               "sequence-replay-records": str(REPLAY_RECORDS)}
    if concurrency is None:
        return options, None
    wanted = {**options, "max-concurrent-requests": str(concurrency)}
    try:
        TritonKeyedSequenceFunction(wanted, inputs=[("x", "BIGINT")],
                                    output=("total", "BIGINT"))
    except TritonConfigError as e:
        if "max-concurrent-requests" not in str(e):
            raise
        return options, (f"'max-concurrent-requests' = '{concurrency}' is refused for keyed "
                         f"functions by this version of the package, so {base} ran without "
                         f"it (one request at a time): {e}")
    return wanted, None


# --- runs --------------------------------------------------------------------------------------

@dataclass
class Run:
    name: str
    model: str
    keys: int
    slots: int
    parallelism: int | None  # None: the tritonclient loop
    rows: int
    options: dict[str, str] | None = None
    wall_seconds: float | None = None  # loop: the timed loop; job: process start -> last row
    startup_seconds: float | None = None  # job: process start -> the model's first request
    # job: seconds from its process start to: job submitted (JVM up, job built), the model's
    # first request, the first row collected, the last row collected
    timeline: dict[str, float] | None = None
    triton_inferences: int | None = None  # over the run, from /v2/models/<m>/stats
    triton_executions: int | None = None
    check: Checked | None = None
    timed_out: bool = False
    error: str | None = None

    @property
    def triton_batch(self) -> float | None:
        if self.triton_inferences is None or not self.triton_executions:
            return None
        return self.triton_inferences / self.triton_executions

    @property
    def failed(self) -> bool:
        return self.error is not None or bool(self.check and self.check.wrong_count)


def measure(run: Run, endpoint: str, scratch: Path, timeout: float) -> None:
    """Do the run, then check it against the model's log; errors are recorded."""
    label = f"{run.name}: {run.rows:,} rows, {run.keys} keys"
    print(f"{label} ...", end=" ", flush=True)
    before = triton_counts(endpoint, run.model)
    base = f"bench{run.keys}" if run.parallelism else f"loop{run.keys}"
    outputs = None
    try:
        if run.parallelism is None:
            run.wall_seconds = run_loop(endpoint, run.model, run.rows, run.keys, base)
        else:
            result = run_job(scratch, run.name, {
                "rows": run.rows, "keys": run.keys, "parallelism": run.parallelism,
                "options": run.options}, timeout)
            if "error" in result:
                run.timed_out = bool(result.get("timed_out"))
                raise RuntimeError(result["error"])
            run.wall_seconds = result["finished"] - result["started"]
            outputs = defaultdict(list)
            for key, x, total in result["rows"]:
                outputs[x].append((key, total))
    except Exception as e:  # recorded; the other runs still go
        run.error = e.args[0] if isinstance(e, RuntimeError) and e.args else short_error(e)
    after = triton_counts(endpoint, run.model)
    if before and after:
        run.triton_inferences, run.triton_executions = (after[0] - before[0],
                                                        after[1] - before[1])
    lines = read_log(request_log(scratch, run.model), base)
    run.check = check_run(lines, None if run.error else outputs, run.rows, run.keys, base,
                          keyed=run.parallelism is not None)
    if run.error:  # (the log of a failed job still says how far it got; no rates)
        run.check.wrong, run.check.wrong_count = [], 0
        run.check.rows_per_s = run.check.steady_rows_per_s = None
    elif run.parallelism is not None and run.check.first_request:
        times = json.loads((scratch / f"{run.name}.out.json").read_text())
        run.startup_seconds = run.check.first_request - times["started"]
        run.timeline = {"submitted": times["submitted"] - times["started"],
                        "first_request": run.startup_seconds,
                        "first_row": times["first_row"] - times["started"],
                        "last_row": times["finished"] - times["started"]}
    c = run.check
    if run.error:
        print(f"ERROR: {run.error.splitlines()[0]} ({c.readings_seen:,} of {run.rows:,} "
              f"readings reached the model)", flush=True)
    elif c.wrong_count:
        print(f"WRONG: {c.wrong_count} problems, e.g. {c.wrong[:3]}", flush=True)
    else:
        print(f"{fmt(run.wall_seconds, '.1f')} s, {fmt(c.steady_rows_per_s)} rows/s steady, "
              f"mean batch {fmt(c.mean_batch, '.2f')}, {c.evictions} evictions, "
              f"{c.replays} replays", flush=True)


# --- report ------------------------------------------------------------------------------------

def markdown_table(runs: list[Run]) -> str:
    lines = ["| run | keys | slots | parallelism | rows | wall s | start-up s | rows/s "
             "(excl. start-up) | steady rows/s | mean batch | Triton rows/exec | evictions "
             "| replays | restarts | check |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        c = r.check or Checked()
        status = ("TIMED OUT" if r.timed_out else "ERROR" if r.error else
                  f"WRONG ({c.wrong_count})" if c.wrong_count else "ok")
        lines.append(
            f"| {r.name} | {r.keys:,} | {r.slots} | {r.parallelism or 'loop'} | {r.rows:,} "
            f"| {fmt(r.wall_seconds, '.1f')} | {fmt(r.startup_seconds, '.1f')} "
            f"| {fmt(c.rows_per_s)} | {fmt(c.steady_rows_per_s)} | {fmt(c.mean_batch, '.2f')} "
            f"| {fmt(r.triton_batch, '.2f')} | {c.evictions:,} | {c.replays:,} "
            f"| {c.restarts:,} | {status} |")
    return "\n".join(lines)


def evaluate_target(runs: list[Run]) -> dict[str, Any]:
    rate = {r.name: r.check.steady_rows_per_s for r in runs
            if r.check and not r.failed}
    ours, theirs = rate.get("keyed_8"), rate.get("loop")
    ratio = ours / theirs if ours and theirs else None
    return {"target": "keyed_8 >= 3 x loop (steady rows/s)", "ratio": ratio,
            "status": "n/a" if ratio is None else ("PASS" if ratio >= 3 else "FAIL")}


def run_all(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from pyflink_triton.server import LocalTritonServer

    configs = write_repository(scratch, args.queue_delay_us, args.min_slot_utilization)
    server = LocalTritonServer(scratch / "models", log_path=scratch / "tritonserver.log")
    load_before = os.getloadavg()
    rows = QUICK_ROWS if args.quick else ROWS
    runs: list[Run] = []
    notes: list[str] = []
    try:
        server.start()
        endpoint = server.http_endpoint
        small_options, note = keyed_options(endpoint, SMALL_MODEL, f"bench{SMALL_KEYS}",
                                            args.concurrency)
        if note:
            notes.append(note)
            print(f"Note: {note}", flush=True)
        runs.append(Run("loop", SMALL_MODEL, SMALL_KEYS, MODELS[SMALL_MODEL], None,
                        rows["small"]))
        runs.append(Run("keyed_8", SMALL_MODEL, SMALL_KEYS, MODELS[SMALL_MODEL],
                        SMALL_PARALLELISM, rows["small"], small_options))
        if not args.skip_large:
            runs.append(Run("keyed_1000", LARGE_MODEL, LARGE_KEYS, MODELS[LARGE_MODEL],
                            LARGE_PARALLELISM, rows["large"],
                            keyed_options(endpoint, LARGE_MODEL, f"bench{LARGE_KEYS}",
                                          None)[0]))
        for run in runs:
            measure(run, endpoint, scratch, args.timeout)
        facts = machine_and_versions(endpoint, load_before)
        conflicts = server.log_text().count("has a conflict")
    finally:
        server.stop()
    if conflicts:
        notes.append(f"Triton logged {conflicts} sequence conflict(s) (a START on an open ID).")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": facts,
        "quick": args.quick,
        "config": {"step_seconds": STEP_SECONDS, "max_queue_delay_microseconds":
                   args.queue_delay_us, "minimum_slot_utilization": args.min_slot_utilization,
                   "max_sequence_idle_microseconds": IDLE_MICROS,
                   "replay_records": REPLAY_RECORDS, "loop_warmup_requests": LOOP_WARMUP,
                   "job_timeout_seconds": args.timeout, "steady_percentiles": list(STEADY),
                   "python_worker_execution_mode": "process", "model_configs": configs},
        "measured": ("rows/s: the rows over the time from the model's first to its last "
                     "record request of the run (server side, so a job's start-up is left "
                     "out); steady rows/s: the requests between the 10th and 90th percentile "
                     "of those times. wall s: the loop's timed part; a job's child process "
                     "from start (a new JVM) to its last collected row. start-up s: process "
                     "start to the model's first request. mean batch: the run's requests per "
                     "model execute() (from the model's log); Triton rows/exec: the same from "
                     "/v2/models/<m>/stats. Evictions: requests with sequence_flush; replays: "
                     "requests with sequence_replay; restarts: sequences beyond each key's "
                     "first."),
        "runs": [{**asdict(r), "triton_rows_per_execution": r.triton_batch} for r in runs],
        "target": evaluate_target(runs),
        "notes": notes,
        "failed_runs": [r.name for r in runs if r.failed],
        "table": markdown_table(runs),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_ROWS['small']:,} and {QUICK_ROWS['large']:,} readings "
                             f"instead of {ROWS['small']:,} and {ROWS['large']:,} (a smoke run)")
    parser.add_argument("--skip-large", action="store_true", help="skip the 1000-key run")
    parser.add_argument("--timeout", type=float, default=JOB_TIMEOUT,
                        help=f"seconds after which a PyFlink job is killed (default "
                             f"{JOB_TIMEOUT:g})")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help=f"keyed_8's 'max-concurrent-requests' (default {CONCURRENCY}; "
                             "0: do not set it)")
    parser.add_argument("--queue-delay-us", type=int, default=QUEUE_DELAY_US,
                        help=f"Direct's max_queue_delay_microseconds (default "
                             f"{QUEUE_DELAY_US})")
    parser.add_argument("--min-slot-utilization", type=float, default=MIN_SLOT_UTILIZATION,
                        help=f"Direct's minimum_slot_utilization (default "
                             f"{MIN_SLOT_UTILIZATION}: the delay is never waited)")
    parser.add_argument("--scratch", type=Path, metavar="DIR",
                        help="keep the model repository, the request logs, Triton's log and "
                             "the jobs' logs in DIR (a new directory) instead of a temporary "
                             "one")
    parser.add_argument("--job", metavar="SPEC", help=argparse.SUPPRESS)  # internal: a job
    args = parser.parse_args()
    args.concurrency = args.concurrency or None
    return args


def main() -> int:
    args = parse_args()
    if args.job:
        return job_main(args.job)
    # SIGTERM should stop the server too (it runs in its own session, so it is not signalled).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    started = time.monotonic()
    report = run_in_scratch(lambda scratch: run_all(args, scratch), args.scratch, "keyed-")
    if report is None:
        return 130
    print("\n" + target_line(report["target"]))
    return finish(report, RESULTS_JSON, started)


if __name__ == "__main__":
    sys.exit(main())
