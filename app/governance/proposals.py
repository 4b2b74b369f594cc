"""Proposals: staged file changes that wait for approval, then are written exactly as staged."""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from app.errors import Conflict, KeelError, NotFound, UsageError
from app.governance import log, policy
from app.governance.secrets_scan import ensure_clean

PROPOSALS_DIR = Path(".keel") / "ai" / "proposals"
LOCK_FILE = Path(".keel") / "ai" / ".lock"
# Files that change only through `keel ai` and `keel memory` themselves, never by a proposal.
GOVERNANCE_ROOTS = (".keel", "MEMORY.md", ".git")
MAX_FILE_BYTES = 1_000_000
_ID = re.compile(r"^[0-9]{8}-[0-9a-f]{6}$")


@dataclass(frozen=True)
class Approver:
    """A person authenticated against Keel's users (or, for an allowed change, the OS user)."""

    email: str
    user_id: int | None = None
    role: str | None = None


@dataclass
class Staged:
    path: str
    content: str
    sha256: str
    existed: bool  # the file existed when staged
    base_sha256: str | None  # its content then: apply refuses if it changed since


@dataclass
class Proposal:
    id: str
    title: str
    capability: str
    capabilities: list[str]  # the declared one plus those its paths imply
    bucket: str
    approvals_needed: int  # fixed when proposed: a later policy edit does not change it
    author: str
    created_at: str
    status: str  # pending | approved | rejected | applied
    files: list[Staged] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    rejection: dict[str, Any] | None = None
    applied: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None  # what a `keel memory` proposal will write
    policy_source: str = ""

    @property
    def kind(self) -> str:
        return "memory" if self.memory is not None else "change"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Proposal:
        data = dict(data)
        data["files"] = [Staged(**f) for f in data.get("files", [])]
        return cls(**data)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """One writer at a time for proposal state, across processes."""
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ---- paths -------------------------------------------------------------------------------


def _escape(rel: str, why: str) -> KeelError:
    return UsageError(
        f"path {rel[:100]!r} is not allowed",
        why=why,
        fix="give a path relative to the project directory, inside it, e.g. customers.py or "
        "migrations/0002_add_notes.sql",
    )


def check_path(root: Path, rel: str, *, governance: bool = False) -> Path:
    """The file `rel` names inside the project, or a refusal. Run when proposing AND when
    applying, so a symbolic link created after staging cannot redirect the write."""
    if not rel or "\x00" in rel or "\\" in rel:
        raise _escape(rel, "a path must be non-empty, without NUL or backslashes")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or rel.startswith("~"):
        raise _escape(rel, "absolute paths could write anywhere on this machine")
    if any(part == ".." for part in pure.parts):
        raise _escape(rel, "'..' would leave the project directory")
    if pure.parts and pure.parts[0] in GOVERNANCE_ROOTS and not governance:
        raise _escape(
            rel, f"{pure.parts[0]} changes only through `keel ai` and `keel memory` themselves"
        )
    base = root.resolve()
    target = base.joinpath(*pure.parts)
    if target.is_symlink():
        raise _escape(rel, "it is a symbolic link, which could point outside the project")
    if not target.resolve().is_relative_to(base):
        raise _escape(rel, "a symbolic link on the way leads outside the project directory")
    if target.exists() and not target.is_file():
        raise _escape(rel, "it is a directory or a special file, not a regular file")
    return target


def implied_capabilities(rel: str, existed: bool) -> set[str]:
    """What writing `rel` amounts to, whatever the proposal claims."""
    parts = PurePosixPath(rel).parts
    caps: set[str] = set()
    if existed:
        caps.add("edit_existing_code")
    if parts[0] == "migrations":
        caps.add("modify_table" if existed else "draft_migration")
    if parts[0] in ("templates", "static"):
        caps.add("edit_templates")
    if rel == "keel.toml":
        caps.add("security_settings")
    if rel in ("site.toml", "pyproject.toml") or parts[-1].startswith("requirements"):
        caps.add("add_dependency")
    return caps


# ---- storage -----------------------------------------------------------------------------


def _file(root: Path, proposal_id: str) -> Path:
    return root / PROPOSALS_DIR / f"{proposal_id}.json"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def save(root: Path, proposal: Proposal) -> None:
    _write_json(_file(root, proposal.id), proposal.as_json())


