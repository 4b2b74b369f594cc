"""Private saved list filters: a user names the current list query and finds it again (LIST-8)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg

from app.errors import Invalid

MAX_NAME = 80
MAX_QUERY = 2000
MAX_PER_LIST = 50
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SavedFilter:
    id: int
    name: str
    query: str


def check_name(name: str) -> str:
    clean = " ".join(name.split())
    if not clean:
        raise Invalid("give the filter a name", fields={"name": "required"})
    if len(clean) > MAX_NAME or _CONTROL.search(name):
        raise Invalid(
            f"a filter name is at most {MAX_NAME} printable characters",
            fields={"name": f"at most {MAX_NAME} characters"},
        )
    return clean


async def for_user(
    conn: psycopg.AsyncConnection[Any], user_id: int, resource: str
) -> list[SavedFilter]:
    """Only the user's own filters for this list: saved filters are private."""
    return await read(await start_for_user(conn, user_id, resource))


async def start_for_user(
    conn: psycopg.AsyncConnection[Any], user_id: int, resource: str
) -> psycopg.AsyncCursor[Any]:
    """Send `for_user`'s query (in a pipeline, with the list's own); `read` reads it."""
    return await conn.execute(
        "SELECT id, name, query FROM keel_saved_filters WHERE user_id = %s AND resource = %s"
        " ORDER BY name LIMIT %s",
        (user_id, resource, MAX_PER_LIST),
    )


# `start_for_user`'s answer for the user of the request's session, as one JSON value (null for
# none), without knowing who that is yet: a column of the session lookup's row
# (app/web/prefetch.py, `sessions.COLUMN`), where `s.user_id` is the session's user.
_FOR_SESSION = (
    "(SELECT json_agg(json_build_array(f.id, f.name, f.query) ORDER BY f.name)"
    " FROM (SELECT id, name, query FROM keel_saved_filters WHERE user_id = s.user_id"
    f" AND resource = %s ORDER BY name LIMIT {MAX_PER_LIST}) AS f)"
)


def for_session(resource: str) -> tuple[str, list[Any]]:
    """The expression and its parameters; `from_json` reads its value."""
    return _FOR_SESSION, [resource]


def from_json(value: list[list[Any]] | None) -> list[SavedFilter]:
    return [SavedFilter(int(i), str(name), str(query)) for i, name, query in value or ()]


async def read(cur: psycopg.AsyncCursor[Any]) -> list[SavedFilter]:
    return [SavedFilter(*row) for row in await cur.fetchall()]


async def save(
    conn: psycopg.AsyncConnection[Any], user_id: int, resource: str, name: str, query: str
) -> int:
    """Create or replace the user's filter of that name; the caller validated `query`."""
    name = check_name(name)
    if len(query) > MAX_QUERY:
        raise Invalid("that list query is too long to save", fields={"query": "too long"})
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT count(*) FROM keel_saved_filters WHERE user_id = %s AND resource = %s",
            (user_id, resource),
        )
        row = await cur.fetchone()
        if row and row[0] >= MAX_PER_LIST:
            raise Invalid(
                f"you already have {MAX_PER_LIST} saved filters here; delete one first",
                fields={"name": "too many saved filters"},
            )
        cur = await conn.execute(
            "INSERT INTO keel_saved_filters (user_id, resource, name, query)"
            " VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (user_id, resource, name) DO UPDATE SET query = EXCLUDED.query"
            " RETURNING id",
            (user_id, resource, name, query),
        )
        new = await cur.fetchone()
    return int(new[0]) if new else 0


async def delete(conn: psycopg.AsyncConnection[Any], user_id: int, filter_id: int) -> bool:
    """Delete one of the user's own filters; someone else's id simply matches nothing."""
    cur = await conn.execute(
        "DELETE FROM keel_saved_filters WHERE id = %s AND user_id = %s", (filter_id, user_id)
    )
    return cur.rowcount > 0
