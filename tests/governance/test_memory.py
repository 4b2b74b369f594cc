"""`keel memory`: entries through proposals, derived supersession, render, chain, verify, redaction."""

from __future__ import annotations

import json
from pathlib import Path

from tests.governance.conftest import PASSWORD, Keel, audit_rows, proposal_id

ENTRIES = Path(".keel/memory/entries")


def remember(keel: Keel, *args: str) -> str:
    """Propose and apply an entry (the policy allows write_memory here); returns its id."""
    r = keel("memory", *args, "--json")
    assert r.code == 0, r.err
    pid = json.loads(r.out)["id"]
    r = keel("memory", "apply", pid, "--json")
    assert r.code == 0, r.err
    return str(json.loads(r.out)["entry"])


def allow_memory(keel: Keel) -> None:
    assert keel("ai", "init").code == 0
    assert keel("ai", "allow", "write_memory").code == 0
    assert keel("ai", "allow", "supersede_memory").code == 0


def test_memory_lifecycle_render_show_chain_and_verify(keel: Keel, project: Path) -> None:
    assert "No memory entries yet" in keel("memory", "show").out
    r = keel("memory", "remember", "decision", "--title", "Sessions live in PostgreSQL",
             "--body", "So any number of servers behave as one.", "--subject", "sessions",
             "--source", "docs/architecture.md", "--foundational")  # fmt: skip
    assert r.code == 0, r.err
    pid = proposal_id(r.out)
    pending = keel("memory", "pending")
    assert pid in pending.out and "Sessions live in PostgreSQL" in pending.out
    refused = keel("memory", "apply", pid)
    assert refused.code == 2 and "--as EMAIL" in refused.err  # write_memory needs approval
    assert not (project / ENTRIES).exists()

    allow_memory(keel)
    first = remember(keel, "remember", "assumption", "--title", "Operators use a terminal",
                     "--body", "Line one.\nLine two.")  # fmt: skip
    assert first == "0001-operators-use-a-terminal"
    text = (project / ENTRIES / f"{first}.md").read_text()
    assert text.startswith('---\nid: "0001-operators-use-a-terminal"\nkind: "assumption"\n')
    assert "superseded" not in text  # supersession is derived, never stored

    second = remember(keel, "supersede", first, "--title", "Operators use a browser too",
                      "--body", "The admin is the main surface.")  # fmt: skip
    third = remember(keel, "supersede", first, "--kind", "intent", "--title", "Terminal first",
                     "--body", "Keep the CLI complete.")  # fmt: skip
    assert (project / ENTRIES / f"{first}.md").read_text() == text  # the old one is untouched

    shown = keel("memory", "show")
    assert (
        "open tension" in shown.out
        and f"{first} is superseded by both {second} and {third}" in shown.out
    )
    data = json.loads(keel("memory", "show", "--json").out)
    states = {e["id"]: e["state"] for e in data["entries"]}
    assert states == {first: "forked", second: "current", third: "current"}
    assert data["open_tensions"] == [{"entry": first, "superseded_by": [second, third]}]
    one = keel("memory", "show", first)
    assert "   1  Line one." in one.out and "   2  Line two." in one.out
    assert f"superseded by: {second}, {third}" in one.out

    stale = keel("memory", "verify")
    assert stale.code == 1 and "never rendered" in stale.err
    assert keel("memory", "render").code == 0
    rendered = (project / "MEMORY.md").read_bytes()
    assert keel("memory", "render").code == 0
    assert (project / "MEMORY.md").read_bytes() == rendered  # byte-identical
    body = rendered.decode()
    assert "## Open tensions" in body and "**Fork:**" in body and "## Superseded" in body
    ok = keel("memory", "verify")
    assert ok.code == 0, ok.err
    chain = json.loads(keel("memory", "chain", "--json").out)
    assert [(c["seq"], c["entry"], c["action"]) for c in chain] == [
        (1, first, "create"), (2, second, "create"), (3, third, "create"),
    ]  # fmt: skip
    assert chain[1]["prev"] == chain[0]["hash"]


