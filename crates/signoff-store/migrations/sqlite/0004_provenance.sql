-- Who provisioned each account and credential, so that reviewer power
-- cannot be minted by a party to a request: an approval does not count if
-- the approver's account, credential or qualifying group membership was
-- created by the requester, the on-behalf-of human, the agent's owner or
-- the agent's creator. Group memberships are granted only when a principal
-- is created, so the account's creator is also the grantor of its groups.
-- Values are event actors: `user:NAME` or `console`. Keep in step with
-- migrations/postgres.
ALTER TABLE principals ADD COLUMN created_by TEXT;
ALTER TABLE credentials ADD COLUMN created_by TEXT;

-- Existing rows learn it from the audit trail, which recorded every
-- principal_added and credential_issued event with its acting admin.
UPDATE principals SET created_by = (
    SELECT e.actor FROM audit_events e
    WHERE e.kind = 'principal_added' AND json_extract(e.detail, '$.name') = principals.name
    ORDER BY e.idx DESC LIMIT 1);

UPDATE credentials SET created_by = (
    SELECT e.actor FROM audit_events e
    WHERE (e.kind = 'credential_issued' OR e.kind = 'principal_added')
      AND json_extract(e.detail, '$.credential') = credentials.id
    ORDER BY e.idx DESC LIMIT 1);

-- Credentials made from the single token of the first schema (`cr_NAME`)
-- were issued with their principal.
UPDATE credentials SET created_by = (
    SELECT p.created_by FROM principals p WHERE p.name = credentials.principal)
WHERE created_by IS NULL AND name = 'default';
