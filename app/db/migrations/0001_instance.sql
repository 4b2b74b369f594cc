-- The installation itself: one row, created by the first migration.
CREATE TABLE keel_instance (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    instance_id  uuid NOT NULL DEFAULT gen_random_uuid(),
    installed_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO keel_instance DEFAULT VALUES;
