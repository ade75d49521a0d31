-- Compensation, cancel and terminate (new statuses), and replies to the caller of a start.

ALTER TABLE sagas DROP CONSTRAINT sagas_status_check;
ALTER TABLE sagas ADD CONSTRAINT sagas_status_check CHECK (status IN (
    'running', 'completed', 'failed', 'stuck',
    'compensated', 'compensation_failed', 'cancelled', 'terminated'));

-- Where the outcome goes when the saga ends (the start message's reply_to and correlation_id).
ALTER TABLE sagas ADD COLUMN reply_to text;
ALTER TABLE sagas ADD COLUMN correlation_id text;

ALTER TABLE outbox ADD COLUMN correlation_id text;
