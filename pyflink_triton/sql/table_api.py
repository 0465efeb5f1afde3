"""``ML_PREDICT`` for Table API programs: :func:`ml_predict` takes a ``Table`` and returns the
``Table`` that Flink's ``ML_PREDICT`` over it would give."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import TritonConfigError
from ..flink.table import configure_async
from .execute import translator
from .predict_plan import quote
from .tokens import TokenCursor, tokenize


def ml_predict(table: Any, model: str, columns: Sequence[str],
               config: Mapping[str, str] | None = None) -> Any:
    """``ML_PREDICT(TABLE table, MODEL model, DESCRIPTOR(columns...)[, MAP[config...]])``.

    ``model``: the name of a model that a Triton CREATE MODEL run by :func:`execute_sql`
    defined in the table's environment, as SQL writes it (``my_model``, ``db.my_model``);
    ``columns``: the table's columns for the model's inputs, in the model's order;
    ``config``: ML_PREDICT's CONFIG ('async', 'max-concurrent-operations', 'timeout', ...).
    The result has the table's columns, then the model's outputs (a clashing name gets a
    suffix: y -> y0). An async function's bound becomes the environment's setting, as for
    CREATE MODEL.
    """
    t_env = table._t_env
    predict = translator(t_env)
    cursor = TokenCursor(list(tokenize(model)))
    parts = [token.value for token in cursor.dotted_name()]
    if cursor.peek() is not None or predict.model(parts) is None:
        raise TritonConfigError(
            f"ml_predict: model '{model}' is not a Triton model of this table environment; "
            "create it with pyflink_triton.execute_sql(t_env, \"CREATE MODEL ... WITH "
            "('provider' = 'triton', ...)\") first.")
    if isinstance(columns, str) or not columns:
        raise TritonConfigError(
            f"ml_predict of model '{model}': columns must be a non-empty list of the table's "
            f"column names, got {columns!r}.")
    entries = [_literal(text) for pair in (config or {}).items() for text in pair]
    config_sql = f", MAP[{', '.join(entries)}]" if entries else ""
    translation = predict.translate(
        f"SELECT * FROM ML_PREDICT(TABLE {quote(str(table))}, MODEL {model}, "
        f"DESCRIPTOR({', '.join(quote(c) for c in columns)}){config_sql})")
    for name, options in translation.async_functions.items():
        configure_async(t_env, name, options)
    return t_env.sql_query(translation.text)


def _literal(text: str) -> str:
    if not isinstance(text, str):
        raise TritonConfigError(
            f"ml_predict: CONFIG keys and values are strings, as in ML_PREDICT's MAP of string "
            f"literals; got {text!r}.")
    return "'" + text.replace("'", "''") + "'"
