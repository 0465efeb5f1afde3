"""For Flink's own SQL client and SQL Gateway: Triton models as Python functions they can load.

``execute_sql`` turns a Triton CREATE MODEL into a function inside a PyFlink program; Flink's
SQL client runs no Python program of ours, and its ``ML_PREDICT`` cannot call a Python model
provider. So :func:`export_for_sql_client` rewrites a SQL file ahead of time: each Triton
CREATE MODEL is kept (Flink stores it in its catalog) and followed by
``CREATE TEMPORARY FUNCTION <model> AS '<module>.<model>' LANGUAGE PYTHON``, and a generated
Python module defines that function with the model's options and its column types, resolved
now (from INPUT/OUTPUT clauses, or else from the served model's metadata), so that nothing is
fetched when Flink loads the module. Flink imports the module in the client (for the SQL
Gateway: in the gateway) when it runs the CREATE FUNCTION, then ships the function to its
Python workers; the module and the job zip go to ``python.files`` (``sql-client.sh -pyfs``).
"""

from __future__ import annotations

import json
import keyword
import logging
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import TritonConfigError
from ..flink.table import TritonFunction, async_settings, check_async_bound
from ..options import PROVIDER
from .create_model import CreateModel, is_triton_model, parse_create_model
from .execute import model_statement, statement_async_bound
from .ml_predict import predict_calls
from .predict import PredictTranslator, QueryFunctions, flink_message
from .tokens import Token, split_statements

# The names the generated module binds itself: a function of one of them would replace it.
_MODULE_NAMES = frozenset({"function_for"})
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class SqlClientFiles:
    sql: str  # the rewritten SQL text
    module: str  # the Python module's source
    functions: list[str]  # the names of the functions the module defines


def export_for_sql_client(sql_text: str, module_name: str, source_name: str = "the SQL text",
                          model_options: Mapping[str, str] | None = None) -> SqlClientFiles:
    """Rewrite ``sql_text`` for Flink's SQL client and generate the module ``module_name``.

    ``model_options`` override the options of every Triton model, as in ``execute_sql``.
    ML_PREDICT calls of the file's Triton models are translated as ``execute_sql`` translates
    them; the input tables' columns come from a local table environment that runs the file's
    DDL (CREATE TABLE, CREATE VIEW, USE ...), nothing else.
    """
    if not module_name.isidentifier():
        raise TritonConfigError(f"The module name '{module_name}' is not a Python identifier.")
    statements: list[str | _Restore] = []
    module = _Module(module_name, statements)
    settings: dict[str, str] = {}
    async_bounds: dict[str, int] = {}
    parsed = split_statements(sql_text)
    local = _LocalEnvironment(module) if any(
        predict_calls(text, tokens) for text, tokens in parsed) else None
    for text, tokens in parsed:
        model = parse_create_model(text, tokens)
        if not is_triton_model(model):
            if local is None:
                statements.append(text)
                continue
            translation = local.translator.translate(text, tokens)
            if translation.runs_later:  # the file's settings, as for an async model
                for name, options in translation.async_functions.items():
                    check_async_bound(async_bounds, name, options)
                    async_bounds[name] = options.max_concurrent_requests
                    settings.update(async_settings(options))
                options = None
            else:
                options = statement_async_bound(async_bounds, translation)
            if options is None:
                statements.append(translation.text)
            else:  # this statement's bound, then the file's settings again
                query_settings = async_settings(options)
                statements += [_set(key, value) for key, value in query_settings.items()]
                statements += [translation.text, _Restore(tuple(query_settings))]
            local.run_definition(translation.text, tokens)
            continue
        statements.append(text)
        function_name = _python_name(model)
        if function_name in module.functions:
            raise TritonConfigError(
                f"Model '{model.name}': {source_name} defines a Triton model of that name "
                "twice; each becomes a function of the model's name.")
        model.options.update(model_options or {})
        adapter = model.adapter()  # validates; may fetch the column types
        module.define(model.name, function_name, model.options, adapter)
        if adapter.MODE == "async":  # (SET lines: one bound for every async function)
            options = adapter.inference.options
            check_async_bound(async_bounds, model.name, options)
            async_bounds[model.name] = options.max_concurrent_requests
            settings.update(async_settings(options))
        exists = " IF NOT EXISTS" if model.if_not_exists else ""
        # Both names are Python identifiers, so the string literal holds no quote.
        statements.append(f"CREATE TEMPORARY FUNCTION{exists} {model.name} AS "
                          f"'{module_name}.{function_name}' LANGUAGE PYTHON")
        if local is not None:
            local.add_model(model, adapter)
    if not module.functions:
        raise TritonConfigError(
            f"{source_name} has no CREATE MODEL ... WITH ('provider' = '{PROVIDER}', ...).")
    sets = [_set(key, value) for key, value in settings.items()]
    rendered = [s.render(settings) if isinstance(s, _Restore) else s for s in statements]
    header = (f"-- {_one_line(source_name)}, rewritten by python -m pyflink_triton "
              f"sql-client-files for Flink's SQL client:\n-- the Triton models are Python "
              f"functions of module {module_name}. Ship it and the job zip:\n"
              f"--   sql-client.sh -f <this file> -pyfs <job zip>,<dir>/{module_name}.py\n")
    sql = header + "".join(f"{s};\n" for s in [*sets, *rendered])
    docstring = (f"The Triton models of {source_name} as PyFlink functions, for\n"
                 f"CREATE TEMPORARY FUNCTION ... AS '{module_name}.<model>' LANGUAGE PYTHON.\n\n"
                 "Generated by python -m pyflink_triton sql-client-files; the column types were "
                 "resolved then.\n")
    source = (f"{_string_literal(docstring)}\n\n"
              "from pyflink_triton.flink.table import function_for\n"
              + "".join(module.definitions))
    return SqlClientFiles(sql, source, module.functions)


