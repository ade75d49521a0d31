-- Engine v2: durable timers (sleeps, retry backoffs, timeouts), heartbeats, and facts kept
-- while a saga is stuck.

-- One row per armed timer. Written in the same transaction as the events that arm it, fired
-- in (fire_at, id) order by any replica, deleted in the transaction that records its firing.
CREATE TABLE timers (
    id        bigserial   PRIMARY KEY,
    saga_id   uuid        NOT NULL REFERENCES sagas (id),
    -- What the timer is for: sleep/<n>, activity/<step>/(retry|start-to-close|heartbeat|
    -- schedule-to-close), resume. Arming the same key again moves it.
    key       text        NOT NULL,
    -- The attempt it concerns (0 when none); a timer of an attempt that is no longer current
    -- fires harmlessly.
    attempt   integer     NOT NULL DEFAULT 0,
    fire_at   timestamptz NOT NULL,
    -- Heartbeat timers: each heartbeat moves fire_at this far ahead.
    period_ms bigint,
    UNIQUE (saga_id, key)
);
CREATE INDEX timers_due ON timers (fire_at, id);

-- The last heartbeat of a step's attempts, whose details the next attempt receives.
CREATE TABLE activity_heartbeats (
    saga_id     uuid        NOT NULL REFERENCES sagas (id),
    step        integer     NOT NULL,
    attempt     integer     NOT NULL,
    details     jsonb,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (saga_id, step)
);

-- Results and timer firings that arrived while the saga was stuck, handled in order when it
-- is resumed.
CREATE TABLE parked_facts (
    id        bigserial   PRIMARY KEY,
    saga_id   uuid        NOT NULL REFERENCES sagas (id),
    fact      jsonb       NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_facts_saga ON parked_facts (saga_id, id);
