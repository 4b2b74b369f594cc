"""The site: the company's own project (declarations, migrations, templates, static files).

Keel itself has no tables of the company's. A site is a directory written by `keel new`:

    site.toml       [site] name, version, title
    resources.py    REGISTRY = register(Resource(...), ...)
    *.py            helper modules resources.py imports relatively (`from .billing import X`)
    migrations/     NNNN_name.sql, applied by `keel migrate` after Keel's own
    templates/      overrides of Keel's templates
    static/         files served at /static/site/<path>

Which site a process serves is decided once, in this order: an explicitly activated one
(`activate()`: `keel demo`, `--site DIR`, the `site_dir` setting, tests), then `KEEL_SITE_DIR`,
then the site embedded in this executable by `keel build` (`app/_site/`), else none. Without a
site the admin serves Keel's own pages only and `keel migrate` creates only Keel's tables.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import KeelError

if TYPE_CHECKING:
    from app.admin.resources import Registry

NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
# Names that would collide with Keel's own migration history (`core:0001`) or with the
# version prefix an earlier Keel gave the demo's tables (`site:0001`).
RESERVED_NAMES = frozenset({"core", "site", "keel"})
MANIFEST = "site.toml"
DECLARATIONS = "resources.py"
PACKAGE = "keel_site"  # the import name of the active site's modules
EMBEDDED_DIR = "_site"  # inside the `app` package of a built executable
_MANIFEST_KEYS = frozenset({"name", "version", "title"})
# Directories of a project that are copied into a build, and which files in them.
_EMBEDDED_TREES = {"migrations": (".sql",), "templates": None, "static": None}


@dataclass(frozen=True)
class Site:
    """One site project, read from its directory; nothing is imported until `registry()`."""

    name: str
    version: str
    title: str
    root: Path
    embedded: bool = False

    @property
    def migrations_dir(self) -> Path:
        return self.root / "migrations"

    @property
    def templates_dir(self) -> Path | None:
        path = self.root / "templates"
        return path if path.is_dir() else None

    @property
    def static_dir(self) -> Path | None:
        path = self.root / "static"
        return path if path.is_dir() else None

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def registry(self) -> Registry:
        return _load_registry(self.root)


def _bad(problem: str, why: str, fix: str) -> KeelError:
    return KeelError(problem, why=why, fix=fix)


def load_site(path: str | os.PathLike[str], *, embedded: bool = False) -> Site:
    """The site in directory `path`, its manifest checked; KeelError says what is wrong."""
    root = Path(path).expanduser()
    try:
        root = root.resolve(strict=True)
    except (OSError, RuntimeError):
        raise _bad(
            f"the site directory {path} does not exist",
            why="a site is a project directory written by `keel new`",
            fix=f"create it with `keel new {path}`, or name the right directory",
        ) from None
    if not root.is_dir():
        raise _bad(
            f"{root} is not a directory",
            why="a site is a project directory holding site.toml and resources.py",
            fix="name the project directory, not a file in it",
        )
    manifest = root / MANIFEST
    try:
        raw = manifest.read_bytes()
    except FileNotFoundError:
        raise _bad(
            f"{root} has no {MANIFEST}",
            why="site.toml names the site; without it this is not a Keel project",
            fix=f"run `keel new {root}` for a new project, or add site.toml with "
            '[site] name = "..." and version = "..."',
        ) from None
    except OSError as exc:
        raise _bad(
            f"cannot read {manifest}",
            why=exc.strerror or str(exc),
            fix="give the user running keel read access to the project directory",
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _bad(
            f"{manifest} is not valid TOML",
            why=str(exc),
            fix='write it as:  [site]  name = "acme"  version = "1.0.0"',
        ) from None
    table = data.get("site")
    if not isinstance(table, dict) or set(data) != {"site"}:
        raise _bad(
            f"{manifest} must hold exactly one [site] table",
            why=f"found {', '.join(sorted(data)) or 'nothing'}",
            fix='write it as:  [site]  name = "acme"  version = "1.0.0"',
        )
    unknown = sorted(set(table) - _MANIFEST_KEYS)
    if unknown:
        raise _bad(
            f"{manifest}: unknown key {unknown[0]!r}",
            why=f"[site] takes {', '.join(sorted(_MANIFEST_KEYS))}",
            fix=f"remove {unknown[0]!r} or correct its spelling",
        )
    name = table.get("name")
    if not isinstance(name, str) or not NAME.match(name) or name in RESERVED_NAMES:
        raise _bad(
            f"{manifest}: name {name!r} is not a usable site name",
            why="the name prefixes the site's migrations in the database and names the "
            "executable; it must be lowercase letters, digits and underscores, starting with a "
            f"letter, at most 31 characters, and not one of {', '.join(sorted(RESERVED_NAMES))}",
            fix='e.g. name = "acme_ops"',
        )
    version = table.get("version", "0.1.0")
    if not isinstance(version, str) or not re.fullmatch(
        r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,39}", version
    ):
        raise _bad(
            f"{manifest}: version {version!r} is not a version string",
            why="the version is shown by `keel version` and on the status page",
            fix='e.g. version = "1.4.0"',
        )
    title = table.get("title", name.replace("_", " ").capitalize())
    if not isinstance(title, str) or not title.strip() or len(title) > 80:
        raise _bad(
            f"{manifest}: title must be a short text",
            why="the title is shown in the admin's header",
            fix='e.g. title = "Acme operations"',
        )
    return Site(name=name, version=version, title=title.strip(), root=root, embedded=embedded)


def embedded_root() -> Path:
    return Path(__file__).resolve().parent / EMBEDDED_DIR


def embedded_site() -> Site | None:
    """The site `keel build` put into this executable, or None for plain Keel."""
    root = embedded_root()
    if not (root / MANIFEST).is_file():
        return None
    return load_site(root, embedded=True)


def demo_site() -> Site:
    """The service-desk demo, shipped inside Keel for `keel demo` and `keel new --example`."""
    return load_site(Path(__file__).resolve().parent / "demo" / "site")


def embedded_files(root: Path) -> list[tuple[str, Path]]:
    """(relative path, file) of what a build copies from a project, sorted.

    A whitelist: the manifest, top-level Python modules, migrations, templates and static
    files. Local configuration (keel.toml holds a database URL and secret key), version
    control, caches and anything else in the directory stay out of the executable."""
    out: list[tuple[str, Path]] = []
    for path in sorted(root.iterdir()):
        if path.is_file() and (path.name == MANIFEST or path.suffix == ".py"):
            out.append((path.name, path))
    for tree, suffixes in _EMBEDDED_TREES.items():
        top = root / tree
        if not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
            for name in sorted(filenames):
                if name.startswith(".") or name.endswith((".pyc", "~", ".swp")):
                    continue
                if suffixes and not name.endswith(suffixes):
                    continue
                path = Path(dirpath, name)
                out.append((path.relative_to(root).as_posix(), path))
    return out


# --- which site this process serves -------------------------------------------------------


class _Choice:
    """The process-wide choice; a holder so tests can switch it without `global`."""

    decided = False
    site: Site | None = None


def activate(site: Site | None) -> None:
    """Make `site` (or no site) the one this process serves; tests and commands call this."""
    if _Choice.decided and _Choice.site != site:
        _forget_modules()
    _Choice.decided, _Choice.site = True, site


def active() -> Site | None:
    """The site this process serves (see the module docstring for the order)."""
    if not _Choice.decided:
        from_env = os.environ.get("KEEL_SITE_DIR")
        activate(load_site(from_env) if from_env else embedded_site())
    return _Choice.site


# --- importing the declarations -----------------------------------------------------------

_registries: dict[Path, Registry] = {}


def forget() -> None:
    """Drop imported declarations (after loading a project only to check it)."""
    _forget_modules()


def _forget_modules() -> None:
    _registries.clear()
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def _load_registry(root: Path) -> Registry:
    """Import `resources.py` of the site at root as `keel_site.resources`; its REGISTRY."""
    from app.admin.resources import Registry

    if root in _registries:
        return _registries[root]
    package = sys.modules.get(PACKAGE)
    if package is not None and list(getattr(package, "__path__", [])) != [str(root)]:
        _forget_modules()
        package = None
    if package is None:
        # A package without __init__.py whose path is the project directory: resources.py
        # may import its neighbours relatively, and nothing has to be installed.
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(root)]
        package.__package__ = PACKAGE
        sys.modules[PACKAGE] = package
    path = root / DECLARATIONS
    if not path.is_file():
        raise _bad(
            f"the site {root} has no {DECLARATIONS}",
            why="resources.py declares the tables the admin shows (REGISTRY = register(...))",
            fix=f"create {path} (see docs/your-tables.md), or run `keel new` for a fresh project",
        )
    name = f"{PACKAGE}.resources"
    sys.modules.pop(name, None)
    try:
        module = importlib.import_module(name)
    except KeelError as exc:
        raise _bad(
            f"{path}: {exc.problem}",
            why=exc.why or "a declaration is not valid",
            fix=exc.fix or "correct the declaration",
        ) from None
    except Exception as exc:
        tb = exc.__traceback__
        line = ""
        while tb is not None:
            if Path(tb.tb_frame.f_code.co_filename).resolve().parent == root:
                line = f":{tb.tb_lineno}"
            tb = tb.tb_next
        if isinstance(exc, SyntaxError) and exc.lineno:
            line = f":{exc.lineno}"
        raise _bad(
            f"cannot load the declarations {path}{line}",
            why=f"{type(exc).__name__}: {exc}",
            fix="correct the file; `keel doctor` and `keel build` check it again",
        ) from None
    registry = getattr(module, "REGISTRY", None)
    if not isinstance(registry, Registry):
        raise _bad(
            f"{path} has no REGISTRY",
            why="the admin reads the site's tables from REGISTRY = register(Resource(...), ...)",
            fix=f"add `REGISTRY = register(...)` to {path}",
        )
    _registries[root] = registry
    return registry
