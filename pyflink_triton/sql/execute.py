"""SQL helper: run SQL text in which ``CREATE MODEL ... WITH ('provider' = 'triton', ...)``
statements define models that ``ML_PREDICT`` and function calls reach.

Flink parses and stores CREATE MODEL itself, but no Triton model provider exists for PyFlink.
:func:`execute_sql` therefore handles each Triton CREATE MODEL: it validates the options,
lets Flink store the model in its catalog as usual (``SHOW MODELS``, ``DESCRIBE MODEL`` keep
working) and registers a temporary function named after the model, so ``SELECT my_model(col)
FROM t`` works. Statements with ``ML_PREDICT`` calls of such models are translated
(:mod:`.predict`); every other statement goes to Flink unchanged.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import TritonConfigError
from ..flink.table import (
    TritonFunction,
    async_bounds,
    async_settings,
    check_async_bound,
    check_async_model,
    configure_async,
    forget_async_model,
)
from ..options import TritonOptions
from .create_model import CreateModel, is_triton_model, parse_create_model
from .predict import PredictTranslator, QueryFunctions, Translation, called_functions
from .tokens import Token, TokenCursor, split_statements


class _TableEnvironmentFunctions(QueryFunctions):
    """Per-query functions registered in the table environment as temporary system
    functions."""

    def __init__(self, t_env: Any) -> None:
        super().__init__()
        self.t_env = t_env

    def register(self, name: str, function: TritonFunction, options: Mapping[str, str]) -> str:
        taken = set(self.t_env.list_user_defined_functions())
        while name in taken:
            name += "_"
        self.t_env.create_temporary_system_function(name, function.as_udf(name))
        return name


_TRANSLATORS: weakref.WeakKeyDictionary[Any, PredictTranslator] = weakref.WeakKeyDictionary()


def translator(t_env: Any) -> PredictTranslator:
    """The ML_PREDICT translator of ``t_env``: it knows the Triton models created there.
    (It holds ``t_env`` weakly, or the environment would never be freed.)"""
    if t_env not in _TRANSLATORS:
        held = weakref.proxy(t_env)
        _TRANSLATORS[t_env] = PredictTranslator(held, _TableEnvironmentFunctions(held))
    return _TRANSLATORS[t_env]


def execute_sql(t_env: Any, sql_text: str,
                model_options: Mapping[str, str] | None = None) -> Any:
    """Run one or more ``;``-separated statements; return the last statement's TableResult.

    Triton CREATE MODEL statements register a function named after the model (see the module
    docstring), ML_PREDICT calls of those models are translated, and everything else is passed
    to ``t_env.execute_sql``. ``model_options`` override the options of every Triton model's
    function, e.g. the endpoint where a file written for ``localhost`` runs (Flink's catalog
    keeps the statement's own options).
    """
    result = None
    for text, tokens in split_statements(sql_text):
        statement = parse_create_model(text, tokens)
        if is_triton_model(statement):
            statement.options.update(model_options or {})
            result = _create_triton_model(t_env, statement)
            continue
        altered = model_statement(tokens, "ALTER")
        if altered is not None and translator(t_env).model(altered) is not None:
            raise TritonConfigError(
                f"ALTER MODEL of the Triton model '{'.'.join(altered)}' would change Flink's "
                "catalog entry but not the function that calls Triton. Drop the model and "
                "create it again.")
        translation = translator(t_env).translate(text, tokens)
        if translation.runs_later:
            for name, options in translation.async_functions.items():
                configure_async(t_env, name, options)
            result = t_env.execute_sql(translation.text)
        else:
            with _async_settings_of(t_env, translation):
                result = t_env.execute_sql(translation.text)
        dropped = model_statement(tokens, "DROP")
        if dropped is not None:
            _forget_triton_model(t_env, dropped)
    return result


def _forget_triton_model(t_env: Any, parts: Sequence[str]) -> None:
    """After DROP MODEL: a Triton model's function and async bound go with it, so that a
    CREATE MODEL of the name may come again."""
    model = translator(t_env).model(parts)
    if model is None:
        return
    t_env.drop_temporary_function(model.function_sql)
    forget_async_model(t_env, model.path[-1])
    translator(t_env).drop_model(parts)


def _create_triton_model(t_env: Any, statement: CreateModel) -> Any:
    exists = statement.function_name in t_env.list_user_defined_functions()
    if exists and statement.if_not_exists:
        return t_env.execute_sql(statement.text)  # Flink's own IF NOT EXISTS no-op
    if exists:
        raise TritonConfigError(
            f"Model '{statement.name}': a function named '{statement.function_name}' already "
            "exists, and CREATE MODEL registers a function of the model's name. Use IF NOT "
            "EXISTS, or drop the function first.")
    # Validate (and derive undeclared columns) before Flink stores anything.
    adapter = statement.adapter()
    function = adapter.as_udf(statement.function_name)
    if adapter.MODE == "async":
        check_async_model(t_env, statement.name, adapter.inference.options)
    result = t_env.execute_sql(statement.text)
    t_env.create_temporary_function(statement.name, function)
    if adapter.MODE == "async":
        configure_async(t_env, statement.name, adapter.inference.options)
    translator(t_env).add_model(statement.name_parts, statement.options, adapter)
    return result


def statement_async_bound(async_bounds: Mapping[str, int],
                          translation: Translation) -> TritonOptions | None:
    """The options whose async settings PyFlink must apply to the statement's job: those of its
    ML_PREDICT's async functions, which must agree on their bound with each other and with the
    async models (``async_bounds``, by name) that the translated statement calls (PyFlink has
    one setting per job)."""
    if not translation.async_functions:
        return None
    called = called_functions(translation.text)
    bounds = {name: bound for name, bound in async_bounds.items()
              if name.split(".")[-1].strip("`") in called}
    for name, options in translation.async_functions.items():
        check_async_bound(bounds, name, options)
        bounds[name] = options.max_concurrent_requests
    return next(iter(translation.async_functions.values()))


@contextmanager
def _async_settings_of(t_env: Any, translation: Translation) -> Iterator[None]:
    """PyFlink's async settings for the statement's ML_PREDICT functions while it runs (Flink
    reads them when the statement becomes a job), then those the table environment had."""
    options = statement_async_bound(async_bounds(t_env), translation)
    if options is None:
        yield
        return
    config = t_env.get_config()
    settings = async_settings(options)
    # What the environment had: its table config's own value, else the value it inherited
    # (Flink copies a job's settings into the inherited configuration when it plans the job,
    # so only the table config's value can be taken back; a value given before stays).
    own = config.get_configuration()
    previous = {key: own.get_string(key, "") if own.contains_key(key) else config.get(key, None)
                for key in settings}
    for key, value in settings.items():
        config.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                config.get_configuration().remove_config(key)
            else:
                config.set(key, value)


def model_statement(tokens: Sequence[Token], verb: str) -> list[str] | None:
    """The name parts of the model of a ``<verb> [TEMPORARY] MODEL [IF EXISTS] name ...``
    statement (DROP, ALTER), or None for another statement."""
    cursor = TokenCursor(tokens)
    if not cursor.accept(verb):
        return None
    cursor.accept("TEMPORARY")
    if not cursor.accept("MODEL"):
        return None
    if cursor.accept("IF"):
        cursor.accept("EXISTS")
    try:
        return [part.value for part in cursor.dotted_name()]
    except TritonConfigError:
        return None
