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
    """``name [(columns)] AS (query)`` of a WITH clause, with the part of the statement where
    its name is visible (the query the WITH clause belongs to)."""

    name: str
    start: int  # offset of the definition's name
    end: int  # offset just after its closing parenthesis
    scope_start: int  # offset of its WITH
    scope_end: int  # offset of the parenthesis closing its query, or the statement's end


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
        scope_end = _enclosing_end(tokens, index)
        scope = (token.start - base,
                 (tokens[scope_end].start if scope_end is not None else tokens[-1].end) - base)
        position = index + 1
        while position < len(tokens) and tokens[position].kind in ("word", "quoted"):
            name_token = tokens[position]
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
            definitions.append(CommonTableExpression(
                name_token.value, name_token.start - base, tokens[close].end - base, *scope))
            position = close + 1
            if not (position < len(tokens) and _is_symbol(tokens[position], ",")):
                break
            position += 1
    return definitions


def input_ctes(text: str, tokens: Sequence[Token], call: PredictCall) -> str | None:
    """``WITH ...``: the CTE definitions visible where ``call`` stands, when its input table is
    one of them (else None: a table or view of the catalog). A nested CTE may read an outer
    one, so every visible definition is kept, the innermost of each name."""
    if len(call.table) != 1:
        return None
    visible: dict[str, CommonTableExpression] = {}
    for definition in common_table_expressions(text, tokens):
        if (definition.scope_start <= call.start < definition.scope_end
                and definition.end <= call.start):
            visible.pop(definition.name, None)
            visible[definition.name] = definition
    if call.table[0] not in visible:
        return None
    ordered = sorted(visible.values(), key=lambda d: d.start)
    return "WITH " + ", ".join(text[d.start:d.end] for d in ordered)


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
        key = _string(cursor, "a key")
        cursor.expect(",")
        value = _string(cursor, f"the value of '{key}'")
        if key in config:
            raise _CallProblem(f"the CONFIG key '{key}' is given twice")
        config[key] = value
        if cursor.expect(",", "]").text == "]":
            break
    _at_end(cursor, "the CONFIG map")
    return config


def _string(cursor: _Operand, what: str) -> str:
    """A string literal, or one cast to a string type (``CAST('v' AS STRING)``), as Flink's
    ``reduceLiteral`` takes them. What is not one is not shown: a value may be a secret."""
    if cursor.accept("CAST"):
        cursor.expect("(")
        value = _string(cursor, what)
        cursor.expect("AS")
        if not cursor.accept("STRING", "VARCHAR", "CHAR"):
            raise _CallProblem(f"{what} in the CONFIG map is cast to a type that is not a string")
        if cursor.accept("("):  # VARCHAR(n)
            cursor.take()
            cursor.expect(")")
        cursor.expect(")")
        return value
    token = cursor.take()
    if token.kind != "string":
        raise _CallProblem(
            f"ML_PREDICT config param can only be a MAP of string literals, as in "
            f"MAP['async', 'true']; {what} is not one")
    return token.value


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
    return _bracket_level(tokens, opening, 0)


def _enclosing_end(tokens: Sequence[Token], index: int) -> int | None:
    """The index of the bracket closing the one that encloses ``tokens[index]``."""
    return _bracket_level(tokens, index, -1)


def _bracket_level(tokens: Sequence[Token], start: int, level: int) -> int | None:
    """The index of the first bracket from ``start`` after which the bracket depth, counted
    from ``start``, is ``level``."""
    depth = 0
    for index in range(start, len(tokens)):
        token = tokens[index]
        if token.kind != "symbol" or token.text not in ("(", "[", ")", "]"):
            continue
        depth += 1 if token.text in ("(", "[") else -1
        if depth == level:
            return index
    return None


def _is_symbol(token: Token, text: str) -> bool:
    return token.kind == "symbol" and token.text == text


def _text(text: str, base: int, parts: Sequence[Token]) -> str:
    return text[parts[0].start - base:parts[-1].end - base]
