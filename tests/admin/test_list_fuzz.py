"""Query strings thrown at every list URL never produce a 500 or an SQL error (SEC-3, INV-5).

Issue 4: "filters, sort keys, cursors, page sizes and search terms from the query string are
validated: … answer 400 (or are ignored where the requirements say so), never 500". The filter names
are read from the app's bound resources (every `list_filter` of every declared resource, with
`__gte`/`__lte`), and each gets values of its own kind: boundary dates and datetimes with
offsets, decimals with extreme exponents, NaN/Infinity, integers past int8, choices, booleans.
The URLs are every list, `?format=json`, both exports, the bulk confirmation over "all
matching" (GET and POST), saving a filter, the FK lookup, the global search and the audit log.

Valid calendar dates are valid input: 9999-12-31 as a day filter or an upper bound answers 200
with the rows of that day (`<= its last microsecond`, as there is no next day in Python).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from psycopg import sql

from app import audit
from app.admin.builtin.audit import AUDIT, history_filters
from app.admin.entity_views import parse_filters
from app.admin.list_params import parse_value
from app.admin.listing import count_rows, cursor_key, fetch_page, parse_query, where_clause
from app.admin.resources import BoundResource, filter_kind
from app.admin.setup import ADMIN
from app.authority import sessions, users
from app.config import Config
from app.db.catalog import Column
from app.devdb import free_port
from app.errors import Invalid
from app.web.csrf import token_for_cookie
from tests.admin.conftest import SEED_SQL
from tests.admin.test_edit_support import ORIGIN, sign_in

# ---- values ------------------------------------------------------------------------------

INT8 = 2**63
NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
EDGE_DATES = [
    "0001-01-01", "9999-12-31", "0000-01-01", "-0001-01-01", "10000-01-01", "+2024-01-01",
    "2024-02-29", "2023-02-29", "20240101", "2024-W01-1", "1970-01-01",
    "9999-12-31T23:59:59.999999", "9999-12-31T23:59:59.999999+00:00", "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59+23:59", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00-23:59",
    "0001-01-01T00:00+14:00", "2024-06-01T12:00+24:00", "2024-06-01T24:00", "2024-06-01T12:00Z",
    "today", "past_7_days", "this_month", "any", "yesterday", "TODAY", "", " ",
]  # fmt: skip
EDGE_NUMBERS = [
    "1e-20000", "1e20000", "-1e-20000", "0E-1000000", "0E+1000000", "1E-1000", "1E-1001",
    "1E+29", "1E+30", "-0", "-0.0", "+0", "0.000", "NaN", "-NaN", "sNaN", "nan", "Infinity",
    "-Infinity", "inf", "1e309", "9" * 40, "9" * 41, "0." + "0" * 38 + "1", str(INT8),
    str(INT8 - 1), str(-INT8), str(-INT8 - 1), str(2**31), str(2**31 - 1), str(2**15), str(2**64),
    "9" * 21, "1_000", "１２", "²", "٣", "0x10", "1e", ".", "-", "+", "1.2.3", "99999999.995",
]  # fmt: skip
JUNK = [
    "", "' OR 1=1 --", "'; DROP TABLE bookings; --", "<script>", "%", "_", "\\", "\x00", "\x1b[31m",
    "é", "🙂", "x" * 1000, "null", "true", "1,2", "any",
]  # fmt: skip


@st.composite
def offset_datetimes(draw: st.DrawFn) -> str:
    """Any datetime from year 1 to 9999, with any offset Python accepts (up to ±23:59)."""
    dt = draw(st.datetimes())
    minutes = draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1))
    text = dt.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat()
    return text if draw(st.booleans()) else text.replace("T", " ")


# The ends of the calendar, alone or with a time and an offset: the likeliest overflows.
END_DAYS = st.sampled_from(["0001-01-01", "0001-01-02", "9999-12-30", "9999-12-31"])
calendar_ends = END_DAYS | st.builds(
    "{}{}{}".format,
    END_DAYS,
    st.sampled_from(["T00:00", "T23:59:59.999999", " 12:00:00"]),
    st.sampled_from(["", "Z", "+00:00", "+14:00", "-14:00", "+23:59", "-23:59"]),
)
dates = st.one_of(
    calendar_ends,
    st.dates().map(date.isoformat),
    offset_datetimes(),
    st.datetimes().map(datetime.isoformat),
)
# Exponents around what Postgres numeric holds (16383 digits after the point, ±1000 in text).
exponents = st.sampled_from([-20000, -16384, -16383, -1001, -1000, -30, 29, 30, 1000, 20000])
numbers = st.one_of(
    st.builds(
        "{}e{}".format, st.integers(-99_999, 99_999), exponents | st.integers(-(10**6), 10**6)
    ),
    st.integers(-(2**80), 2**80).map(str),
    st.sampled_from([2**15, 2**31, 2**63, 2**64])
    .flatmap(lambda n: st.sampled_from([n - 1, n, -n - 1, -n]))
    .map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats().map(repr),
)
junk = st.sampled_from(JUNK) | st.text(max_size=20)


def edge_values(col: Column) -> list[str]:
    """The boundary values of a filter on this column, by its filter kind (LIST-5)."""
    kind = filter_kind(col)
    if kind == "date":
        return EDGE_DATES
    if kind in ("number", "fk"):
        return EDGE_NUMBERS
    if kind == "choice":
        return [*(col.choices or ()), "x", ""]
    return ["yes", "no", "any", "on", "off", "1", "0", "maybe", "YES", ""]


def values_for(col: Column) -> st.SearchStrategy[str]:
    """The listed boundary values, random values of the kind, then junk."""
    edges = st.sampled_from(edge_values(col))
    kind = filter_kind(col)
    if kind == "date":
        return st.one_of(edges, calendar_ends, dates, junk)
    if kind in ("number", "fk"):
        return st.one_of(edges, numbers, numbers, junk)
    return edges | junk


def filter_params(b: BoundResource) -> list[tuple[str, st.SearchStrategy[str]]]:
    """Every filter parameter of a resource, from its declaration: the column, its `__gte` and
    `__lte` forms where ranges apply (dates, numbers) and one where they do not, and the
    declared name when it differs (`customer` for `customer_id`: refused, the column is the
    parameter)."""
    out: list[tuple[str, st.SearchStrategy[str]]] = []
    for declared in b.resource.list_filter:
        col = b.resolve_column(declared)
        assert col is not None, (b.slug, declared)
        ops = ("", "__gte", "__lte") if filter_kind(col) in ("date", "number") else ("", "__lte")
        out += [(col.name + op, values_for(col)) for op in ops]
        if declared != col.name:
            out.append((declared, values_for(col)))
    return out


def reserved(b: BoundResource, cursor: str | None) -> list[tuple[str, st.SearchStrategy[str]]]:
    names = [c.name for c in b.list_columns] + [b.pk, "notes", "search", "nope"]
    orders = st.lists(st.sampled_from(names).map(lambda n: n if n[0] > "m" else f"-{n}"))
    cursors = st.sampled_from([cursor] if cursor else ["x"]).flatmap(
        lambda c: st.sampled_from([c, c[:-2], c[:-1] + "A", "A" + c[1:], c + c, "%%%", "x" * 3000])
    )
    return [
        ("per_page", numbers | st.integers(-5, 600).map(str) | junk),
        ("cursor", cursors | junk),
        ("last", st.sampled_from(["1", "yes", "0", ""]) | junk),
        ("o", orders.map(",".join) | junk),
        ("q", junk | numbers | dates),
        ("format", st.sampled_from(["json", "html", "xml", ""])),
    ]


# ---- the server --------------------------------------------------------------------------


class Errors(logging.Handler):
    """ERROR records of the app and of psycopg: a 500, or an SQL error caught and logged."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # aiohttp's own parser answers 400 to over-long URLs (> 8 KiB) and logs it: not ours.
        if record.name.startswith(("keel", "psycopg")):
            self.records.append(f"{record.name}: {record.getMessage()}"[:500])


