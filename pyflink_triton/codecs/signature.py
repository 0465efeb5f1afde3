"""Model signature: which Flink columns feed which input tensors, and which outputs come back.

At registration :meth:`ModelSignature.resolve` builds the signature from the user's
declarations (SQL ``INPUT (...)`` / ``OUTPUT (...)``, or ``inputs=`` / ``output=`` in Python),
the ``input-names`` / ``output-names`` options and, for whatever was not declared, the model's
metadata on the server. At ``open()`` :meth:`ModelSignature.bind` checks it against the model
the server actually serves (names, datatypes, dims, batching) and returns the codecs that
convert records; any mismatch is an error that shows the model's own signature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyflink.table import DataTypes
from pyflink.table.types import DataType

from ..errors import TritonConfigError, TritonRequestError
from ..options import TritonOptions
from ..wire.request import ModelRef
from .columns import (
    HALF_PRECISION,
    Direction,
    TensorColumn,
    flink_type_for,
    parse_data_type,
    significant_dims,
    sql_type,
)
from .tensors import InputCodec, OutputCodec

# A column declaration: a name (its type then comes from the model's metadata), or a
# (name, Flink type) pair where the type is a DataType or a SQL type string.
ColumnDeclaration = str | tuple[str, DataType | str]
# The result: one declaration, or a list of them for a ROW result.
OutputDeclaration = ColumnDeclaration | list[ColumnDeclaration]

# (metadata, config) of the served model, fetched only when needed.
FetchServed = Callable[[], tuple[Mapping[str, Any], Mapping[str, Any]]]

_KEYS = {"input": "input-names", "output": "output-names"}


@dataclass(frozen=True)
class BoundSignature:
    """The signature fixed against the served model at ``open()``: one codec per tensor."""

    inputs: tuple[InputCodec, ...]
    outputs: tuple[OutputCodec, ...]
    row_output: bool
    max_batch_size: int = 0  # rows one request may carry; 0: the model has no batch dimension


@dataclass(frozen=True)
class ModelSignature:
    inputs: tuple[TensorColumn, ...]
    outputs: tuple[TensorColumn, ...]
    row_output: bool  # the result is ROW<outputs...>, not the single output's value

    @property
    def result_type(self) -> DataType:
        if self.row_output:
            return DataTypes.ROW([DataTypes.FIELD(c.name, c.data_type) for c in self.outputs])
        return self.outputs[0].data_type

    @classmethod
    def resolve(cls, model: ModelRef, options: TritonOptions,
                inputs: Sequence[ColumnDeclaration] | None, output: OutputDeclaration | None,
                fetch_served: FetchServed) -> ModelSignature:
        """Build the signature; ``fetch_served()`` is called only if something is undeclared."""
        declared_inputs = None if inputs is None else [_declaration(d, "input") for d in inputs]
        row_output = isinstance(output, list)
        declared_outputs = None if output is None else [
            _declaration(d, "output") for d in (output if isinstance(output, list) else [output])]
        served = None
        types: dict[Direction, dict[str, tuple[DataType | None, bool]]] = {}
        if declared_inputs is None or declared_outputs is None or any(
                t is None for _, t in [*declared_inputs, *declared_outputs]):
            served = _ServedModel(model, *fetch_served())
            types = served.derived_types()
        if declared_inputs is None:
            declared_inputs = _derived(options.input_names, types["input"], "input")
        if declared_outputs is None:
            declared_outputs = _derived(options.output_names, types["output"], "output")
            row_output = len(declared_outputs) > 1
        columns = {
            kind: [_column(model, name, tensor, data_type, types.get(kind, {}), kind)
                   for name, tensor, data_type in _named(declared, options, kind)]
            for kind, declared in (("input", declared_inputs), ("output", declared_outputs))}
        if not columns["input"]:
            raise TritonConfigError(f"Model {model} has no inputs to map columns to.")
        if not columns["output"]:
            raise TritonConfigError(f"Model {model} has no outputs to return.")
        signature = cls(tuple(columns["input"]), tuple(columns["output"]), row_output)
        if served is not None:
            # The served model is at hand: what open() would refuse, refuse now.
            try:
                signature._bind(served, options)
            except TritonRequestError as e:
                raise TritonConfigError(str(e)) from None
        return signature

    def describe(self) -> str:
        inputs = ", ".join(c.describe() for c in self.inputs)
        outputs = ", ".join(c.describe() for c in self.outputs)
        return f"inputs ({inputs}) -> " + (f"ROW ({outputs})" if self.row_output else outputs)

    def bind(self, model: ModelRef, metadata: Mapping[str, Any], config: Mapping[str, Any],
             options: TritonOptions) -> BoundSignature:
        """Check the columns against the served model; raise naming what does not match."""
        return self._bind(_ServedModel(model, metadata, config), options)

    def _bind(self, served: _ServedModel, options: TritonOptions) -> BoundSignature:
        if options.flatten_batch_dim and served.batched:
            raise served.error(
                f"'flatten-batch-dim' = 'true' asserts that the model takes no batch dimension, "
                f"but its config has max_batch_size {served.max_batch_size}, so Triton requires "
                "one. Remove the option: shapes follow the model's config.")
        inputs = tuple(self._bind_input(c, served, options) for c in self.inputs)
        mapped = {c.tensor for c in self.inputs}
        missing = [name for name in served.tensors["input"]
                   if name not in mapped and name not in served.optional_inputs]
        if missing:
            raise served.error(
                f"No column feeds its required input(s) {missing}; the function's input "
                f"columns are: {', '.join(c.describe() for c in self.inputs)}. Declare a column "
                "for each input (or map names with 'input-names').")
        outputs = tuple(self._bind_output(c, served, options) for c in self.outputs)
        if options.batch_size is not None and options.batch_size > max(served.max_batch_size, 1):
            raise served.error(
                f"'batch-size' = '{options.batch_size}' exceeds the model's max_batch_size "
                f"{served.max_batch_size}; Triton refuses larger batches. Lower it, or leave it "
                "unset to use max_batch_size.")
        return BoundSignature(inputs, outputs, self.row_output, served.max_batch_size)

    @staticmethod
    def _bind_input(column: TensorColumn, served: _ServedModel,
                    options: TritonOptions) -> InputCodec:
        datatype, dims = served.check(column, "input", options)
        if column.rank == 0:
            _check_scalar(column, "input", dims, served)
            leading, value_dims = 0, tuple(1 for _ in dims)
        else:
            leading, value_dims = _split_leading_ones(column, "input", dims, served)
            if -1 in dims[:leading] and set(value_dims) == {1}:
                # e.g. ARRAY<FLOAT> for [-1, 1]: the values belong on the -1 dim, not the 1.
                raise served.mismatch(
                    column, "input", f"an ARRAY of {len(significant_dims(dims))} level(s) "
                    "(one per dim from the first that is not 1)", served.dims_text(dims))
        if options.flatten_batch_dim and leading:
            raise served.mismatch(
                column, "input", "no leading dims of 1 ('flatten-batch-dim' = 'true')",
                served.dims_text(dims))
        return InputCodec(column, datatype, leading, value_dims, served.batched,
                          options.binary_data)

    @staticmethod
    def _bind_output(column: TensorColumn, served: _ServedModel,
                     options: TritonOptions) -> OutputCodec:
        datatype, dims = served.check(column, "output", options)
        if column.rank == 0:
            _check_scalar(column, "output", dims, served)
        if column.rank > 1:  # rank 1 takes any shape, flattened as in Flink's Java provider
            _split_leading_ones(column, "output", dims, served)
        return OutputCodec(column, datatype, served.batched, options.binary_data)


def _check_scalar(column: TensorColumn, kind: Direction, dims: list[int],
                  served: _ServedModel) -> None:
    """A scalar fits dims of 1, and -1 (which then takes size 1)."""
    if any(d not in (1, -1) for d in dims):
        raise served.mismatch(column, kind, "dims of size 1 (a scalar)",
                              f"{served.dims_text(dims)}; declare the column as an ARRAY")


def _split_leading_ones(column: TensorColumn, kind: Direction, dims: list[int],
                        served: _ServedModel) -> tuple[int, tuple[int, ...]]:
    """An ARRAY column of rank r takes the model's last r dims; the dims before them must be 1
    (or -1, then sent as 1), as in ``[1, -1]`` for an ``ARRAY<FLOAT>``."""
    extra = len(dims) - column.rank
    if extra < 0 or any(d not in (1, -1) for d in dims[:extra]):
        raise served.mismatch(
            column, kind, f"a tensor of {column.rank} dimension(s) (plus leading dims of 1)",
            served.dims_text(dims))
    return extra, tuple(dims[extra:])


class _ServedModel:
    """The model's metadata and config, as ``resolve`` and ``bind`` need them, and the error
    messages that show its signature."""

    def __init__(self, model: ModelRef, metadata: Mapping[str, Any],
                 config: Mapping[str, Any]) -> None:
        self.model, self.metadata = model, metadata
        self.max_batch_size = int(config.get("max_batch_size", 0))
        self.batched = self.max_batch_size > 0
        self.tensors: dict[Direction, dict[str, Mapping[str, Any]]] = {
            kind: {t["name"]: t for t in metadata.get(f"{kind}s", [])}
            for kind in ("input", "output")}
        self.optional_inputs = {i["name"] for i in config.get("input", []) if i.get("optional")}

    def dims(self, tensor: Mapping[str, Any]) -> list[int]:
        """A tensor's dims without the batch dimension."""
        return [int(d) for d in tensor["shape"]][1 if self.batched else 0:]

    def dims_text(self, dims: list[int]) -> str:
        return f"dims {dims}" + (" (after the batch dimension)" if self.batched else "")

    def derived_types(self) -> dict[Direction, dict[str, tuple[DataType | None, bool]]]:
        """Per tensor: the Flink type of a column derived from it, and whether it is optional."""
        return {kind: {name: (flink_type_for(t["datatype"], self.dims(t)),
                              name in self.optional_inputs)
                       for name, t in tensors.items()}
                for kind, tensors in self.tensors.items()}

    def check(self, column: TensorColumn, kind: Direction,
              options: TritonOptions) -> tuple[str, list[int]]:
        """The served tensor's datatype and batch-free dims, once name and datatype match."""
        tensor = self.tensors[kind].get(column.tensor)
        if tensor is None:
            key = _KEYS[kind]
            raise self.error(
                f"Column '{column.name}' ({sql_type(column.data_type)}) is bound to {kind} "
                f"tensor '{column.tensor}', which the model does not have (names are "
                f"case-sensitive; map other names with '{key}').")
        datatype = tensor["datatype"]
        if not column.accepts(datatype, kind, options.half_precision_inputs):
            hint = ""
            if column.accepts(datatype, kind, True):
                hint = (f" FLOAT values would be rounded to {datatype}: set "
                        "'half-precision-inputs' = 'true' to allow it.")
            raise self.mismatch(column, kind, column.expected_datatypes(kind), datatype, hint)
        if datatype in HALF_PRECISION and not options.binary_data:
            # Triton 2.51: "receiving FP16 data via JSON is not supported"; JSON has no BF16.
            raise self.mismatch(column, kind, "'binary-data' = 'true' (Triton takes no "
                                f"{datatype} in JSON form)",
                                f"{datatype} with 'binary-data' = 'false'")
        return datatype, self.dims(tensor)

    def mismatch(self, column: TensorColumn, kind: Direction, expected: str, found: str,
                 hint: str = "") -> TritonRequestError:
        return self.error(
            f"Column '{column.name}' ({sql_type(column.data_type)}) does not fit {kind} tensor "
            f"'{column.tensor}': expected {expected}, found {found}.{hint}")

    def error(self, text: str) -> TritonRequestError:
        return TritonRequestError(f"Model {self.model}: {text}\n{self.signature()}")

    def signature(self) -> str:
        def tensors(kind: Direction) -> str:
            return ", ".join(f"{name} {t['datatype']} {list(t['shape'])}"
                             for name, t in self.tensors[kind].items()) or "(none)"
        batch = (f"max_batch_size {self.max_batch_size}: the first dim (-1) is the batch"
                 if self.batched else "max_batch_size 0: no batch dimension")
        return (f"The model's signature ({batch}): inputs [{tensors('input')}], "
                f"outputs [{tensors('output')}].")


