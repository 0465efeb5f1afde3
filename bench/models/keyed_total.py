"""TOTAL = the running sum of X per sequence (correlation ID), batched by Triton's Direct
sequence batcher; one accelerator step per batch, and one log line per request.

The model of ``bench/keyed.py`` (which writes its config: ``max_batch_size`` = the slots of one
instance, ``sequence_batching { direct { ... } }``, START/END/READY control inputs). A stand-in
for a stateful model on an accelerator, whose cost is per *step* (one batch of up to
max_batch_size sequences), not per request:

- ``execute()`` gets one request per slot of the batch Triton formed; it sleeps
  ``step_seconds`` (config parameter, default 0.003) **once**, however many requests it got.
- START resets the ID's total to 0 before X is added. X is added, except when the request
  carries the request parameter ``sequence_flush`` = true (an END a client sends to close a
  sequence, repeating its last input: idle, evicted). ``sequence_replay`` = true (an input
  replayed into a restarted sequence) is counted like any other input, and logged.
- END deletes the ID's state, after the response's total is computed.
- A request with READY=0 (Direct's padding for a slot with no request in this batch:
  correlation ID 0, uninitialised X) changes nothing, answers TOTAL=0 and is not logged.

Each real request appends one JSON line to ``request_log`` (one ``os.write`` on an O_APPEND
descriptor): corrid, x, start, end, flush, replay, total (after this request), unknown (no
START and no state), step (a counter of execute() calls), batch (real requests in that call),
time (when the step began).
"""

import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FLUSH_PARAMETER = "sequence_flush"
REPLAY_PARAMETER = "sequence_replay"


def _flag(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else bool(tensor.as_numpy().reshape(-1)[0])


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.log = os.open(parameters["request_log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                           0o644)
        self.step_seconds = float(parameters.get("step_seconds", "0.003"))
        self.totals = {}  # correlation ID -> running total
        self.steps = 0

    def execute(self, requests):
        started = time.time()
        self.steps += 1
        real = [r for r in requests if _flag(r, "READY") is not False]
        time.sleep(self.step_seconds)  # one accelerator step for the whole batch
        responses = []
        for request in requests:
            if _flag(request, "READY") is False:  # Direct's padding
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("TOTAL", np.zeros([1, 1], dtype=np.int64))]))
                continue
            try:
                total = self._apply(request, started, len(real))
            except ValueError as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("TOTAL", np.array([[total]], dtype=np.int64))]))
        return responses

    def _apply(self, request, started, batch):
        parameters = json.loads(request.parameters() or "{}")
        flush = parameters.get(FLUSH_PARAMETER, False)
        replay = parameters.get(REPLAY_PARAMETER, False)
        if not isinstance(flush, bool) or not isinstance(replay, bool):
            raise ValueError(f"request parameters {FLUSH_PARAMETER!r} and {REPLAY_PARAMETER!r} "
                             f"must be bools, not {parameters!r}")
        x = int(pb_utils.get_input_tensor_by_name(request, "X").as_numpy().reshape(-1)[0])
        corrid = request.correlation_id()
        start, end = bool(_flag(request, "START")), bool(_flag(request, "END"))
        unknown = not start and corrid not in self.totals
        total = 0 if start else self.totals.get(corrid, 0)
        if not flush:
            total += x
        if end:
            self.totals.pop(corrid, None)
        else:
            self.totals[corrid] = total
        line = {"corrid": corrid, "x": x, "start": start, "end": end, "flush": flush,
                "replay": replay, "total": total, "unknown": unknown, "step": self.steps,
                "batch": batch, "time": started}
        os.write(self.log, (json.dumps(line) + "\n").encode())
        return total

    def finalize(self):
        os.close(self.log)