@dataclass
class Server:
    base: str
    bound: dict[str, BoundResource]
    cookie: str
    csrf: str
    cursors: dict[str, str]

    @property
    def filters(self) -> list[tuple[str, str, st.SearchStrategy[str]]]:
        """(slug, parameter, values) for every filter parameter of every bound resource."""
        return [(slug, n, v) for slug, b in self.bound.items() for n, v in filter_params(b)]

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        headers = {"Cookie": f"keel_session={self.cookie}", "Origin": ORIGIN}
        data = None
        if form is not None:
            data = urllib.parse.urlencode({"csrf_token": self.csrf, **form}).encode()
        req = urllib.request.Request(self.base + path, data=data, headers=headers)
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=30) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture
def server(config: Config, database_url: str) -> Iterator[Server]:
    """The app on a real socket in its own thread, so a synchronous Hypothesis test can call it;
    an elevated administrator session (bulk delete sits behind the re-auth wall)."""
    from aiohttp import web

    from tests.helpers import cheap_app

    port = free_port()
    loop = asyncio.new_event_loop()
    ready, stop = threading.Event(), asyncio.Event()
    found: dict[str, Any] = {}

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(SEED_SQL)
            ctx = audit.Context(audit_key=audit.derive_key(config.secret_key), os_actor="fuzz@test")
            user = await users.create(
                conn, ctx, None, email="fuzz@example.com", role="administrator"
            )
            token, _ = await sessions.create(
                conn, user_id=user.id, absolute=3600, trust="elevated",
                elevated_until=datetime.now(UTC) + timedelta(minutes=30),
            )  # fmt: skip
        app = cheap_app(config)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        found.update(bound=app[ADMIN], token=token)
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    assert ready.wait(30)
    token = found["token"]
    s = Server(
        f"http://127.0.0.1:{port}", found["bound"], token,
        token_for_cookie(config.secret_key, token), {},
    )  # fmt: skip
    for slug in s.bound:  # a real cursor per list, for the corrupted-cursor values
        status, body = s.request(f"/admin/{slug}/?format=json&per_page=1")
        assert status == 200, body[:300]
        if json.loads(body)["next_cursor"]:
            s.cursors[slug] = json.loads(body)["next_cursor"]
    try:
        yield s
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


