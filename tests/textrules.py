"""What users read, gathered from the source without importing it, and the words it must not use.

Users read: the messages of `KeelError` and its subclasses (problem, why, fix, retry, field
messages), argparse help, descriptions and epilogs, the page and mail templates (Jinja comments
excepted), and the documentation embedded in the executable (docs/).
Used by tests/test_product_text.py on the real tree and on fixtures that break the rule.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

# Requirement ids (LOGIN-6, AUTHZ-3, R4-1), the specification and process words, and paths
# that leave the repository.
FORBIDDEN = re.compile(
    r"\b[A-Z][A-Z0-9]{1,5}-\d+\b"
    r"|\bSPEC\b|§"
    r"|(?i:\bissues? #?\d+)"
    r"|(?i:\bthe reviewer\b|\bthe two engineers\b)"
    r"|\.\./shared\b|\bshared/(?:SPEC|DESIGN)\b"
)
# Names of standards that look like ids but are what an operator expects to read.
ALLOWED = frozenset(
    {"UTF-8", "SHA-256", "SHA-1", "SHA-512", "ISO-8601", "BSD-3", "HTTP-1", "TLS-1"}
)

ERROR_BASES = {"KeelError"}
# argparse keywords whose text `--help` prints.
HELP_KEYWORDS = {"help", "description", "epilog", "usage"}
# Calls whose every string argument is shown: a setting's help text (`--help`, the reference).
SHOWN_CALLS = {"Setting"}
_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)


def hits(text: str) -> list[str]:
    """The forbidden words in `text`, in order."""
    return [m.group(0) for m in FORBIDDEN.finditer(text) if m.group(0) not in ALLOWED]


def error_classes(sources: dict[str, str]) -> set[str]:
    """`KeelError` and every class under it defined in `sources`, by name."""
    found = set(ERROR_BASES)
    trees = [ast.parse(text) for text in sources.values()]
    grew = True
    while grew:
        grew = False
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in found:
                    bases = {
                        b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                        for b in node.bases
                    }
                    if bases & found:
                        found.add(node.name)
                        grew = True
    return found


def _strings(node: ast.AST) -> Iterator[tuple[int, str]]:
    """The literal text inside an expression: strings, f-string parts, dict values."""
    for inner in ast.walk(node):
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            yield getattr(inner, "lineno", 0), inner.value


def _called_name(call: ast.Call) -> str:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return ""


def python_text(source: str, errors: set[str]) -> Iterator[tuple[int, str]]:
    """(line, text) of what a user reads in a Python module: error messages and argparse help."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if _called_name(node) in errors or _called_name(node) in SHOWN_CALLS:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                yield from _strings(arg)
        else:
            for keyword in node.keywords:
                if keyword.arg in HELP_KEYWORDS:
                    yield from _strings(keyword.value)


def template_text(source: str) -> str:
    """A template as it reaches the browser or the mail, less its Jinja comments."""
    return _JINJA_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), source)


def scan(root: Path, *, exempt: tuple[str, ...] = ()) -> list[str]:
    """Every forbidden word users would read, as `path:line: word`."""
    found: list[str] = []
    py = {str(p.relative_to(root)): p.read_text() for p in sorted((root / "app").rglob("*.py"))}
    errors = error_classes(py)
    for name, source in py.items():
        for line, text in python_text(source, errors):
            found += [f"{name}:{line}: {word}" for word in hits(text)]
    for path in sorted((root / "app").rglob("templates/**/*")):
        if path.is_file():
            text = template_text(path.read_text())
            found += _by_line(str(path.relative_to(root)), text)
    for path in sorted((root / "docs").rglob("*.md")):
        name = str(path.relative_to(root))
        if name not in exempt:
            found += _by_line(name, path.read_text())
    return found


def _by_line(name: str, text: str) -> list[str]:
    return [
        f"{name}:{number}: {word}"
        for number, line in enumerate(text.splitlines(), 1)
        for word in hits(line)
    ]


# The specification and style guide live outside the repository: code must not send a reader
# there. Requirement ids are fine in comments; docs/requirements.md defines them.
OUTSIDE = re.compile(r"\.\./shared\b|\b(?:SPEC|DESIGN)\.md\b|\bSPEC\b|\bDESIGN\b|§")


def pointers_outside(source: str) -> list[str]:
    """Words in code, comments and docstrings that send a reader outside the repository."""
    return [m.group(0) for m in OUTSIDE.finditer(source)]


def undefined_ids(source: str, defined: set[str]) -> list[str]:
    """Requirement ids used in `source` that docs/requirements.md does not define."""
    # Not inside a character range such as `[A-Z0-9]` (a regular expression, not an id).
    ids = re.findall(r"(?<![\w-])[A-Z][A-Z0-9]{1,5}-\d+\b", source)
    return sorted({i for i in ids if i not in defined and i not in ALLOWED})
