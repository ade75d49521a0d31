-- The outbox relay claims rows with a lease instead of a row lock held while it waits on the
-- broker, counts failed publishes, and sets aside (parks) a row the broker keeps refusing.

ALTER TABLE outbox
    -- Claimed by a relay until then; also "not before" after a failed publish (backoff).
    ADD COLUMN claimed_until timestamptz,
    -- Failed publishes so far, and the last failure.
    ADD COLUMN attempts      integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error    text,
    -- Set aside after too many failures: not relayed until an operator re-publishes it.
    ADD COLUMN parked_at     timestamptz;

CREATE INDEX outbox_relayable ON outbox (id) WHERE parked_at IS NULL;