LIST_URLS = ("list", "json", "csv", "jsonl", "bulk", "bulk_post", "save")


def pair_of(params: list[tuple[str, st.SearchStrategy[str]]]) -> st.SearchStrategy[Any]:
    return st.sampled_from(params).flatmap(lambda p: st.tuples(st.just(p[0]), p[1]))


@st.composite
def list_requests(draw: st.DrawFn, s: Server) -> tuple[str, dict[str, str] | None]:
    """One filter of one resource (drawn from all of them at once, so each gets its share)
    with a value of its kind, maybe more parameters, on one of the URLs that parse a list query."""
    slug, name, values = draw(st.sampled_from(s.filters))
    b = s.bound[slug]
    pairs = [(name, draw(values))]
    more = st.one_of(
        pair_of(filter_params(b)),
        pair_of(reserved(b, s.cursors.get(slug))),
        st.tuples(st.text(max_size=12), junk),
    )
    if draw(st.booleans()):  # half the time alone, so no other parameter's 400 hides it
        pairs += draw(st.lists(more, min_size=1, max_size=3))
    if draw(st.booleans()):
        draw(st.randoms()).shuffle(pairs)
    q = urllib.parse.urlencode(pairs)
    base = f"/admin/{slug}"
    kind = draw(st.sampled_from(LIST_URLS))
    if kind == "bulk":
        action = draw(st.sampled_from(["delete", *(a.name for a in b.resource.actions)]))
        return f"{base}/bulk/{action}?all=1&{q}", None
    if kind == "bulk_post":  # not confirmed: the confirmation page, nothing changes
        return f"{base}/bulk/delete", {"all_matching": "1", "query": q}
    if kind == "save":
        return f"{base}/saved-filters", {"name": "f", "query": q}
    path = {
        "list": "/?",
        "json": "/?format=json&",
        "csv": "/export.csv?",
        "jsonl": "/export.jsonl?",
    }
    return f"{base}{path[kind]}{q}", None


