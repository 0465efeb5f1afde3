"""The ``ML_PREDICT`` calls of a statement, read as Flink's planner reads them
(``SqlMLPredictTableFunction``), and the statement's common table expressions.

    ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(c1, ...) [, MAP['k', 'v', ...]])
    TABLE(ML_PREDICT(...))
    ML_PREDICT(INPUT => TABLE t, MODEL => MODEL m, ARGS => DESCRIPTOR(c1, ...)
               [, CONFIG => MAP['k', 'v', ...]])

Text only: which model a call names, its input table, columns and config, and where the call
stands in the statement, so that the translator can replace it. A call that does not read
still gives its model when it names one: the translator reports the problem for this package's
models and leaves other providers' calls to Flink.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import TritonConfigError
from .tokens import Token, TokenCursor

_PARAMETERS = ("INPUT", "MODEL", "ARGS", "CONFIG")  # Flink's names, in positional order


@dataclass(frozen=True)
class PredictCall:
    start: int  # offsets in the statement's text of what the translation replaces:
    end: int  # the call, with its TABLE( ) wrapper if it has one
    model: tuple[str, ...] | None  # the model's name parts, without quotes
    model_text: str = ""  # as written
    table: tuple[str, ...] = ()
    table_text: str = ""
    columns: tuple[str, ...] = ()
    config: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # why the call does not read (then only the model is known)


@dataclass(frozen=True)
class CommonTableExpression:
    """``name AS (query)`` of a WITH clause."""

    name: str
    clause_start: int  # offset of the clause's first definition (after WITH)
    end: int  # offset just after this definition's closing parenthesis


class _CallProblem(TritonConfigError):
    """Why a call does not read; it becomes the call's ``problem``."""


class _Operand(TokenCursor):
    def error(self, what: str) -> TritonConfigError:
        return _CallProblem(what)


def predict_calls(text: str, tokens: Sequence[Token]) -> list[PredictCall]:
    """Every ``ML_PREDICT(...)`` of the statement ``text`` (with its ``tokens``), in order."""
    base = tokens[0].start if tokens else 0
    calls = []
    for index, token in enumerate(tokens):
        if not (token.is_word("ML_PREDICT") and index + 1 < len(tokens)
                and _is_symbol(tokens[index + 1], "(")):
            continue
        close = _closing(tokens, index + 1)
        if close is None:
            model = _model_anywhere(_split_operands(tokens[index + 2:]))
            calls.append(PredictCall(token.start - base, tokens[-1].end - base, model,
                                     problem="the call's parenthesis is not closed"))
            continue
        first, last = index, close
        if (index >= 2 and _is_symbol(tokens[index - 1], "(") and tokens[index - 2].is_word("TABLE")
                and close + 1 < len(tokens) and _is_symbol(tokens[close + 1], ")")):
            first, last = index - 2, close + 1  # TABLE(ML_PREDICT(...))
        calls.append(_call(text, base, tokens[first].start - base, tokens[last].end - base,
                           _split_operands(tokens[index + 2:close])))
    return calls


def common_table_expressions(text: str, tokens: Sequence[Token]) -> list[CommonTableExpression]:
    """The ``WITH name [(columns)] AS (query), ...`` definitions of the statement, in order."""
    base = tokens[0].start if tokens else 0
    definitions = []
    for index, token in enumerate(tokens):
        if not token.is_word("WITH") or index + 1 >= len(tokens):
            continue
        position, clause_start = index + 1, tokens[index + 1].start - base
        while position < len(tokens) and tokens[position].kind in ("word", "quoted"):
            name = tokens[position].value
            position += 1
            if position < len(tokens) and _is_symbol(tokens[position], "("):  # column list
                close = _closing(tokens, position)
                position = len(tokens) if close is None else close + 1
            if not (position + 1 < len(tokens) and tokens[position].is_word("AS")
                    and _is_symbol(tokens[position + 1], "(")):
                break
            close = _closing(tokens, position + 1)
            if close is None:
                break
            definitions.append(CommonTableExpression(name, clause_start, tokens[close].end - base))
            position = close + 1
            if not (position < len(tokens) and _is_symbol(tokens[position], ",")):
                break
            position += 1
    return definitions


def _call(text: str, base: int, start: int, end: int,
          operands: list[list[Token]]) -> PredictCall:
    model: tuple[str, ...] | None = _model_anywhere(operands)
    try:
        named = _by_parameter(operands)
    except _CallProblem as problem:
        return PredictCall(start, end, model, problem=str(problem))
    try:
        if "MODEL" not in named:
            raise _CallProblem("it has no MODEL operand")
        model_cursor = _Operand(named["MODEL"])
        model_cursor.expect("MODEL")
        model_parts = model_cursor.dotted_name()
        _at_end(model_cursor, "the model's name")
        model = tuple(part.value for part in model_parts)
        model_text = _text(text, base, model_parts)
        for parameter in ("INPUT", "ARGS"):
            if parameter not in named:
                raise _CallProblem(f"it has no {parameter} operand ("
                                   f"{'TABLE <name>' if parameter == 'INPUT' else 'DESCRIPTOR'})")
        table_cursor = _Operand(named["INPUT"])
        table_cursor.expect("TABLE")
        table_parts = table_cursor.dotted_name()
        _at_end(table_cursor, "the input table's name (TABLE <name>: a table, view or CTE)")
        return PredictCall(
            start, end, model, model_text,
            table=tuple(part.value for part in table_parts),
            table_text=_text(text, base, table_parts),
            columns=_descriptor(_Operand(named["ARGS"])),
            config=_config(_Operand(named["CONFIG"])) if "CONFIG" in named else {})
    except _CallProblem as problem:
        return PredictCall(start, end, model, problem=str(problem))


