"""Model signature: which Flink columns feed which input tensors, and which output comes back.

At registration a :class:`ModelSignature` comes from the user's declarations (SQL ``INPUT (...)``
/ ``OUTPUT (...)`` clauses, or ``inputs=`` / ``output=`` in Python) and, for whatever was not
declared, from the model's metadata on the server. At ``open()`` :meth:`ModelSignature.layout`
checks it against the model the server actually serves and works out the tensor shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyflink.table.types import DataType

from .codec import TensorColumn, flink_type_for, parse_data_type, sql_type
from .errors import TritonConfigError, TritonRequestError
from .transport import ModelRef

# A column declaration: a tensor name (its type then comes from the model's metadata), or a
# (tensor name, Flink type) pair where the type is a DataType or a SQL type string.
ColumnDeclaration = str | tuple[str, DataType | str]


@dataclass(frozen=True)
class TensorLayout:
    """How this model's tensors are shaped, learnt from its metadata and config at ``open()``."""

    batched: bool  # max_batch_size > 0: every tensor has a leading batch dimension
    scalar_shapes: Mapping[str, tuple[int, ...]]  # per scalar input: the shape its value takes


@dataclass(frozen=True)
class ModelSignature:
    inputs: tuple[TensorColumn, ...]
    output: TensorColumn

    @classmethod
    def resolve(cls, model: ModelRef, inputs: Sequence[ColumnDeclaration] | None,
                output: ColumnDeclaration | None,
                fetch_metadata: Any) -> ModelSignature:
        """Build the signature from declarations; ``fetch_metadata()`` fills in what is missing.

        ``fetch_metadata`` returns ``(metadata, config)`` and is called only when some column
        type was not declared.
        """
        declared_inputs = [_declaration(d, "input") for d in inputs] if inputs is not None else None
        declared_output = _declaration(output, "output") if output is not None else None
        declared = [*(declared_inputs or []), *([declared_output] if declared_output else [])]
        served: dict[str, dict[str, DataType | None]] = {}
        if (declared_inputs is None or declared_output is None
                or any(data_type is None for _, data_type in declared)):
            metadata, config = fetch_metadata()
            served = _served_types(metadata, config)
        if declared_inputs is None:
            declared_inputs = [(name, None) for name in served["inputs"]]
        if declared_output is None:
            outputs = list(served["outputs"])
            if len(outputs) != 1:
                raise TritonConfigError(
                    f"Model {model} has {len(outputs)} outputs ({', '.join(outputs)}); name the "
                    "one to return: OUTPUT (<name> <type>) in CREATE MODEL, or output=<name> in "
                    "Python.")
            declared_output = (outputs[0], None)
        columns = [_column(model, name, data_type, served.get("inputs", {}), "input")
                   for name, data_type in declared_inputs]
        if not columns:
            raise TritonConfigError(f"Model {model} has no inputs to map columns to.")
        names = [c.name for c in columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise TritonConfigError(f"Input tensor(s) {duplicates} are declared twice.")
        out = _column(model, *declared_output, served.get("outputs", {}), "output")
        return cls(tuple(columns), out)

    def describe(self) -> str:
        inputs = ", ".join(c.describe() for c in self.inputs)
        return f"inputs ({inputs}) -> output {self.output.describe()}"

    def layout(self, model: ModelRef, metadata: Mapping[str, Any],
               config: Mapping[str, Any]) -> TensorLayout:
        """Check the columns against the served model; raise naming what does not match."""
        batched = _is_batched(config)
        served_inputs = {t["name"]: t for t in metadata.get("inputs", [])}
        served_outputs = {t["name"]: t for t in metadata.get("outputs", [])}
        scalar_shapes = {}
        for column, served, kind in [*((c, served_inputs, "input") for c in self.inputs),
                                     (self.output, served_outputs, "output")]:
            tensor = served.get(column.name)
            if tensor is None:
                raise TritonRequestError(
                    f"Model {model} has no {kind} tensor '{column.name}' (names are "
                    f"case-sensitive). {_served_signature(metadata)}")
            if tensor["datatype"] != column.triton_datatype:
                raise TritonRequestError(
                    f"Column '{column.name}' ({sql_type(column.data_type)}) is sent as "
                    f"{column.triton_datatype}, but model {model} declares {kind} "
                    f"'{column.name}' as {tensor['datatype']}. {_served_signature(metadata)}")
            if kind == "input" and column.rank == 0:
                # A variable dimension (-1) takes size 1; a fixed one must already be 1.
                dims = _dims(tensor, batched)
                shape = tuple(1 if d == -1 else d for d in dims)
                if any(d != 1 for d in shape):
                    raise TritonRequestError(
                        f"Column '{column.name}' ({sql_type(column.data_type)}) is a scalar, "
                        f"but model {model} expects input '{column.name}' with dims "
                        f"{dims}; declare the column as an ARRAY. "
                        f"{_served_signature(metadata)}")
                scalar_shapes[column.name] = shape
        return TensorLayout(batched, scalar_shapes)


def _declaration(declaration: ColumnDeclaration, kind: str) -> tuple[str, DataType | str | None]:
    if isinstance(declaration, str):
        return declaration, None
    if (isinstance(declaration, tuple | list) and len(declaration) == 2
            and isinstance(declaration[0], str)):
        return declaration[0], declaration[1]
    raise TritonConfigError(
        f"Invalid {kind} declaration {declaration!r}: expected a tensor name or a "
        "(tensor name, Flink type) pair.")


def _column(model: ModelRef, name: str, data_type: DataType | str | None,
            served: Mapping[str, DataType | None], kind: str) -> TensorColumn:
    if isinstance(data_type, str):
        data_type = parse_data_type(data_type, name)
    if data_type is None:
        if name not in served:
            raise TritonConfigError(
                f"Model {model} has no {kind} tensor '{name}' (names are case-sensitive); its "
                f"{kind}s are: {', '.join(served) or '(none)'}.")
        data_type = served[name]
        if data_type is None:
            raise TritonConfigError(
                f"The {kind} tensor '{name}' of model {model} has a datatype with no Flink "
                "type in this version; declare the column's type explicitly.")
    return TensorColumn(name, data_type)


def _is_batched(config: Mapping[str, Any]) -> bool:
    """max_batch_size > 0: every tensor has a leading batch dimension the config omits."""
    return int(config.get("max_batch_size", 0)) > 0


def _dims(tensor: Mapping[str, Any], batched: bool) -> list[int]:
    """A tensor's dims from the model metadata, without the batch dimension."""
    return list(tensor["shape"])[1 if batched else 0:]


def _served_types(metadata: Mapping[str, Any], config: Mapping[str, Any]
                  ) -> dict[str, dict[str, DataType | None]]:
    batched = _is_batched(config)
    return {
        kind: {t["name"]: flink_type_for(t["datatype"], _dims(t, batched))
               for t in metadata.get(kind, [])}
        for kind in ("inputs", "outputs")
    }


def _served_signature(metadata: Mapping[str, Any]) -> str:
    def tensors(kind: str) -> str:
        return ", ".join(f"{t['name']} {t['datatype']} {list(t['shape'])}"
                         for t in metadata.get(kind, [])) or "(none)"
    return (f"The model's signature: inputs [{tensors('inputs')}], "
            f"outputs [{tensors('outputs')}].")
