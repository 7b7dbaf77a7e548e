-- The Merkle ledger over audit_events (RFC 6962). Keep in step with
-- migrations/sqlite; see there for what the tables hold.
CREATE TABLE ledger_nodes (
    level BIGINT  NOT NULL CHECK (level >= 0 AND level < 64),
    idx   BIGINT  NOT NULL CHECK (idx >= 0),
    hash  BYTEA   NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

CREATE TABLE ledger_checkpoints (
    size       BIGINT NOT NULL PRIMARY KEY CHECK (size >= 0),
    root       BYTEA  NOT NULL CHECK (length(root) = 32),
    note       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE FUNCTION signoff_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;

CREATE TRIGGER ledger_nodes_append_only
    BEFORE UPDATE OR DELETE ON ledger_nodes
    FOR EACH ROW EXECUTE FUNCTION signoff_ledger_append_only();
CREATE TRIGGER ledger_nodes_no_truncate
    BEFORE TRUNCATE ON ledger_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION signoff_ledger_append_only();
CREATE TRIGGER ledger_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION signoff_ledger_append_only();
CREATE TRIGGER ledger_checkpoints_no_truncate
    BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION signoff_ledger_append_only();
