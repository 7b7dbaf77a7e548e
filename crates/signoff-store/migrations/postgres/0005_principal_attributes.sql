-- Principal attributes as a JSON object; see migrations/sqlite.
ALTER TABLE principals ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
