"""Time per record of the KServe binary tensor extension versus JSON tensors.

    .venv/bin/python bench/binary_vs_json.py

Starts a local Triton with only ``identity_fp32_array`` loaded, then for each tensor size sends
records one at a time through ``InferenceSession.infer`` (the per-record core every PyFlink
adapter wraps) with ``'binary-data'`` = ``'true'`` and ``'false'``. The time per record covers
everything a UDF call pays: encoding the Python list, the HTTP round trip, Triton, the Python
backend's identity model, and decoding the output into a Python list. Every output is checked
against its input (as float32); a mismatch exits with status 1. Prints a Markdown table and
writes ``bench/results/binary_vs_json.json``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pyflink_triton.server import LocalTritonServer
from pyflink_triton.sessions.contract import InferenceSession
from pyflink_triton.sessions.function import TritonInference
from pyflink_triton.wire import http1

from machine import machine_facts, server_version
from reporting import write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "binary_vs_json.json"
MODEL = "identity_fp32_array"
# (elements, warm-up records, timed records): fewer records for the large tensors, so the whole
# run stays under ~2 minutes on 2 cores (JSON at 1 MB/record costs a few hundred ms).
SIZES = [(1, 100, 1_000), (1_024, 50, 1_000), (65_536, 10, 100), (262_144, 5, 40)]
MODES = {"binary": "true", "json": "false"}


class Mismatch(Exception):
    """An output differed from its input."""


@dataclass
class ModeResult:
    request_bytes: int
    response_bytes: int
    median_ms: float
    p90_ms: float
    min_ms: float


@dataclass
class SizeResult:
    elements: int
    warmup: int
    repetitions: int
    binary: ModeResult
    json: ModeResult

    @property
    def ratio(self) -> float:
        return self.json.median_ms / self.binary.median_ms


@contextlib.contextmanager
def body_sizes() -> Iterator[dict[str, int]]:
    """Record the HTTP body sizes of the requests and responses made meanwhile.

    Wraps ``http1.Connection.send`` and ``receive`` (the blocking transport's HTTP/1.1
    framing) at class level: they see the exact request on the wire, whose head is cut off
    here, and the response body. HTTP headers are not counted.
    """
    sizes = {"request": 0, "response": 0}
    send, receive = http1.Connection.send, http1.Connection.receive

    def counting_send(self: http1.Connection, request: bytes) -> None:
        sizes["request"] = len(request.partition(b"\r\n\r\n")[2])
        send(self, request)

    def counting_receive(self: http1.Connection) -> http1.Response:
        response = receive(self)
        sizes["response"] = len(response.body)
        return response

    http1.Connection.send = counting_send  # type: ignore[method-assign]
    http1.Connection.receive = counting_receive  # type: ignore[method-assign]
    try:
        yield sizes
    finally:
        http1.Connection.send, http1.Connection.receive = send, receive  # type: ignore[method-assign]


def infer_checked(session: InferenceSession, values: list[float], expected: np.ndarray) -> float:
    """Send one record; return its time in ms, or raise Mismatch."""
    start = time.perf_counter()
    output = session.infer([values])
    elapsed = (time.perf_counter() - start) * 1000
    received = np.asarray(output, dtype=np.float32)
    if received.shape != expected.shape:
        raise Mismatch(f"{len(values)} elements: output shape {received.shape}")
    if not np.array_equal(received, expected):
        i = int(np.argmax(received != expected))
        raise Mismatch(f"{len(values)} elements: output[{i}] = {received[i]!r}, "
                       f"input[{i}] = {expected[i]!r}")
    return elapsed


def measure(endpoint: str, binary_data: str, elements: int, warmup: int, repetitions: int,
            rng: np.random.Generator) -> ModeResult:
    inference = TritonInference.create(
        {"endpoint": endpoint, "model-name": MODEL, "binary-data": binary_data})
    session = inference.open(subtask_index=0)
    try:
        # A fresh record per call, made before the clock starts: a Python list of floats
        # (what PyFlink hands a UDF for ARRAY<FLOAT>), all finite and exact in float32.
        records = [rng.standard_normal(elements, dtype=np.float32)
                   for _ in range(warmup + repetitions)]
        with body_sizes() as sizes:  # one extra, untimed record
            infer_checked(session, records[0].tolist(), records[0])
        times = [infer_checked(session, record.tolist(), record) for record in records]
    finally:
        session.close()
    timed = np.asarray(times[warmup:])
    return ModeResult(sizes["request"], sizes["response"], float(np.median(timed)),
                      float(np.percentile(timed, 90)), float(timed.min()))


def markdown_table(results: list[SizeResult]) -> str:
    lines = [
        "| elements | bytes/record binary | bytes/record JSON | ms/record median binary "
        "| ms/record median JSON | JSON/binary |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.elements:,} | {r.binary.request_bytes:,} | {r.json.request_bytes:,} "
            f"| {r.binary.median_ms:.3f} | {r.json.median_ms:.3f} | {r.ratio:.1f}x |")
    return "\n".join(lines)


def run(server: LocalTritonServer) -> dict[str, Any]:
    server.start()
    endpoint = server.http_endpoint
    load_before = os.getloadavg()  # other processes on the machine skew the times
    rng = np.random.default_rng(20240601)
    results = []
    for elements, warmup, repetitions in SIZES:
        modes = {mode: measure(endpoint, flag, elements, warmup, repetitions, rng)
                 for mode, flag in MODES.items()}
        result = SizeResult(elements, warmup, repetitions, **modes)
        print(f"{elements:>8,} elements, median (p90) of {repetitions}: binary "
              f"{result.binary.median_ms:.3f} ({result.binary.p90_ms:.3f}) ms, JSON "
              f"{result.json.median_ms:.3f} ({result.json.p90_ms:.3f}) ms", flush=True)
        results.append(result)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine_facts(), "tritonserver": server_version(endpoint),
                    "load_average_1m_before_after": [load_before[0], os.getloadavg()[0]]},
        "model": MODEL,
        "measured": "session.infer([values]) per record; bytes are HTTP body sizes",
        "results": [{**asdict(r), "json_over_binary_median": round(r.ratio, 2)}
                    for r in results],
        "table": markdown_table(results),
    }


def main() -> int:
    # SIGTERM should stop the server too (it runs in its own session, so it is not signalled).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    server = LocalTritonServer(ROOT / "model_repository", extra_args=[
        "--model-control-mode=explicit", f"--load-model={MODEL}"])
    started = time.monotonic()
    try:
        report = run(server)
    except Mismatch as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted; stopping Triton.", file=sys.stderr)
        return 130
    finally:
        server.stop()
    print()
    print(report["table"])
    write_results(report, RESULTS)
    print(f"\nResults written to {RESULTS} ({time.monotonic() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
