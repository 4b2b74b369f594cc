"""Rules about where code lives, checked by parsing app/ (see tests/archrules.py).

Each rule has a fixture that breaks it, to show the checker reports the break.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.archrules import find_cycles, import_graph, transaction_violations
from tests.helpers import REPO

# ---- services own transactions -----------------------------------------------------------

THIN_LAYERS = ("app/web", "app/cli")
# Inside app/admin, the modules that handle requests: the pages, the export, the route table,
# and the entity declarations whose hooks call services. The rest of app/admin are services.
ADMIN_HANDLERS = (
    "*_views.py",
    "export.py",
    "dashboard.py",
    "routes.py",
    "setup.py",
    "builtin/*.py",
)


def handler_modules(root: Path) -> list[Path]:
    """Every module of the thin layers under `root` (a checkout, or a fixture tree)."""
    found = [p for layer in THIN_LAYERS for p in (root / layer).rglob("*.py")]
    found += [p for pattern in ADMIN_HANDLERS for p in (root / "app/admin").glob(pattern)]
    return sorted(set(found))


def thin_layer_violations(root: Path) -> list[str]:
    return [
        v
        for path in handler_modules(root)
        for v in transaction_violations(path.read_text(), str(path.relative_to(root)))
    ]


# A handler that does what a service should: a fixture, never imported.
BAD_HANDLER = textwrap.dedent(
    """
    from app import audit as journal
    from app.audit import record as write_event

    async def lock(request, conn, ctx, event):
        async with conn.transaction():
            await conn.execute("UPDATE keel_users SET locked_until = now()")
            await journal.record(conn, ctx, event)
        await write_event(conn, ctx, event)
        await conn.execute("insert into keel_audit (id) values (1)")
    """
)


def test_the_checker_reports_each_way_of_breaking_the_rule() -> None:
    found = transaction_violations(BAD_HANDLER, "bad_handler.py")
    assert found == [
        "bad_handler.py:6: opens a transaction (conn.transaction())",
        "bad_handler.py:8: writes the audit log (journal.record())",
        "bad_handler.py:9: writes the audit log (write_event())",
        "bad_handler.py:10: writes the audit log (INSERT INTO keel_audit)",
    ]


def test_the_checker_accepts_a_thin_handler() -> None:
    thin = textwrap.dedent(
        """
        from app import audit
        from app.authority import accounts

        async def lock(request, conn, ctx, actor):
            await accounts.end_sessions(conn, ctx, actor, 4, reason="left the company")
            return audit.fingerprint("not a write")
        """
    )
    assert transaction_violations(thin) == []


def test_an_admin_view_that_writes_the_audit_log_breaks_the_rule(tmp_path: Path) -> None:
    """The admin's pages are handlers too: a fixture `*_views.py` doing a service's work is
    reported, while a service module beside it (writes.py) may."""
    for name, text in (
        ("app/admin/bad_views.py", BAD_HANDLER),
        ("app/admin/builtin/things.py", BAD_HANDLER),
        ("app/admin/writes.py", BAD_HANDLER),
        ("app/web/fine.py", "x = 1\n"),
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = thin_layer_violations(tmp_path)
    assert {line.split(":")[0] for line in found} == {
        "app/admin/bad_views.py",
        "app/admin/builtin/things.py",
    }
    assert len(found) == 8


def test_web_handlers_commands_and_admin_views_leave_transactions_to_the_services() -> None:
    modules = handler_modules(REPO)
    for must in ("app/web/app.py", "app/cli/user.py", "app/admin/delete_views.py",
                 "app/admin/export.py", "app/admin/builtin/users.py"):  # fmt: skip
        assert REPO / must in modules, must
    found = thin_layer_violations(REPO)
    assert found == [], (
        "move these into a function of app/authority (or app/admin's services) that opens the"
        " transaction and records the audit event, and call it from here:\n" + "\n".join(found)
    )


# ---- no import cycles ---------------------------------------------------------------------


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    # views imports setup at the top; setup reaches back for views inside a function, and
    # names it as `from pkg import views`, which must resolve to the submodule.
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/views.py": "from pkg.setup import STATE\n",
            "pkg/setup.py": """
                STATE = {}

                def setup(app):
                    from pkg import views

                    return views
                """,
            "pkg/leaf.py": "import pkg.setup\n",
        },
    )
    graph = import_graph(root, "pkg")
    assert graph["pkg.setup"] == {"pkg.views"}
    assert find_cycles(graph) == [["pkg.setup", "pkg.views", "pkg.setup"]]


def test_the_checker_ignores_type_checking_imports_and_parent_packages(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\n",
            "pkg/a.py": """
                from typing import TYPE_CHECKING

                from pkg.b import B

                A = 1
                if TYPE_CHECKING:
                    from pkg.c import C
                """,
            "pkg/b.py": "B = 2\n",
            "pkg/c.py": "from pkg.a import A\nC = A\n",
        },
    )
    assert find_cycles(import_graph(root, "pkg")) == []


def test_app_has_no_import_cycles() -> None:
    cycles = find_cycles(import_graph(REPO, "app"))
    assert cycles == [], (
        "move the shared code into the module that owns it (or a new one both import):\n"
        + "\n".join(" → ".join(c) for c in cycles)
    )
