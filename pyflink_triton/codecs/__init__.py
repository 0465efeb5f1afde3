"""Flink types and values <-> Triton datatypes and tensors: the type mapping (``columns``),
the per-tensor codecs (``tensors``), which column feeds which tensor (``signature``), and the
result of a record whose request failed (``fallback``)."""
