"""Demo data for the service desk: deterministic, realistic, idempotent (OPS-8, CLI-2)."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import TextIO

import psycopg
from psycopg import sql

Progress = Callable[[str, int, int], None]
TABLES = ("technicians", "properties", "customers", "bookings")
# customers, bookings, technicians, properties
SIZES = {"small": (1_000, 3_000, 30, 300), "large": (100_000, 1_000_000, 60, 2_000)}
CHUNK = 100_000
SEED = 20240501

# The benchmark's integer mixer (the benchmark's seed.sql): every value is a pure function of
# the row number, so `large` reproduces seed.sql row for row and chunking changes nothing.
MIX = """
CREATE OR REPLACE FUNCTION pg_temp.bench_mix(x bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ((((((((x % 4294967296) # ((x % 4294967296) >> 16)) * 569420461) % 4294967296) # (((((x % 4294967296) # ((x % 4294967296) >> 16)) * 569420461) % 4294967296) >> 15)) * 1935289751) % 4294967296) # ((((((((x % 4294967296) # ((x % 4294967296) >> 16)) * 569420461) % 4294967296) # (((((x % 4294967296) # ((x % 4294967296) >> 16)) * 569420461) % 4294967296) >> 15)) * 1935289751) % 4294967296) >> 16))
$$
"""

CUSTOMERS = """
INSERT INTO customers (id, name, email, city, created_at)
SELECT i, fn || ' ' || ln, lower(fn) || '.' || lower(ln) || '.' || i || '@' || dom, city,
       %(base)s::timestamptz + make_interval(secs => h3 %% (4 * 365 * 86400))
FROM (
  SELECT i,
    (ARRAY['James','Mary','John','Patricia','Robert','Jennifer','Michael','Linda',
           'William','Elizabeth','David','Barbara','Richard','Susan','Joseph','Jessica',
           'Thomas','Sarah','Charles','Karen','Ana','Lucas','Sofia','Mateo','Emma',
           'Noah','Olivia','Liam','Ava','Yuki','Hiro','Priya','Arjun','Fatima','Omar',
           'Chen','Wei','Ingrid','Lars','Zoe'])[1 + h1 %% 40] AS fn,
    (ARRAY['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis',
           'Rodriguez','Martinez','Hernandez','Lopez','Gonzalez','Wilson','Anderson',
           'Thomas','Taylor','Moore','Jackson','Martin','Lee','Perez','Thompson','White',
           'Harris','Sanchez','Clark','Ramirez','Lewis','Robinson','Walker','Young',
           'Allen','King','Wright','Scott','Torres','Nguyen','Hill','Flores','Green',
           'Adams','Nelson','Baker','Hall','Rivera','Campbell','Mitchell','Carter',
           'Roberts'])[1 + h2 %% 50] AS ln,
    (ARRAY['example.com','example.org','example.net','mail.test','corp.test'])[1 + h4 %% 5] AS dom,
    (ARRAY['London','Paris','Berlin','Madrid','Rome','Lisbon','Dublin','Amsterdam',
           'Brussels','Vienna','Prague','Warsaw','Stockholm','Oslo','Copenhagen',
           'Helsinki','Athens','Budapest','Zurich','Munich','Lyon','Porto','Milan',
           'Barcelona','Hamburg','Krakow','Seville','Valencia','Antwerp','Geneva'])[1 + h5 %% 30] AS city,
    h3
  FROM (
    SELECT i, pg_temp.bench_mix(i * 8 + 1) AS h1, pg_temp.bench_mix(i * 8 + 2) AS h2,
           pg_temp.bench_mix(i * 8 + 3) AS h3, pg_temp.bench_mix(i * 8 + 4) AS h4,
           pg_temp.bench_mix(i * 8 + 5) AS h5
    FROM generate_series(%(lo)s::int, %(hi)s::int) AS i
  ) s
) t
ORDER BY i
"""

BOOKINGS = """
INSERT INTO bookings (id, customer_id, status, amount, scheduled_at, notes, created_at)
SELECT i, 1 + h1 %% %(customers)s,
  CASE WHEN h2 %% 100 < 15 THEN 'pending' WHEN h2 %% 100 < 35 THEN 'confirmed'
       WHEN h2 %% 100 < 85 THEN 'completed' WHEN h2 %% 100 < 95 THEN 'cancelled'
       ELSE 'no_show' END,
  round((5 + (h3 %% 99500) / 100.0)::numeric, 2),
  sched,
  CASE WHEN h4 %% 10 < 3 THEN ''
       ELSE w[1 + (h4 >> 4) %% 48] || ' ' || w[1 + (h4 >> 10) %% 48] || ' ' ||
            w[1 + (h4 >> 16) %% 48] || ' ' || w[1 + (h5 >> 4) %% 48] ||
            CASE WHEN h5 %% 2 = 0 THEN ' ' || w[1 + (h5 >> 10) %% 48] || ' ' || w[1 + (h5 >> 16) %% 48]
                 ELSE '' END
  END,
  sched - make_interval(secs => h6 %% (90 * 86400))
FROM (
  SELECT i, pg_temp.bench_mix(i * 8 + 1) AS h1, pg_temp.bench_mix(i * 8 + 2) AS h2,
         pg_temp.bench_mix(i * 8 + 3) AS h3, pg_temp.bench_mix(i * 8 + 4) AS h4,
         pg_temp.bench_mix(i * 8 + 5) AS h5, pg_temp.bench_mix(i * 8 + 6) AS h6,
         %(base)s::timestamptz
           + make_interval(secs => pg_temp.bench_mix(i * 8 + 7) %% (3 * 365 * 86400)) AS sched,
         ARRAY['customer','requested','late','arrival','window','seat','upgrade','refund',
               'deposit','paid','invoice','sent','called','twice','no','answer','vip',
               'allergy','note','parking','access','wheelchair','group','booking','split',
               'payment','card','declined','retry','confirmed','by','email','phone','sms',
               'reschedule','from','last','week','weather','delay','driver','assigned',
               'pickup','dropoff','airport','hotel','gift','voucher'] AS w
  FROM generate_series(%(lo)s::int, %(hi)s::int) AS i
) s
ORDER BY i
"""

FIRST = ["Amara", "Bjorn", "Carmen", "Dmitri", "Elif", "Femi", "Greta", "Hamza", "Ines", "Jonas",
         "Keiko", "Luca", "Maya", "Nils", "Oona", "Pavel", "Quinn", "Rosa", "Sami", "Tariq"]  # fmt: skip
LAST = ["Okafor", "Lindqvist", "Ruiz", "Petrov", "Yilmaz", "Adeyemi", "Bauer", "Haddad",
        "Moreau", "Novak", "Tanaka", "Rossi", "Patel", "Berg", "Virtanen", "Kowalski"]  # fmt: skip
SKILLS = (("trainee", 10), ("junior", 40), ("senior", 35), ("lead", 15))
KINDS = (("apartment", 40), ("house", 25), ("office", 20), ("shop", 10), ("warehouse", 5))
STREETS = ["Harbour Road", "Mill Lane", "Station Street", "Church Walk", "Kings Avenue",
           "Orchard Close", "Canal Side", "Market Square", "Elm Grove", "Bridge Street"]  # fmt: skip
PLACES = ["Harbour View", "Millbrook", "Riverside", "Oakfield", "Northgate", "Willow Court",
          "Beacon", "Lakeside", "Foundry", "Granary"]  # fmt: skip
SUFFIX = {"apartment": "Apartments", "house": "House", "office": "Offices", "shop": "Store",
          "warehouse": "Depot"}  # fmt: skip
ACCESS = ["Key safe by the side door, code from dispatch.", "Ask reception for the plant room key.",
          "Gate opens 07:00–19:00 only.", "Dog on site: call ahead.", "Parking behind the building.",
          ""]  # fmt: skip
CERTS = ["gas safe", "electrical", "f-gas", "working at height", "first aid", "asbestos awareness"]
LANGS = ["en", "de", "fr", "es", "pl", "tr", "ar", "ja"]


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]


def technician_rows(count: int, anchor: datetime, rng: random.Random) -> list[tuple[object, ...]]:
    """Leads first, so everyone else can report to one of them (the self-reference)."""
    leads = max(1, count // 8)
    rows: list[tuple[object, ...]] = []
    for i in range(1, count + 1):
        first, last = FIRST[rng.randrange(len(FIRST))], LAST[rng.randrange(len(LAST))]
        skill = "lead" if i <= leads else _pick(rng, SKILLS[:3])
        hired = (anchor - timedelta(days=rng.randrange(30, 3650))).date()
        profile = {
            "languages": sorted(rng.sample(LANGS, rng.randint(1, 3))),
            "certifications": sorted(rng.sample(CERTS, rng.randint(0, 3))),
            "van": f"VAN-{rng.randint(100, 999)}",
        }
        rows.append(
            (
                i,
                f"{first} {last}",
                f"{first.lower()}.{last.lower()}.{i}@servicedesk.test",
                f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"
                if rng.random() < 0.85
                else None,
                skill,
                Decimal(rng.randint(1800, 6500)) / 100,
                rng.random() < 0.9,
                hired,
                time(rng.choice((6, 7, 8, 9, 14, 22)), rng.choice((0, 30)))
                if rng.random() < 0.8
                else None,
                None if i <= leads else rng.randint(1, leads),
                json.dumps(profile),
                f"{skill.capitalize()} technician since {hired.year}.",
                datetime.combine(hired, time(9), UTC),
                datetime.combine(hired, time(9), UTC),
            )
        )
    return rows


def property_rows(
    count: int, technicians: int, anchor: datetime, rng: random.Random
) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for i in range(1, count + 1):
        kind = _pick(rng, KINDS)
        name = f"{rng.choice(PLACES)} {SUFFIX[kind]} {i}"
        units = rng.randint(2, 120) if kind in ("apartment", "office") else 1
        inspected = (
            anchor.date() - timedelta(days=rng.randrange(1, 720)) if rng.random() < 0.8 else None
        )
        created = anchor - timedelta(days=rng.randrange(0, 400), minutes=rng.randrange(1440))
        details = {
            "floors": rng.randint(1, 12),
            "heating": rng.choice(["gas", "heat pump", "district"]),
        }
        rows.append(
            (
                i,
                name,
                f"{rng.randint(1, 240)} {rng.choice(STREETS)}, {rng.choice(['London', 'Leeds', 'Bristol', 'York'])}",
                kind,
                rng.randint(1, technicians) if rng.random() < 0.9 else None,
                Decimal(rng.randint(300, 250_000)) / 10,
                units,
                rng.random() < 0.4,
                inspected,
                rng.choice(ACCESS),
                json.dumps(details) if rng.random() < 0.7 else None,
                created,
                created,
            )
        )
    return rows


async def _has_rows(conn: psycopg.AsyncConnection) -> bool:
    for table in TABLES:
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
        cur = await conn.execute(query)
        row = await cur.fetchone()
        if row and row[0]:
            return True
    return False


_SECONDARY_INDEXES = """
SELECT n.nspname, ic.relname, pg_get_indexdef(i.indexrelid)
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = ic.relnamespace
 WHERE t.oid IN ('customers'::regclass, 'bookings'::regclass)
   AND NOT i.indisprimary
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
 ORDER BY 2
"""


async def _drop_secondary_indexes(conn: psycopg.AsyncConnection) -> list[str]:
    """Like seed.sql, build indexes after the bulk load: 1M rows into trigram GIN indexes row
    by row is several times slower. Returns the definitions to re-create, from the catalog."""
    cur = await conn.execute(_SECONDARY_INDEXES)
    found = await cur.fetchall()
    for schema, name, _definition in found:
        await conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))
    return [definition for _s, _n, definition in found]


_BOOKINGS_CONSTRAINTS = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'bookings'::regclass AND contype IN ('f', 'c') ORDER BY conname
"""


async def _drop_bookings_constraints(conn: psycopg.AsyncConnection) -> list[sql.Composed]:
    """seed.sql adds the FK and CHECK after loading: one validating scan instead of a trigger
    per row. Same transaction, so no other session sees the table without them."""
    cur = await conn.execute(_BOOKINGS_CONSTRAINTS)
    found = await cur.fetchall()
    restore: list[sql.Composed] = []
    for name, definition in found:
        await conn.execute(
            sql.SQL("ALTER TABLE bookings DROP CONSTRAINT {}").format(sql.Identifier(name))
        )
        # The definition text comes from the catalog (pg_get_constraintdef), never a user.
        restore.append(
            sql.SQL("ALTER TABLE bookings ADD CONSTRAINT {} {}").format(
                sql.Identifier(name), sql.SQL(definition)
            )
        )
    return restore


async def _generate(
    conn: psycopg.AsyncConnection,
    query: str,
    *,
    label: str,
    total: int,
    params: dict[str, object],
    progress: Progress,
) -> None:
    done = 0
    while done < total:
        hi = min(done + CHUNK, total)
        await conn.execute(query, {**params, "lo": done + 1, "hi": hi})
        done = hi
        progress(label, done, total)


async def seed_demo(
    conn: psycopg.AsyncConnection,
    *,
    size: str = "small",
    progress: Progress | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Fill the four site tables; skips (all zeros) when any of them already has rows.

    `large` loads the benchmark's shape: 100,000 customers and 1,000,000 bookings with
    exactly seed.sql's values. `small` uses the same generator on a few thousand rows dated
    around `now`, so the dashboard's "this week" has something to show."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}")
    report = progress or (lambda _label, _done, _total: None)
    if await _has_rows(conn):
        return dict.fromkeys(TABLES, 0)
    n_customers, n_bookings, n_techs, n_props = SIZES[size]
    anchor = (now or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    if size == "large":
        customer_base = datetime(2019, 1, 1, tzinfo=UTC)
        booking_base = datetime(2022, 1, 1, tzinfo=UTC)
    else:
        customer_base = anchor - timedelta(days=4 * 365)
        booking_base = anchor - timedelta(days=2 * 365 + 180)
    rng = random.Random(SEED)
    techs = technician_rows(n_techs, anchor, rng)
    props = property_rows(n_props, n_techs, anchor, rng)
    async with conn.transaction():
        await conn.execute(MIX)
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO technicians (id, name, email, phone, skill_level, hourly_rate,"
                " is_active, hired_on, shift_start, supervisor_id, profile, bio, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)",
                techs,
            )
            report("technicians", n_techs, n_techs)
            await cur.executemany(
                "INSERT INTO properties (id, name, address, kind, technician_id, floor_area_m2,"
                " units, has_parking, last_inspected, access_notes, details, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::json, %s, %s)",
                props,
            )
            report("properties", n_props, n_props)
        # About two skills each, the same on every run (the skills come with the migration).
        await conn.execute(
            "INSERT INTO technician_skills (technician_id, skill_id)"
            " SELECT t.id, s.id FROM technicians t CROSS JOIN skills s"
            " WHERE (t.id * 7 + s.id * 3) % 4 = 0 ON CONFLICT DO NOTHING"
        )
        indexes = await _drop_secondary_indexes(conn) if size == "large" else []
        constraints = await _drop_bookings_constraints(conn) if size == "large" else []
        await _generate(
            conn,
            CUSTOMERS,
            label="customers",
            total=n_customers,
            params={"base": customer_base},
            progress=report,
        )
        await _generate(
            conn,
            BOOKINGS,
            label="bookings",
            total=n_bookings,
            params={"base": booking_base, "customers": n_customers},
            progress=report,
        )
        for statement in constraints:
            await conn.execute(statement)
        for number, definition in enumerate(indexes, 1):
            await conn.execute(sql.SQL(definition))  # the catalog wrote it: pg_get_indexdef
            report("indexes", number, len(indexes))
        for table in TABLES:
            # Identity columns continue after the explicit ids.
            await conn.execute(
                sql.SQL(
                    "SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))"
                ).format(sql.Literal(table), sql.Identifier(table))
            )
    for table in TABLES:
        await conn.execute(
            sql.SQL("ANALYZE {}").format(sql.Identifier(table))
        )  # planner estimates for list counts (LIST-4)
    return {
        "technicians": n_techs,
        "properties": n_props,
        "customers": n_customers,
        "bookings": n_bookings,
    }


def console_progress(stream: TextIO | None = None) -> Progress:
    """A bar redrawn in place on a terminal; one plain line per step otherwise (CLI-2)."""
    out = stream or sys.stdout
    tty = out.isatty()

    def show(label: str, done: int, total: int) -> None:
        if tty:
            width = 30
            filled = width * done // max(total, 1)
            bar = "█" * filled + "·" * (width - filled)
            end = "\n" if done >= total else ""
            out.write(f"\r  {label:<12} {bar} {done:>9,}/{total:,}{end}")
        else:
            unit = "" if label == "indexes" else " rows"
            out.write(f"{label}: {done:,}/{total:,}{unit}\n")
        out.flush()

    return show
