-- Principal attributes (an agent's environments, team, labels; a user's
-- department…) as a JSON object, set by admins; policies see them on the
-- principal entity. Keep in step with migrations/postgres.
ALTER TABLE principals ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
