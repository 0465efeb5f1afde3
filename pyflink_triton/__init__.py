"""pyflink-triton: call NVIDIA Triton Inference Server models from Apache Flink.

Public entry points:

- :func:`execute_sql` runs SQL in which ``CREATE MODEL ... 'provider' = 'triton'`` defines a
  function calling the model;
- :func:`create_model` does the same from a dict of options;
- :class:`TritonScalarFunction` (Table API / SQL) and :class:`TritonMapFunction` (DataStream)
  take that dict directly;
- ``python -m pyflink_triton.server`` runs a local Triton (extra ``pyflink-triton[server]``).
"""

from .datastream import TritonMapFunction
from .errors import (
    TritonConfigError,
    TritonConnectionError,
    TritonError,
    TritonRequestError,
    TritonServerError,
)
from .options import TritonOptions
from .sql import execute_sql
from .table import TritonScalarFunction, create_model

__version__ = "0.1.0"

__all__ = [
    "TritonConfigError",
    "TritonConnectionError",
    "TritonError",
    "TritonMapFunction",
    "TritonOptions",
    "TritonRequestError",
    "TritonScalarFunction",
    "TritonServerError",
    "create_model",
    "execute_sql",
]
