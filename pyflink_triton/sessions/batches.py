"""The pure part of the vectorized mode: which rows of a call are NULL, how its rows are cut
into requests, and how the answers are put back in row order. No I/O: sending the requests is
``vectorized``'s.

A call's rows are sent as requests of up to the rows per request, each a ``chunk`` (an array
of row indices). A chunk is answered (its output columns) or failed (an error a fallback
answers for); a row with a NULL input is skipped or failed; :func:`reassembled` puts every row
back in its place, and :func:`concatenated` is the common case of every row answered in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codecs.fallback import ResultPolicy
from ..codecs.tensors import InputCodec
from ..errors import TritonRequestError

Chunk = np.ndarray  # the row indices of one request
Answered = list[Sequence[Any]]  # a request's output columns, one sequence per output


@dataclass(frozen=True)
class ColumnBatch:
    """Many records of a vectorized call, column by column.

    ``columns``: one sequence of values per input column, all of one length; ``nulls``: per
    column, a mask of its NULL values (None, or no entry: no NULLs)."""

    columns: Sequence[Sequence[Any]]
    nulls: Sequence[np.ndarray | None] = ()

    @classmethod
    def of_rows(cls, rows: Sequence[Sequence[Any]]) -> ColumnBatch:
        """Records given row by row (one value per input column each; None: NULL)."""
        columns = [list(column) for column in zip(*rows, strict=True)]
        return cls(columns, [np.array([value is None for value in column], dtype=bool)
                             for column in columns])

    @property
    def rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0


def null_rows(nulls: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """The mask of the rows with a NULL input; None when there is none."""
    masks = [m for m in nulls if m is not None and m.any()]
    if not masks:
        return None
    return np.logical_or.reduce(masks)


def null_columns(names: Sequence[str], nulls: Sequence[np.ndarray | None],
                 mask: np.ndarray) -> list[str]:
    """The columns that are NULL in the first row of ``mask`` (the rows with a NULL)."""
    first = int(np.flatnonzero(mask)[0])
    return [name for name, column in zip(names, nulls, strict=False)
            if column is not None and column[first]]


def split(columns: Sequence[Sequence[Any]], indices: np.ndarray,
          codecs: Sequence[InputCodec], rows_per_request: int,
          by_shape: bool) -> tuple[list[Chunk], bool]:
    """The row indices of each request (rows of equal shapes when ``by_shape``: ARRAY values
    whose shapes may differ cannot share a request blindly; at most ``rows_per_request``
    rows), and whether they are the rows in order."""
    groups = [indices]
    if by_shape:
        shapes: dict[tuple[Any, ...], list[int]] = {}
        for row in indices.tolist():
            key = tuple(codec.value_shape(column[row])
                        for codec, column in zip(codecs, columns, strict=True))
            shapes.setdefault(key, []).append(row)
        groups = [np.asarray(g) for g in shapes.values()]
    size = rows_per_request
    chunks = [g[start:start + size] for g in groups for start in range(0, len(g), size)]
    return chunks, len(groups) == 1


def take(column: Sequence[Any], rows: Chunk) -> Sequence[Any]:
    """The values of ``rows`` of a column (a numpy array stays one)."""
    if isinstance(column, np.ndarray):
        return column[rows]
    return [column[row] for row in rows.tolist()]


def concatenated(answered: list[Answered], outputs: int, rows: int,
                 error_fields: bool) -> list[Sequence[Any]]:
    """The result fields when every row was answered, the requests' rows in order."""
    merged: list[Sequence[Any]]
    if len(answered) == 1:
        merged = list(answered[0])
    elif all(isinstance(r[i], np.ndarray) for r in answered for i in range(outputs)):
        merged = [np.concatenate([r[i] for r in answered]) for i in range(outputs)]
    else:
        merged = [[v for r in answered for v in r[i]] for i in range(outputs)]
    if error_fields:
        merged += [np.ones(rows, dtype=bool), [None] * rows]
    return merged


def reassembled(rows: int, answered: list[tuple[Chunk, Answered]],
                failures: list[tuple[Chunk, TritonRequestError]],
                results: ResultPolicy) -> list[Sequence[Any]]:
    """Each row's values put back in its place: answered, failed (fallback) or skipped (None
    in every field)."""
    merged: list[list[Any]] = [[None] * rows
                               for _ in range(len(results.field_names or [None]))]
    for chunk, columns in answered:
        for column, values in zip(merged, columns, strict=False):
            for row, value in zip(chunk.tolist(), values, strict=True):
                column[row] = value
        if results.error_fields:
            for row in chunk.tolist():
                merged[-2][row] = True
    for chunk, error in failures:
        for row in chunk.tolist():
            for column, value in zip(merged, results.failed_values(), strict=False):
                column[row] = value
            if results.error_fields:
                merged[-2][row], merged[-1][row] = False, str(error)
    return merged
