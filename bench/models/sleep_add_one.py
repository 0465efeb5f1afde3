"""y = x + 1, after sleeping 5 ms per request: a stand-in for a model whose execution takes a
fixed time on its one instance, whatever the client does.

The model of ``bench/replicas.py`` (which writes its config: ``max_batch_size: 0``, so there is
no batch dimension and no batching, one instance, no dynamic batching; Triton's default
scheduler then hands ``execute()`` one request at a time):

- every request sleeps ``sleep_seconds`` (config parameter, default 0.005) before its answer:
  the sleep is per request, not per ``execute()`` call, so even if Triton handed over several
  requests at once, each would still cost its 5 ms;
- ``y`` = ``x`` + 1 (INT64, shape [1]).

Each request appends one JSON line to ``request_log`` (one ``os.write`` on an O_APPEND
descriptor, so two servers' stubs can share one file): x, start and end (``time.time()``
around the sleep), pid (the stub process, one per server) and requests (how many requests the
``execute()`` call held).
"""

import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.log = os.open(parameters["request_log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                           0o644)
        self.sleep_seconds = float(parameters.get("sleep_seconds", "0.005"))
        self.pid = os.getpid()

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            start = time.time()
            time.sleep(self.sleep_seconds)
            end = time.time()
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("y", (x + 1).astype(np.int64))]))
            line = {"x": int(x.reshape(-1)[0]), "start": start, "end": end, "pid": self.pid,
                    "requests": len(requests)}
            os.write(self.log, (json.dumps(line) + "\n").encode())
        return responses

    def finalize(self):
        os.close(self.log)
