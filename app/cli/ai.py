"""`keel ai`: what an AI coding assistant may do in a site project — policy, proposals, log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import common_options, out_from
from app.errors import KeelError, UsageError

if TYPE_CHECKING:
    from app.audit_events import Event
    from app.cli.output import Out
    from app.governance.proposals import Approver, Proposal

    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


# ---- shared with `keel memory` ------------------------------------------------------------


def project_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--site-dir",
        metavar="DIR",
        help="the site project (default: --site, else the current directory)",
    )
    return parent


def json_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parent


def approver_options(*, required: bool) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--as",
        dest="as_email",
        metavar="EMAIL",
        required=required,
        help="the Keel user deciding: an active administrator or developer, authenticated by "
        "password against the database of --config"
        + ("" if required else " (required when the proposal needed approval)"),
    )
    parent.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of a prompt",
    )
    return parent


def project_root(args: argparse.Namespace) -> Path:
    from app.cli.startapp import project_dir

    return project_dir(args).resolve()


def read_password(args: argparse.Namespace) -> str:
    """From `--password-stdin` or a prompt; never from an argument (it would show in `ps`)."""
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise UsageError(
                "no password on standard input",
                fix="pipe it in: printf '%s\\n' \"$PASSWORD\" | keel … --password-stdin",
            )
        return password
    if not sys.stdin.isatty():
        raise UsageError(
            "no password given",
            why="there is no terminal to prompt on, and passwords are never read from arguments",
            fix="pipe it with --password-stdin, or run the command in a terminal",
        )
    import getpass

    return getpass.getpass(f"Password for {args.as_email}: ")


def os_approver() -> Approver:
    import getpass
    import socket

    from app.governance.proposals import Approver

    return Approver(f"{getpass.getuser()}@{socket.gethostname()}")


def decide(args: argparse.Namespace, action: Any, events: Any) -> Any:
    """Authenticate `--as` against Keel's users, run `action`, mirror `events` in the audit log."""
    from app.cli.actor import cli_context
    from app.cli.common import config_from, run_async
    from app.governance.approvers import decide as decide_async

    config = config_from(args)  # a bad configuration fails before the password is asked
    ctx = cli_context(config)
    password = read_password(args)
    return run_async(
        decide_async(config, ctx, args.as_email, password, action=action, events=events)
    )


def print_proposal(out: Out, p: Proposal) -> None:
    state = {"pending": "yellow", "approved": "green", "applied": "green", "rejected": "red"}
    out.result(f"{out.paint(p.id, 'bold')}  {out.paint(p.status, state[p.status])}  {p.title}")
    out.result(f"  capability: {p.capability} ({', '.join(p.capabilities)})")
    out.result(f"  bucket:     {p.bucket}, {len(p.approvals)} of {p.approvals_needed} approvals")
    for a in p.approvals:
        out.result(f"    ✓ {a['email']} at {a['at']}")
    out.result(f"  author:     {p.author}, {p.created_at}")
    if p.rejection:
        out.result(f"  rejected:   by {p.rejection['email']}: {p.rejection['reason']}")
    if p.applied:
        out.result(f"  applied:    by {p.applied['email']} at {p.applied['at']}")
    for f in p.files:
        out.result(f"  {'M' if f.existed else 'A'} {f.path}")
    if p.memory is not None:
        m = p.memory
        target = m["entry"] if m["action"] == "redact" else m["entry"]["kind"]
        out.result(f"  memory:     {m['action']} {target}")


def approve_proposal(args: argparse.Namespace, out: Out) -> int:
    from app import audit_events
    from app.governance import proposals

    root = project_root(args)
    proposals.load(root, args.id)  # a bad id fails before the password prompt

    def events(p: Proposal) -> list[Event]:
        return [audit_events.ai_proposal_approved(p.id, p.capability, details={
            "title": p.title, "approvals": len(p.approvals), "needed": p.approvals_needed,
            "project": str(root)})]  # fmt: skip

    p: Proposal = decide(args, lambda by: proposals.approve(root, args.id, by), events)
    if args.json:
        out.json(p.as_json())
        return 0
    out.ok(f"{args.as_email} approved {p.id}: {len(p.approvals)} of {p.approvals_needed}")
    if p.status == "approved":
        tool = "memory" if p.memory is not None else "ai"
        out.next_step(f"keel {tool} apply {p.id} --as EMAIL")
    return 0


