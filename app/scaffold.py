"""`keel new`: write a site project — empty, the demo as an example, or from a database.

The project is written into a temporary directory beside the target and renamed into place at
the end, so a failure (a bad name, an unreachable database) leaves nothing half-written.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app import sites
from app.errors import KeelError

EMPTY_RESOURCES = '''\
"""The tables this admin shows: one Resource per table.

Every option is described in `keel docs admin`; the guide from an existing database to a
running install is `keel docs your-tables`. Columns, types and keys are read from PostgreSQL,
so a declaration names only what you want to see differently from the defaults.
"""

from app.admin import Action, Inline, Resource, register

__all__ = ["REGISTRY", "Action", "Inline", "Resource"]

REGISTRY = register(
    # Resource(
    #     "customers",
    #     list_display=("name", "email", "created_at"),
    #     search_fields=("name", "email"),
    #     ordering=("name",),
    #     default_access={"editor": ("view", "add", "change"), "viewer": ("view",)},
    # ),
)
'''

GITIGNORE = """\
# Local settings: the database URL and the secret key of your development instance.
keel.toml
# What `keel build` writes.
dist/
__pycache__/
*.pyc
# The lock file `keel ai` takes while it appends to its log.
.keel/ai/.lock
"""


@dataclass(frozen=True)
class Project:
    root: Path
    name: str
    resources: int  # declarations written


def site_name_for(directory: Path) -> str:
    """A usable site name from a directory name: `Acme Ops` → `acme_ops`."""
    name = re.sub(r"[^a-z0-9_]+", "_", directory.name.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"site_{name}".rstrip("_")
    name = name[:31]
    return f"{name}_site" if name in sites.RESERVED_NAMES else name


def manifest(name: str, title: str, version: str = "0.1.0") -> str:
    return (
        "# Who this site is. The name prefixes its migrations in the database\n"
        "# (`<name>:0001`) and names the executable `keel build` writes; keep it once deployed.\n"
        "[site]\n"
        f'name = "{name}"\n'
        f'version = "{version}"\n'
        f"title = {_toml_string(title)}\n"
    )


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def local_config(database_url: str) -> str:
    return (
        "# Settings for developing this project on this machine (`keel --config keel.toml …`).\n"
        "# Not part of a build: production reads /etc/keel/keel.toml (see `keel docs "
        "configuration`).\n"
        f"database_url = {_toml_string(database_url)}\n"
        f'secret_key = "{secrets.token_urlsafe(32)}"\n'
        "# Serve this directory's declarations, migrations and templates without a build.\n"
        'site_dir = "."\n'
        'listen = "127.0.0.1:8000"\n'
        'public_url = "http://127.0.0.1:8000"\n'
    )


def readme(name: str, title: str) -> str:
    return f"""\
# {title}

A Keel site project: the admin for this company's own tables.

| file | what |
|---|---|
| `site.toml` | the site's name, version and title |
| `resources.py` | which tables the admin shows, and how (`keel docs admin`) |
| `migrations/` | numbered SQL files, applied in order by `keel migrate`, never edited once applied |
| `templates/` | your overrides of Keel's templates (optional) |
| `static/` | files served at `/static/site/…` (optional) |
| `keel.toml` | settings for this machine only (database URL, secret key); not in version control |

## The three commands

```sh
keel --config keel.toml migrate          # create or upgrade the tables (Keel's and yours)
keel --config keel.toml serve --dev      # the admin on http://127.0.0.1:8000, reloads on change
keel build . -o dist/{name}              # one executable holding Keel and this site
```

Before the first sign-in, create an administrator:
`keel --config keel.toml user create --email you@example.com --role administrator`.

Add a table with `keel --site . startapp invoices --field number:str --field total:decimal`.
What an AI coding assistant may change here, and why the project is the way it is:
`keel ai status`, `keel memory show` (`keel docs governance`).
Deploying `dist/{name}` under systemd, upgrading and backups: `keel docs your-tables`.
"""


def _refuse_existing(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise KeelError(
            f"{target} already exists and is not empty",
            why="keel new never overwrites files",
            fix="choose a new directory name, or remove the existing one",
        )


def write_project(
    target: Path,
    *,
    name: str | None = None,
    title: str | None = None,
    resources_source: str | None = None,
    database_url: str = "",
    example: bool = False,
) -> Project:
    """Write a project into `target` (created; must not exist or be empty)."""
    target = target.expanduser().absolute()
    _refuse_existing(target)
    name = name or site_name_for(target)
    if not sites.NAME.match(name) or name in sites.RESERVED_NAMES:
        raise KeelError(
            f"{name!r} is not a usable site name",
            why="lowercase letters, digits and underscores, starting with a letter, at most 31 "
            f"characters, not {', '.join(sorted(sites.RESERVED_NAMES))}",
            fix="pass --name, e.g. --name acme_ops",
        )
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    except OSError as exc:
        raise KeelError(
            f"cannot create {target}",
            why=exc.strerror or str(exc),
            fix=f"check that {parent} exists and is writable",
        ) from None
    try:
        count = 0
        if example:
            demo = sites.demo_site()
            for rel, path in sites.embedded_files(demo.root):
                dest = staging / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
            title = title or "Service desk (example)"
            count = len(demo.registry())
        (staging / "site.toml").write_text(
            manifest(name, title or name.replace("_", " ").capitalize()), encoding="utf-8"
        )
        if not example:
            (staging / "resources.py").write_text(
                resources_source or EMPTY_RESOURCES, encoding="utf-8"
            )
        for folder in ("migrations", "templates", "static"):
            (staging / folder).mkdir(exist_ok=True)
            if not any((staging / folder).iterdir()):
                (staging / folder / ".keep").write_text("", encoding="utf-8")
        (staging / "keel.toml").write_text(
            local_config(database_url or f"postgresql://localhost/{name}"), encoding="utf-8"
        )
        (staging / "keel.toml").chmod(0o600)  # it holds the secret key
        (staging / "README.md").write_text(
            readme(name, title or name.replace("_", " ").capitalize()), encoding="utf-8"
        )
        (staging / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        if resources_source is not None:
            # What was generated must load as it will at serve time, before it is kept.
            count = len(sites.load_site(staging).registry())
            sites.forget()
        staging.chmod(0o755)
        if target.exists():
            target.rmdir()  # empty, checked above
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Project(target, name, count)
