-- Resources whose default access (declared per resource, e.g. editor: view/add/change) was
-- granted to the built-in groups. Granted once, when the resource first appears: an operator
-- who later takes a permission away does not see it come back at the next upgrade.
CREATE TABLE keel_resource_defaults (
    slug       text PRIMARY KEY,
    granted_at timestamptz NOT NULL DEFAULT now()
);
