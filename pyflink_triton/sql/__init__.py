"""``CREATE MODEL`` for Flink SQL: ``execute`` runs SQL text with Triton models in a table
environment; ``client`` rewrites it for Flink's own SQL client."""
