"""Project memory: immutable entries under `.keel/memory/`, a hash chain, MEMORY.md, verify."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.errors import KeelError, NotFound, UsageError
from app.governance import KINDS, REDACTION_CLASSES, log, proposals
from app.governance.proposals import Approver, Proposal
from app.governance.secrets_scan import ensure_clean

MEMORY_DIR = Path(".keel") / "memory"
ENTRIES_DIR = MEMORY_DIR / "entries"
CHAIN_FILE = MEMORY_DIR / "chain.jsonl"
RENDER_FILE = Path("MEMORY.md")
HEADINGS = {
    "decision": "Decisions", "rejected": "Rejected options", "assumption": "Assumptions",
    "intent": "Intents", "onboarding": "Onboarding", "history": "History",
    "open-tension": "Tensions in detail",
}  # fmt: skip
FIELDS = (
    "id", "kind", "title", "subjects", "sources", "author", "ratified_by", "date",
    "correlation_id", "foundational", "supersedes",
)  # fmt: skip
_ENTRY_ID = re.compile(r"^[0-9]{4}-[a-z0-9-]{1,60}$")
GENESIS = "0" * 64


@dataclass
class Entry:
    id: str
    kind: str
    title: str
    subjects: list[str]
    sources: list[str]
    author: str
    ratified_by: list[str]
    date: str
    correlation_id: str
    foundational: bool
    supersedes: list[str]
    body: str
    front: str = ""  # the front matter exactly as written
    superseded_by: list[str] = field(default_factory=list)  # derived, never stored

    def meta(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}


# ---- the entry file ----------------------------------------------------------------------


def format_entry(meta: dict[str, Any], body: str) -> str:
    front = "".join(f"{name}: {json.dumps(meta[name], ensure_ascii=False)}\n" for name in FIELDS)
    return f"---\n{front}---\n\n{body.rstrip()}\n"


def parse_entry(text: str, where: str) -> Entry:
    def bad(what: str) -> KeelError:
        return KeelError(
            f"memory entry {where} is malformed: {what}",
            why="entries are written by `keel memory` and never edited by hand",
            fix="restore the file from version control",
        )

    if not text.startswith("---\n") or "\n---\n" not in text[3:]:
        raise bad("no front matter between --- lines")
    front, _, rest = text[4:].partition("\n---\n")
    meta: dict[str, Any] = {}
    for line in front.splitlines():
        key, sep, value = line.partition(": ")
        if not sep or key not in FIELDS:
            raise bad(f"unexpected front matter line {line[:60]!r}")
        try:
            meta[key] = json.loads(value)
        except ValueError:
            raise bad(f"{key} is not a JSON value") from None
    if set(meta) != set(FIELDS):
        raise bad("missing " + ", ".join(sorted(set(FIELDS) - set(meta))))
    return Entry(**meta, body=rest.removeprefix("\n").rstrip("\n"), front=front + "\n")


def entry_path(entry_id: str) -> Path:
    return ENTRIES_DIR / f"{entry_id}.md"


def load_entries(root: Path) -> dict[str, Entry]:
    """Every entry by id, with `superseded_by` derived from the others' `supersedes`."""
    folder = root / ENTRIES_DIR
    entries: dict[str, Entry] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.md")):
            entry = parse_entry(path.read_text(encoding="utf-8"), path.name)
            if entry.id != path.stem:
                raise KeelError(
                    f"memory entry {path.name} says its id is {entry.id!r}",
                    why="an entry's id is its file name",
                    fix="restore the file from version control",
                )
            entries[entry.id] = entry
    for entry in entries.values():
        for old in entry.supersedes:
            if old in entries:
                entries[old].superseded_by.append(entry.id)
    return entries


def get(root: Path, entry_id: str) -> Entry:
    entries = load_entries(root)
    if entry_id not in entries:
        raise NotFound(f"no memory entry {entry_id[:70]!r}", fix="see `keel memory show`")
    return entries[entry_id]


def forks(entries: dict[str, Entry]) -> dict[str, list[str]]:
    """Entries superseded by more than one other: the team has two answers, an open tension."""
    return {e.id: sorted(e.superseded_by) for e in entries.values() if len(e.superseded_by) > 1}


# ---- proposing ---------------------------------------------------------------------------


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(
            f"unknown memory kind {kind[:40]!r}", fix="use one of: " + ", ".join(KINDS)
        )
    return kind


def remember(
    root: Path,
    *,
    kind: str,
    title: str,
    body: str,
    subjects: list[str],
    sources: list[str],
    author: str,
    foundational: bool,
    supersedes: list[str] | None = None,
) -> Proposal:
    _check_kind(kind)
    if not body.strip():
        raise UsageError("a memory entry needs a body", fix="give --body TEXT or --body-file FILE")
    entries = load_entries(root)
    for old in supersedes or []:
        if old not in entries:
            raise NotFound(
                f"no memory entry {old[:70]!r} to supersede", fix="see `keel memory show`"
            )
    draft = {
        "kind": kind, "title": title.strip(), "subjects": sorted(set(subjects)),
        "sources": list(dict.fromkeys(sources)), "author": author,
        "foundational": foundational, "supersedes": sorted(set(supersedes or [])),
        "body": body.rstrip(),
    }  # fmt: skip
    ensure_clean(format_entry({**_placeholders(), **draft}, body), "the memory entry")
    capability = "supersede_memory" if supersedes else "write_memory"
    return proposals.propose(
        root, capability, title, [], author=author,
        memory={"action": "supersede" if supersedes else "remember", "entry": draft},
    )  # fmt: skip