def _model_anywhere(operands: list[list[Token]]) -> tuple[str, ...] | None:
    """The model of a call that may not read: the name after MODEL in any operand."""
    for operand in operands:
        cursor = _Operand(operand[3:] if _parameter_name(operand) else operand)
        try:
            cursor.expect("MODEL")
            return tuple(part.value for part in cursor.dotted_name())
        except _CallProblem:
            continue
    return None


def _by_parameter(operands: list[list[Token]]) -> dict[str, list[Token]]:
    """The operands by Flink's parameter names, whether passed by position or by name."""
    if not 3 <= len(operands) <= 4:
        raise _CallProblem(
            f"ML_PREDICT takes 3 or 4 operands (TABLE table_name, MODEL model_name, "
            f"DESCRIPTOR(input_columns)[, MAP[...]]), not {len(operands)}")
    names = [_parameter_name(operand) for operand in operands]
    if all(name is None for name in names):
        return dict(zip(_PARAMETERS, operands, strict=False))
    if any(name is None for name in names):
        raise _CallProblem("its operands are passed partly by name and partly by position")
    named: dict[str, list[Token]] = {}
    for name, operand in zip(names, operands, strict=True):
        assert name is not None
        if name not in _PARAMETERS:
            raise _CallProblem(f"'{name}' is not a parameter of ML_PREDICT "
                               f"({', '.join(_PARAMETERS)})")
        if name in named:
            raise _CallProblem(f"the parameter {name} is given twice")
        named[name] = operand[3:]
    return named


def _parameter_name(operand: list[Token]) -> str | None:
    """``NAME`` of a ``NAME => value`` operand."""
    if (len(operand) >= 3 and operand[0].kind == "word" and _is_symbol(operand[1], "=")
            and _is_symbol(operand[2], ">") and operand[1].end == operand[2].start):
        return operand[0].text.upper()
    return None


def _descriptor(cursor: _Operand) -> tuple[str, ...]:
    cursor.expect("DESCRIPTOR")
    cursor.expect("(")
    columns = []
    while True:
        # Flink takes the last part of a qualified name (SqlMLPredictTableFunction).
        columns.append(cursor.dotted_name()[-1].value)
        if cursor.expect(",", ")").text == ")":
            break
    _at_end(cursor, "DESCRIPTOR(...)")
    return tuple(columns)


def _config(cursor: _Operand) -> dict[str, str]:
    cursor.expect("MAP")
    cursor.expect("[")
    config: dict[str, str] = {}
    if cursor.accept("]"):
        _at_end(cursor, "the CONFIG map")
        return config
    while True:
        key = cursor.take()
        cursor.expect(",")
        value = cursor.take()
        for literal in (key, value):
            if literal.kind != "string":
                raise _CallProblem(
                    "ML_PREDICT config param can only be a MAP of string literals, as in "
                    f"MAP['async', 'true'], found {literal.text}")
        if key.value in config:
            raise _CallProblem(f"the CONFIG key '{key.value}' is given twice")
        config[key.value] = value.value
        if cursor.expect(",", "]").text == "]":
            break
    _at_end(cursor, "the CONFIG map")
    return config


def _at_end(cursor: _Operand, what: str) -> None:
    token = cursor.peek()
    if token is not None:
        raise _CallProblem(f"unexpected '{token.text}' after {what}")


def _split_operands(tokens: Sequence[Token]) -> list[list[Token]]:
    operands: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.kind == "symbol":
            depth += token.text in ("(", "[")
            depth -= token.text in (")", "]")
            if depth == 0 and token.text == ",":
                operands.append([])
                continue
        operands[-1].append(token)
    return [] if operands == [[]] else operands


def _closing(tokens: Sequence[Token], opening: int) -> int | None:
    """The index of the bracket closing the one at ``opening``."""
    depth = 0
    for index in range(opening, len(tokens)):
        token = tokens[index]
        if token.kind != "symbol":
            continue
        depth += token.text in ("(", "[")
        depth -= token.text in (")", "]")
        if depth == 0:
            return index
    return None


def _is_symbol(token: Token, text: str) -> bool:
    return token.kind == "symbol" and token.text == text


def _text(text: str, base: int, parts: Sequence[Token]) -> str:
    return text[parts[0].start - base:parts[-1].end - base]
