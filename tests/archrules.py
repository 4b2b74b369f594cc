"""Static checks of the code's shape, by parsing it (AST), never by importing it.

Used by tests/test_architecture.py on the real tree and on small fixture modules that break
each rule, so the tests show the checker can fail.

- `transaction_violations`: web handlers and CLI commands never open a transaction or write
  the audit log; the services in app/authority (and app/admin's services) do.
- `import_graph` / `find_cycles`: no module of app/ imports itself back, at any depth,
  counting imports inside functions too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

_AUDIT_INSERT = re.compile(r"\binsert\s+into\s+keel_audit\b", re.IGNORECASE)


# ---- transactions and audit writes --------------------------------------------------------


def _audit_aliases(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names bound to the audit module, and names bound to its `record` function."""
    modules: set[str] = set()
    records: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "app":
            for alias in node.names:
                if alias.name == "audit":
                    modules.add(alias.asname or "audit")
        elif isinstance(node, ast.ImportFrom) and node.module == "app.audit":
            for alias in node.names:
                if alias.name == "record":
                    records.add(alias.asname or "record")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "app.audit" and alias.asname:
                    modules.add(alias.asname)
    return modules, records


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def transaction_violations(source: str, filename: str = "<fixture>") -> list[str]:
    """Each place `source` opens a transaction or writes the audit log, as `file:line: what`."""
    tree = ast.parse(source, filename)
    modules, records = _audit_aliases(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            what = ""
            if isinstance(func, ast.Attribute) and func.attr == "transaction":
                what = f"opens a transaction ({_dotted(func)}())"
            elif isinstance(func, ast.Attribute) and func.attr in ("record", "_append"):
                owner = _dotted(func.value)
                if owner in modules or owner == "app.audit":
                    what = f"writes the audit log ({_dotted(func)}())"
            elif isinstance(func, ast.Name) and func.id in records:
                what = f"writes the audit log ({func.id}())"
            if what:
                found.append((node.lineno, what))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _AUDIT_INSERT.search(node.value)
        ):
            found.append((node.lineno, "writes the audit log (INSERT INTO keel_audit)"))
    return [f"{filename}:{line}: {what}" for line, what in sorted(found)]


# ---- the import graph ---------------------------------------------------------------------


def module_names(root: Path, package: str = "app") -> dict[str, Path]:
    """Every module of the package under `root` (the directory holding `package/`)."""
    out: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_package(name: str, modules: Mapping[str, Path]) -> bool:
    path = modules.get(name)
    return path is not None and path.name == "__init__.py"


def _resolve_relative(module: str | None, level: int, importer: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    # A package's own name is its base; a module's base is its parent package.
    drop = level - 1 if is_package else level
    base = base[: len(base) - drop] if drop else base
    return ".".join([*base, module] if module else base)


def imports_of(
    source: str, importer: str, modules: Mapping[str, Path], *, is_package: bool = False
) -> set[str]:
    """The modules of `modules` that `source` imports, anywhere in the file (module level and
    inside functions; `if TYPE_CHECKING:` blocks excepted, as they never run).

    `from x import y` counts as an import of `x.y` when that is a module, else of `x`; an
    import of `a.b.c` also runs the packages `a` and `a.b` first, so those count too, except
    the importer's own parent packages, which are already running when it runs."""
    tree = ast.parse(source, importer)
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _dotted(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            for inner in node.body:
                skipped.update(id(n) for n in ast.walk(inner))
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(node.module, node.level, importer, is_package)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    targets.add(f"{base}.{alias.name}")
                else:  # a name defined in `base` itself: base must finish running first
                    targets.add(base)
    out: set[str] = set()
    for target in targets:
        if target in modules and target != importer:
            out.add(target)
        parts = target.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            # Parent packages run first, but the importer's own parents are already running:
            # a submodule reaching for its sibling is not a cycle through their package.
            if prefix in modules and not f"{importer}.".startswith(f"{prefix}."):
                out.add(prefix)
    return out


def import_graph(root: Path, package: str = "app") -> dict[str, set[str]]:
    modules = module_names(root, package)
    return {
        name: imports_of(path.read_text(), name, modules, is_package=_is_package(name, modules))
        for name, path in modules.items()
    }


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import), each
    as one cycle through them, shortest first. Tarjan's algorithm, iterative."""
    edges = {k: sorted(set(v)) for k, v in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, int]] = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = edges.get(node, [])
            if i < len(succ):
                work.append((node, i + 1))
                nxt = succ[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, []):
                    components.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted((_one_cycle(c, edges) for c in components), key=len)


def _one_cycle(component: list[str], edges: Mapping[str, list[str]]) -> list[str]:
    """A readable cycle inside a component: a → b → … → a (breadth-first, shortest)."""
    members = set(component)
    start = component[0]
    paths: dict[str, list[str]] = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in edges.get(node, []):
            if nxt == start:
                return [*paths[node], start]
            if nxt in members and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return [*component, start]
