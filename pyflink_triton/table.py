"""Table API / SQL adapter: a PyFlink ``ScalarFunction`` that sends one request per row.

    f = TritonScalarFunction({"endpoint": "http://localhost:8000", "model-name": "add_one"})
    t_env.create_temporary_function("add_one", f.as_udf())
    t_env.execute_sql("SELECT add_one(x) FROM t")

Options and columns are validated in the constructor (at registration); ``open()`` reads the
subtask index and attempt number from Flink's ``FunctionContext`` and opens the session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyflink.table.types import DataType
from pyflink.table.udf import FunctionContext, ScalarFunction, UserDefinedScalarFunctionWrapper, udf

from .inference import InferenceSession, TritonInference
from .options import TritonOptions
from .signature import ColumnDeclaration, OutputDeclaration


class TritonScalarFunction(ScalarFunction):
    def __init__(self, options: Mapping[str, object] | TritonOptions,
                 inputs: Sequence[ColumnDeclaration] | None = None,
                 output: OutputDeclaration | None = None) -> None:
        """``inputs``: the argument columns in order, each a name or a ``(name, type)`` pair;
        ``output``: the result column, or a list of them for a ROW result. A column feeds (or
        is) the tensor of its own name unless 'input-names' / 'output-names' map it. What is
        not declared is taken from the model's metadata on the server: all its (required)
        inputs, and its output, or a ROW of its outputs when it has several."""
        self.inference = TritonInference.create(options, inputs, output)
        self._session: InferenceSession | None = None

    @property
    def input_types(self) -> list[DataType]:
        return [c.data_type for c in self.inference.signature.inputs]

    @property
    def result_type(self) -> DataType:
        return self.inference.signature.result_type

    def as_udf(self, name: str | None = None) -> UserDefinedScalarFunctionWrapper:
        """The PyFlink UDF to register (``create_temporary_function``) or call."""
        return udf(self, input_types=self.input_types, result_type=self.result_type,
                   deterministic=False, name=name)

    def open(self, function_context: FunctionContext) -> None:
        self._session = self.inference.open(function_context.get_index_of_this_subtask(),
                                            function_context.get_attempt_number())

    def eval(self, *args: Any) -> Any:
        assert self._session is not None, "eval() before open()"
        return self._session.infer(args)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def is_deterministic(self) -> bool:
        return False  # each call is a request to a (possibly stateful) model


def create_model(t_env: Any, name: str, options: Mapping[str, object],
                 inputs: Sequence[ColumnDeclaration] | None = None,
                 output: OutputDeclaration | None = None) -> UserDefinedScalarFunctionWrapper:
    """Register a temporary function ``name`` that calls the model, callable from SQL.

    The Python equivalent of ``CREATE MODEL name [INPUT (...)] [OUTPUT (...)] WITH (...)``
    handled by :func:`pyflink_triton.execute_sql`.
    """
    function = TritonScalarFunction(options, inputs, output).as_udf(name.split(".")[-1])
    t_env.create_temporary_function(name, function)
    return function