def _set(key: str, value: str) -> str:
    return f"SET '{key}' = '{value}'"


@dataclass(frozen=True)
class _Restore:
    """After a statement with its own async settings: the file's settings again."""

    keys: tuple[str, ...]

    def render(self, settings: Mapping[str, str]) -> str:
        return ";\n".join(_set(key, settings[key]) if key in settings else f"RESET '{key}'"
                           for key in self.keys)


class _Module:
    """The generated module's function definitions, and the statements declaring them."""

    def __init__(self, name: str, statements: list[str | _Restore]) -> None:
        self.name, self.statements = name, statements
        self.definitions: list[str] = []
        self.functions: list[str] = []

    def define(self, label: str, function_name: str, options: Mapping[str, str],
               adapter: TritonFunction) -> None:
        self.definitions.append(_function_definition(label, function_name, options, adapter))
        self.functions.append(function_name)


class _ModuleFunctions(QueryFunctions):
    """Per-query functions of ML_PREDICT calls: defined in the module, declared in the SQL
    file as temporary system functions, and registered in the local environment."""

    def __init__(self, module: _Module, t_env: Any) -> None:
        super().__init__()
        self.module, self.t_env = module, t_env

    def register(self, name: str, function: TritonFunction, options: Mapping[str, str]) -> str:
        while name in self.module.functions or name in _MODULE_NAMES:
            name += "_"
        self.module.define(f"{name}: an ML_PREDICT's CONFIG", name, options, function)
        self.module.statements.append(f"CREATE TEMPORARY SYSTEM FUNCTION {name} AS "
                                      f"'{self.module.name}.{name}' LANGUAGE PYTHON")
        self.t_env.create_temporary_system_function(name, function.as_udf(name))
        return name


# Statements the local environment runs: what defines the tables ML_PREDICT reads.
_DEFINITIONS = ("CREATE", "USE", "DROP", "ALTER")


