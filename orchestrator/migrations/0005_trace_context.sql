-- The saga's W3C trace context ({"traceparent": …, "tracestate": …}): the span of its start,
-- which every later activation of the saga continues, so one saga is one trace, also across
-- restarts of the orchestrator.
ALTER TABLE sagas ADD COLUMN trace_context jsonb;
