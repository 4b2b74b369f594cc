"""The capability catalogue and the policy file `.keel/ai.toml` that sorts it into buckets."""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.errors import KeelError, UsageError

Bucket = Literal["allowed", "needs_approval", "blocked"]
BUCKETS: tuple[Bucket, ...] = ("allowed", "needs_approval", "blocked")
POLICY_FILE = Path(".keel") / "ai.toml"

# The fixed catalogue: name → (what it covers, built-in bucket). A policy may move a capability
# between buckets but never invent one, so a typo cannot silently allow something.
CATALOGUE: dict[str, tuple[str, Bucket]] = {
    "create_resource": ("add a new resource declaration (a new file)", "allowed"),
    "draft_migration": ("write a new numbered migration for review (not applied)", "allowed"),
    "edit_templates": ("change template overrides or static files", "needs_approval"),
    "edit_existing_code": ("change a file that already exists", "needs_approval"),
    "add_dependency": ("add or change a dependency", "needs_approval"),
    "modify_table": ("change an existing migration or table definition", "needs_approval"),
    "apply_migration": ("run migrations against a database", "needs_approval"),
    "write_memory": ("add an entry to the project memory", "needs_approval"),
    "supersede_memory": ("add a memory entry that supersedes another", "needs_approval"),
    "redact_memory": ("redact part of a memory entry", "needs_approval"),
    "security_settings": ("change keel.toml, secrets, sign-in or session settings", "blocked"),
    "production_deploy": ("build or deploy to production", "blocked"),
    "delete_data": ("delete rows or drop tables", "blocked"),
    "edit_audit_log": ("touch the audit log, the AI log or the proposals", "blocked"),
    "edit_ai_policy": ("change this policy", "blocked"),
}
# Built in: these need two distinct approvers unless the policy lists others.
DEFAULT_TWO_APPROVERS = (
    "apply_migration",
    "modify_table",
    "redact_memory",
    "security_settings",
    "production_deploy",
    "delete_data",
    "edit_audit_log",
    "edit_ai_policy",
)
# Redaction rewrites history that others relied on: never fewer than two, whatever the policy.
MINIMUM_APPROVALS = {"redact_memory": 2}


@dataclass(frozen=True)
class Policy:
    buckets: dict[str, Bucket]  # every catalogue capability → its bucket
    two_approvers: frozenset[str]
    source: str  # "built-in defaults" or the file's path

    def bucket(self, capability: str) -> Bucket:
        return self.buckets[check_capability(capability)]

    def approvals_needed(self, capability: str) -> int:
        bucket = self.bucket(capability)
        if bucket != "needs_approval":
            return 0
        needed = 2 if capability in self.two_approvers else 1
        return max(needed, MINIMUM_APPROVALS.get(capability, 0))

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "capabilities": {
                name: {
                    "bucket": self.buckets[name],
                    "approvals_needed": self.approvals_needed(name),
                    "description": CATALOGUE[name][0],
                }
                for name in CATALOGUE
            },
        }


def check_capability(name: str) -> str:
    if name not in CATALOGUE:
        raise UsageError(
            f"unknown capability {name[:60]!r}",
            why="the catalogue of capabilities is fixed so a typo cannot allow something by accident",
            fix="use one of: " + ", ".join(CATALOGUE),
        )
    return name


def defaults() -> Policy:
    return Policy(
        {name: bucket for name, (_, bucket) in CATALOGUE.items()},
        frozenset(DEFAULT_TWO_APPROVERS),
        "built-in defaults",
    )


def _malformed(path: Path, what: str) -> KeelError:
    return KeelError(
        f"the AI policy {path} is malformed: {what}",
        why="a policy Keel cannot read exactly would leave it guessing what is allowed",
        fix="correct the file (compare with `keel ai init --print`), or remove it to use the "
        "built-in defaults",
    )


