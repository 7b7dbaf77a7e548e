-- Identities apart from principals, the event stream's durable cursors,
-- and the policy set every replica enforces. Keep in step with
-- migrations/postgres.

-- A principal may hold several credentials (named, expiring, revocable,
-- bound to a gate). Only a SHA-256 of each secret is stored.
CREATE TABLE credentials (
    id           TEXT    NOT NULL PRIMARY KEY,
    principal    TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    gate         TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
) STRICT;
CREATE UNIQUE INDEX credentials_name ON credentials (principal, name);

-- Every principal's one token so far becomes its `default` credential.
INSERT INTO credentials (id, principal, name, token_hash, gate, created_at, expires_at, revoked_at, last_used_at)
    SELECT 'cr_' || name, name, 'default', token_hash, NULL, created_at, NULL, revoked_at, NULL
    FROM principals;

-- principals loses its token column (SQLite cannot drop a UNIQUE column,
-- so the table is rebuilt).
CREATE TABLE principals_v3 (
    name       TEXT    NOT NULL PRIMARY KEY,
    kind       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    email      TEXT,
    groups     TEXT    NOT NULL,
    owner      TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
INSERT INTO principals_v3 (name, kind, role, email, groups, owner, created_at, revoked_at)
    SELECT name, kind, role, email, groups, owner, created_at, revoked_at FROM principals;
DROP TABLE principals;
ALTER TABLE principals_v3 RENAME TO principals;

-- Accounts elsewhere (OIDC issuer + subject, Slack, Teams) linked to a
-- principal, with how the link was verified.
CREATE TABLE identities (
    issuer      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    principal   TEXT    NOT NULL,
    verified_by TEXT    NOT NULL,
    linked_by   TEXT    NOT NULL,
    linked_at   INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
) STRICT;
CREATE INDEX identities_principal ON identities (principal);

-- Where each named consumer of the event stream is: the next index it has
-- not acknowledged. A lease makes one replica the consumer's only reader.
CREATE TABLE stream_cursors (
    name        TEXT    NOT NULL PRIMARY KEY,
    position    INTEGER NOT NULL CHECK (position >= 0),
    holder      TEXT,
    lease_until INTEGER,
    updated_at  INTEGER NOT NULL
) STRICT;

-- Every policy set that was ever active, by hash, with its source files.
CREATE TABLE policy_sets (
    hash       TEXT    NOT NULL PRIMARY KEY,
    files      TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- The policy set every replica must enforce.
CREATE TABLE policy_active (
    id           INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    hash         TEXT    NOT NULL,
    activated_at INTEGER NOT NULL
) STRICT;
