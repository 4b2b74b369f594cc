-- INV-1: a recovery link's token is never stored. The outbox keeps a random 32-byte seal;
-- the delivery worker derives the token from it with a key only the servers hold
-- (app/mail/seal.py), puts it in the mail it sends, and then forgets the seal.
ALTER TABLE keel_outbox ADD COLUMN seal bytea CHECK (length(seal) = 32);
