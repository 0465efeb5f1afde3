"""Y = X + 1, and one line appended to a request log for every request the model receives.

The model of the fault-injection tests (tests/faults.py writes its configs): the log records
which requests reached a server, with which correlation ID, and which server process (a restart
changes the pid), so a test can tell a retry that reached the server from one that did not.
The line is written when the request arrives, before the optional delay, so a request that was
in flight when the server was killed is logged too. Each line is one write() on an O_APPEND
descriptor: lines from several instances and from restarted servers never interleave, and a
line is in the file (the page cache) even if the process is killed right after.

Config parameters: ``request_log`` (the log's path) and ``delay_file`` (a file holding the
seconds to sleep before each response, read per request so a test can slow a running server).
"""

import json
import os
import time

import triton_python_backend_utils as pb_utils


def _flag(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else bool(tensor.as_numpy().item())


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.log = os.open(parameters["request_log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                           0o644)
        self.delay_file = parameters.get("delay_file")
        self.server_pid = os.getppid()  # the stub is a child of tritonserver

    def _delay(self):
        try:
            with open(self.delay_file) as f:
                return float(f.read().strip() or 0)
        except (TypeError, OSError, ValueError):
            return 0.0

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            line = {"corrid": request.correlation_id(), "x": int(x.reshape(-1)[0]),
                    "pid": self.server_pid, "start": _flag(request, "START"),
                    "end": _flag(request, "END"), "time": time.time()}
            os.write(self.log, (json.dumps(line) + "\n").encode())
            delay = self._delay()
            if delay > 0:
                time.sleep(delay)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("Y", x + 1)]))
        return responses

    def finalize(self):
        os.close(self.log)
