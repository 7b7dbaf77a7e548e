-- Who provisioned each account and credential. Keep in step with
-- migrations/sqlite; see there for why.
ALTER TABLE principals ADD COLUMN created_by TEXT;
ALTER TABLE credentials ADD COLUMN created_by TEXT;

UPDATE principals SET created_by = (
    SELECT e.actor FROM audit_events e
    WHERE e.kind = 'principal_added' AND (e.detail::jsonb ->> 'name') = principals.name
    ORDER BY e.idx DESC LIMIT 1);

UPDATE credentials SET created_by = (
    SELECT e.actor FROM audit_events e
    WHERE e.kind IN ('credential_issued', 'principal_added')
      AND (e.detail::jsonb ->> 'credential') = credentials.id
    ORDER BY e.idx DESC LIMIT 1);

UPDATE credentials SET created_by = (
    SELECT p.created_by FROM principals p WHERE p.name = credentials.principal)
WHERE created_by IS NULL AND name = 'default';
