-- A counter of changes to who holds which permission. Every statement that writes a direct
-- grant, a group's permissions or a group's members adds one to it, in the same transaction,
-- by trigger: no code path (a service, a CLI command, a cascade, a hand-written UPDATE) can
-- change a permission without moving it. The session lookup reads it on every request and
-- keeps each user's permission names only as long as it has not moved
-- (app/authority/permissions.py), so a change still applies to the next request everywhere.
CREATE TABLE keel_authz_generation (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    n bigint NOT NULL
);
INSERT INTO keel_authz_generation (only_row, n) VALUES (true, 1);

CREATE FUNCTION keel_authz_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE keel_authz_generation SET n = n + 1;
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
