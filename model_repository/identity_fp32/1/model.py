"""Identity model shared (by symlink) by every ``identity_*`` model: output i = input i.

The tensors come from the model's own config, so one file serves every datatype and shape.
"""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.pairs = [(i["name"], o["name"]) for i, o in zip(config["input"], config["output"])]

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(out_name, pb_utils.get_input_tensor_by_name(request, in_name).as_numpy())
                for in_name, out_name in self.pairs
            ])
            for request in requests
        ]
