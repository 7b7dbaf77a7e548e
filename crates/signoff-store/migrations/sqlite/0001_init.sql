-- signoff schema, SQLite dialect. Keep in step with migrations/postgres.
-- Timestamps are milliseconds since the Unix epoch. STRICT tables so a bad
-- bind fails loudly instead of being stored with another type.

CREATE TABLE requests (
    id              TEXT    NOT NULL PRIMARY KEY,
    status          TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    resource        TEXT    NOT NULL,
    environment     TEXT,
    principal       TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    idempotency_key TEXT,
    version         INTEGER NOT NULL,
    -- The whole RequestRecord as JSON; the columns above are for filtering.
    body            TEXT    NOT NULL
) STRICT;

CREATE UNIQUE INDEX requests_idempotency ON requests (principal, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX requests_deadline ON requests (status, expires_at);
CREATE INDEX requests_principal ON requests (principal, id);

CREATE TABLE principals (
    name       TEXT    NOT NULL PRIMARY KEY,
    kind       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    email      TEXT,
    groups     TEXT    NOT NULL,
    owner      TEXT,
    token_hash TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE TABLE audit_events (
    idx             INTEGER NOT NULL PRIMARY KEY CHECK (idx >= 0),
    kind            TEXT    NOT NULL,
    time            INTEGER NOT NULL,
    actor           TEXT    NOT NULL,
    request_id      TEXT,
    digest          TEXT,
    verdict         TEXT,
    policy_ids      TEXT    NOT NULL,
    policy_set_hash TEXT,
    reason          TEXT,
    detail          TEXT    NOT NULL,
    schema          INTEGER NOT NULL
) STRICT;

-- The ledger is append-only: refuse edits even from a hand-typed statement.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

-- The next event index. Writers update this one row inside their transaction,
-- which serializes them, so indexes are dense and follow commit order.
CREATE TABLE ledger_head (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    next_index INTEGER NOT NULL CHECK (next_index >= 0)
) STRICT;

INSERT INTO ledger_head (id, next_index) VALUES (1, 0);
