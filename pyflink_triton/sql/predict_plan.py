"""What an ``ML_PREDICT`` call of a Triton model becomes: Flink's checks of its columns, its
result columns (every input column, then the model's outputs with Flink's clash names), and
the SQL that computes them with one call of the model's function per row.

Pure: the input table's and the model's columns come in as (name, PyFlink type) pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyflink.table.types import (
    ArrayType,
    BigIntType,
    BinaryType,
    CharType,
    DataType,
    DecimalType,
    DoubleType,
    FloatType,
    IntType,
    LocalZonedTimestampType,
    MapType,
    RowType,
    SmallIntType,
    TimestampType,
    TinyIntType,
    VarBinaryType,
    VarCharType,
)

from ..codecs.columns import sql_type
from ..errors import TritonConfigError

# Numeric types in the order of Flink's implicit widening (LogicalTypeCasts): each may be
# assigned to a later one, and DECIMAL takes every number.
_NUMERIC_ORDER = (TinyIntType, SmallIntType, IntType, BigIntType, DecimalType, FloatType,
                  DoubleType)
# The decimal digits an integer type needs.
_INTEGER_DIGITS = {TinyIntType: 3, SmallIntType: 5, IntType: 10, BigIntType: 19}
# Other implicit casts between different type roots: source -> targets.
_IMPLICIT = {
    CharType: (VarCharType,),
    BinaryType: (VarBinaryType,),
    TimestampType: (LocalZonedTimestampType,),
    LocalZonedTimestampType: (TimestampType,),
}


@dataclass(frozen=True)
class Column:
    name: str
    data_type: DataType


@dataclass(frozen=True)
class PredictQuery:
    """An ML_PREDICT call of a Triton model, resolved: what the translation needs."""

    model: str  # as written in the query, for messages
    table_text: str  # the input table as written in the query
    table: Sequence[Column]  # its columns, in order
    columns: Sequence[str]  # DESCRIPTOR(...)
    model_inputs: Sequence[Column]  # the model's function's argument columns
    model_outputs: Sequence[Column]  # its result columns
    row_result: bool  # the function returns ROW<outputs> (else the one output's value)
    function_sql: str  # how the query calls the function


def quote(name: str) -> str:
    """``name`` as a Flink SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def unique_output_names(inputs: Sequence[str], outputs: Sequence[str]) -> list[str]:
    """Flink's names for the model's outputs (``SqlValidatorUtils.makeOutputUnique``): an output
    named like an input column or an earlier output gets the first free suffix 0, 1, ..."""
    taken = set(inputs)
    names = []
    for name in outputs:
        candidate, index = name, 0
        while candidate in taken:
            candidate, index = f"{name}{index}", index + 1
        taken.add(candidate)
        names.append(candidate)
    return names


def supports_implicit_cast(source: DataType, target: DataType) -> bool:
    """Whether Flink assigns a ``source`` value to a ``target`` column without an explicit
    CAST (``LogicalTypeCasts.supportsImplicitCast``): NOT NULL to nullable but not back,
    numbers to wider numbers and to DECIMAL, CHAR to VARCHAR, BINARY to VARBINARY, and each
    type to itself (any length or precision); ARRAY, MAP and ROW element by element. (Some of
    these may change a value: :func:`may_change_values`.)"""
    if source._nullable and not target._nullable:
        return False
    if type(source) is type(target):
        if isinstance(source, ArrayType):
            return supports_implicit_cast(source.element_type, target.element_type)
        if isinstance(source, MapType):
            return (supports_implicit_cast(source.key_type, target.key_type)
                    and supports_implicit_cast(source.value_type, target.value_type))
        if isinstance(source, RowType):
            return len(source.fields) == len(target.fields) and all(
                supports_implicit_cast(s.data_type, t.data_type)
                for s, t in zip(source.fields, target.fields, strict=True))
        return True
    if isinstance(source, _NUMERIC_ORDER) and isinstance(target, _NUMERIC_ORDER):
        rank = [isinstance(source, kind) for kind in _NUMERIC_ORDER].index(True)
        target_rank = [isinstance(target, kind) for kind in _NUMERIC_ORDER].index(True)
        return isinstance(target, DecimalType) or rank < target_rank
    return isinstance(target, _IMPLICIT.get(type(source), ()))


