-- Admin: private saved list filters (LIST-8). A saved filter is a named list query string,
-- re-validated against the declaration every time it is applied, never trusted as SQL.
CREATE TABLE keel_saved_filters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES keel_users (id) ON DELETE CASCADE,
    resource    text        NOT NULL CHECK (resource ~ '^[a-z_][a-z0-9_]{0,62}$'),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    query       text        NOT NULL CHECK (length(query) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT keel_saved_filters_name_key UNIQUE (user_id, resource, name)
);
