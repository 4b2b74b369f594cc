-- Whether a session token is live: the condition a list page's query runs under when it is
-- sent in one pipeline with the session lookup (app/authority/sessions.py, `_gated`), so a
-- made-up cookie never makes PostgreSQL run a search. The same test as the lookup's WHERE.
--
-- A function rather than an EXISTS written into each statement: a search is planned every
-- time it runs (with its own words, never prepared), and planning the EXISTS and its join
-- cost PostgreSQL about a tenth of a millisecond each time. A PL/pgSQL function's statement
-- is planned once per connection and kept. STABLE: with only parameters for arguments, the
-- planner checks it once, before the query reads anything (a one-time filter).
CREATE FUNCTION keel_session_live(token bytea, at timestamptz, seen_after timestamptz)
    RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (
        SELECT FROM keel_sessions s JOIN keel_users u ON u.id = s.user_id
        WHERE s.token_hash = token AND s.revoked_at IS NULL AND s.expires_at > at
          AND s.last_seen_at > seen_after AND u.is_active
    );
END
$$;