def _placeholders() -> dict[str, Any]:
    return {"id": "", "ratified_by": [], "date": "", "correlation_id": ""}


def redact(
    root: Path, entry_id: str, *, klass: str, lines: list[int], reason: str, author: str
) -> Proposal:
    if klass not in REDACTION_CLASSES:
        raise UsageError(
            f"unknown redaction class {klass[:40]!r}",
            fix="use one of: " + ", ".join(REDACTION_CLASSES),
        )
    if not reason.strip():
        raise UsageError("a redaction needs a reason", fix='add --reason "why it must go"')
    ensure_clean(reason, "the reason")
    body_lines = get(root, entry_id).body.splitlines()
    if not lines or any(n < 1 or n > len(body_lines) for n in lines):
        raise UsageError(
            f"give body line numbers between 1 and {len(body_lines)}",
            why="a redaction replaces whole lines of the entry's body",
            fix=f"see the numbered lines with `keel memory show {entry_id}`",
        )
    payload = {"action": "redact", "entry": entry_id, "class": klass,
               "lines": sorted(set(lines)), "reason": reason.strip()}  # fmt: skip
    return proposals.propose(
        root, "redact_memory", f"Redact {klass} in {entry_id}", [], author=author, memory=payload
    )


# ---- applying ----------------------------------------------------------------------------


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48].strip("-") or "entry"


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def apply(root: Path, proposal_id: str, by: Approver) -> tuple[Proposal, str]:
    """Write what an approved memory proposal holds; returns it and the entry id."""
    with proposals.locked(root):
        proposal = proposals.load(root, proposal_id)
        if proposal.memory is None:
            raise UsageError(
                f"proposal {proposal.id} is not a memory entry",
                fix=f"run `keel ai apply {proposal.id}`",
            )
        proposals.ensure_applicable(proposal)
        problems = [p for p in verify(root, check_render=False)]
        if problems:
            raise KeelError(
                "the project memory is damaged; nothing was written",
                why="; ".join(problems),
                fix="restore .keel/memory/ from version control, then run `keel memory verify`",
            )
        payload = proposal.memory
        entries = load_entries(root)
        if payload["action"] == "redact":
            entry_id = payload["entry"]
            content = _redacted(root, entries, proposal)
            action = "redact"
        else:
            draft = dict(payload["entry"])
            for old in draft["supersedes"]:
                if old not in entries:
                    raise NotFound(f"memory entry {old} no longer exists")
            number = 1 + max((int(e[:4]) for e in entries), default=0)
            entry_id = f"{number:04d}-{_slug(draft['title'])}"
            body = draft.pop("body")
            meta = {
                **draft, "id": entry_id, "ratified_by": [a["email"] for a in proposal.approvals],
                "date": _today(), "correlation_id": proposal.id,
            }  # fmt: skip
            content = format_entry(meta, body)
            action = "create"
        rel = entry_path(entry_id).as_posix()
        proposals.write_files(root, [(rel, content)], governance=True)
        _chain_append(root, entry_id, action, content, proposal.id)
        proposals.mark_applied(root, proposal, by, [rel])
    return proposal, entry_id


def _redacted(root: Path, entries: dict[str, Entry], proposal: Proposal) -> str:
    payload = proposal.memory or {}
    entry = entries.get(payload["entry"])
    if entry is None:
        raise NotFound(f"memory entry {payload['entry']} no longer exists")
    klass = payload["class"]
    body = entry.body.splitlines()
    for number in payload["lines"]:
        body[number - 1] = f"[redacted: {klass}]"
    approvers = ", ".join(a["email"] for a in proposal.approvals) or "no approver"
    lines = ", ".join(str(n) for n in payload["lines"])
    note = (
        f"> Redacted ({klass}) on {_today()} by {approvers}, proposal {proposal.id}: body "
        f"line(s) {lines}. Reason: {payload['reason']}. Version control still holds the old "
        "text: rewrite this file's history if it must be gone everywhere."
    )
    text = (root / entry_path(entry.id)).read_text(encoding="utf-8")
    front = text[: text.index("\n---\n", 3) + 5]  # kept byte for byte
    return f"{front}\n" + "\n".join(body).rstrip() + f"\n\n{note}\n"


# ---- the hash chain ----------------------------------------------------------------------


