"""``ML_PREDICT`` of Triton models, translated into SQL that Flink runs.

Flink cannot call a Python model provider from ML_PREDICT (FLIP-552 proposes it), so each
ML_PREDICT call of a model that a Triton CREATE MODEL defined is replaced, in the statement's
text, by a subquery that gives Flink's result (every input column in order, then the model's
outputs with Flink's clash names) by calling the model's function once per row::

    SELECT * FROM ML_PREDICT(TABLE readings, MODEL m, DESCRIPTOR(id))
    SELECT * FROM (SELECT `id`, `default_catalog`.`default_database`.`m`(`id`) AS `y`
                   FROM readings)

Calls of other providers' models stay as they are, for Flink. The translator asks Flink for the
input table's columns (a table, view, or a CTE of the statement) and whether it is append-only;
a CONFIG that changes the model's options gets a function of its own (:class:`QueryFunctions`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from pyflink.table.types import RowType

from ..errors import TritonConfigError
from ..flink.table import TritonFunction
from ..options import TritonOptions
from .ml_predict import PredictCall, input_ctes, predict_calls
from .predict_config import function_options
from .predict_plan import Column, PredictQuery, projection, quote
from .tokens import Token, tokenize

ModelPath = tuple[str, str, str]  # catalog, database, name

_FORM = "ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(c1, ...)[, MAP['key', 'value', ...]])"


@dataclass(frozen=True)
class TritonModel:
    """A model that a Triton CREATE MODEL defined, as ML_PREDICT calls it."""

    path: ModelPath
    options: Mapping[str, str]
    function: TritonFunction  # the model's own function (columns resolved)
    function_sql: str  # how a query calls it


@dataclass(frozen=True)
class QueryFunction:
    """The function an ML_PREDICT call runs."""

    sql: str  # how the query calls it
    name: str  # its name, for messages and PyFlink's async bounds
    function: TritonFunction


@dataclass(frozen=True)
class Translation:
    text: str
    # The async functions the statement's ML_PREDICT calls run, by name: PyFlink's async
    # settings must fit them when it runs.
    async_functions: dict[str, TritonOptions] = field(default_factory=dict)
    # A definition (CREATE VIEW ...): its calls run in the later statements that read it, so
    # their async settings are the environment's, not the statement's.
    runs_later: bool = False


class QueryFunctions(ABC):
    """The function an ML_PREDICT runs: the model's own, or, for a CONFIG that changes its
    options, a function of its own with those options and the model's resolved columns (one
    per model and options: two queries with different settings never share one)."""

    def __init__(self) -> None:
        self._variants: dict[tuple[int, tuple[tuple[str, str], ...]], QueryFunction] = {}

    def function(self, model: TritonModel, options: dict[str, str]) -> QueryFunction:
        if options == dict(model.options):
            return QueryFunction(model.function_sql, model.path[-1], model.function)
        # (keyed by the model's function: a model created again gets functions of its own)
        key = (id(model.function), tuple(sorted(options.items())))
        if key not in self._variants:
            function = model.function.with_options(options)
            name = self.register(f"{model.path[-1]}_ml_predict_{len(self._variants) + 1}",
                                 function, options)
            self._variants[key] = QueryFunction(quote(name), name, function)
        return self._variants[key]

    @abstractmethod
    def register(self, name: str, function: TritonFunction, options: Mapping[str, str]) -> str:
        """Make ``function`` (of ``options``) callable as ``name`` (or another free name,
        returned)."""


class PredictTranslator:
    """Translates the ML_PREDICT calls of Triton models in statements run in ``t_env``."""

    def __init__(self, t_env: Any, functions: QueryFunctions,
                 catalog_is_complete: bool = True) -> None:
        """``catalog_is_complete``: whether ``t_env`` knows every model of the statements,
        so that a model it lacks does not exist (not so for sql-client-files, whose file
        may use a catalog only the cluster has)."""
        self.t_env = t_env
        self.functions = functions
        self.catalog_is_complete = catalog_is_complete
        self.models: dict[ModelPath, TritonModel] = {}

    def path(self, parts: Sequence[str]) -> ModelPath:
        """A model's full name: a name without catalog or database is in the current one."""
        if not 1 <= len(parts) <= 3:
            raise TritonConfigError(
                f"The model name {'.'.join(parts)!r} has {len(parts)} parts; a model is named "
                "[catalog.][database.]name.")
        current = (self.t_env.get_current_catalog(), self.t_env.get_current_database())
        full = (*current[:3 - len(parts)], *parts)
        return (full[0], full[1], full[2])

    def add_model(self, parts: Sequence[str], options: Mapping[str, str],
                  function: TritonFunction, function_sql: str | None = None) -> None:
        """A Triton model, whose own function queries call as ``function_sql`` (by default
        its full name: the function has the model's)."""
        path = self.path(parts)
        self.models[path] = TritonModel(path, dict(options), function, function_sql or ".".join(
            quote(part) for part in path))

    def model(self, parts: Sequence[str]) -> TritonModel | None:
        return self.models.get(self.path(parts))

    def drop_model(self, parts: Sequence[str]) -> None:
        self.models.pop(self.path(parts), None)

    def translate(self, text: str, tokens: Sequence[Token] | None = None) -> Translation:
        """``text`` with every ML_PREDICT call of a Triton model replaced."""
        tokens = list(tokenize(text)) if tokens is None else tokens
        calls = predict_calls(text, tokens)
        pieces, position, async_functions = [], 0, {}
        for call in calls:
            model = self.model(call.model) if call.model else None
            if model is None:
                self._check_exists(call)
                continue  # another provider's model: Flink's
            name = call.model_text or ".".join(call.model or ())
            if call.problem:
                raise TritonConfigError(
                    f"ML_PREDICT of model '{name}': {call.problem}. Form: {_FORM}.")
            chosen = self._function(model, call, name)
            function = chosen.function
            probe = self._input_query(text, tokens, call)
            table = self._input(probe, call, name)
            signature = function.inference.signature
            outputs, row_result = _result_columns(function)
            query = PredictQuery(
                name, call.table_text, table, call.columns,
                [Column(c.name, c.data_type) for c in signature.inputs], outputs, row_result,
                chosen.sql)
            pieces += [text[position:call.start], projection(query)]
            position = call.end
            if function.MODE == "async":
                async_functions[chosen.name] = function.inference.options
        return Translation("".join(pieces) + text[position:], async_functions,
                           bool(tokens) and tokens[0].is_word("CREATE", "ALTER"))

    def _check_exists(self, call: PredictCall) -> None:
        """Fail on a model that is nobody's, naming the call's model and columns (Flink's
        own message would be a stack trace: "Object 'm' not found")."""
        if not (self.catalog_is_complete and call.model and call.model_text) or call.problem:
            return
        try:
            self.t_env.execute_sql(f"DESCRIBE MODEL {call.model_text}")
        except Exception as error:
            raise TritonConfigError(
                f"ML_PREDICT of model '{call.model_text}' over {call.table_text} with "
                f"DESCRIPTOR({', '.join(call.columns)}): the model does not exist "
                f"({flink_message(error)}). Create it first, in the same SQL text or the same "
                "table environment: CREATE MODEL ... WITH ('provider' = 'triton', ...).") from None

    def _function(self, model: TritonModel, call: PredictCall, name: str) -> QueryFunction:
        options = function_options(name, call.config, model.options)
        try:
            return self.functions.function(model, options)
        except TritonConfigError as error:
            raise TritonConfigError(
                f"ML_PREDICT of model '{name}' with CONFIG {_shown(call.config)}: "
                f"{error}") from None

    def _input_query(self, text: str, tokens: Sequence[Token], call: PredictCall) -> str:
        """``SELECT * FROM`` the call's input table, where a CTE of the statement is that
        CTE's query (translated too: it may call ML_PREDICT itself)."""
        definitions = input_ctes(text, tokens, call)
        if definitions is None:
            return f"SELECT * FROM {call.table_text}"
        return self.translate(f"{definitions} SELECT * FROM {call.table_text}").text

    def _input(self, probe: str, call: PredictCall, name: str) -> list[Column]:
        """The input table's columns; fails, as Flink's ML_PREDICT, on an updating input."""
        try:
            table = self.t_env.sql_query(probe)
            schema = table.get_schema()
        except Exception as error:  # Flink's validation error, e.g. no such table
            raise TritonConfigError(
                f"ML_PREDICT of model '{name}': the input table {call.table_text} cannot be "
                f"read: {flink_message(error)}") from None
        changes = _changes(table)
        if changes:
            raise TritonConfigError(
                f"ML_PREDICT of model '{name}' doesn't support consuming update and delete "
                f"changes, which its input table {call.table_text} produces (changelog mode "
                f"[{changes}]). ML_PREDICT takes an append-only input, as in Flink.")
        return [Column(n, t) for n, t in zip(schema.get_field_names(),
                                             schema.get_field_data_types(), strict=True)]


