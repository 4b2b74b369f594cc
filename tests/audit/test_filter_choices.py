"""The audit page offers as filters only the event types some feature writes."""

from __future__ import annotations

import re
from pathlib import Path

from app import audit_events as events

APP = Path(__file__).resolve().parents[2] / "app"


def _constructor_of(event_type: events.EventType) -> set[str]:
    source = (APP / "audit_events.py").read_text()
    found = set()
    for m in re.finditer(r"^def (\w+)\(.*?(?=^def |\Z)", source, re.S | re.M):
        if f"EventType.{event_type.name}" in m.group(0):
            found.add(m.group(1))
    return found


def _called_somewhere(names: set[str]) -> bool:
    for path in APP.rglob("*.py"):
        if path.name == "audit_events.py":
            continue
        text = path.read_text()
        if any(re.search(rf"\b{name}\(", text) for name in names):
            return True
    return False


def test_every_filter_choice_is_written_by_some_feature() -> None:
    for event_type in events.FILTERABLE:
        assert _called_somewhere(_constructor_of(event_type)), event_type


def test_types_nothing_writes_are_not_offered() -> None:
    for event_type in events.NOT_EMITTED:
        assert not _called_somewhere(_constructor_of(event_type)), (
            f"{event_type} is written now: offer it as a filter"
        )
