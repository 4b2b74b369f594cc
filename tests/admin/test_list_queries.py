"""List queries against real Postgres: keyset pages, cursors, filters, search, totals (LIST-2..6)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from multidict import MultiDict

from app.admin.listing import COUNT_CAP, count_rows, cursor_key, fetch_page, fk_labels, parse_query
from app.errors import Invalid

KEY = cursor_key("test-secret")
NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)


def q(b, **params):
    return parse_query(b, MultiDict(params), now=NOW)


async def walk(conn, b, params, direction="next"):
    """Every row reached by following next links from the first page."""
    lq = parse_query(b, MultiDict(params), now=NOW)
    seen = []
    page = await fetch_page(conn, b, lq, KEY)
    while True:
        seen += [r[0] for r in page.rows]
        if not page.next_cursor:
            return seen
        lq = parse_query(b, MultiDict({**params, "cursor": page.next_cursor}), now=NOW)
        page = await fetch_page(conn, b, lq, KEY)


async def test_keyset_pages_cover_every_row_once_in_declared_order(seeded, bound):
    b = bound["bookings"]
    cur = await seeded.execute("SELECT id FROM bookings ORDER BY scheduled_at DESC, id DESC")
    expected = [r[0] for r in await cur.fetchall()]
    assert await walk(seeded, b, {}) == expected  # LIST-2 declared -scheduled_at, LIST-3 keyset
    assert await walk(seeded, b, {"o": "amount", "per_page": "37"}) == [
        r[0]
        for r in await (
            await seeded.execute("SELECT id FROM bookings ORDER BY amount, id")
        ).fetchall()
    ]


async def test_previous_and_last_pages_mirror_next(seeded, bound):
    b = bound["bookings"]
    first = await fetch_page(seeded, b, q(b), KEY)
    assert first.prev_cursor is None and first.at_start
    second = await fetch_page(seeded, b, q(b, cursor=first.next_cursor), KEY)
    back = await fetch_page(seeded, b, q(b, cursor=second.prev_cursor), KEY)
    assert back.rows == first.rows and back.prev_cursor is None
    last = await fetch_page(seeded, b, q(b, last="1"), KEY)
    assert [r[0] for r in last.rows] == (await walk(seeded, b, {}))[-50:]
    assert last.next_cursor is None and last.prev_cursor is not None


async def test_nullable_sort_columns_page_without_losing_rows(seeded, bound):
    b = bound["properties"]
    for order in ("last_inspected", "-last_inspected"):
        assert sorted(await walk(seeded, b, {"o": order, "per_page": "1"})) == [1, 2, 3]


async def test_unknown_sort_keys_are_ignored_and_the_key_breaks_ties(seeded, bound):
    b = bound["bookings"]
    lq = q(b, o="nope,-status;DROP TABLE bookings,amount")
    assert lq.ordering == (("amount", False), ("id", False))
    assert q(b, o="notes").ordering == (("scheduled_at", True), ("id", True))  # not a list column


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),
        lambda c: "A" + c[1:] if c[0] != "A" else "B" + c[1:],
        lambda c: "not-a-cursor",
        lambda c: "%%%",
        lambda c: "x" * 1900,
    ],
)
async def test_forged_or_corrupted_cursors_are_refused(seeded, bound, mutate):
    b = bound["bookings"]
    page = await fetch_page(seeded, b, q(b), KEY)
    with pytest.raises(Invalid) as exc:
        await fetch_page(seeded, b, q(b, cursor=mutate(page.next_cursor)), KEY)
    assert exc.value.http_status == 400


async def test_cursors_do_not_cross_orderings_resources_or_keys(seeded, bound):
    b = bound["bookings"]
    c = bound["customers"]
    token = (await fetch_page(seeded, b, q(b), KEY)).next_cursor
    for resource, lq, key in (
        (b, q(b, cursor=token, o="amount"), KEY),
        (c, q(c, cursor=token), KEY),
        (b, q(b, cursor=token), cursor_key("another-secret")),
    ):
        with pytest.raises(Invalid):
            await fetch_page(seeded, resource, lq, key)


async def test_filters_choices_ranges_booleans_and_foreign_keys(seeded, bound):
    b = bound["bookings"]

    async def ids(**params):
        page = await fetch_page(seeded, b, q(b, per_page="500", **params), KEY)
        return {r[0] for r in page.rows}

    cancelled = await ids(status="cancelled")
    assert len(cancelled) == 60 and all(i % 5 == 3 for i in cancelled)
    multi = MultiDict([("status", "cancelled"), ("status", "no_show"), ("per_page", "500")])
    assert len((await fetch_page(seeded, b, parse_query(b, multi, now=NOW), KEY)).rows) == 120
    cheap = await ids(amount__lte="10.5")
    rows = await (await seeded.execute("SELECT id FROM bookings WHERE amount <= 10.5")).fetchall()
    assert cheap == {r[0] for r in rows}
    assert await ids(customer_id="8") == {
        r[0]
        for r in await (
            await seeded.execute("SELECT id FROM bookings WHERE customer_id = 8")
        ).fetchall()
    }
    day = await ids(scheduled_at__gte="2024-02-01", scheduled_at__lte="2024-02-01")
    assert day and all(
        r[0].date().isoformat() == "2024-02-01"
        for r in await (
            await seeded.execute(
                "SELECT scheduled_at FROM bookings WHERE id = ANY(%s)", (list(day),)
            )
        ).fetchall()
    )
    t = bound["technicians"]
    page = await fetch_page(seeded, t, q(t, is_active="no"), KEY)
    assert [r[0] for r in page.rows] == [2]
    page = await fetch_page(seeded, t, q(t, is_active="any"), KEY)
    assert len(page.rows) == 3


async def test_date_presets_use_the_injected_clock(seeded, bound):
    b = bound["bookings"]
    for preset, (lo, hi) in {
        "today": ("2024-06-15", "2024-06-16"),
        "past_7_days": ("2024-06-09", "2024-06-16"),
        "this_month": ("2024-06-01", "2024-07-01"),
    }.items():
        page = await fetch_page(seeded, b, q(b, scheduled_at=preset, per_page="500"), KEY)
        cur = await seeded.execute(
            "SELECT id FROM bookings WHERE scheduled_at >= %s::date AND scheduled_at < %s::date",
            (lo, hi),
        )
        assert {r[0] for r in page.rows} == {r[0] for r in await cur.fetchall()}, preset


@pytest.mark.parametrize(
    "params",
    [
        {"nope": "1"},
        {"status": "maybe"},
        {"status": "x" * 10_000},
        {"amount__gte": "lots"},
        {"amount__gte": "1e999999"},
        {"amount__gte": "NaN"},
        {"customer_id": "99999999999"},
        {"customer_id": "1 OR 1=1"},
        {"scheduled_at__gte": "2024-13-45"},
        {"scheduled_at": "yesterday'; DROP TABLE bookings; --"},
        {"status__gte": "a"},
        {"notes": "x"},
        {"q": "a" * 201},
        {"q": "tab\x00null"},
        {"q": "one two three four five six seven eight nine"},
        {"per_page": "0"},
        {"per_page": "501"},
        {"per_page": "ten"},
        {"format": "xml"},
        {"cursor": "abc", "last": "1"},
    ],
)
def test_bad_parameters_answer_400_with_a_message(bound, params):
    with pytest.raises(Invalid) as exc:
        parse_query(bound["bookings"], MultiDict(params), now=NOW)
    assert exc.value.http_status == 400 and exc.value.problem
    assert "DROP" not in exc.value.problem


async def test_search_matches_every_word_across_own_and_related_fields(seeded, bound):
    b = bound["bookings"]
    page = await fetch_page(seeded, b, q(b, q="late window", per_page="500"), KEY)
    assert {r[0] for r in page.rows} == {i for i in range(10, 301, 10)}
    page = await fetch_page(seeded, b, q(b, q="person8@example.org", per_page="500"), KEY)
    expected = await (
        await seeded.execute("SELECT id FROM bookings WHERE customer_id = 8")
    ).fetchall()
    assert {r[0] for r in page.rows} == {r[0] for r in expected}
    # LIKE wildcards are literal characters, not patterns.
    assert (await fetch_page(seeded, b, q(b, q="%"), KEY)).rows == []
    assert (await fetch_page(seeded, b, q(b, q="_"), KEY)).rows == []


async def test_full_text_search_uses_the_declared_tsvector(seeded, bound):
    p = bound["properties"]
    page = await fetch_page(seeded, p, q(p, q="quay"), KEY)
    assert [r[0] for r in page.rows] == [1]


async def test_totals_exact_when_small_capped_when_filtered_estimated_when_big(seeded, bound):
    b = bound["bookings"]
    total = await count_rows(seeded, b, q(b))
    assert (total.value, total.estimate, total.text()) == (300, False, "300")
    assert (await count_rows(seeded, b, q(b, status="cancelled"))).value == 60
    await seeded.execute(
        "INSERT INTO bookings (customer_id, status, amount, scheduled_at, created_at)"
        " SELECT 1, 'pending', 1, now(), now() FROM generate_series(1, 10050)"
    )
    await seeded.execute("ANALYZE bookings")
    capped = await count_rows(seeded, b, q(b, status="pending"))
    assert (capped.value, capped.capped, capped.text()) == (COUNT_CAP, True, "10,000+")
    estimate = await count_rows(seeded, b, q(b))
    assert estimate.estimate and estimate.text().startswith("≈ ")


async def test_a_first_page_that_is_not_full_is_its_own_exact_total(seeded, bound):
    """LIST-4 without a second search: the rows of a short first page are all the rows."""
    b = bound["bookings"]
    lq = q(b, q="late arrival")
    page = await fetch_page(seeded, b, lq, KEY)
    assert 0 < len(page.rows) < lq.per_page
    await seeded.execute("DROP TABLE bookings CASCADE")  # counting would fail now
    total = await count_rows(seeded, b, lq, page)
    assert (total.value, total.estimate, total.capped) == (len(page.rows), False, False)


async def test_a_full_or_later_page_is_counted(seeded, bound):
    b = bound["bookings"]
    full = q(b, status="cancelled")  # 60 rows: the first page is full
    page = await fetch_page(seeded, b, full, KEY)
    assert (await count_rows(seeded, b, full, page)).value == 60
    later = q(b, status="cancelled", cursor=page.next_cursor)
    rest = await fetch_page(seeded, b, later, KEY)
    assert len(rest.rows) == 10 and (await count_rows(seeded, b, later, rest)).value == 60


async def test_foreign_key_names_come_in_one_batch(seeded, bound):
    b = bound["bookings"]
    page = await fetch_page(seeded, b, q(b), KEY)
    await fk_labels(seeded, b, page, {"public.customers": "name"})
    labels = page.labels["customer_id"]
    assert labels and all(v == f"Customer {k}" for k, v in labels.items())


async def test_the_page_query_names_foreign_keys_itself(seeded, bound):
    """With the display map, the FK names come with the page (no second round trip) and agree
    with the separate lookup; the rows keep only the list's columns (cursors read them)."""
    b = bound["bookings"]
    display = {"public.customers": "name"}
    page = await fetch_page(seeded, b, q(b), KEY, display)
    assert all(len(row) == len(page.columns) for row in page.rows)
    separate = await fetch_page(seeded, b, q(b), KEY)
    await fk_labels(seeded, b, separate, display)
    assert page.labels == separate.labels and page.labels["customer_id"]
    following = await fetch_page(seeded, b, q(b, cursor=page.next_cursor), KEY, display)
    assert following.rows and following.rows[0] != page.rows[-1]
    assert set(following.labels["customer_id"]) == {r[1] for r in following.rows}
