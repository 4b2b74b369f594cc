-- A version of who holds which permission. Every statement that writes a direct grant, a
-- group's permissions or a group's members replaces it with a new random value, in the same
-- transaction, by trigger: no code path (a service, a CLI command, a cascade, a hand-written
-- UPDATE) can change a permission without changing it. The session lookup reads it on every
-- request and keeps each user's permission names only while it is unchanged
-- (app/authority/permissions.py), so a change still applies to the next request everywhere.
-- Random rather than a count, so two databases (or one dropped and made again) never share
-- a version a process may have kept names for.
CREATE TABLE keel_authz_generation (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version uuid NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO keel_authz_generation (only_row) VALUES (true);

-- The audit chain's advisory lock (app/audit.py CHAIN_LOCK, "keelaudt") is taken first: every
-- change of a permission is audited in its transaction, and a transaction that audits before
-- it changes a permission (deleting a user) and one that does it the other way round
-- (granting one) must take the two locks in the same order, or they could deadlock.
CREATE FUNCTION keel_authz_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7738703050872022132);
    UPDATE keel_authz_generation SET version = gen_random_uuid();
    RETURN NULL;
END
$$;

CREATE TRIGGER keel_user_permissions_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keel_user_permissions
    FOR EACH STATEMENT EXECUTE FUNCTION keel_authz_changed();
CREATE TRIGGER keel_group_permissions_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keel_group_permissions
    FOR EACH STATEMENT EXECUTE FUNCTION keel_authz_changed();
CREATE TRIGGER keel_group_members_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keel_group_members
    FOR EACH STATEMENT EXECUTE FUNCTION keel_authz_changed();
-- Also when rows are applied as a replica (logical replication, session_replication_role).
ALTER TABLE keel_user_permissions ENABLE ALWAYS TRIGGER keel_user_permissions_changed;
ALTER TABLE keel_group_permissions ENABLE ALWAYS TRIGGER keel_group_permissions_changed;
ALTER TABLE keel_group_members ENABLE ALWAYS TRIGGER keel_group_members_changed;