def test_verify_fails_on_each_kind_of_damage(keel: Keel, project: Path) -> None:
    allow_memory(keel)
    a = remember(keel, "remember", "decision", "--title", "A", "--body", "Alpha.")
    b = remember(keel, "supersede", a, "--title", "B", "--body", "Beta.")
    assert keel("memory", "render").code == 0
    assert keel("memory", "verify").code == 0
    entries = project / ENTRIES
    pristine = {p: p.read_bytes() for p in [*entries.iterdir(), project / "MEMORY.md",
                                            project / ".keel/memory/chain.jsonl"]}  # fmt: skip

    def damaged(change: object, expect: str) -> None:
        assert callable(change)
        change()
        r = keel("memory", "verify")
        assert r.code == 1 and expect in r.err, (expect, r.err)
        assert "Traceback" not in r.err
        for path in entries.iterdir():
            if path not in pristine:
                path.unlink()
        for path, data in pristine.items():
            path.write_bytes(data)
        assert keel("memory", "verify").code == 0

    entry_a = entries / f"{a}.md"
    entry_b = entries / f"{b}.md"
    damaged(lambda: (project / "MEMORY.md").write_text("# edited\n"), "MEMORY.md is stale")
    damaged(lambda: entry_a.write_text(entry_a.read_text().replace("Alpha.", "Gamma.")),
            f"entry {a} was changed outside a redaction")  # fmt: skip

    def dangling() -> None:
        entry_b.write_text(entry_b.read_text().replace(f'["{a}"]', '["0099-nowhere"]'))

    damaged(dangling, "supersedes 0099-nowhere, which does not exist")

    def cycle() -> None:
        entry_a.write_text(entry_a.read_text().replace("supersedes: []", f'supersedes: ["{b}"]'))

    damaged(cycle, "supersession cycle")
    damaged(entry_b.unlink, f"entry {b} is in the chain but its file is missing")
    damaged(lambda: (entries / "0003-sneaked-in.md").write_text(entry_a.read_text().replace(a, "0003-sneaked-in")),
            "not in the chain")  # fmt: skip

    def chain_edit() -> None:
        path = project / ".keel/memory/chain.jsonl"
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[1], lines[0]]) + "\n")

    damaged(chain_edit, "chain.jsonl line 1 is broken")
    assert json.loads(keel("memory", "verify", "--json").out) == {"ok": True, "problems": []}


def test_a_memory_entry_that_looks_like_a_secret_is_refused(keel: Keel, project: Path) -> None:
    r = keel("memory", "remember", "onboarding", "--title", "Deploy key",
             "--body", "Use this:\n-----BEGIN RSA PRIVATE KEY-----\n")  # fmt: skip
    assert r.code == 1 and "line" in r.err and "private key" in r.err
    assert not (project / ".keel/ai/proposals").exists() or not any(
        (project / ".keel/ai/proposals").glob("*.json")
    )