def other_requests(s: Server) -> st.SearchStrategy[tuple[str, dict[str, str] | None]]:
    """The FK lookup, the global search and the audit log's filters."""
    lookups = st.tuples(st.sampled_from(list(s.bound)), junk | numbers, junk | numbers).map(
        lambda t: (
            f"/admin/{t[0]}/lookup?{urllib.parse.urlencode({'q': t[1], 'limit': t[2]})}",
            None,
        )
    )
    audit_params = [(n, dates | junk) for n in ("since", "until")] + [
        ("event", st.sampled_from(["create", "update", "nope"]) | junk),
        ("actor", numbers | junk),
        ("resource", st.sampled_from([*s.bound, "x.y"]) | junk),
        ("after", junk),
        ("before", junk),
    ]
    audits = st.lists(pair_of(audit_params), max_size=4).map(
        lambda pairs: (f"/admin/audit/?{urllib.parse.urlencode(pairs)}", None)
    )
    searches = (junk | numbers | dates).map(
        lambda q: (f"/admin/search?{urllib.parse.urlencode({'q': q})}", None)
    )
    return st.one_of(lookups, audits, searches)


@pytest.fixture
def errors() -> Iterator[Errors]:
    handler = Errors()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def fuzz(server: Server, errors: Errors, requests: st.SearchStrategy[Any], n: int) -> set[int]:
    """Send `n` drawn requests; each must answer 200, 303 or 400 with no error logged."""
    statuses: set[int] = set()

    @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck))
    @given(target=requests)
    def probe(target: tuple[str, dict[str, str] | None]) -> None:
        path, form = target
        status, body = server.request(path, form)
        statuses.add(status)
        # 302: a filter form sent with empty (or blank) fields is redirected to the same list
        # without them.
        query = urllib.parse.urlsplit(path).query
        blank = any(not v.strip() for _, v in urllib.parse.parse_qsl(query, True))
        assert status in (200, 303, 400) or (status == 302 and blank), (
            path[:300],
            form,
            status,
            body[:300],
        )
        if status == 400:
            assert "psycopg" not in body and "SELECT" not in body, body[:300]
        assert errors.records == [], (path[:300], form, errors.records)

    probe()
    return statuses


def test_random_list_queries_never_cause_a_500_or_an_sql_error(
    server: Server, errors: Errors
) -> None:
    """Every filter of every resource with boundary, random and junk values, on every URL that
    reads a list query (list, JSON, exports, bulk over all matching, saved filters)."""
    assert {200, 400} <= fuzz(server, errors, list_requests(server), 300)


def test_random_lookup_search_and_audit_queries_never_cause_a_500(
    server: Server, errors: Errors
) -> None:
    assert {200, 400} <= fuzz(server, errors, other_requests(server), 60)


# ---- every boundary value on every filter, exhaustively -----------------------------------

KEY = cursor_key("fuzz")


