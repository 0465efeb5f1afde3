"""The core every adapter wraps: one Triton request per record.

:class:`TritonInference` is the picklable description of a model function (validated options
plus the column signature), built at registration. Each parallel function instance calls
:meth:`TritonInference.open` with its subtask index and gets an :class:`InferenceSession`: its
own connection, its own sequence-ID counter, and codecs checked against the model the server
serves. The PyFlink adapters in ``table`` and ``datastream`` only translate between
Flink's calling conventions and this.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyflink.common import Row

from .errors import TritonConfigError, TritonError, TritonRequestError
from .options import TritonOptions
from .sequence import SequenceIdGenerator, SequencePolicy
from .signature import BoundSignature, ColumnDeclaration, ModelSignature, OutputDeclaration
from .transport import HttpTransport, ModelRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TritonInference:
    options: TritonOptions
    signature: ModelSignature

    @classmethod
    def create(cls, options: Mapping[str, object] | TritonOptions,
               inputs: Sequence[ColumnDeclaration] | None = None,
               output: OutputDeclaration | None = None) -> TritonInference:
        """Validate everything that can be validated at registration.

        Columns whose types are not declared are looked up in the model's metadata on the
        server, so the server must be reachable then; declared columns need no server.
        """
        parsed = options if isinstance(options, TritonOptions) else TritonOptions.from_dict(options)
        model = ModelRef(parsed.model_name, parsed.model_version)

        def fetch_served() -> tuple[dict[str, Any], dict[str, Any]]:
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

        return cls(parsed, ModelSignature.resolve(model, parsed, inputs, output, fetch_served))

    @property
    def model(self) -> ModelRef:
        return ModelRef(self.options.model_name, self.options.model_version)

    def open(self, subtask_index: int, attempt: int = 0) -> InferenceSession:
        """Connect, check the signature against the served model, start the ID counter."""
        transport = HttpTransport.for_options(self.options)
        try:
            # Fetched anew by every open(): the served model may have changed since
            # registration (or since the last attempt).
            bound = self.signature.bind(self.model, transport.model_metadata(self.model),
                                        transport.model_config(self.model), self.options)
        except BaseException:
            transport.close()
            raise
        sequence_ids = SequencePolicy.from_options(self.options).for_subtask(subtask_index)
        log.info("Triton model %s at %s: subtask %d, attempt %d, %s; %s", self.model,
                 self.options.endpoint, subtask_index, attempt, sequence_ids.describe(),
                 self.signature.describe())
        return InferenceSession(self, transport, bound, sequence_ids)


class InferenceSession:
    """One function instance's connection to the model; not thread-safe (one record at a time)."""

    def __init__(self, inference: TritonInference, transport: HttpTransport,
                 bound: BoundSignature, sequence_ids: SequenceIdGenerator) -> None:
        self._model = inference.model
        self._priority = inference.options.priority
        self._skip_nulls = inference.options.null_input == "skip"
        self._inputs = bound.inputs
        self._outputs = bound.outputs
        self._row_fields = [c.column.name for c in bound.outputs] if bound.row_output else None
        self._requested_outputs = [codec.requested_output() for codec in bound.outputs]
        self._transport = transport
        self.sequence_ids = sequence_ids

    def infer(self, values: Sequence[Any]) -> Any:
        """Send one record (one value per input column) and return the result: the output
        column's value, or a ``Row`` of them for a ROW result."""
        if len(values) != len(self._inputs):
            raise TritonRequestError(
                f"Model {self._model} takes {len(self._inputs)} argument(s) "
                f"({', '.join(c.column.name for c in self._inputs)}), got {len(values)}.")
        if any(value is None for value in values):
            if self._skip_nulls:
                return None
            raise self._null_error(values)
        try:
            tensors = [codec.encode(value) for codec, value in zip(self._inputs, values,
                                                                   strict=True)]
        except TritonRequestError as e:  # say which model, when a job calls several
            raise TritonRequestError(f"Model {self._model}: {e}") from None
        # Drawn after encoding, so a record that cannot be encoded uses up no ID.
        sequence = self.sequence_ids.next()
        result = self._transport.infer(self._model, tensors, self._requested_outputs, sequence,
                                       self._priority)
        decoded = [codec.decode(result.as_numpy(codec.column.tensor), self._model.name)
                   for codec in self._outputs]
        if self._row_fields is None:
            return decoded[0]
        row = Row(*decoded)
        row.set_field_names(self._row_fields)
        return row

    def _null_error(self, values: Sequence[Any]) -> TritonRequestError:
        columns = [codec.column.name for codec, value in zip(self._inputs, values, strict=True)
                   if value is None]
        return TritonRequestError(
            f"Column(s) {columns} are NULL, and a Triton tensor cannot hold NULL (model "
            f"{self._model}). Filter NULLs out or replace them with COALESCE, or set "
            "'null-input' = 'skip' to return NULL for such records without calling the model.")

    def close(self) -> None:
        self._transport.close()
