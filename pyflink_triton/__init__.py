"""pyflink-triton: call NVIDIA Triton Inference Server models from Apache Flink.

Public entry points:

- :func:`execute_sql` runs SQL in which ``CREATE MODEL ... 'provider' = 'triton'`` defines a
  function calling the model;
- :func:`create_model` does the same from a dict of options;
- :func:`ml_predict`: Flink's ``ML_PREDICT`` for a Table API ``Table`` (in SQL, execute_sql
  translates ML_PREDICT of Triton models);
- the adapters take that dict directly: :class:`TritonScalarFunction`,
  :class:`TritonAsyncScalarFunction` and :class:`TritonVectorizedFunction` (Table API / SQL;
  sync, async and vectorized), :class:`TritonMapFunction` and :class:`TritonAsyncFunction`
  (DataStream; with :func:`async_map`), and :func:`vectorized_map` (a DataStream through the
  vectorized function);
- :class:`TritonKeyedSequenceFunction` with :func:`keyed_sequence_map`: one long-lived Triton
  sequence per key of a keyed DataStream, for stateful models;
- ``python -m pyflink_triton.server`` runs a local Triton.
"""

from .errors import (
    TritonCircuitOpenError,
    TritonConfigError,
    TritonConnectionError,
    TritonError,
    TritonRequestError,
    TritonSequenceServerLostError,
    TritonServerError,
    TritonTlsError,
)
from .flink.datastream import (
    TritonAsyncFunction,
    TritonKeyedSequenceFunction,
    TritonMapFunction,
    async_map,
    keyed_sequence_map,
    vectorized_map,
)
from .flink.table import (
    TritonAsyncScalarFunction,
    TritonScalarFunction,
    TritonVectorizedFunction,
    create_model,
)
from .options import TritonOptions
from .sql.execute import execute_sql
from .sql.table_api import ml_predict

__version__ = "0.1.0"

__all__ = [
    "TritonAsyncFunction",
    "TritonAsyncScalarFunction",
    "TritonCircuitOpenError",
    "TritonConfigError",
    "TritonConnectionError",
    "TritonError",
    "TritonKeyedSequenceFunction",
    "TritonMapFunction",
    "TritonOptions",
    "TritonRequestError",
    "TritonScalarFunction",
    "TritonSequenceServerLostError",
    "TritonServerError",
    "TritonTlsError",
    "TritonVectorizedFunction",
    "async_map",
    "create_model",
    "execute_sql",
    "keyed_sequence_map",
    "ml_predict",
    "vectorized_map",
]
