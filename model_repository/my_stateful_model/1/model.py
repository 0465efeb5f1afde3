"""Per-sequence running total that reports what Triton delivered with each request.

OUTPUT0 is a JSON object: the correlation ID (``request.correlation_id()``; a str for
string sequence IDs, an int for uint64 ones), the START/END flags, the input and the
running total of the sequence after this request.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


def _flag(request, name: str) -> bool:
    return bool(pb_utils.get_input_tensor_by_name(request, name).as_numpy().item())


class TritonPythonModel:
    def initialize(self, args):
        self.totals: dict = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            # Direct batching pads batches with empty requests (READY=0, correlation ID 0,
            # uninitialised inputs): answer them without touching any sequence's state.
            if not _flag(request, "READY"):
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("OUTPUT0", np.array([[b"{}"]], dtype=np.object_))]))
                continue
            correlation_id = request.correlation_id()
            start, end = _flag(request, "START"), _flag(request, "END")
            value = int(pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy().item())
            if start:
                self.totals[correlation_id] = 0
            total = self.totals.get(correlation_id, 0) + value
            self.totals[correlation_id] = total
            if end:
                del self.totals[correlation_id]
            report = {"sequence_id": correlation_id, "start": start, "end": end,
                      "input": value, "total": total}
            out = np.array([[json.dumps(report).encode()]], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT0", out)]))
        return responses
