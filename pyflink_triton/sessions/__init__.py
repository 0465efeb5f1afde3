"""One contract for every mode (``contract``): a function instance's session, opened by
``function.TritonInference.open``, infers one record or many, and is closed. One module per
mode (``per_record``, ``vectorized``, ``keyed``); ``reliable`` sends under the retry and
circuit-breaker policy; ``connect`` picks the transport."""
