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

CREATE FUNCTION keel_authz_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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