def _declaration(declaration: ColumnDeclaration, kind: str) -> tuple[str, DataType | str | None]:
    if isinstance(declaration, str):
        return declaration, None
    if (isinstance(declaration, tuple) and len(declaration) == 2
            and isinstance(declaration[0], str)):
        return declaration[0], declaration[1]
    raise TritonConfigError(
        f"Invalid {kind} declaration {declaration!r}: expected a name or a (name, Flink type) "
        "tuple" + (", or a list of these for a ROW result." if kind == "output" else "."))


def _derived(names: Sequence[tuple[str | None, str]],
             served: Mapping[str, tuple[DataType | None, bool]],
             kind: Direction) -> list[tuple[str, None]]:
    """The columns of undeclared inputs or outputs.

    Positional names list the tensors to use. Otherwise the inputs are all the model's required
    ones (a by-name mapping only renames some of them, and may add optional ones), and the
    outputs are the mapped ones, or all of them.
    """
    if names and names[0][0] is None:
        return [(tensor, None) for _, tensor in names]
    column_of = {tensor: column for column, tensor in names}
    if kind == "output" and column_of:
        return [(column, None) for column in column_of.values()]
    required = [name for name, (_, optional) in served.items() if not optional]
    tensors = required + [t for t in column_of if t not in required]
    return [(column_of.get(tensor, tensor), None) for tensor in tensors]