class _LocalEnvironment:
    """A table environment of this process that knows the file's tables, views and Triton
    models, so that ML_PREDICT can be translated without the cluster."""

    def __init__(self, module: _Module) -> None:
        from pyflink.table import EnvironmentSettings, TableEnvironment

        self.t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
        self.translator = PredictTranslator(self.t_env, _ModuleFunctions(module, self.t_env),
                                            catalog_is_complete=False)

    def add_model(self, model: CreateModel, adapter: TritonFunction) -> None:
        self.t_env.create_temporary_function(model.name, adapter.as_udf(model.function_name))
        # (called by its name as declared: the cluster's current catalog may differ from the
        # one this environment resolved)
        self.translator.add_model(model.name_parts, model.options, adapter, model.name)

    def run_definition(self, text: str, tokens: Sequence[Token]) -> None:
        """Run a statement that defines tables or views (not one that runs a job, such as
        CREATE TABLE ... AS SELECT). One that fails here (a connector or function this
        process lacks) is logged: the cluster may have it."""
        first = tokens[0] if tokens else None
        if first is None or not first.is_word(*_DEFINITIONS) or _runs_a_query(tokens):
            return
        try:
            self.t_env.execute_sql(text)
        except Exception as error:
            # (the statement's kind and names only: its options may hold secrets)
            named = " ".join(t.text for t in tokens[:6] if t.kind in ("word", "quoted"))
            _LOG.warning("sql-client-files: a statement (%s ...) failed locally: %s. "
                         "ML_PREDICT calls that read what it defines cannot be translated.",
                         _one_line(named), _one_line(flink_message(error)))
        dropped = model_statement(tokens, "DROP")
        if dropped is not None:
            self.translator.drop_model(dropped)


def _runs_a_query(tokens: Sequence[Token]) -> bool:
    """CREATE [OR REPLACE] TABLE ... AS SELECT: a statement that starts a job (a view's
    AS SELECT does not)."""
    kind = next((t for t in tokens if t.is_word("TABLE", "VIEW", "FUNCTION", "DATABASE",
                                                "CATALOG", "MODEL")), None)
    return kind is not None and kind.is_word("TABLE") and any(
        token.is_word("AS") and index + 1 < len(tokens)
        and tokens[index + 1].is_word("SELECT", "WITH", "VALUES")
        for index, token in enumerate(tokens))


def _python_name(model: CreateModel) -> str:
    """The name of the model's function, which the module binds and Flink loads by name."""
    name = model.function_name
    # Python binds an identifier in its NFKC form: 'ﬁ' would define 'fi', not what Flink loads.
    if not name.isidentifier() or unicodedata.normalize("NFKC", name) != name:
        why = "is not a Python identifier"
    elif keyword.iskeyword(name):
        why = "is a Python keyword"
    elif name in _MODULE_NAMES:
        why = "is a name the generated module uses itself"
    else:
        return name
    raise TritonConfigError(
        f"Model {model.name!r}: its function is named after the model, and {name!r} {why}; "
        "Flink's SQL client loads the function from the generated Python module by that name. "
        "Give the model a plain name such as my_model (letters, digits and '_', not starting "
        "with a digit).")


def _one_line(text: str) -> str:
    """``text`` for a ``#`` or ``--`` comment: line breaks and every other non-printable
    character escaped, so that nothing in it can end the comment and become code."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
                   for char in text)


def _string_literal(text: str) -> str:
    """``text`` as a parenthesized Python string literal, one repr() per line: readable, and
    nothing in it can close the literal."""
    return "(\n" + "".join(f"    {line!r}\n" for line in text.splitlines(keepends=True)) + ")"


def _function_definition(label: str, function_name: str, options: Mapping[str, str],
                         adapter: TritonFunction) -> str:
    """The module's lines defining a function of a model (``label`` names it in a comment)."""
    inputs, result = adapter.declarations()
    options_text = json.dumps(dict(options), indent=4).replace("\n", "\n    ")
    comment = _one_line(f"{label}: {adapter.inference.signature.describe()}")
    return (f"\n\n# {comment}\n"
            f"{function_name} = function_for(\n"
            f"    {options_text},\n"
            f"    inputs={inputs!r},\n"
            f"    output={result!r},\n"
            f").as_udf({function_name!r})\n")
