-- signoff schema, PostgreSQL dialect. Keep in step with migrations/sqlite.
-- Timestamps are milliseconds since the Unix epoch. Keys that are sorted or
-- paginated use COLLATE "C" so the order is bytewise, as in SQLite, whatever
-- the database's locale.

CREATE TABLE requests (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    status          TEXT   NOT NULL,
    action          TEXT   NOT NULL,
    resource        TEXT   NOT NULL,
    environment     TEXT,
    principal       TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    idempotency_key TEXT,
    version         BIGINT NOT NULL,
    -- The whole RequestRecord as JSON text (not jsonb: kept byte-for-byte).
    body            TEXT   NOT NULL
);

CREATE UNIQUE INDEX requests_idempotency ON requests (principal, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX requests_deadline ON requests (status, expires_at);
CREATE INDEX requests_principal ON requests (principal, id);

CREATE TABLE principals (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    kind       TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    email      TEXT,
    groups     TEXT   NOT NULL,
    owner      TEXT,
    token_hash TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE audit_events (
    idx             BIGINT  NOT NULL PRIMARY KEY CHECK (idx >= 0),
    kind            TEXT    NOT NULL,
    time            BIGINT  NOT NULL,
    actor           TEXT    NOT NULL,
    request_id      TEXT,
    digest          TEXT,
    verdict         TEXT,
    policy_ids      TEXT    NOT NULL,
    policy_set_hash TEXT,
    reason          TEXT,
    detail          TEXT    NOT NULL,
    schema          INTEGER NOT NULL
);

-- The ledger is append-only: refuse edits even from a hand-typed statement.
CREATE FUNCTION signoff_audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION signoff_audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION signoff_audit_events_append_only();

-- The next event index. Writers lock this one row for their transaction,
-- which serializes them across replicas, so indexes are dense and follow
-- commit order.
CREATE TABLE ledger_head (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    next_index BIGINT  NOT NULL CHECK (next_index >= 0)
);

INSERT INTO ledger_head (id, next_index) VALUES (1, 0);
