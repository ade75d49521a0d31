-- Sagas, their append-only histories, and the transactional outbox.

CREATE TABLE sagas (
    id             uuid PRIMARY KEY,
    saga_type      text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'stuck')),
    input          jsonb       NOT NULL,
    output         jsonb,
    -- Why the saga failed or is stuck.
    error          jsonb,
    -- The seq the next event of this saga gets.
    next_event_seq bigint      NOT NULL,
    -- A duplicated start message (same type and key) starts nothing twice: see sagas_start_key.
    start_key      text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX sagas_start_key ON sagas (saga_type, start_key);
CREATE INDEX sagas_status_updated ON sagas (status, updated_at);

CREATE TABLE saga_events (
    saga_id     uuid        NOT NULL REFERENCES sagas (id),
    seq         bigint      NOT NULL,
    kind        text        NOT NULL,
    event       jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    -- Two replicas appending the same position is a conflict, never a fork.
    PRIMARY KEY (saga_id, seq)
);

-- Messages committed with the events that caused them; the relay publishes, then deletes them.
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    saga_id      uuid        NOT NULL,
    exchange     text        NOT NULL,
    routing_key  text        NOT NULL,
    message_id   text        NOT NULL,
    message_type text        NOT NULL,
    headers      jsonb       NOT NULL,
    body         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
