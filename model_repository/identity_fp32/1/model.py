"""Identity model shared (by symlink) by every ``identity_*`` model: output i = input i.

The tensors come from the model's own config, so one file serves every datatype and shape.
BF16 has no NumPy dtype (``as_numpy()`` refuses it), so BF16 tensors pass through DLPack.
"""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.pairs = [(i["name"], o["name"], i["data_type"] == "TYPE_BF16")
                      for i, o in zip(config["input"], config["output"])]

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(output_tensors=[
                self._identity(pb_utils.get_input_tensor_by_name(request, in_name), out_name, dlpack)
                for in_name, out_name, dlpack in self.pairs
            ])
            for request in requests
        ]

    @staticmethod
    def _identity(tensor, out_name, dlpack):
        if dlpack:
            return pb_utils.Tensor.from_dlpack(out_name, tensor.to_dlpack())
        return pb_utils.Tensor(out_name, tensor.as_numpy())
