"""Per batch row: TOTAL = sum(values), label_Upper = Label upper-cased (UTF-8), Count = len(values)."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "values").as_numpy()
            labels = pb_utils.get_input_tensor_by_name(request, "Label").as_numpy()
            rows = values.shape[0]
            total = values.astype(np.float64).sum(axis=1, keepdims=True)
            count = np.full((rows, 1), values.shape[1], dtype=np.int64)
            upper = np.array(
                [[label.decode("utf-8").upper().encode("utf-8") for label in row] for row in labels],
                dtype=np.object_)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("TOTAL", total),
                pb_utils.Tensor("label_Upper", upper),
                pb_utils.Tensor("Count", count),
            ]))
        return responses
