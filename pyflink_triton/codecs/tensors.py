"""Tensor codecs: one record's (or a batch's) values <-> the tensors the served model takes.

Built by ``signature`` at ``open()``, once the model's metadata and config are known: an
:class:`InputCodec` or :class:`OutputCodec` per tensor, with the served datatype and shape
fixed. ``encode``/``decode`` convert one record's values; ``encode_batch``/``decode_batch``
a column of many (the vectorized mode). The type mapping is in ``columns``.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import TritonRequestError
from ..wire.request import InputTensor
from .columns import HALF_PRECISION, NUMPY_DTYPES, TensorColumn, sql_type


@dataclass(frozen=True)
class InputCodec:
    """Turns one record's value of a column into the input tensor the served model takes."""

    column: TensorColumn
    datatype: str
    leading_ones: int  # dims of size 1 added before the value's own dims
    dims: tuple[int, ...]  # the model's dims for the value itself; -1 is variable
    batched: bool  # add the batch dimension (max_batch_size > 0)
    binary: bool  # KServe binary tensor extension, or JSON

    @cached_property
    def _numpy_dtype(self) -> Any:
        return NUMPY_DTYPES[self.datatype]

    @cached_property
    def _is_integer(self) -> bool:
        return bool(np.issubdtype(self._numpy_dtype, np.integer))

    @cached_property
    def _prefix(self) -> list[int]:
        return [1] * (int(self.batched) + self.leading_ones)

    @cached_property
    def _scalar_shape(self) -> list[int]:
        return [*self._prefix, *self.dims]

    def encode(self, value: Any) -> InputTensor:
        """One record's value (not NULL) as an input tensor."""
        array = self._to_numpy(value if self.column.rank else [value], max(self.column.rank, 1))
        shape = [*self._prefix, *array.shape] if self.column.rank else self._scalar_shape
        return InputTensor(self.column.tensor, self.datatype, array.reshape(shape))

    def encode_batch(self, values: Sequence[Any]) -> InputTensor:
        """Several records' values (none NULL) as one tensor whose first dimension is the
        batch. The values of an ARRAY column must share one shape (see :meth:`value_shape`)."""
        assert self.batched, "only a model with a batch dimension takes several records"
        prefix = [len(values), *self._prefix[1:]]
        if self.column.rank == 0:  # one vectorised conversion for the whole column
            if self.datatype == "BYTES" or self.column.is_decimal:
                values = list(values)  # (numeric columns may stay a numpy array)
            array = self._to_numpy(values, 1)
            return InputTensor(self.column.tensor, self.datatype,
                               array.reshape([*prefix, *self._scalar_shape[len(prefix):]]))
        arrays = [self._to_numpy(value, self.column.rank) for value in values]
        if len({a.shape for a in arrays}) > 1:
            raise self._error("the values of one batch have different shapes.")
        stacked = np.stack(arrays) if arrays else np.empty((0,), dtype=self._numpy_dtype)
        return InputTensor(self.column.tensor, self.datatype,
                           stacked.reshape([*prefix, *stacked.shape[1:]]))

    def value_shape(self, value: Any) -> tuple[int, ...]:
        """The shape of one value: only rows of equal shapes can share a batch."""
        return _shape_of(value, self.column.name) if self.column.rank else ()

    def _error(self, text: str) -> TritonRequestError:
        column = self.column
        return TritonRequestError(
            f"Column '{column.name}' ({sql_type(column.data_type)}) for input "
            f"'{column.tensor}' {self.datatype}: {text}")

    def _to_numpy(self, value: Any, rank: int) -> np.ndarray:
        """``value``, a (nested) list, as an array of ``rank`` dims."""
        column = self.column
        if not self.binary and self.datatype in HALF_PRECISION:  # (open() refuses it first)
            raise self._error("Triton takes half-precision tensors in binary form only, not "
                              "as JSON ('binary-data' = 'false').")
        if self.datatype == "BYTES":
            return self._check_shape(self._bytes_array(value), rank)
        if column.is_decimal:
            value = _map_nested(value, self._decimal_to_int)
        try:
            raw = np.asarray(value)
        except ValueError:  # numpy's "inhomogeneous shape" for ragged nesting
            _shape_of(value, column.name)
            raise
        if raw.dtype == np.object_ and any(item is None for item in raw.flat):
            raise _null_element(column.name)
        if self._is_integer:
            if raw.dtype.kind == "f":
                # numpy 1.x turns Python ints on both sides of 2**63 into float64: keep them
                # exact (floats stay floats, and the range check refuses them).
                exact = np.array(value, dtype=np.object_)
                raw = exact if exact.shape == raw.shape else raw
            self._check_integer_range(raw)
        try:
            if self.datatype in ("FP16", "BF16", "FP32"):  # (errstate costs ~5 µs a call)
                with np.errstate(over="ignore"):  # overflow gives inf, as documented
                    array = raw.astype(self._numpy_dtype)
            else:
                array = raw.astype(self._numpy_dtype)
        except (TypeError, ValueError) as e:
            raise self._error(f"cannot convert the value to a tensor: {e}") from None
        if self.datatype == "BF16":
            array = _round_to_bfloat16(array)
        return self._check_shape(array, rank)

    def _decimal_to_int(self, item: Any) -> Any:
        if isinstance(item, decimal.Decimal):
            if not item.is_finite() or item != item.to_integral_value():
                raise self._error(f"{item} is not an integer.")
            return int(item)
        return item

    def _check_integer_range(self, raw: np.ndarray) -> None:
        """numpy 1.x wraps out-of-range integers silently; refuse them instead."""
        if raw.size == 0 or np.can_cast(raw.dtype, self._numpy_dtype):
            return
        if raw.dtype.kind in "iu":
            low, high = int(raw.min()), int(raw.max())
        else:
            bad = next((i for i in raw.flat if not isinstance(i, int | np.integer)), None)
            if bad is not None:
                raise self._error(f"needs integers, got {type(bad).__name__} {bad!r}.")
            low, high = min(raw.flat), max(raw.flat)
        limits = np.iinfo(self._numpy_dtype)
        if low < limits.min or high > limits.max:
            bad = low if low < limits.min else high
            raise self._error(f"{bad} is outside the {self.datatype} range "
                              f"[{limits.min}, {limits.max}].")

    def _bytes_array(self, value: Any) -> np.ndarray:
        def to_bytes(item: Any) -> Any:
            if isinstance(item, list | tuple):
                return [to_bytes(i) for i in item]
            if item is None:
                raise _null_element(self.column.name)
            if isinstance(item, str):
                return item.encode("utf-8")
            if isinstance(item, bytes | bytearray | memoryview):
                if not self.binary:
                    self._check_utf8(item)
                return bytes(item)
            raise self._error(f"needs str or bytes values, got {type(item).__name__}.")

        encoded = to_bytes(value)
        array = np.empty(_shape_of(encoded, self.column.name), dtype=np.object_)
        array[...] = encoded
        return array

    def _check_utf8(self, item: bytes | bytearray | memoryview) -> None:
        try:
            bytes(item).decode("utf-8")
        except UnicodeDecodeError:  # (the value itself is not repeated: it may be large)
            raise self._error("a value is not valid UTF-8, so it cannot be sent as JSON "
                              "('binary-data' = 'false').") from None

    def _check_shape(self, array: np.ndarray, rank: int) -> np.ndarray:
        column = self.column
        if array.size == 0 and array.ndim < column.rank:
            # An empty array ([] or [[]] for a 3-D column) leaves its inner sizes open: take
            # the model's fixed sizes, 0 where the model allows any.
            inner = [max(d, 0) for d in self.dims[array.ndim:]]
            array = array.reshape([*array.shape, *inner])
        if array.ndim != rank:
            raise self._error(
                f"expected {rank} dimension(s), got an array of shape "
                f"{list(array.shape)}; nested arrays must not be ragged (every inner array "
                "of one value needs the same length).")
        if column.rank and any(d not in (-1, n) for d, n in zip(self.dims, array.shape,
                                                              strict=True)):
            raise self._error(
                f"the model takes dims {list(self.dims)} (-1 is any size), got a value of "
                f"shape {list(array.shape)}.")
        return array


