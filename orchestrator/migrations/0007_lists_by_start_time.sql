-- Saga lists are ordered by start time (stable under keyset pagination: a saga does not move
-- between pages as it advances), and no index of `sagas` holds a column that changes at every
-- step (`updated_at`, `next_event_seq`): a step's UPDATE of its saga row is then a HOT update,
-- which writes no index entry. Free space on each page (fillfactor) lets the new row version
-- stay on its page.
DROP INDEX sagas_status_updated;
DROP INDEX sagas_updated_id;
DROP INDEX sagas_type_updated;
CREATE INDEX sagas_status_created ON sagas (status, created_at DESC, id DESC);
CREATE INDEX sagas_created_id ON sagas (created_at DESC, id DESC);
CREATE INDEX sagas_type_created ON sagas (saga_type, created_at DESC, id DESC);
ALTER TABLE sagas SET (fillfactor = 80);