def reject_proposal(args: argparse.Namespace, out: Out) -> int:
    from app import audit_events
    from app.governance import proposals

    root = project_root(args)
    proposals.load(root, args.id)

    def events(p: Proposal) -> list[Event]:
        return [audit_events.ai_proposal_rejected(p.id, p.capability, args.reason,
                                                  details={"title": p.title})]  # fmt: skip

    p: Proposal = decide(args, lambda by: proposals.reject(root, args.id, by, args.reason), events)
    if args.json:
        out.json(p.as_json())
    else:
        out.ok(f"{args.as_email} rejected {p.id}; nothing will be written")
    return 0


def add_decision_verbs(sub: Sub, tool: str) -> None:
    """approve and reject: the same for `keel ai` and `keel memory`."""
    common = [common_options(), project_options(), json_option(), approver_options(required=True)]
    p = sub.add_parser(
        "approve",
        parents=common,
        help="approve a pending proposal as an authenticated Keel user",
        description="Approve a proposal. Each approver counts once; the number needed was "
        "fixed when the proposal was made. Mirrored in the audit log.",
    )
    p.add_argument("id", help=f"the proposal id (see `keel {tool} list`)")
    p.set_defaults(run=lambda a: approve_proposal(a, out_from(a)))
    p = sub.add_parser(
        "reject",
        parents=common,
        help="reject a proposal as an authenticated Keel user",
        description="Reject a proposal: it can no longer be applied. Mirrored in the audit log.",
    )
    p.add_argument("id", help="the proposal id")
    p.add_argument("--reason", required=True, help="why, for the log and the audit event")
    p.set_defaults(run=lambda a: reject_proposal(a, out_from(a)))


# ---- keel ai ------------------------------------------------------------------------------


