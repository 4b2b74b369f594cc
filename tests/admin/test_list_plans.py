"""Every list query of the benchmark scenarios S1–S4 seeks an index and touches few rows (LIST-3..6).

200,000 bookings are enough for the planner to prefer indexes the way it does on the 1 M-row
benchmark data; EXPLAIN ANALYZE shows the plan actually run, with the parameters bound."""

from __future__ import annotations

import json
from typing import Any

from multidict import MultiDict

from app.admin.listing import (
    _exact_capped_query,
    count_rows,
    cursor_key,
    page_query,
    parse_query,
    where_clause,
)

KEY = cursor_key("plans")
BIG = """
DROP INDEX bookings_notes_trgm_idx;
INSERT INTO customers (id, name, email, city, created_at)
SELECT i, 'Customer ' || i, 'person' || i || '@example.org', 'Lyon', now() - make_interval(days => i % 900)
FROM generate_series(1, 20000) AS i;
INSERT INTO bookings (id, customer_id, status, amount, scheduled_at, notes, created_at)
SELECT i, 1 + (i * 7919) % 20000,
       (ARRAY['pending','confirmed','completed','completed','cancelled'])[1 + (i * 31) % 5],
       (i * 13) % 1000 + 0.25,
       timestamptz '2022-01-01 00:00+00' + make_interval(secs => (i * 7727) % 94000000),
       CASE WHEN i % 3 = 0 THEN '' ELSE (ARRAY['late','window','seat','refund','vip','gift'])[1 + i % 6]
            || ' ' || (ARRAY['airport','hotel','pickup','card','email'])[1 + i % 5] END,
       now() - make_interval(secs => i)
FROM generate_series(1, 200000) AS i;
CREATE INDEX bookings_notes_trgm_idx ON bookings USING gin (notes gin_trgm_ops);
"""


def _nodes(plan: dict[str, Any]):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _explain(conn, query, params) -> list[dict[str, Any]]:
    cur = await conn.execute(
        b"EXPLAIN (ANALYZE, FORMAT JSON) " + query.as_bytes(conn), params, prepare=False
    )
    raw = (await cur.fetchone())[0]
    plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
    return list(_nodes(plan))


def _touched(nodes) -> int:
    """Rows read by scans: returned plus thrown away by filters, over all loops."""
    total = 0
    for n in nodes:
        if "Scan" in n["Node Type"]:
            loops = n.get("Actual Loops", 1)
            total += (n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)) * loops
    return total


async def test_s1_to_s4_list_queries_seek_indexes_and_read_few_rows(conn, bound):
    await conn.execute(BIG)
    await conn.execute("VACUUM ANALYZE customers")
    await conn.execute("VACUUM ANALYZE bookings")
    b = bound["bookings"]
    row = await (
        await conn.execute(
            "SELECT scheduled_at, id FROM bookings ORDER BY scheduled_at DESC, id DESC OFFSET 99999 LIMIT 1"
        )
    ).fetchone()
    from app.admin.listing import encode_cursor

    deep = encode_cursor(KEY, b, parse_query(b, {}), "n", {"scheduled_at": row[0], "id": row[1]})
    scenarios = {
        "S1": {},
        "S2": {"cursor": deep},
        "S3": {"q": "person4242@example.org"},
        "S4": {"status": "cancelled"},
        "S4-prev": {"status": "cancelled", "last": "1"},
    }
    for name, params in scenarios.items():
        lq = parse_query(b, MultiDict(params))
        pq = page_query(b, lq, KEY)
        nodes = await _explain(conn, pq.query, pq.params)
        scans = {n["Node Type"] for n in nodes}
        seq = [
            n
            for n in nodes
            if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "bookings"
        ]
        assert not seq, f"{name}: sequential scan of bookings: {scans}"
        assert _touched(nodes) < 5_000, f"{name}: touched {_touched(nodes)} rows: {scans}"
        if lq.words:  # the capped exact count of a search (LIST-4) is bounded too
            where, params2 = where_clause(b, lq)
            nodes = await _explain(conn, _exact_capped_query(b, where), params2)
            assert _touched(nodes) <= 25_000, f"{name} count: {_touched(nodes)}"
            assert not [
                n
                for n in nodes
                if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "bookings"
            ]
    # S4's total: 40,000 cancelled bookings are known from statistics to be "10,000+".
    total = await count_rows(conn, b, parse_query(b, {"status": "cancelled"}))
    assert total.text() == "10,000+"
    assert (
        await count_rows(conn, b, parse_query(b, {"q": "person4242@example.org"}))
    ).text() == "10"