async def test_every_filter_of_every_resource_with_every_boundary_value(seeded, bound):
    """Hypothesis samples; this sweeps: each filter parameter of each declared resource (and
    its ranges) with each boundary value of its kind, parsed and then run as the list page,
    its total, and the WHERE clause the "all matching" bulk selection and the exports use.
    Only a 400 (Invalid) may refuse; any other exception, from Python or from Postgres, fails
    with the parameter named."""
    failures = []
    tried = 0
    for slug, b in bound.items():
        for name, _values in filter_params(b):
            col = b.resolve_column(name.partition("__")[0])
            assert col is not None
            for value in edge_values(col):
                tried += 1
                try:
                    lq = parse_query(b, MultiDict([(name, value)]), now=NOW)
                except Invalid:
                    continue
                except Exception as exc:  # the point: nothing but Invalid may escape
                    failures.append(f"{slug}?{name}={value!r}: parse {exc!r}")
                    continue
                try:
                    await fetch_page(seeded, b, lq, KEY)
                    await count_rows(seeded, b, lq)
                    where, params = where_clause(b, lq)
                    await seeded.execute(
                        sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                            sql.Identifier(b.table.schema, b.table.name), where
                        ),
                        params,
                    )
                except Exception as exc:
                    failures.append(f"{slug}?{name}={value!r}: SQL {exc!r}"[:300])
    for name in ("since", "until"):  # the audit log's date filter, the same way
        for value in EDGE_DATES:
            try:
                _typed, parsed, errors = parse_filters(AUDIT.listing.filters, {name: value}, {})
                if not errors:
                    await audit.history(seeded, limit=1, **history_filters(parsed))
            except Invalid:
                pass
            except Exception as exc:
                failures.append(f"audit?{name}={value!r}: {exc!r}"[:300])
    assert tried > 500 and not failures, failures


# ---- the cases the reviewer found, one by one ----------------------------------------------

EDGE_ROWS = """
INSERT INTO bookings (id, customer_id, status, amount, scheduled_at, created_at)
VALUES (301, 1, 'pending', 1, '9999-12-31 23:59:59.999999+00', now()),
       (302, 1, 'pending', 1, '0001-01-01 00:00+00', now());
INSERT INTO technicians (id, name, email, hired_on) VALUES (4, 'Last Day', 'l@x.test', '9999-12-31');
INSERT INTO properties (id, name, address, kind, last_inspected)
VALUES (9, 'Far Future', 'x', 'shop', '9999-12-31');
"""


# (url, status, ids the JSON page lists or None): 9999-12-31 is a valid day, 1e-20000 is not.
EXTREMES = [
    ("/admin/technicians/?hired_on=9999-12-31", 200, [4]),
    ("/admin/technicians/?hired_on__gte=9999-12-31", 200, [4]),
    ("/admin/properties/?last_inspected=9999-12-31", 200, [9]),
    ("/admin/bookings/?scheduled_at=9999-12-31", 200, [301]),
    ("/admin/bookings/?scheduled_at__gte=9999-12-31&scheduled_at__lte=9999-12-31", 200, [301]),
    ("/admin/bookings/?scheduled_at=0001-01-01", 200, [302]),
    ("/admin/bookings/?scheduled_at__lte=0001-01-01", 200, [302]),
    ("/admin/bookings/?scheduled_at__gte=9999-12-31T23:59:59-14:00", 200, []),
    ("/admin/bookings/?scheduled_at__lte=0001-01-01T00:00%2B14:00", 200, []),
    ("/admin/customers/?created_at__lte=9999-12-31&per_page=1", 200, None),
    ("/admin/bookings/?amount__gte=1e-20000", 400, None),
    ("/admin/bookings/?amount__lte=0E-1000000", 400, None),
    ("/admin/technicians/?hourly_rate__gte=1e-20000", 400, None),
    ("/admin/bookings/?amount__gte=1e20000", 400, None),
    ("/admin/bookings/?amount__gte=NaN", 400, None),
    ("/admin/bookings/?amount__gte=-Infinity", 400, None),
    ("/admin/bookings/?amount__lte=-0&amount__gte=-0", 200, []),
    ("/admin/bookings/?amount__lte=1E-1000", 200, []),
    ("/admin/bookings/?customer_id=9223372036854775808", 400, None),
    ("/admin/bookings/?customer_id=%C2%B2", 400, None),
    ("/admin/properties/?units__gte=32768", 400, None),
    ("/admin/technicians/?hired_on=-0001-01-01", 400, None),
    ("/admin/technicians/?hired_on=10000-01-01", 400, None),
    ("/admin/bookings/?per_page=%C2%B2", 400, None),
    ("/admin/bookings/?per_page=99999999999999999999", 400, None),
    ("/admin/bookings/lookup?q=a&limit=%C2%B2", 400, None),
    ("/admin/bookings/lookup?q=%C2%B2", 200, None),
]
AUDIT_EXTREMES = [
    ("until=9999-12-31", 200),
    ("since=9999-12-31&until=9999-12-31", 200),
    ("since=0001-01-01&until=0001-01-01", 200),
    ("since=0001-01-01&until=9999-12-31", 200),
    ("until=10000-01-01", 400),
    ("since=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%94-01-01", 400),  # full-width digits
]