def may_change_values(source: DataType, target: DataType) -> bool:
    """Whether an implicit cast from ``source`` to ``target`` may truncate, round or overflow
    a value: to a shorter string or binary, to a DECIMAL with fewer digits, from a floating
    point number to a DECIMAL. Flink allows these implicitly; this package does not, since
    the model would get another value than the table holds."""
    if isinstance(source, ArrayType) and isinstance(target, ArrayType):
        return may_change_values(source.element_type, target.element_type)
    if isinstance(source, MapType) and isinstance(target, MapType):
        return (may_change_values(source.key_type, target.key_type)
                or may_change_values(source.value_type, target.value_type))
    if isinstance(source, RowType) and isinstance(target, RowType):
        return any(may_change_values(s.data_type, t.data_type)
                   for s, t in zip(source.fields, target.fields, strict=True))
    if hasattr(source, "length") and hasattr(target, "length"):
        return bool(target.length < source.length)
    if isinstance(target, DecimalType):
        if isinstance(source, DecimalType):
            return (target.scale < source.scale
                    or target.precision - target.scale < source.precision - source.scale)
        digits = _INTEGER_DIGITS.get(type(source))
        return digits is None or target.precision - target.scale < digits
    return False


def argument_columns(query: PredictQuery) -> list[Column]:
    """The input table's columns the DESCRIPTOR names, checked as Flink checks them."""
    what = (f"ML_PREDICT of model '{query.model}' over {query.table_text} with "
            f"DESCRIPTOR({', '.join(query.columns)})")
    if len(query.columns) != len(query.model_inputs):
        raise TritonConfigError(
            f"{what}: Number of descriptor input columns ({len(query.columns)}) does not match "
            f"model input size ({len(query.model_inputs)}); the model's inputs are "
            f"{_described(query.model_inputs)}. DESCRIPTOR columns map to them by position.")
    by_name = {column.name: column for column in query.table}
    arguments = []
    for position, (name, target) in enumerate(
            zip(query.columns, query.model_inputs, strict=True)):
        column = by_name.get(name)
        if column is None:
            raise TritonConfigError(
                f"{what}: Column '{name}' is not a column of the input table "
                f"{query.table_text} ({', '.join(c.name for c in query.table)}).")
        if not supports_implicit_cast(column.data_type, target.data_type):
            raise TritonConfigError(
                f"{what}: Descriptor column type {sql_type(column.data_type)} cannot be "
                f"assigned to model input type {sql_type(target.data_type)} at position "
                f"{position} (column '{name}', model input '{target.name}'). CAST it in a view "
                "or a CTE first.")
        if may_change_values(column.data_type, target.data_type):
            raise TritonConfigError(
                f"{what}: Descriptor column type {sql_type(column.data_type)} at position "
                f"{position} (column '{name}') may lose digits or characters as model input "
                f"type {sql_type(target.data_type)} (model input '{target.name}'). Flink would "
                "cast it implicitly; pyflink-triton does not change a value silently. CAST it "
                "in a view or a CTE first, where the loss is explicit.")
        arguments.append(column)
    return arguments


def result_columns(query: PredictQuery) -> list[Column]:
    """The query's columns as Flink's ML_PREDICT gives them."""
    names = unique_output_names([c.name for c in query.table],
                                [c.name for c in query.model_outputs])
    return [*query.table, *(Column(name, output.data_type)
                            for name, output in zip(names, query.model_outputs, strict=True))]


def projection(query: PredictQuery) -> str:
    """The parenthesized query that stands for the ML_PREDICT call.

    The model's function is called once, in an inner query; for a ROW result an outer query
    picks its fields. The planner keeps that call in one PythonCalc and reads the fields in
    the Calc above it (the function is not deterministic, so the planner does not copy it
    into each field: one request per row, as Triton's statistics confirm in the tests).
    """
    arguments = ", ".join(_argument(column, target) for column, target in zip(
        argument_columns(query), query.model_inputs, strict=True))
    call = f"{query.function_sql}({arguments})"
    inputs = [quote(c.name) for c in query.table]
    names = unique_output_names([c.name for c in query.table],
                                [c.name for c in query.model_outputs])
    if not query.row_result:
        return (f"(SELECT {', '.join([*inputs, f'{call} AS {quote(names[0])}'])} "
                f"FROM {query.table_text})")
    taken = {c.name for c in query.table}
    result = next(name for name in (f"__ml_predict{i or ''}" for i in range(len(taken) + 1))
                  if name not in taken)
    inner = f"(SELECT {', '.join([*inputs, f'{call} AS {quote(result)}'])} FROM {query.table_text})"
    fields = [f"`__p`.{quote(result)}.{quote(output.name)} AS {quote(name)}"
              for output, name in zip(query.model_outputs, names, strict=True)]
    return (f"(SELECT {', '.join([*(f'`__p`.{c}' for c in inputs), *fields])} "
            f"FROM {inner} AS `__p`)")


def _argument(column: Column, target: Column) -> str:
    """A column as the function's argument: cast where its type is not the model's."""
    if _without_nullability(column.data_type) == _without_nullability(target.data_type):
        return quote(column.name)
    return f"CAST({quote(column.name)} AS {_without_nullability(target.data_type)})"


def _without_nullability(data_type: DataType) -> str:
    return sql_type(data_type).replace(" NOT NULL", "")


def _described(columns: Sequence[Column]) -> str:
    return ", ".join(f"{c.name} {sql_type(c.data_type)}" for c in columns)