@dataclass(frozen=True)
class OutputCodec:
    """Turns an output tensor of one record's response into the column's value."""

    column: TensorColumn
    datatype: str
    batched: bool
    binary: bool

    def decode(self, array: np.ndarray | None, model: str) -> Any:
        """The Flink value of an output tensor (its only batch entry when ``batched``)."""
        column = self.column
        if array is None:
            raise TritonRequestError(
                f"Model '{model}' returned no output tensor '{column.tensor}'.")
        if self.batched:
            if array.ndim == 0 or array.shape[0] != 1:
                raise self._shape_error(array, model, "a batch of 1")
            array = array[0]
        if column.rank == 0:
            if array.size != 1:
                raise self._shape_error(array, model, "one element; declare the column as an "
                                        "ARRAY")
            return self._from_element(array.reshape(-1)[0])
        if column.rank == 1:
            array = array.reshape(-1)  # as Flink's Java provider, [1, N] -> [N]
        while array.ndim > column.rank and array.shape[0] == 1:
            array = array[0]
        if array.ndim != column.rank:
            raise self._shape_error(array, model, f"{column.rank} dimension(s)")
        if array.dtype == np.object_ or column.is_decimal:
            return _map_nested(array.tolist(), self._from_element)
        if array.dtype == np.float16:
            array = array.astype(np.float32)  # tolist() then gives Python floats
        return array.tolist()

    def decode_batch(self, array: np.ndarray | None, rows: int, model: str) -> Sequence[Any]:
        """The Flink values of a batched output tensor, one per record of the request."""
        if array is None:
            return [self.decode(array, model)]  # (raises)
        if array.ndim == 0 or array.shape[0] != rows:
            raise self._shape_error(array, model, f"a batch of {rows}")
        column = self.column
        if column.rank or array[0].size != 1:
            return [self.decode(array[i:i + 1], model) for i in range(rows)]
        flat = array.reshape(rows)  # one vectorised conversion for a scalar column
        if flat.dtype == np.object_ or column.is_decimal:
            return [self._from_element(item) for item in flat.tolist()]
        return flat.astype(np.float32) if flat.dtype == np.float16 else flat

    def _shape_error(self, array: np.ndarray, model: str, expected: str) -> TritonRequestError:
        column = self.column
        return TritonRequestError(
            f"Model '{model}' returned output '{column.tensor}' with shape "
            f"{list(array.shape)}, but column '{column.name}' ({sql_type(column.data_type)}) "
            f"needs {expected}.")

    def _from_element(self, item: Any) -> Any:
        if isinstance(item, np.generic):
            item = item.item()
        if self.column.is_decimal:
            return decimal.Decimal(int(item))
        if isinstance(item, str) and not self.column.is_text:  # JSON carries BYTES as text
            return item.encode("utf-8")
        if isinstance(item, bytes) and self.column.is_text:
            try:
                return item.decode("utf-8")
            except UnicodeDecodeError:
                raise TritonRequestError(
                    f"Output '{self.column.tensor}' is not valid UTF-8; declare column "
                    f"'{self.column.name}' as BYTES to receive raw bytes.") from None
        return item


