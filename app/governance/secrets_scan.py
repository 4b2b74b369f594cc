"""A scan for things that look like secrets, run before any proposal or memory entry is written."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from app.errors import KeelError

# (class, pattern). Classes name what was found, never the text itself.
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("API key (sk-)", re.compile(r"\bsk-(?:[A-Za-z0-9_-]{16,})")),
    ("AWS access key", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("Stripe key", re.compile(r"\b(?:sk|rk)_live_[0-9A-Za-z]{16,}")),
    ("password in a connection URL", re.compile(r"[a-z][a-z0-9+.-]*://[^\s:/@]+:([^\s@/]+)@")),
)
# A long run of token-like characters with the entropy of random data.
_CANDIDATE = re.compile(r"[A-Za-z0-9+/=_-]{32,}")
ENTROPY_BITS = 4.0
_PLACEHOLDER = re.compile(r"^(\*+|x+|\.+|<[^>]*>|\$\{?[A-Za-z_]+\}?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    line: int
    kind: str


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _high_entropy(token: str) -> bool:
    # Hex digests (commit ids, checksums) are common in a project's text and not secrets:
    # only mixed-case or mixed-alphabet runs count.
    if re.fullmatch(r"[0-9a-f]+", token) or re.fullmatch(r"[0-9A-F]+", token):
        return False
    classes = sum(bool(re.search(p, token)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]"))
    return classes >= 3 and _entropy(token) >= ENTROPY_BITS


def scan(text: str) -> list[Finding]:
    findings: list[Finding] = []
    for number, line in enumerate(text.splitlines(), 1):
        for kind, pattern in PATTERNS:
            m = pattern.search(line)
            if m is None:
                continue
            if kind.startswith("password") and _PLACEHOLDER.match(m.group(1)):
                continue  # postgresql://app:***@db/app is documentation, not a secret
            findings.append(Finding(number, kind))
            break
        else:
            if any(_high_entropy(t) for t in _CANDIDATE.findall(line)):
                findings.append(Finding(number, "high-entropy string"))
    return findings


def ensure_clean(text: str, where: str) -> None:
    """Refuse, naming the line and the class, when `text` looks like it holds a secret."""
    findings = scan(text)
    if findings:
        first = findings[0]
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise KeelError(
            f"{where} line {first.line} looks like it holds a secret: {first.kind}{more}",
            why="proposals and memory entries are kept in version control, where a secret "
            "would stay readable forever; nothing was written",
            fix="remove the secret (refer to it by the name of the setting or credential that "
            "holds it) and propose again",
        )
