-- The Merkle ledger over audit_events (RFC 6962). Keep in step with
-- migrations/postgres.
--
-- ledger_nodes holds the hash of every perfect subtree the log has
-- completed: level k, index i covers leaves [i*2^k, (i+1)*2^k); level 0 is
-- the leaf hash SHA-256(0x00 || leaf bytes). Written in the same
-- transaction as the events, so any root and any proof is O(log n) reads.
CREATE TABLE ledger_nodes (
    level INTEGER NOT NULL CHECK (level >= 0 AND level < 64),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;

-- Every signed checkpoint (C2SP signed note), by tree size.
CREATE TABLE ledger_checkpoints (
    size       INTEGER NOT NULL PRIMARY KEY CHECK (size >= 0),
    root       BLOB    NOT NULL CHECK (length(root) = 32),
    note       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TRIGGER ledger_nodes_no_update BEFORE UPDATE ON ledger_nodes
BEGIN
    SELECT RAISE(ABORT, 'ledger_nodes is append-only');
END;
CREATE TRIGGER ledger_nodes_no_delete BEFORE DELETE ON ledger_nodes
BEGIN
    SELECT RAISE(ABORT, 'ledger_nodes is append-only');
END;
CREATE TRIGGER ledger_checkpoints_no_update BEFORE UPDATE ON ledger_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'ledger_checkpoints is append-only');
END;
CREATE TRIGGER ledger_checkpoints_no_delete BEFORE DELETE ON ledger_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'ledger_checkpoints is append-only');
END;