def _link(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_chain(root: Path) -> list[dict[str, Any]]:
    path = root / CHAIN_FILE
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            records.append({"seq": number, "damaged": True})
    return records


def _chain_append(root: Path, entry_id: str, action: str, content: str, proposal_id: str) -> None:
    chain = read_chain(root)
    record: dict[str, Any] = {
        "seq": len(chain) + 1, "entry": entry_id, "action": action,
        "sha256": proposals.sha256(content), "proposal": proposal_id,
        "prev": chain[-1].get("hash", GENESIS) if chain else GENESIS,
    }  # fmt: skip
    record["hash"] = _link(record)
    path = root / CHAIN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")


# ---- render and verify -------------------------------------------------------------------


def render(entries: dict[str, Entry]) -> str:
    """MEMORY.md: a pure function of the entries, so two renders are byte-identical."""
    out = [
        "# Project memory",
        "",
        "Why this project is the way it is. Generated by `keel memory render` from",
        "`.keel/memory/entries/`; do not edit by hand (`keel memory verify` checks it).",
        "",
    ]
    tensions = [
        f"- **Fork:** {old} ({entries[old].title}) is superseded by both "
        + " and ".join(f"{n} ({entries[n].title})" for n in newer)
        for old, newer in sorted(forks(entries).items())
    ]
    tensions += [
        f"- {e.id}: {e.title}"
        for e in sorted(entries.values(), key=lambda e: e.id)
        if e.kind == "open-tension" and not e.superseded_by
    ]
    if tensions:
        out += ["## Open tensions", "", *tensions, ""]
    current = [e for e in sorted(entries.values(), key=lambda e: e.id) if not e.superseded_by]
    for kind in KINDS:
        group = [e for e in current if e.kind == kind]
        if not group:
            continue
        out += [f"## {HEADINGS[kind]}", ""]
        for e in group:
            facts = [e.date, f"by {e.author}"]
            if e.ratified_by:
                facts.append("ratified by " + ", ".join(e.ratified_by))
            if e.subjects:
                facts.append("subjects: " + ", ".join(e.subjects))
            if e.sources:
                facts.append("sources: " + ", ".join(e.sources))
            if e.supersedes:
                facts.append("supersedes " + ", ".join(e.supersedes))
            if e.foundational:
                facts.append("foundational")
            out += [f"### {e.id}: {e.title}", "", "*" + " · ".join(facts) + "*", "", e.body, ""]
    old = [e for e in sorted(entries.values(), key=lambda e: e.id) if e.superseded_by]
    if old:
        out += ["## Superseded", ""]
        out += [f"- {e.id}: {e.title} (by {', '.join(sorted(e.superseded_by))})" for e in old]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_render(root: Path) -> tuple[Path, bool]:
    """Write MEMORY.md; returns its path and whether it changed."""
    text = render(load_entries(root))
    path = root / RENDER_FILE
    before = path.read_text(encoding="utf-8") if path.exists() else None
    if before != text:
        proposals.write_files(root, [(RENDER_FILE.as_posix(), text)], governance=True)
        log.append(root, "memory_rendered", file=RENDER_FILE.as_posix())
    return path, before != text


def _cycles(entries: dict[str, Entry]) -> list[str]:
    found: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in entries[node].supersedes:
            if nxt not in entries:
                continue
            if state.get(nxt) == 1:
                found.append(" → ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(entries):
        if start not in state:
            visit(start, [start])
    return found


def verify(root: Path, *, check_render: bool = True) -> list[str]:
    """Every problem found; empty when the memory is intact."""
    problems: list[str] = []
    try:
        entries = load_entries(root)
    except KeelError as exc:
        return [exc.problem]
    chain = read_chain(root)
    prev, last_hash = GENESIS, {}
    for i, record in enumerate(chain, 1):
        if record.get("damaged") or record.get("seq") != i or record.get("prev") != prev:
            problems.append(f"{CHAIN_FILE} line {i} is broken (edited, removed or reordered)")
            break
        if _link(record) != record.get("hash"):
            problems.append(f"{CHAIN_FILE} line {i} does not match its hash (edited)")
            break
        prev = record["hash"]
        last_hash[record["entry"]] = record["sha256"]
    folder = root / ENTRIES_DIR
    for path in sorted(folder.glob("*.md")) if folder.is_dir() else []:
        digest = proposals.sha256(path.read_text(encoding="utf-8"))
        if path.stem not in last_hash:
            problems.append(f"entry {path.stem} is not in the chain (added outside keel memory)")
        elif last_hash[path.stem] != digest:
            problems.append(f"entry {path.stem} was changed outside a redaction")
    for entry_id in sorted(set(last_hash) - set(entries)):
        problems.append(f"entry {entry_id} is in the chain but its file is missing")
    for entry in sorted(entries.values(), key=lambda e: e.id):
        for old in entry.supersedes:
            if old not in entries:
                problems.append(f"entry {entry.id} supersedes {old}, which does not exist")
    problems += [f"supersession cycle: {c}" for c in _cycles(entries)]
    if check_render:
        path = root / RENDER_FILE
        if entries and not path.exists():
            problems.append(f"{RENDER_FILE} was never rendered: run `keel memory render`")
        elif path.exists() and path.read_text(encoding="utf-8") != render(entries):
            problems.append(f"{RENDER_FILE} is stale: run `keel memory render`")
    return problems