def _names(path: Path, where: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _malformed(path, f"{where} must be a list of capability names in quotes")
    for name in value:
        if name not in CATALOGUE:
            raise _malformed(
                path, f"{where} names {name[:60]!r}, which is not a capability (known: "
                + ", ".join(CATALOGUE) + ")",
            )  # fmt: skip
    return list(value)


def parse(text: str, path: Path) -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _malformed(path, str(exc)) from None
    unknown = set(data) - {"capabilities", "approvals"}
    if unknown:
        raise _malformed(path, f"unknown table(s) {', '.join(sorted(unknown))}")
    caps = data.get("capabilities", {})
    if not isinstance(caps, dict) or set(caps) - set(BUCKETS):
        raise _malformed(path, "[capabilities] holds only allowed, needs_approval and blocked")
    buckets = dict(defaults().buckets)
    seen: dict[str, str] = {}
    for bucket in BUCKETS:
        for name in _names(path, f"capabilities.{bucket}", caps.get(bucket, [])):
            if name in seen:
                raise _malformed(path, f"{name} is listed in both {seen[name]} and {bucket}")
            seen[name] = bucket
            buckets[name] = bucket
    approvals = data.get("approvals", {})
    if not isinstance(approvals, dict) or set(approvals) - {"two_approvers"}:
        raise _malformed(path, "[approvals] holds only two_approvers")
    two = approvals.get("two_approvers", list(DEFAULT_TWO_APPROVERS))
    return Policy(buckets, frozenset(_names(path, "approvals.two_approvers", two)), str(path))


def load(root: Path) -> Policy:
    """The project's policy, or the built-in defaults when it has no `.keel/ai.toml`."""
    path = root / POLICY_FILE
    if not path.exists():
        return defaults()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _malformed(path, f"cannot be read ({exc})") from None
    return parse(text, path)


def default_text() -> str:
    """The file `keel ai init` writes: the defaults, every capability explained."""

    def block(bucket: Bucket) -> list[str]:
        lines = [f"{bucket} = ["]
        for name, (what, default) in CATALOGUE.items():
            if default == bucket:
                lines.append(f'    "{name}",  # {what}')
        return [*lines, "]"]

    two = [f'    "{name}",' for name in DEFAULT_TWO_APPROVERS]
    return "\n".join(
        [
            "# What an AI coding assistant may do in this project (`keel docs governance`).",
            "# allowed: applied without approval. needs_approval: applied once approved by",
            "# distinct people with the administrator or developer role (`--as EMAIL`).",
            "# blocked: refused when proposed. Change it with `keel ai allow|deny` or by hand,",
            "# and review the change like code.",
            "",
            "[capabilities]",
            *block("allowed"),
            *block("needs_approval"),
            *block("blocked"),
            "",
            "[approvals]",
            "# These need two distinct approvers; the others one. redact_memory always needs two.",
            "two_approvers = [",
            *two,
            "]",
            "",
        ]
    )


# ---- allow / deny: a careful line editor that keeps comments --------------------------------


def _strip_comment(line: str) -> str:
    """The line without a trailing comment (a # outside a string)."""
    in_str = False
    for i, ch in enumerate(line):
        if ch == '"' and (i == 0 or line[i - 1] != "\\"):
            in_str = not in_str
        elif ch == "#" and not in_str:
            return line[:i]
    return line


_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*$")


def _array_span(lines: list[str], table: str, key: str) -> tuple[int, int] | None:
    """(first, last) line index of `key = [ … ]` inside `[table]`, or None."""
    current = ""
    start_key = re.compile(rf"^\s*{re.escape(key)}\s*=\s*\[")
    for i, line in enumerate(lines):
        code = _strip_comment(line)
        m = _TABLE.match(code)
        if m:
            current = m.group(1)
            continue
        if current == table and start_key.match(code):
            for j in range(i, len(lines)):
                if "]" in _strip_comment(lines[j]):
                    return i, j
            return None
    return None


def _table_end(lines: list[str], table: str) -> int | None:
    """Index after the last non-blank line of `[table]`, or None when the table is missing."""
    current, end = "", None
    for i, line in enumerate(lines):
        m = _TABLE.match(_strip_comment(line))
        if m:
            current = m.group(1)
            if current == table:
                end = i + 1
            continue
        if current == table and line.strip():
            end = i + 1
    return end


def _remove(lines: list[str], name: str) -> list[str]:
    quoted = re.escape(f'"{name}"')
    own_line = re.compile(rf"^\s*{quoted}\s*,?\s*(#.*)?$")
    out: list[str] = []
    table = ""
    for line in lines:
        m = _TABLE.match(_strip_comment(line))
        if m:
            table = m.group(1)
        if table != "capabilities":  # [approvals] lists name capabilities too: leave them
            out.append(line)
            continue
        if own_line.match(line):
            continue
        code = _strip_comment(line)
        if f'"{name}"' in code:
            rest = line[len(code) :]
            code = re.sub(rf"{quoted}\s*,\s*", "", code, count=1)
            code = re.sub(rf",?\s*{quoted}", "", code, count=1)
            out.append(code + rest)
            continue
        out.append(line)
    return out


def _add(lines: list[str], key: str, name: str) -> list[str]:
    span = _array_span(lines, "capabilities", key)
    if span is None:
        end = _table_end(lines, "capabilities")
        if end is None:
            return [*lines, "", "[capabilities]", f'{key} = ["{name}"]']
        return [*lines[:end], f'{key} = ["{name}"]', *lines[end:]]
    first, last = span
    if first == last:  # one line: `key = [ … ]`
        line = lines[first]
        code = _strip_comment(line)
        rest = line[len(code) :]
        head, _, tail = code.rpartition("]")
        inner = head[head.index("[") + 1 :].strip()
        sep = "" if not inner else (" " if inner.endswith(",") else ", ")
        lines = list(lines)
        lines[first] = f'{head.rstrip()}{sep}"{name}"]{tail}{rest}'
        return lines
    lines = list(lines)
    indent = "    "
    for i in range(last - 1, first, -1):  # the last element line gets a comma if it lacks one
        code = _strip_comment(lines[i])
        if code.strip():
            indent = code[: len(code) - len(code.lstrip())]
            if not code.rstrip().endswith(","):
                stripped = code.rstrip()
                lines[i] = stripped + "," + lines[i][len(stripped) :]
            break
    closing = _strip_comment(lines[last])
    before = closing[: closing.index("]")]
    if before.strip():  # elements on the closing line: `"a", "b"]`
        lines[last] = lines[last].replace("]", f', "{name}"]', 1)
        return lines
    return [*lines[:last], f'{indent}"{name}",', *lines[last:]]


def move(root: Path, capability: str, bucket: Bucket) -> tuple[str, str]:
    """Move `capability` into `bucket` in the policy file, keeping everything else; returns the
    (old, new) text. Refuses when the result would not read back as exactly that change."""
    check_capability(capability)
    path = root / POLICY_FILE
    if not path.exists():
        raise KeelError(
            f"{POLICY_FILE} does not exist",
            why="allow and deny edit the project's policy file, which is kept in version control",
            fix="run `keel ai init` first",
        )
    old = path.read_text(encoding="utf-8")
    before = parse(old, path)
    lines = _remove(old.splitlines(), capability)
    lines = _add(lines, bucket, capability)
    new = "\n".join(lines) + ("\n" if old.endswith("\n") or not old else "")
    try:
        after = parse(new, path)
    except KeelError:
        after = None
    expected = {**before.buckets, capability: bucket}
    if after is None or after.buckets != expected or after.two_approvers != before.two_approvers:
        raise KeelError(
            f"cannot edit {POLICY_FILE} safely",
            why="the file's layout is one the line editor does not recognise, so the edit "
            "would not read back as exactly this change; nothing was written",
            fix=f'edit the [capabilities] lists by hand: put "{capability}" in {bucket}',
        )
    if new != old:
        path.write_text(new, encoding="utf-8")
    return old, new


def unified_diff(old: str, new: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
    )
