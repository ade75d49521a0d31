-- Visibility: the saga list pages through sagas newest-updated first, by keyset on
-- (updated_at, id), and dead letters are kept for people to list and re-publish.

CREATE INDEX sagas_updated_id ON sagas (updated_at DESC, id DESC);
CREATE INDEX sagas_type_updated ON sagas (saga_type, updated_at DESC, id DESC);

-- A record of every message that reached the dead-letter exchange while an orchestrator
-- watched it (through `<ns>.dead-letter.orchestrator`). The queue `<ns>.dead-letter` keeps
-- its own copy; this table is what the HTTP API lists and re-publishes from.
CREATE TABLE dead_letters (
    id              bigserial   PRIMARY KEY,
    message_id      text        NOT NULL,
    message_type    text        NOT NULL,
    -- Why: x-sagaflow-dead-letter-reason, or the broker's x-first-death-reason.
    reason          text        NOT NULL,
    -- The queue it was taken from and is re-published to.
    source_queue    text,
    headers         jsonb       NOT NULL,
    body            bytea       NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    republished_at  timestamptz
);