def load(root: Path, proposal_id: str) -> Proposal:
    if not _ID.match(proposal_id):
        raise UsageError(
            f"{proposal_id[:40]!r} is not a proposal id",
            why="ids look like 20261204-3fa9c1",
            fix="see `keel ai list`",
        )
    path = _file(root, proposal_id)
    if not path.exists():
        raise NotFound(f"no proposal {proposal_id}", fix="see `keel ai list`")
    try:
        return Proposal.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise KeelError(
            f"proposal file {path} is damaged ({exc})",
            fix="restore it from version control",
        ) from None


def all_proposals(root: Path) -> list[Proposal]:
    folder = root / PROPOSALS_DIR
    if not folder.is_dir():
        return []
    return [load(root, p.stem) for p in sorted(folder.glob("*.json")) if _ID.match(p.stem)]


# ---- the lifecycle -----------------------------------------------------------------------


def _new_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"


def propose(
    root: Path,
    capability: str,
    title: str,
    files: list[tuple[str, str]],
    *,
    author: str,
    memory: dict[str, Any] | None = None,
    extra_capabilities: tuple[str, ...] = (),
) -> Proposal:
    """Stage `files` ((relative path, text)) under `capability`; refused when blocked."""
    pol = policy.load(root)
    policy.check_capability(capability)
    if not title.strip():
        raise UsageError("a proposal needs a title", fix='add --title "what this changes and why"')
    if memory is None and not files:
        raise UsageError("a proposal needs at least one file", fix="add --file PATH=SOURCE")
    ensure_clean(title, "the title")
    staged: list[Staged] = []
    caps = {capability, *extra_capabilities}
    seen: set[str] = set()
    for rel, content in files:
        target = check_path(root, rel)
        norm = str(PurePosixPath(rel))
        if norm in seen:
            raise UsageError(f"{norm} is staged twice", fix="give each file once")
        seen.add(norm)
        if len(content.encode()) > MAX_FILE_BYTES:
            raise UsageError(f"{norm} is larger than 1 MB", fix="stage source files, not data")
        ensure_clean(content, norm)
        existed = target.exists()
        base = sha256(target.read_text(encoding="utf-8", errors="replace")) if existed else None
        caps |= implied_capabilities(norm, existed)
        staged.append(Staged(norm, content, sha256(content), existed, base))
    ordered = sorted(caps, key=list(policy.CATALOGUE).index)
    blocked = [c for c in ordered if pol.bucket(c) == "blocked"]
    if blocked:
        log.append(root, "refused", capability=capability, title=title, blocked=blocked)
        raise KeelError(
            f"refused: {', '.join(blocked)} is blocked by the project's AI policy",
            why=f"{pol.source} puts {', '.join(blocked)} in the blocked list"
            + ("" if blocked == [capability] else " (implied by the files it writes)"),
            fix="leave this change to a person, or have the team move it with "
            f"`keel ai allow {blocked[0]} --with-approval` after review",
        )
    needed = max(pol.approvals_needed(c) for c in ordered)
    bucket = "needs_approval" if needed else "allowed"
    with locked(root):
        proposal = Proposal(
            id=_new_id(), title=title.strip(), capability=capability, capabilities=ordered,
            bucket=bucket, approvals_needed=needed, author=author, created_at=log.now(),
            status="approved" if needed == 0 else "pending", files=staged, memory=memory,
            policy_source=pol.source,
        )  # fmt: skip
        while _file(root, proposal.id).exists():
            proposal.id = _new_id()
        save(root, proposal)
        log.append(
            root, "proposed", proposal=proposal.id, capability=capability, capabilities=ordered,
            bucket=bucket, approvals_needed=needed, author=author,
            files=[f.path for f in staged], kind=proposal.kind,
        )  # fmt: skip
    return proposal


def _not_pending(proposal: Proposal, verb: str) -> Conflict:
    return Conflict(
        f"proposal {proposal.id} is {proposal.status}; it cannot be {verb}",
        why="only a pending proposal takes approvals or rejections",
        fix=f"see `keel ai review {proposal.id}`",
    )


