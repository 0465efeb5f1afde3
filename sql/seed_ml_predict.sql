-- The seed's example (FLINK-38857) as written for Flink's Java 'triton' provider, with
-- ML_PREDICT; runnable against the demo server:
--   python -m pyflink_triton.server --model-repository model_repository   (serves localhost:8000)
--   python -m pyflink_triton sql sql/seed_ml_predict.sql --parallelism 2
-- Each row is sent to my_stateful_model as its own one-request sequence
-- flink-job-123-<subtask>-<counter>; the model answers with the sequence ID it received.

CREATE MODEL my_triton_model WITH (
  'provider' = 'triton',
  'endpoint' = 'http://localhost:8000/v2/models',
  'model-name' = 'my_stateful_model',
  'sequence-id' = 'flink-job-123',
  'sequence-id-auto-increment' = 'true',  -- Enable auto-increment
  'sequence-start' = 'true',
  'sequence-end' = 'true'
);

CREATE TEMPORARY TABLE readings (
  id BIGINT
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '10',
  'fields.id.kind' = 'sequence',
  'fields.id.start' = '1',
  'fields.id.end' = '10'
);

-- Every column of readings, then the model's output (OUTPUT0).
SELECT * FROM ML_PREDICT(TABLE readings, MODEL my_triton_model, DESCRIPTOR(id));
