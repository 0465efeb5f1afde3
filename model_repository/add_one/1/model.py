"""y = x + 1, element-wise."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(request, "x").as_numpy() + 1.0)
            ])
            for request in requests
        ]