def approve(root: Path, proposal_id: str, by: Approver) -> Proposal:
    with locked(root):
        proposal = load(root, proposal_id)
        if proposal.status != "pending":
            raise _not_pending(proposal, "approved")
        if any(
            a["email"] == by.email or a.get("user_id") == by.user_id for a in proposal.approvals
        ):
            raise Conflict(
                f"{by.email} has already approved proposal {proposal.id}",
                why=f"it needs {proposal.approvals_needed} distinct approvers",
                fix="ask another administrator or developer to approve it",
            )
        proposal.approvals.append({"email": by.email, "user_id": by.user_id, "at": log.now()})
        if len(proposal.approvals) >= proposal.approvals_needed:
            proposal.status = "approved"
        save(root, proposal)
        log.append(
            root, "approved", proposal=proposal.id, by=by.email, user_id=by.user_id,
            approvals=len(proposal.approvals), approvals_needed=proposal.approvals_needed,
        )  # fmt: skip
    return proposal


def reject(root: Path, proposal_id: str, by: Approver, reason: str) -> Proposal:
    if not reason.strip():
        raise UsageError("a rejection needs a reason", fix='add --reason "why not"')
    with locked(root):
        proposal = load(root, proposal_id)
        if proposal.status not in ("pending", "approved"):
            raise _not_pending(proposal, "rejected")
        proposal.status = "rejected"
        proposal.rejection = {"email": by.email, "user_id": by.user_id, "at": log.now(),
                              "reason": reason.strip()}  # fmt: skip
        save(root, proposal)
        log.append(root, "rejected", proposal=proposal.id, by=by.email, reason=reason.strip())
    return proposal


def ensure_applicable(proposal: Proposal) -> None:
    if proposal.status == "applied":
        raise Conflict(f"proposal {proposal.id} was already applied", fix="nothing to do")
    if proposal.status != "approved" or len(proposal.approvals) < proposal.approvals_needed:
        raise Conflict(
            f"proposal {proposal.id} is {proposal.status}: {len(proposal.approvals)} of "
            f"{proposal.approvals_needed} approvals",
            why="a change that needs approval is written only once fully approved",
            fix=f"have distinct approvers run `keel ai approve {proposal.id} --as EMAIL`",
        )


def write_files(root: Path, files: list[tuple[str, str]], *, governance: bool = False) -> None:
    """Write each file atomically, re-checking its path right before (symlinks made since)."""
    targets = [(check_path(root, rel, governance=governance), text) for rel, text in files]
    for target, text in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        check_path(root, str(target.relative_to(root.resolve()).as_posix()), governance=governance)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".keel-tmp-")
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)


def mark_applied(root: Path, proposal: Proposal, by: Approver, paths: list[str]) -> None:
    proposal.status = "applied"
    proposal.applied = {"email": by.email, "user_id": by.user_id, "at": log.now(), "files": paths}
    save(root, proposal)
    log.append(root, "applied", proposal=proposal.id, by=by.email, files=paths)


def apply(root: Path, proposal_id: str, by: Approver) -> Proposal:
    with locked(root):
        proposal = load(root, proposal_id)
        if proposal.memory is not None:
            raise UsageError(
                f"proposal {proposal.id} is a memory entry",
                fix=f"run `keel memory apply {proposal.id}`",
            )
        ensure_applicable(proposal)
        for staged in proposal.files:
            target = check_path(root, staged.path)
            now = sha256(target.read_text(encoding="utf-8", errors="replace")) if (
                target.exists()) else None  # fmt: skip
            if now != staged.base_sha256:
                raise Conflict(
                    f"{staged.path} changed since proposal {proposal.id} was made",
                    why="applying would overwrite a change nobody reviewed with this proposal",
                    fix="reject this proposal and propose the change again on the current file",
                )
        write_files(root, [(f.path, f.content) for f in proposal.files])
        mark_applied(root, proposal, by, [f.path for f in proposal.files])
    return proposal


def review(root: Path, proposal: Proposal) -> str:
    """A unified diff of every staged file against the project as it is now."""
    chunks: list[str] = []
    for staged in proposal.files:
        target = root / staged.path
        current = target.read_text(encoding="utf-8", errors="replace") if target.is_file() else ""
        old_name = f"a/{staged.path}" if target.is_file() else "/dev/null"
        chunks.extend(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                staged.content.splitlines(keepends=True),
                old_name,
                f"b/{staged.path}",
            )
        )
        if chunks and not chunks[-1].endswith("\n"):
            chunks.append("\n")
    return "".join(chunks)
