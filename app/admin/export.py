"""Export the current filtered list as CSV or JSON lines, streamed from a server-side cursor (LIST-9)."""

from __future__ import annotations

import csv
import io
import json
from contextlib import aclosing
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from aiohttp import web
from psycopg import sql

from app import audit_events
from app.admin import listing, writes
from app.admin.csvsafe import neutralise
from app.admin.list_params import ListQuery, parse_query
from app.admin.listing import order_by, where_clause
from app.admin.resources import BoundResource
from app.admin.setup import get_resource
from app.web import keys
from app.web.auth import audit_context, require
from app.web.compression import stream_compression

ROW_CAP = 100_000
BATCH = 2_000
SKIPPED_TYPES = ("tsvector", "bytea")


def csv_cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula gets a leading apostrophe (LIST-9)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).isoformat()
    if isinstance(value, date | time | Decimal | int | float):
        return str(value)
    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return neutralise(text)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return (
        value
        if value is None or isinstance(value, bool | int | float | str | dict | list)
        else str(value)
    )


def export_columns(b: BoundResource) -> list[str]:
    """All fields (LIST-9), except derived search vectors and binary data."""
    return [c.name for c in b.table.columns if c.type_name not in SKIPPED_TYPES]


def export_query(
    b: BoundResource, lq: ListQuery, columns: list[str]
) -> tuple[sql.Composed, list[Any]]:
    where, params = where_clause(b, lq)
    query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {}").format(
        sql.SQL(", ").join(
            # Opaque types go out as PostgreSQL's text form (app/admin/types.py).
            sql.SQL("{}::text").format(sql.Identifier(b.table.name, c))
            if c in b.opaque_names
            else sql.Identifier(b.table.name, c)
            for c in columns
        ),
        sql.Identifier(b.table.schema, b.table.name),
        where,
        order_by(b, lq.ordering),
        sql.Literal(ROW_CAP),
    )
    return query, params


def _encoder(fmt: str, columns: list[str]) -> tuple[Any, str]:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)

        def encode(rows: list[tuple[Any, ...]]) -> bytes:
            buffer.seek(0)
            buffer.truncate()
            writer.writerows([csv_cell(v) for v in row] for row in rows)
            return buffer.getvalue().encode()

        buffer_header = io.StringIO()
        csv.writer(buffer_header).writerow(columns)
        return encode, buffer_header.getvalue()

    def encode_jsonl(rows: list[tuple[Any, ...]]) -> bytes:
        lines = (
            json.dumps(
                {c: _json_value(v) for c, v in zip(columns, row, strict=True)}, ensure_ascii=False
            )
            for row in rows
        )
        return ("\n".join(lines) + "\n").encode() if rows else b""

    return encode_jsonl, ""


async def _export(request: web.Request, fmt: str) -> web.StreamResponse:
    b = get_resource(request)
    await require(request, perm=b.permission("view"))
    query_args = {k: v for k, v in request.query.items() if k not in ("cursor", "last")}
    lq = parse_query(b, query_args)
    columns = export_columns(b)
    query, params = export_query(b, lq, columns)
    encode, header = _encoder(fmt, columns)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson",
            "Content-Disposition": f'attachment; filename="{b.slug}-{stamp}.{fmt}"',
        }
    )
    stream_compression(request, response)
    sent, complete = 0, False
    async with request.app[keys.POOL].connection() as conn:
        try:
            async with aclosing(listing.stream_rows(conn, query, params, BATCH)) as batches:
                first = await anext(batches, None)  # the query runs before any byte is sent
                await response.prepare(request)
                if header:
                    await response.write(header.encode())
                rows = first
                while rows is not None:
                    sent += len(rows)  # handed to the connection, whether or not it arrives
                    await response.write(encode(rows))
                    rows = await anext(batches, None)
            complete = True
        finally:
            # Its own transaction: a client that hangs up mid-download rolls back the cursor's,
            # and the rows that already left must still be on record (AUDIT-1).
            if sent or complete:
                event = audit_events.export_downloaded(
                    b.slug, "csv" if fmt == "csv" else "jsonl", sent, dict(lq.state),
                    complete=complete,
                )  # fmt: skip
                await writes.record_export(conn, audit_context(request), event)
    await response.write_eof()
    return response


async def export_csv(request: web.Request) -> web.StreamResponse:
    return await _export(request, "csv")


async def export_jsonl(request: web.Request) -> web.StreamResponse:
    return await _export(request, "jsonl")
