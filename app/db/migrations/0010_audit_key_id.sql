-- Key rotation: each audit row names the key that sealed it (8 hex digits, app/audit.py key_id),
-- so the chain verifies across a rotation with every key of the ring. Rows written before this
-- migration have no key id and verify against any key of the ring. Not sealed itself: naming
-- the wrong key makes the row fail to verify, which is what tampering should do.
ALTER TABLE keel_audit ADD COLUMN key_id text CHECK (key_id ~ '^[0-9a-f]{8}$');