def _round_to_bfloat16(array: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), still as float32.

    tritonclient sends BF16 by keeping the upper 16 bits of each float32, which truncates;
    values already on the bfloat16 grid survive that unchanged.
    """
    bits = array.astype(np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(
        0xFFFF0000)
    nan = np.isnan(array)
    rounded[nan] = (bits[nan] & np.uint32(0xFFFF0000)) | np.uint32(0x00400000)  # stay NaN
    return rounded.view(np.float32)


def _null_element(column: str) -> TritonRequestError:
    return TritonRequestError(f"Column '{column}' holds a NULL array element.")


def _shape_of(nested: Any, column: str) -> tuple[int, ...]:
    """Shape of a nested list (or tuple), or an error if it is ragged."""
    if isinstance(nested, np.ndarray):
        return nested.shape
    if not isinstance(nested, list | tuple):
        return ()
    if any(item is None for item in nested):
        raise _null_element(column)
    inner = {_shape_of(item, column) for item in nested}
    if len(inner) > 1:
        raise TritonRequestError(
            f"Column '{column}' holds a ragged nested array (inner lengths differ); a tensor "
            "needs every inner array of one value to have the same length.")
    return (len(nested), *(inner.pop() if inner else ()))


def _map_nested(items: Any, convert: Any) -> Any:
    if isinstance(items, list | tuple):
        return [_map_nested(i, convert) for i in items]
    return convert(items)
