"""TOTAL = the running sum of X per sequence (correlation ID), and one log line per request.

A stateful model for the tests of keyed state carried in Triton sequences (tests/faults.py
writes its config: sequence batching, Oldest strategy, START/END/READY control inputs).

- START resets the ID's total to 0 before X is added (so a START on a still-open ID, which
  Triton routes into the same sequence with only a "has a conflict" warning, restarts it).
- X is added to the total, except when the request carries the custom request parameter
  ``sequence_flush`` = true: a synthetic request a client sends to end a key that went idle,
  which repeats the key's last input and must not be counted.
- END deletes the ID's state, after the response's total is computed.
- A request without START for an ID with no state (which Triton only lets through if the model
  lost its state while Triton kept the sequence) counts from 0 and logs ``"unknown": true``.
- A request with READY=0 (the padding of a Direct batcher; never sent by Oldest) changes
  nothing, answers TOTAL=0 and is not logged.

Each request appends one JSON line to the request log (one write() on an O_APPEND descriptor,
as echo_log does): corrid, x, start, end, flush, total (after this request), unknown, open
(IDs with state after this request), pid (the tritonserver's), time (on arrival). The line is
written before the optional delay, so a request in flight when the server is killed is logged.

Config parameters: ``request_log`` and ``delay_file``, as for echo_log.
"""

import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FLUSH_PARAMETER = "sequence_flush"
# Marks an input replayed into a restarted sequence (counted like any other; only logged).
REPLAY_PARAMETER = "sequence_replay"


def _flag(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else bool(tensor.as_numpy().reshape(-1)[0])


def _flush(request):
    """The custom parameter's value: absent is False, anything but a JSON bool is an error."""
    value = json.loads(request.parameters() or "{}").get(FLUSH_PARAMETER, False)
    if not isinstance(value, bool):
        raise ValueError(f"request parameter {FLUSH_PARAMETER!r} must be a bool, not "
                         f"{value!r}")
    return value


class RunningTotals:
    """The per-ID state, apart from Triton's API so its rules read (and test) on their own."""

    def __init__(self):
        self.totals = {}  # correlation ID (int or str, as Triton gives it) -> total

    def apply(self, corrid, x, start, end, flush):
        """(total after this request, whether the ID was unknown)."""
        unknown = not start and corrid not in self.totals
        total = 0 if start else self.totals.get(corrid, 0)
        if not flush:
            total += x
        if end:
            self.totals.pop(corrid, None)
        else:
            self.totals[corrid] = total
        return total, unknown


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.log = os.open(parameters["request_log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                           0o644)
        self.delay_file = parameters.get("delay_file")
        self.server_pid = os.getppid()  # the stub is a child of tritonserver
        self.state = RunningTotals()

    def _delay(self):
        try:
            with open(self.delay_file) as f:
                return float(f.read().strip() or 0)
        except (TypeError, OSError, ValueError):
            return 0.0

    def _total(self, request):
        if _flag(request, "READY") is False:
            return 0
        x = int(pb_utils.get_input_tensor_by_name(request, "X").as_numpy().reshape(-1)[0])
        corrid = request.correlation_id()
        flush = _flush(request)
        start, end = bool(_flag(request, "START")), bool(_flag(request, "END"))
        total, unknown = self.state.apply(corrid, x, start, end, flush)
        replay = bool(json.loads(request.parameters() or "{}").get(REPLAY_PARAMETER, False))
        line = {"corrid": corrid, "x": x, "start": start, "end": end, "flush": flush,
                "replay": replay,
                "total": total, "unknown": unknown, "open": len(self.state.totals),
                "pid": self.server_pid, "time": time.time()}
        os.write(self.log, (json.dumps(line) + "\n").encode())
        return total

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                total = self._total(request)
            except ValueError as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
                continue
            delay = self._delay()
            if delay > 0:
                time.sleep(delay)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("TOTAL", np.array([total], dtype=np.int64))]))
        return responses

    def finalize(self):
        os.close(self.log)