def _result_columns(function: TritonFunction) -> tuple[list[Column], bool]:
    """The function's result as columns, and whether it is a ROW of them: the model's
    outputs, and with 'error-fields' also 'ok' and 'error' (so a failed row is told apart
    from NULL outputs)."""
    result = function.result_type
    if isinstance(result, RowType):
        return [Column(f.name, f.data_type) for f in result.fields], True
    return [Column(function.inference.signature.outputs[0].name, result)], False


def _changes(table: Any) -> str | None:
    """The kinds of change other than inserts in the table's changelog (``UB,UA,D``), or None
    when it is append-only (or Flink cannot plan it here: then running it will say why)."""
    from pyflink.table.explain_detail import ExplainDetail

    try:
        plan = table.explain(ExplainDetail.CHANGELOG_MODE)
    except Exception:
        return None
    physical = plan.split("== Optimized Physical Plan ==", 1)[-1]
    marker = "changelogMode=["
    if marker not in physical:
        return None  # batch: nothing but inserts
    kinds = physical.split(marker, 1)[1].split("]", 1)[0].split(",")
    changes = [kind for kind in kinds if kind.strip() != "I"]
    return ",".join(kinds) if changes else None


def flink_message(error: BaseException) -> str:
    """The message of a Flink error raised through py4j: its innermost cause's first line."""
    java = getattr(error, "java_exception", None)
    message = None
    while java is not None:
        message = java.getMessage() or message
        java = java.getCause()
    text = (message or str(error) or type(error).__name__).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _shown(config: Mapping[str, str]) -> str:
    """The CONFIG for a message: keys only (a value may be a secret such as 'auth-token')."""
    return "MAP[" + ", ".join(repr(key) for key in config) + "]"


def called_functions(text: str) -> set[str]:
    """The names the statement ``text`` calls as functions (a name right before '('), each
    the last part of a qualified name, without quotes."""
    tokens = list(tokenize(text))
    return {token.value for token, after in pairwise(tokens)
            if token.kind in ("word", "quoted") and after.kind == "symbol" and after.text == "("}