async def test_extreme_filter_values_answer_200_or_400_never_500(
    client: Any, database_url: str, secret_key: str
) -> None:
    """Each case on the list, ?format=json, both exports, the bulk confirmation over "all
    matching" (GET, and POST as the list sends it), and the rows it selects; then the audit
    log's own date filter (AUDIT-8). One database for all."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(SEED_SQL + EDGE_ROWS)
    b = await sign_in(client, database_url, secret_key, elevated=True)
    wrong = []
    for url, status, ids in EXTREMES:
        path, _, query = url.partition("?")
        sent: list[tuple[str, dict[str, str] | None]] = [(url, None)]
        if "/lookup" not in path:
            sent += [
                (f"{path}?format=json&{query}", None),
                (f"{path}export.csv?{query}", None),
                (f"{path}export.jsonl?{query}", None),
                (f"{path}bulk/delete?all=1&{query}", None),
                (f"{path}bulk/delete", {"all_matching": "1", "query": query}),
            ]
        for each, form in sent:
            resp = await (b.get(each) if form is None else b.post(each, form))
            text = await resp.text()
            if resp.status != status or "psycopg" in text or "Traceback" in text:
                wrong.append((each, form, resp.status, text[:200]))
        if ids is not None:
            body = await (await b.get(f"{path}?format=json&per_page=500&{query}")).json()
            if sorted(r["id"] for r in body["rows"]) != ids:
                wrong.append((url, "rows", [r["id"] for r in body["rows"]][:10], "expected", ids))
    for query, status in AUDIT_EXTREMES:
        resp = await b.get(f"/admin/audit/?{query}")
        if resp.status != status:
            wrong.append((query, resp.status, (await resp.text())[:200]))
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("type_name", "text"),
    [
        ("timestamp", "0001-01-01T00:00+14:00"),  # year 0 in UTC
        ("timestamp", "9999-12-31T23:59-14:00"),  # year 10000 in UTC
        ("numeric", "1e-1001"),
        ("numeric", "0E-1000000"),
        ("numeric", "9e999999999"),  # abs() of it overflowed the default decimal context
        ("numeric", "sNaN"),
        ("integer", "²"),
        ("bigint", str(INT8)),
    ],
)
def test_values_python_or_postgres_cannot_hold_are_refused(type_name: str, text: str) -> None:
    with pytest.raises(ValueError):
        parse_value(Column("c", type_name), text)


def test_numeric_zero_is_plain_zero() -> None:
    col = Column("c", "numeric")
    assert str(parse_value(col, "-0")) == "0" and str(parse_value(col, "0E-999")) == "0"
    assert parse_value(col, "1E-1000") == Decimal("1E-1000")
    assert parse_value(Column("c", "integer"), str(2**31 - 1)) == 2**31 - 1