def register(sub: Sub) -> None:
    p = sub.add_parser(
        "ai",
        help="govern what an AI coding assistant may do in a site project",
        description="Offline governance of an AI coding assistant in a site project: a policy "
        "(.keel/ai.toml) sorts a fixed catalogue of capabilities into allowed, needs approval "
        "and blocked; changes are proposed, approved by Keel users, then applied; every step "
        "goes to .keel/ai/log.jsonl. Never calls a model. See `keel docs governance`.",
    )
    verbs = p.add_subparsers(title="verbs", metavar="<verb>", parser_class=type(p))
    _register_verbs(verbs)
    p.set_defaults(run=lambda a: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _register_verbs(verbs: Sub) -> None:
    base = [common_options(), project_options()]
    p = verbs.add_parser(
        "init", parents=base, help="write the default policy to .keel/ai.toml",
        description="Write .keel/ai.toml with the built-in defaults, every capability "
        "explained, and create .keel/ai/. Refuses to overwrite an existing policy.",
    )  # fmt: skip
    p.add_argument("--print", action="store_true", help="print the default policy, write nothing")
    p.set_defaults(run=lambda a: run_init(a, out_from(a)))

    p = verbs.add_parser(
        "status", parents=[*base, json_option()], help="the policy in force and the proposals",
        description="Which capabilities are allowed, need approval (and how many approvers) or "
        "are blocked, where the policy comes from, and the proposals waiting.",
    )  # fmt: skip
    p.set_defaults(run=lambda a: run_status(a, out_from(a)))

    p = verbs.add_parser(
        "propose", parents=[*base, json_option()], help="stage file changes for approval",
        description="Stage files under one capability. Paths are relative to the project and "
        "stay inside it. Blocked capabilities (also those the paths imply: editing an existing "
        "file, a migration, keel.toml…) are refused; contents that look like secrets are "
        "refused. Nothing is written to the project until `keel ai apply`.",
    )  # fmt: skip
    p.add_argument("capability", help="what the change is (see `keel ai status`)")
    p.add_argument("--title", required=True, help="what the change does and why, one line")
    p.add_argument(
        "--file", dest="files", action="append", default=[], metavar="PATH=SOURCE",
        help="stage the content of SOURCE (a file, or - for standard input) as PATH in the "
        "project; repeat for each file",
    )  # fmt: skip
    p.add_argument("--author", default="ai-assistant", help="who proposes (default ai-assistant)")
    p.set_defaults(run=lambda a: run_propose(a, out_from(a)))

    p = verbs.add_parser(
        "list", parents=[*base, json_option()], help="proposals, newest last",
        description="List proposals with their status and approvals.",
    )  # fmt: skip
    p.add_argument("--status", choices=("pending", "approved", "rejected", "applied"))
    p.set_defaults(run=lambda a: run_list(a, out_from(a)))

    p = verbs.add_parser(
        "review", parents=[*base, json_option()], help="a proposal and the diff it would apply",
        description="Show a proposal and a unified diff of each staged file against the "
        "project as it is now.",
    )  # fmt: skip
    p.add_argument("id", help="the proposal id")
    p.set_defaults(run=lambda a: run_review(a, out_from(a)))

    add_decision_verbs(verbs, "ai")

    p = verbs.add_parser(
        "apply", parents=[*base, json_option(), approver_options(required=False)],
        help="write the staged files of an approved proposal",
        description="Write exactly the staged files of a fully approved proposal (or one whose "
        "capability is allowed). Paths are checked again, so a symbolic link made since cannot "
        "redirect a write; a file changed since staging is not overwritten.",
    )  # fmt: skip
    p.add_argument("id", help="the proposal id")
    p.set_defaults(run=lambda a: run_apply(a, out_from(a)))

    p = verbs.add_parser(
        "log", parents=[*base, json_option()], help="the append-only log of every step",
        description="Print .keel/ai/log.jsonl: proposals, refusals, approvals, rejections, "
        "applications, policy edits and memory renders.",
    )  # fmt: skip
    p.add_argument("--proposal", metavar="ID", help="only the steps of this proposal")
    p.set_defaults(run=lambda a: run_log(a, out_from(a)))

    for verb, text in (
        ("allow", "move a capability to allowed (or needs approval) in .keel/ai.toml"),
        ("deny", "move a capability to blocked in .keel/ai.toml"),
    ):
        p = verbs.add_parser(
            verb, parents=base, help=text,
            description=f"{text[0].upper()}{text[1:]}, keeping the file's comments and layout, "
            "and print the diff. Review and commit it like code.",
        )  # fmt: skip
        p.add_argument("capability", help="a capability from the catalogue")
        if verb == "allow":
            p.add_argument(
                "--with-approval", action="store_true",
                help="move it to needs_approval instead of allowed",
            )  # fmt: skip
        p.set_defaults(run=lambda a, verb=verb: run_move(a, out_from(a), verb))


def run_init(args: argparse.Namespace, out: Out) -> int:
    from app.governance import log, policy

    if args.print:
        out.result(policy.default_text().rstrip())
        return 0
    root = project_root(args)
    path = root / policy.POLICY_FILE
    if path.exists():
        raise KeelError(
            f"{policy.POLICY_FILE} already exists",
            why="init never overwrites a policy the team has reviewed",
            fix="edit it with `keel ai allow|deny`, or remove it first to start again",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(policy.default_text(), encoding="utf-8")
    (root / ".keel" / "ai" / "proposals").mkdir(parents=True, exist_ok=True)
    log.append(root, "init", file=policy.POLICY_FILE.as_posix())
    out.ok(f"wrote {path}")
    out.next_step("review it, commit it, then `keel ai status`")
    return 0


def run_status(args: argparse.Namespace, out: Out) -> int:
    from app.governance import log, policy, proposals

    root = project_root(args)
    pol = policy.load(root)
    items = proposals.all_proposals(root)
    counts = {s: sum(p.status == s for p in items) for s in ("pending", "approved", "rejected",
                                                              "applied")}  # fmt: skip
    if args.json:
        out.json({**pol.as_json(), "proposals": counts, "log_lines": len(log.read(root))})
        return 0
    out.result(f"{out.paint('AI policy', 'bold')} of {root}: {pol.source}")
    labels = {"allowed": ("Allowed", "green"), "needs_approval": ("Needs approval", "yellow"),
              "blocked": ("Blocked", "red")}  # fmt: skip
    width = max(len(n) for n in policy.CATALOGUE)
    for bucket in policy.BUCKETS:
        label, colour = labels[bucket]
        names = [n for n in policy.CATALOGUE if pol.buckets[n] == bucket]
        out.result("")
        out.result(out.paint(f"{label} ({len(names)})", colour))
        for name in names:
            need = pol.approvals_needed(name)
            extra = f"  [{need} approver{'s' if need > 1 else ''}]" if need else ""
            out.result(f"  {name:<{width}}  {policy.CATALOGUE[name][0]}{extra}")
    out.result("")
    out.result("Proposals: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for p in items:
        if p.status == "pending":
            out.result(f"  {p.id}  {len(p.approvals)}/{p.approvals_needed}  {p.title}")
    if counts["pending"]:
        out.next_step("keel ai list --status pending")
    return 0


def _read_source(spec: str) -> tuple[str, str]:
    path, sep, source = spec.partition("=")
    if not sep or not path or not source:
        raise UsageError(
            f"--file {spec[:80]!r} is not PATH=SOURCE",
            fix="write e.g. --file customers.py=/tmp/draft.py, or PATH=- for standard input",
        )
    try:
        if source == "-":
            return path, sys.stdin.read()
        return path, Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read {source}: {exc}",
            why="staged files are text (UTF-8)",
            fix="give a readable text file",
        ) from None


def run_propose(args: argparse.Namespace, out: Out) -> int:
    from app.governance import proposals

    root = project_root(args)
    files = [_read_source(spec) for spec in args.files]
    p = proposals.propose(root, args.capability, args.title, files, author=args.author)
    if args.json:
        out.json(p.as_json())
        return 0
    out.ok(f"proposal {p.id} staged {len(p.files)} file(s) under {', '.join(p.capabilities)}")
    if p.approvals_needed:
        out.line(f"It needs {p.approvals_needed} approval(s) by distinct people.")
        out.next_step(f"keel ai review {p.id}, then keel ai approve {p.id} --as EMAIL")
    else:
        out.next_step(f"keel ai apply {p.id}  (allowed by the policy, no approval needed)")
    return 0


def run_list(args: argparse.Namespace, out: Out) -> int:
    from app.governance import proposals

    items = [
        p for p in proposals.all_proposals(project_root(args))
        if args.status is None or p.status == args.status
    ]  # fmt: skip
    items.sort(key=lambda p: (p.created_at, p.id))
    if args.json:
        out.json([p.as_json() for p in items])
        return 0
    if not items:
        out.result("No proposals.")
        return 0
    for p in items:
        approvals = f"{len(p.approvals)}/{p.approvals_needed}"
        out.result(f"{p.id}  {p.status:<8}  {approvals:>3}  {p.capability:<18}  {p.title}")
    return 0


def run_review(args: argparse.Namespace, out: Out) -> int:
    from app.governance import proposals

    root = project_root(args)
    p = proposals.load(root, args.id)
    diff = proposals.review(root, p)
    if args.json:
        out.json({**p.as_json(), "diff": diff})
        return 0
    print_proposal(out, p)
    out.result("")
    out.result(diff.rstrip() if diff else "(no file changes)")
    return 0


def run_apply(args: argparse.Namespace, out: Out) -> int:
    from app import audit_events
    from app.governance import proposals

    root = project_root(args)
    p = proposals.load(root, args.id)
    if p.memory is not None:
        raise UsageError(
            f"proposal {p.id} is a memory entry", fix=f"run `keel memory apply {p.id}`"
        )
    if args.as_email:

        def events(done: Proposal) -> list[Event]:
            return [audit_events.ai_proposal_applied(
                done.id, [f.path for f in done.files],
                details={"capability": done.capability, "project": str(root)})]  # fmt: skip

        p = decide(args, lambda by: proposals.apply(root, args.id, by), events)
    else:
        require_as(p)
        p = proposals.apply(root, args.id, os_approver())
    if args.json:
        out.json(p.as_json())
        return 0
    out.ok(f"applied {p.id}: wrote {', '.join(f.path for f in p.files)}")
    out.next_step("review with `git diff`, then commit")
    return 0


def require_as(p: Proposal) -> None:
    if p.approvals_needed:
        raise UsageError(
            f"proposal {p.id} needed approval, so applying it needs --as EMAIL",
            why="the person who applies an approved change is authenticated and recorded in the "
            "audit log",
            fix="run it again with --as EMAIL (an administrator or developer)",
        )


def run_log(args: argparse.Namespace, out: Out) -> int:
    from app.governance import log

    records = [
        r for r in log.read(project_root(args))
        if args.proposal is None or r.get("proposal") == args.proposal
    ]  # fmt: skip
    if args.json:
        out.json(records)
        return 0
    if not records:
        out.result("The log is empty.")
    for r in records:
        rest = {k: v for k, v in r.items() if k not in ("at", "event", "proposal", "by")}
        who = f" by {r['by']}" if "by" in r else ""
        what = f" {r['proposal']}" if "proposal" in r else ""
        detail = " ".join(
            f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in sorted(rest.items())
        )
        out.result(f"{r['at']}  {r['event']:<15}{what}{who}  {detail}".rstrip())
    return 0


def run_move(args: argparse.Namespace, out: Out, verb: str) -> int:
    from app.governance import log, policy

    root = project_root(args)
    bucket: policy.Bucket = (
        "blocked" if verb == "deny" else "needs_approval" if args.with_approval else "allowed"
    )
    old, new = policy.move(root, args.capability, bucket)
    if old == new:
        out.ok(f"{args.capability} is already {bucket}; nothing changed")
        return 0
    out.result(policy.unified_diff(old, new, policy.POLICY_FILE.as_posix()).rstrip())
    log.append(root, f"policy_{verb}", capability=args.capability, bucket=bucket)
    out.ok(f"{args.capability} is now {bucket}")
    out.next_step("commit .keel/ai.toml so the change is reviewed")
    return 0
