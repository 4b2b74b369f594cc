"""`keel user invite` (AUTHZ-9) as a real process against a real database: invite with a role and
groups, list, send again, withdraw; every step audited with the OS user; bad input is a
Problem/Why/Fix with exit code 2, never a traceback."""

from __future__ import annotations

import json

from tests.authority.test_cli_user import assert_problem, audit, env, query, run  # noqa: F401
from tests.helpers import keel_env


def test_invite_list_resend_and_revoke(env: dict[str, str], database_url: str) -> None:  # noqa: F811
    proc = run(env, "user", "invite", "--email", "Gil@Example.com", "--role", "editor")
    assert proc.returncode == 0, proc.stderr
    assert "invited gil@example.com (role staff, groups editor)" in proc.stdout
    [(active, has_password)] = query(
        database_url,
        "SELECT is_active, password_hash IS NOT NULL FROM keel_users WHERE email = 'gil@example.com'",
    )
    assert (active, has_password) == (False, False)
    listed = json.loads(run(env, "user", "invitations", "--json").stdout)
    assert [(i["email"], i["role"], i["groups"], i["state"]) for i in listed] == [
        ("gil@example.com", "staff", ["editor"], "pending")
    ]
    [(first,)] = query(database_url, "SELECT token_hash FROM keel_invitations")
    assert run(env, "user", "invite", "--email", "gil@example.com", "--resend").returncode == 0
    [(second,)] = query(database_url, "SELECT token_hash FROM keel_invitations")
    assert second != first
    assert run(env, "user", "invite", "--email", "gil@example.com", "--revoke").returncode == 0
    assert "no open invitations" in run(env, "user", "invitations").stdout
    assert query(
        database_url, "SELECT count(*) FROM keel_users WHERE email = 'gil@example.com'"
    ) == [(0,)]
    kinds = [t for t, _m, _o in audit(database_url) if t.startswith("invitation_")]
    assert kinds == ["invitation_sent", "invitation_resent", "invitation_revoked"]
    assert {o for t, _m, o in audit(database_url) if t.startswith("invitation_")} != {None}
    [(mails,)] = query(
        database_url, "SELECT count(*) FROM keel_outbox WHERE template = 'invitation'"
    )
    assert mails == 2


def test_refusals_are_problems(env: dict[str, str], database_url: str, secret_key: str) -> None:  # noqa: F811
    assert_problem(run(env, "user", "invite", "--email", "h@example.com"), 2, "needs a role")
    assert_problem(
        run(env, "user", "invite", "--email", "h@example.com", "--revoke"), 1, "no open invitation"
    )
    assert_problem(
        run(env, "user", "invite", "--email", "h@example.com", "--role", "user", "--group", "nope"),
        1,
        "nope",
    )
    bare = keel_env(DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key, NO_COLOR="1")
    assert_problem(
        run(bare, "user", "invite", "--email", "h@example.com", "--role", "user"), 2, "public_url"
    )
    bad_ttl = {**env, "KEEL_INVITATION_TTL": "10m"}
    proc = run(bad_ttl, "user", "invitations")
    assert proc.returncode != 0 and "invitation_ttl" in proc.stderr
