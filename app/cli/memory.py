"""`keel memory`: the project's why — immutable entries, approved like any change, rendered."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.ai import (
    add_decision_verbs,
    approver_options,
    decide,
    json_option,
    os_approver,
    print_proposal,
    project_options,
    project_root,
    require_as,
)
from app.cli.common import common_options, out_from
from app.errors import KeelError, UsageError
from app.governance import KINDS
from app.governance import REDACTION_CLASSES as CLASSES

if TYPE_CHECKING:
    from app.audit_events import Event
    from app.cli.output import Out
    from app.governance.memory import Entry
    from app.governance.proposals import Proposal


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "memory",
        help="keep why the project is the way it is: reviewed, immutable entries",
        description="Project memory under .keel/memory/: immutable entries (decisions, "
        "rejected options, assumptions, intents, onboarding notes, history, open tensions) "
        "written through the same proposal and approval path as `keel ai`, rendered to "
        "MEMORY.md and checked by `verify`. The running server never reads it. See `keel docs "
        "governance`.",
    )
    verbs = p.add_subparsers(title="verbs", metavar="<verb>", parser_class=type(p))
    base = [common_options(), project_options()]

    def entry_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--title", required=True, help="the entry in one line")
        body = parser.add_mutually_exclusive_group(required=True)
        body.add_argument("--body", help="the text of the entry (Markdown)")
        body.add_argument("--body-file", metavar="FILE", help="read the text from FILE (- = stdin)")
        parser.add_argument(
            "--subject", dest="subjects", action="append", default=[],
            help="what it is about (a table, a module, a topic); repeat for each",
        )  # fmt: skip
        parser.add_argument(
            "--source", dest="sources", action="append", default=[],
            help="where it comes from (a file, an issue, a meeting); repeat for each",
        )  # fmt: skip
        parser.add_argument("--author", default="ai-assistant", help="who writes it")
        parser.add_argument(
            "--foundational", action="store_true", help="mark it as one the project rests on"
        )

    r = verbs.add_parser(
        "remember", parents=[*base, json_option()], help="propose a new memory entry",
        description="Propose an entry (capability write_memory). It is written once approved "
        "and applied; entries are never edited afterwards.",
    )  # fmt: skip
    r.add_argument("kind", choices=KINDS, help="what sort of entry")
    entry_options(r)
    r.set_defaults(run=lambda a: run_remember(a, out_from(a)))

    s = verbs.add_parser(
        "supersede", parents=[*base, json_option()], help="propose an entry that replaces another",
        description="Propose an entry that supersedes an existing one (capability "
        "supersede_memory). The old entry stays; that it is superseded is derived. Two entries "
        "superseding the same one are shown as an open tension.",
    )  # fmt: skip
    s.add_argument("old", help="the id of the entry it supersedes")
    s.add_argument("--kind", choices=KINDS, default="decision", help="default: decision")
    entry_options(s)
    s.set_defaults(run=lambda a: run_remember(a, out_from(a)))

    d = verbs.add_parser(
        "redact", parents=[*base, json_option()], help="propose redacting lines of an entry",
        description="Propose replacing whole body lines of an entry with a redaction marker "
        "(capability redact_memory, always two approvers). The front matter stays; a note says "
        "what was redacted and that version control still holds the old text.",
    )  # fmt: skip
    d.add_argument("id", help="the entry id")
    d.add_argument("--class", dest="klass", required=True, choices=CLASSES, help="what it is")
    d.add_argument(
        "--line", dest="lines", action="append", type=int, default=[], required=True,
        help="a body line number as `keel memory show ID` numbers it; repeat for each",
    )  # fmt: skip
    d.add_argument("--reason", required=True, help="why it must go")
    d.add_argument("--author", default="ai-assistant", help="who proposes it")
    d.set_defaults(run=lambda a: run_redact(a, out_from(a)))

    pe = verbs.add_parser(
        "pending", parents=[*base, json_option()], help="memory proposals waiting for approval",
        description="List memory proposals that are not applied or rejected yet.",
    )  # fmt: skip
    pe.set_defaults(run=lambda a: run_pending(a, out_from(a)))

    add_decision_verbs(verbs, "memory")

    ap = verbs.add_parser(
        "apply", parents=[*base, json_option(), approver_options(required=False)],
        help="write an approved memory proposal",
        description="Write the entry (or the redaction) of a fully approved memory proposal and "
        "add it to the hash chain. Run `keel memory render` afterwards.",
    )  # fmt: skip
    ap.add_argument("id", help="the proposal id")
    ap.set_defaults(run=lambda a: run_apply(a, out_from(a)))

    rd = verbs.add_parser(
        "render", parents=base, help="write MEMORY.md from the entries",
        description="Write MEMORY.md at the project root: open tensions, current entries by "
        "kind, superseded ones. The same entries always give the same bytes.",
    )  # fmt: skip
    rd.set_defaults(run=lambda a: run_render(a, out_from(a)))

    sh = verbs.add_parser(
        "show", parents=[*base, json_option()], help="the entries, or one entry with numbered lines",
        description="Without an id: every entry with its state (current, superseded, forked). "
        "With an id: the entry, its links and its body with line numbers.",
    )  # fmt: skip
    sh.add_argument("id", nargs="?", help="an entry id")
    sh.set_defaults(run=lambda a: run_show(a, out_from(a)))

    ch = verbs.add_parser(
        "chain", parents=[*base, json_option()], help="the hash chain of entry writes",
        description="Print .keel/memory/chain.jsonl: every entry written or redacted, with the "
        "hash of its content, each record linked to the one before.",
    )  # fmt: skip
    ch.set_defaults(run=lambda a: run_chain(a, out_from(a)))

    v = verbs.add_parser(
        "verify", parents=[*base, json_option()], help="check entries, links, chain and MEMORY.md",
        description="Fail on an entry changed outside a redaction, a broken chain, a link to an "
        "entry that does not exist, a supersession cycle, or a stale MEMORY.md.",
    )  # fmt: skip
    v.set_defaults(run=lambda a: run_verify(a, out_from(a)))
    p.set_defaults(run=lambda a: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _body(args: argparse.Namespace) -> str:
    if args.body is not None:
        return str(args.body)
    try:
        if args.body_file == "-":
            return sys.stdin.read()
        return Path(args.body_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read {args.body_file}: {exc}", fix="give a UTF-8 text file"
        ) from None


def _proposed(args: argparse.Namespace, out: Out, p: Proposal) -> int:
    if args.json:
        out.json(p.as_json())
        return 0
    out.ok(f"memory proposal {p.id} ({p.capability}): {p.title}")
    if p.approvals_needed:
        out.next_step(
            f"{p.approvals_needed} distinct approver(s): keel memory approve {p.id} --as EMAIL"
        )
    else:
        out.next_step(f"keel memory apply {p.id}")
    return 0


def run_remember(args: argparse.Namespace, out: Out) -> int:
    from app.governance import memory

    p = memory.remember(
        project_root(args), kind=args.kind, title=args.title, body=_body(args),
        subjects=args.subjects, sources=args.sources, author=args.author,
        foundational=args.foundational, supersedes=[args.old] if hasattr(args, "old") else None,
    )  # fmt: skip
    return _proposed(args, out, p)


def run_redact(args: argparse.Namespace, out: Out) -> int:
    from app.governance import memory

    p = memory.redact(
        project_root(args), args.id, klass=args.klass, lines=args.lines, reason=args.reason,
        author=args.author,
    )  # fmt: skip
    return _proposed(args, out, p)


def run_pending(args: argparse.Namespace, out: Out) -> int:
    from app.governance import proposals

    items = [
        p for p in proposals.all_proposals(project_root(args))
        if p.memory is not None and p.status in ("pending", "approved")
    ]  # fmt: skip
    if args.json:
        out.json([p.as_json() for p in items])
        return 0
    if not items:
        out.result("No memory proposals waiting.")
    for p in items:
        print_proposal(out, p)
    return 0


def run_apply(args: argparse.Namespace, out: Out) -> int:
    from app import audit_events
    from app.governance import memory, proposals

    root = project_root(args)
    p = proposals.load(root, args.id)
    if args.as_email:

        def events(result: tuple[Proposal, str]) -> list[Event]:
            done, entry_id = result
            files = done.applied["files"] if done.applied else []
            found = [
                audit_events.ai_proposal_applied(
                    done.id, files, details={"capability": done.capability, "entry": entry_id}
                )
            ]
            if done.memory and done.memory["action"] == "redact":
                found.append(
                    audit_events.memory_redacted(
                        entry_id,
                        done.memory["reason"],
                        details={
                            "class": done.memory["class"],
                            "lines": done.memory["lines"],
                            "proposal": done.id,
                            "approvers": [a["email"] for a in done.approvals],
                        },
                    )
                )
            return found  # fmt: skip

        done, entry_id = decide(args, lambda by: memory.apply(root, args.id, by), events)
    else:
        require_as(p)
        done, entry_id = memory.apply(root, args.id, os_approver())
    if args.json:
        out.json({**done.as_json(), "entry": entry_id})
        return 0
    if done.memory and done.memory["action"] == "redact":
        out.ok(f"redacted {entry_id} ({done.memory['class']})")
        out.warn("version control still holds the old text: rewrite the file's history if it "
                 "must be gone everywhere")  # fmt: skip
    else:
        out.ok(f"wrote memory entry {entry_id}")
    out.next_step("keel memory render, then commit .keel/memory/ and MEMORY.md")
    return 0


def run_render(args: argparse.Namespace, out: Out) -> int:
    from app.governance import memory

    path, changed = memory.write_render(project_root(args))
    out.ok(f"{'wrote' if changed else 'unchanged:'} {path}")
    return 0


def _state(e: Entry, forked: dict[str, list[str]]) -> str:
    if e.id in forked:
        return "forked"
    return "superseded" if e.superseded_by else "current"


def run_show(args: argparse.Namespace, out: Out) -> int:
    from app.governance import memory

    root = project_root(args)
    entries = memory.load_entries(root)
    forked = memory.forks(entries)
    if args.id:
        e = memory.get(root, args.id)
        if args.json:
            out.json({**e.meta(), "body": e.body, "superseded_by": sorted(e.superseded_by),
                      "state": _state(e, forked)})  # fmt: skip
            return 0
        out.result(f"{out.paint(e.id, 'bold')}  {e.kind}  {_state(e, forked)}")
        out.result(f"  {e.title}")
        for label, value in (
            ("date", e.date), ("author", e.author), ("ratified by", ", ".join(e.ratified_by)),
            ("subjects", ", ".join(e.subjects)), ("sources", ", ".join(e.sources)),
            ("supersedes", ", ".join(e.supersedes)),
            ("superseded by", ", ".join(sorted(e.superseded_by))),
            ("proposal", e.correlation_id), ("foundational", "yes" if e.foundational else ""),
        ):  # fmt: skip
            if value:
                out.result(f"  {label + ':':<14} {value}")
        out.result("")
        lines = e.body.splitlines()
        for n, line in enumerate(lines, 1):
            out.result(f"{n:>4}  {line}")
        return 0
    if args.json:
        out.json({
            "entries": [{**e.meta(), "superseded_by": sorted(e.superseded_by),
                         "state": _state(e, forked)} for e in entries.values()],
            "open_tensions": [{"entry": k, "superseded_by": v} for k, v in sorted(forked.items())],
        })  # fmt: skip
        return 0
    if not entries:
        out.result("No memory entries yet.")
        out.next_step('keel memory remember decision --title "…" --body "…"')
        return 0
    for old, newer in sorted(forked.items()):
        out.warn(f"open tension: {old} is superseded by both {' and '.join(newer)}")
    for e in entries.values():
        state = _state(e, forked)
        colour = {"current": "green", "superseded": "dim", "forked": "yellow"}[state]
        out.result(f"{e.id:<40}  {e.kind:<12}  {out.paint(f'{state:<10}', colour)}  {e.title}")
    return 0


def run_chain(args: argparse.Namespace, out: Out) -> int:
    from app.governance import memory

    records = memory.read_chain(project_root(args))
    if args.json:
        out.json(records)
        return 0
    if not records:
        out.result("The chain is empty.")
    for r in records:
        if r.get("damaged"):
            out.fail(f"{r['seq']:>4}  (not a JSON record)")
            continue
        out.result(
            f"{r['seq']:>4}  {r['action']:<7} {r['entry']}  sha256 {r['sha256'][:12]}  "
            f"proposal {r['proposal']}  link {r['hash'][:12]}"
        )
    return 0


def run_verify(args: argparse.Namespace, out: Out) -> int:
    from app.governance import memory

    problems = memory.verify(project_root(args))
    if args.json:
        out.json({"ok": not problems, "problems": problems})
        return 1 if problems else 0
    if problems:
        raise KeelError(
            f"the project memory fails verification ({len(problems)} problem(s)): "
            + "; ".join(problems),
            why="entries are immutable except by redaction, links must point at entries that "
            "exist without cycles, and MEMORY.md must match the entries",
            fix="restore changed or removed files from version control; re-render with "
            "`keel memory render`",
        )
    out.ok("memory verified: entries, chain, links and MEMORY.md agree")
    return 0
