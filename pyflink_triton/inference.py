"""The core every adapter wraps: one Triton request per record.

:class:`TritonInference` is the picklable description of a model function (validated options
plus the column signature), built at registration. Each parallel function instance calls
:meth:`TritonInference.open` with its subtask index and gets an :class:`InferenceSession`: its
own connection, its own sequence-ID counter, and the tensor layout checked against the model
the server serves. The PyFlink adapters in ``table`` and ``datastream`` only translate between
Flink's calling conventions and this.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import TritonConfigError, TritonError, TritonRequestError
from .options import TritonOptions
from .sequence import SequenceIdGenerator, SequencePolicy
from .signature import ColumnDeclaration, ModelSignature, TensorLayout
from .transport import HttpTransport, ModelRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TritonInference:
    options: TritonOptions
    signature: ModelSignature

    @classmethod
    def create(cls, options: Mapping[str, object] | TritonOptions,
               inputs: Sequence[ColumnDeclaration] | None = None,
               output: ColumnDeclaration | None = None) -> TritonInference:
        """Validate everything that can be validated at registration.

        Columns whose types are not declared are looked up in the model's metadata on the
        server, so the server must be reachable then; declared columns need no server.
        """
        parsed = options if isinstance(options, TritonOptions) else TritonOptions.from_dict(options)
        model = ModelRef(parsed.model_name, parsed.model_version)

        def fetch_metadata() -> tuple[dict[str, Any], dict[str, Any]]:
            transport = HttpTransport.for_options(parsed)
            try:
                return transport.model_metadata(model), transport.model_config(model)
            except TritonError as e:
                raise TritonConfigError(
                    f"Cannot derive the input and output columns of model {model} from the "
                    f"server: {e} Declare the columns (INPUT (...) and OUTPUT (...) in CREATE "
                    "MODEL, inputs= and output= in Python) or make the server reachable when "
                    "the function is registered.") from None
            finally:
                transport.close()

        return cls(parsed, ModelSignature.resolve(model, inputs, output, fetch_metadata))

    @property
    def model(self) -> ModelRef:
        return ModelRef(self.options.model_name, self.options.model_version)

    def open(self, subtask_index: int, attempt: int = 0) -> InferenceSession:
        transport = HttpTransport.for_options(self.options)
        try:
            layout = self.signature.layout(self.model, transport.model_metadata(self.model),
                                           transport.model_config(self.model))
        except BaseException:
            transport.close()
            raise
        sequence_ids = SequencePolicy.from_options(self.options).for_subtask(subtask_index)
        log.info("Triton model %s at %s: subtask %d, attempt %d, %s; %s", self.model,
                 self.options.endpoint, subtask_index, attempt, sequence_ids.describe(),
                 self.signature.describe())
        return InferenceSession(self, transport, layout, sequence_ids)


class InferenceSession:
    """One function instance's connection to the model; not thread-safe (one record at a time)."""

    def __init__(self, inference: TritonInference, transport: HttpTransport,
                 layout: TensorLayout, sequence_ids: SequenceIdGenerator) -> None:
        self._options = inference.options
        self._model = inference.model
        self._inputs = inference.signature.inputs
        self._output = inference.signature.output
        self._requested_outputs = [self._output.requested_output()]
        self._transport = transport
        self._layout = layout
        self.sequence_ids = sequence_ids

    def infer(self, values: Sequence[Any]) -> Any:
        """Send one record (one value per input column) and return the output column's value."""
        if len(values) != len(self._inputs):
            raise TritonRequestError(
                f"Model {self._model} takes {len(self._inputs)} argument(s) "
                f"({', '.join(c.name for c in self._inputs)}), got {len(values)}.")
        layout = self._layout
        tensors = [column.encode(value, layout.scalar_shapes.get(column.name, ()), layout.batched)
                   for column, value in zip(self._inputs, values, strict=True)]
        # Drawn after encoding, so a record that cannot be encoded uses up no ID.
        sequence = self.sequence_ids.next()
        result = self._transport.infer(self._model, tensors, self._requested_outputs, sequence,
                                       self._options.priority)
        return self._output.decode(result.as_numpy(self._output.name), layout.batched,
                                   self._model.name)

    def close(self) -> None:
        self._transport.close()