def _named(declared: list[tuple[str, DataType | str | None]], options: TritonOptions,
           kind: Direction) -> list[tuple[str, str, DataType | str | None]]:
    """(column, tensor, type) for each declared column, applying the name option."""
    key = _KEYS[kind]
    names = options.input_names if kind == "input" else options.output_names
    columns = [name for name, _ in declared]
    repeated = sorted({n for n in columns if columns.count(n) > 1})
    if repeated:
        raise TritonConfigError(f"The {kind} column(s) {repeated} are declared twice.")
    if not names:
        tensors = columns
    elif names[0][0] is None:  # positional
        if len(names) != len(columns):
            raise TritonConfigError(
                f"'{key}' lists {len(names)} tensor(s) by position, but there are "
                f"{len(columns)} {kind} column(s) ({', '.join(columns)}).")
        tensors = [tensor for _, tensor in names]
    else:
        mapping = dict(names)
        unknown = [c for c in mapping if c not in columns]
        if unknown:
            raise TritonConfigError(
                f"'{key}' maps column(s) {unknown}, which are not {kind} columns; the {kind} "
                f"columns are {columns}.")
        tensors = [mapping.get(c, c) for c in columns]
    repeated = sorted({t for t in tensors if tensors.count(t) > 1})
    if repeated:
        raise TritonConfigError(f"The {kind} tensor(s) {repeated} are bound to two columns.")
    return [(c, t, data_type) for c, t, (_, data_type) in zip(columns, tensors, declared,
                                                              strict=True)]


def _column(model: ModelRef, name: str, tensor: str, data_type: DataType | str | None,
            served: Mapping[str, tuple[DataType | None, bool]], kind: Direction) -> TensorColumn:
    if isinstance(data_type, str):
        data_type = parse_data_type(data_type, name)
    if data_type is None:
        if tensor not in served:
            raise TritonConfigError(
                f"Model {model} has no {kind} tensor '{tensor}' for column '{name}' (names are "
                f"case-sensitive); its {kind}s are: {', '.join(served) or '(none)'}.")
        data_type = served[tensor][0]
        if data_type is None:
            raise TritonConfigError(
                f"The {kind} tensor '{tensor}' of model {model} has a datatype with no Flink "
                "type; declare the column's type explicitly.")
    return TensorColumn(name, data_type, tensor)