async def test_redaction_needs_two_approvers_keeps_the_front_matter_and_is_audited(
    keel_db: Keel, project: Path, people: dict[str, str], database_url: str
) -> None:
    keel = keel_db
    r = keel("memory", "remember", "history", "--title", "The outage of March",
             "--body", "The on-call was Jane Doe, +44 7700 900123.\nWe moved to a replica.",
             "--subject", "operations")  # fmt: skip
    pid = proposal_id(r.out)
    as_ = ("--password-stdin",)
    assert (
        keel("memory", "approve", pid, "--as", people["admin1"], *as_, input=PASSWORD + "\n").code
        == 0
    )
    applied = keel(
        "memory",
        "apply",
        pid,
        "--as",
        people["admin1"],
        *as_,
        input=PASSWORD + "\n",
    )
    assert applied.code == 0, applied.err
    entry_id = "0001-the-outage-of-march"
    path = project / ENTRIES / f"{entry_id}.md"
    before = path.read_text()
    assert f'ratified_by: ["{people["admin1"]}"]' in before
    assert f'correlation_id: "{pid}"' in before
    front = before[: before.index("\n---\n", 3) + 5]

    bad_line = keel("memory", "redact", entry_id, "--class", "pii", "--line", "9", "--reason", "x")
    assert bad_line.code == 2 and "between 1 and 2" in bad_line.err
    r = keel("memory", "redact", entry_id, "--class", "pii", "--line", "1",
             "--reason", "a person's phone number")  # fmt: skip
    assert r.code == 0, r.err
    rid = proposal_id(r.out)
    assert "2 distinct approver(s)" in r.out
    assert (
        keel("memory", "approve", rid, "--as", people["admin1"], *as_, input=PASSWORD + "\n").code
        == 0
    )
    early = keel("memory", "apply", rid, "--as", people["admin1"], *as_, input=PASSWORD + "\n")
    assert early.code == 1 and "1 of 2 approvals" in early.err
    assert (
        keel("memory", "approve", rid, "--as", people["dev"], *as_, input=PASSWORD + "\n").code == 0
    )
    done = keel("memory", "apply", rid, "--as", people["dev"], *as_, input=PASSWORD + "\n")
    assert done.code == 0, done.err
    assert "version control still holds the old text" in done.out

    after = path.read_text()
    assert after.startswith(front)  # the front matter, byte for byte
    assert "Jane Doe" not in after and "7700" not in after
    assert "[redacted: pii]\nWe moved to a replica." in after
    assert "Version control still holds the old text" in after
    assert keel("memory", "render").code == 0
    assert keel("memory", "verify").code == 0  # a redaction is the one allowed change
    chain = json.loads(keel("memory", "chain", "--json").out)
    assert [c["action"] for c in chain] == ["create", "redact"]

    rows = audit_rows(database_url)
    kinds = [(t, a, target) for t, a, target, _ in rows]
    assert kinds == [
        ("ai_proposal_approved", people["admin1"], pid),
        ("ai_proposal_applied", people["admin1"], pid),
        ("ai_proposal_approved", people["admin1"], rid),
        ("ai_proposal_approved", people["dev"], rid),
        ("ai_proposal_applied", people["dev"], rid),
        ("memory_redacted", people["dev"], entry_id),
    ]
    meta = rows[-1][3]
    assert meta["class"] == "pii"

    nope = proposal_id(keel("memory", "remember", "rejected", "--title", "Use MongoDB",
                            "--body", "We considered it.").out)  # fmt: skip
    assert nope in keel("memory", "pending").out
    r = keel("memory", "reject", nope, "--reason", "wrong kind of entry", "--as", people["admin2"],
             *as_, input=PASSWORD + "\n")  # fmt: skip
    assert r.code == 0, r.err
    assert "No memory proposals waiting" in keel("memory", "pending").out
    late = keel("memory", "apply", nope, "--as", people["admin2"], *as_, input=PASSWORD + "\n")
    assert late.code == 1 and "rejected" in late.err
    assert audit_rows(database_url)[-1][:3] == ("ai_proposal_rejected", people["admin2"], nope)
    assert (
        meta["class"] == "pii"
        and meta["lines"] == [1]
        and meta["reason"] == "a person's phone number"
    )
    assert meta["approvers"] == [people["admin1"], people["dev"]]


def test_the_server_and_the_build_never_read_governance_files(keel: Keel, project: Path) -> None:
    from app import sites

    allow_memory(keel)
    remember(keel, "remember", "decision", "--title", "A", "--body", "Alpha.")
    assert keel("memory", "render").code == 0
    embedded = [rel for rel, _ in sites.embedded_files(project)]
    assert not [rel for rel in embedded if rel.startswith(".keel") or rel == "MEMORY.md"]
    app_dir = Path(sites.__file__).parent
    readers = [
        path.relative_to(app_dir).as_posix()
        for path in app_dir.rglob("*.py")
        if "app.governance" in path.read_text() and path.parts[-2] not in ("governance", "cli")
    ]
    assert readers == []
