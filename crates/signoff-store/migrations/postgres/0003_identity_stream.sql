-- Identities apart from principals, the event stream's durable cursors,
-- the policy set every replica enforces, and the notification that wakes
-- other replicas. Keep in step with migrations/sqlite; see there for what
-- the tables hold.

CREATE TABLE credentials (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    principal    TEXT COLLATE "C" NOT NULL,
    name         TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL UNIQUE,
    gate         TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE UNIQUE INDEX credentials_name ON credentials (principal, name);

INSERT INTO credentials (id, principal, name, token_hash, gate, created_at, expires_at, revoked_at, last_used_at)
    SELECT 'cr_' || name, name, 'default', token_hash, NULL, created_at, NULL, revoked_at, NULL
    FROM principals;

ALTER TABLE principals DROP COLUMN token_hash;

CREATE TABLE identities (
    issuer      TEXT COLLATE "C" NOT NULL,
    subject     TEXT COLLATE "C" NOT NULL,
    principal   TEXT COLLATE "C" NOT NULL,
    verified_by TEXT   NOT NULL,
    linked_by   TEXT   NOT NULL,
    linked_at   BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX identities_principal ON identities (principal);

CREATE TABLE stream_cursors (
    name        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    position    BIGINT NOT NULL CHECK (position >= 0),
    holder      TEXT,
    lease_until BIGINT,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE policy_sets (
    hash       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    files      TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE policy_active (
    id           INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    hash         TEXT   NOT NULL,
    activated_at BIGINT NOT NULL
);

-- Each committed append moves the ledger head; tell every listening
-- replica the new head (delivered at commit, in commit order), so
-- long-polls and consumers on other replicas wake without polling.
CREATE FUNCTION signoff_notify_head() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('signoff_events', NEW.next_index::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_head_notify
    AFTER UPDATE ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION signoff_notify_head();
