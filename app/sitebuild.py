"""Build a site's own executable: Keel's executable plus one site project (`keel build`).

The result is a copy of a Keel executable (a shiv zipapp) in which only three things differ:

- the site's files (the whitelist of `app.sites.embedded_files`) are added under
  `site-packages/app/_site/`, where `app.sites.embedded_site()` finds them;
- `site-packages/app/_build_info.json` gains `site_name`, `site_version`, `keel_build_id` (the
  base's id) and a new `build_id`;
- shiv's `environment.json` carries the new `build_id`, so the directory shiv unpacks into
  (`<SHIV_ROOT or ~/.shiv>/<file name>_<build id>`) is never one another build uses.

The new build id is a hash of the base's build id and of every embedded file (path and
bytes). Keel's entries are copied as they are, compressed bytes included; the new ones (the
site's files and the two records) are stored uncompressed, dated like the base and mode 0644;
all are written in name order. So the same executable and the same project give the same
bytes, on any host: nothing depends on the clock, the umask or the local zlib. Nothing here needs
pip, a network or a source checkout: only the running executable and its Python.

Everything that can be checked without a database is checked before anything is written:
the manifest, every file is readable, migration names, numbers and SQL syntax (the splitter
refuses unterminated quotes and comments), templates parse, and `resources.py` imports and
defines a valid REGISTRY (in a child interpreter: the declarations are the site's code).
Whether the declared tables and columns exist is only known against the real catalog, so
`keel migrate`, `serve` and `doctor` check that.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import app
from app import sites
from app.buildinfo import BUILD_INFO_FILE, DEV_BUILD_ID, build_info
from app.errors import KeelError

SITE_PACKAGES = "site-packages/"
BUILD_INFO_ENTRY = f"{SITE_PACKAGES}app/{BUILD_INFO_FILE}"
EMBED_PREFIX = f"{SITE_PACKAGES}app/{sites.EMBEDDED_DIR}/"
ENVIRONMENT_ENTRY = "environment.json"
# The three zip records written (PKWARE APPNOTE 4.3.7, 4.3.12, 4.3.16), as in zipfile.
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")
_END_RECORD = struct.Struct("<4s4H2LH")
# Keys of _build_info.json that describe the embedded site; a rebuild replaces them all.
SITE_KEYS = ("site_name", "site_version", "site_title", "keel_build_id")
CHECK_TIMEOUT = 120  # seconds for importing the declarations in the child interpreter
_CHECK_MARK = "@@keel-site-check@@ "

# Runs in a child interpreter: the site's code may print, exit or hang, and must not leave
# its modules behind in the building process. Prints one marked JSON line as its verdict.
_CHECK_SCRIPT = """\
import json, site, sys
# Keel's code first, as in the executable (addsitedir also reads its .pth files).
sys.path.insert(0, sys.argv[1])
site.addsitedir(sys.argv[1])
from app.errors import KeelError
from app import sites
try:
    registry = sites.load_site(sys.argv[2]).registry()
    from app.admin.registry import declared_permissions
    declared_permissions(registry)
    verdict = {"ok": True, "resources": [r.key for r in registry]}
except KeelError as exc:
    verdict = {"ok": False, "problem": exc.problem, "why": exc.why, "fix": exc.fix}
except BaseException as exc:
    verdict = {"ok": False, "problem": "checking the declarations failed",
               "why": f"{type(exc).__name__}: {exc}", "fix": ""}
sys.stdout.write("\\n" + MARK + json.dumps(verdict) + "\\n")
sys.stdout.flush()
""".replace("MARK", repr(_CHECK_MARK))


@dataclass(frozen=True)
class PreparedSite:
    """A validated project, its embedded files read into memory (what gets packed)."""

    site: sites.Site
    files: tuple[tuple[str, bytes], ...]  # (path relative to the project, bytes), sorted
    resources: tuple[str, ...]  # the declared resource slugs
    migrations: int


@dataclass(frozen=True)
class SiteBuild:
    """What `pack` wrote."""

    output: Path
    site_name: str
    site_version: str
    build_id: str
    keel_version: str
    keel_build_id: str
    files: int
    size: int
    sha256: str

    def summary(self) -> list[str]:
        return [
            f"Built {self.output}",
            f"  site      {self.site_name} {self.site_version} ({self.files} files)",
            f"  build id  {self.build_id} (Keel {self.keel_version}, build {self.keel_build_id})",
            f"  size      {self.size} bytes ({self.size / 2**20:.1f} MiB)",
            f"  sha256    {self.sha256}",
        ]


# -- the running executable ----------------------------------------------------------------


def running_executable() -> Path | None:
    """The Keel executable (shiv zipapp) this process runs from, or None from a checkout.

    shiv itself opens `sys.argv[0]`; the `_bootstrap` package it imports from the zip and the
    zip's entry on sys.path are asked too. A candidate counts only if its environment.json
    names this process's build id, so a file replaced since start is never taken for it."""
    own_id = build_info()["build_id"]
    if own_id == DEV_BUILD_ID:
        return None
    candidates: list[str] = []
    if sys.argv and sys.argv[0]:
        candidates.append(sys.argv[0])
    bootstrap = sys.modules.get("_bootstrap")
    boot_file = getattr(bootstrap, "__file__", None) if bootstrap else None
    if boot_file:
        # <zip>/_bootstrap/__init__.py: the zip is two levels up.
        candidates.append(str(Path(boot_file).parent.parent))
    candidates += [p for p in sys.path if p]
    seen: set[Path] = set()
    for candidate in candidates:
        try:
            path = Path(candidate).resolve()
        except (OSError, RuntimeError):
            continue
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        if _environment_build_id(path) == own_id:
            return path
    return None


def _environment_build_id(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            env = json.loads(zf.read(ENVIRONMENT_ENTRY))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    value = env.get("build_id") if isinstance(env, dict) else None
    return value if isinstance(value, str) else None


# -- validating the project ------------------------------------------------------------------


def prepare(directory: str | os.PathLike[str]) -> PreparedSite:
    """Load and check the project at directory; KeelError (Problem/Why/Fix) on the first fault."""
    root = Path(directory).expanduser()
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise _unreadable(root, "permission denied")
    site = sites.load_site(root)
    try:
        listed = sites.embedded_files(site.root)
    except OSError as exc:
        raise _unreadable(Path(exc.filename or site.root), exc.strerror or str(exc)) from None
    files: list[tuple[str, bytes]] = []
    for rel, path in listed:
        try:
            files.append((rel, path.read_bytes()))
        except OSError as exc:
            raise _unreadable(path, exc.strerror or str(exc)) from None
    if sites.DECLARATIONS not in {rel for rel, _ in files}:
        raise KeelError(
            f"the site {site.root} has no {sites.DECLARATIONS}",
            why="resources.py declares the tables the admin shows (REGISTRY = register(...))",
            fix=f"create {site.root / sites.DECLARATIONS}; `keel new DIR` writes a project "
            "with one",
        )
    migrations = _check_migrations(site)
    _check_templates(site, files)
    resources = _check_declarations(site)
    return PreparedSite(site, tuple(files), resources, migrations)


def _unreadable(path: Path, reason: str) -> KeelError:
    return KeelError(
        f"cannot read {path}",
        why=f"{reason}; the build copies the project's files into the executable",
        fix="give the user running `keel build` read access to the project directory and its files",
    )


def _check_migrations(site: sites.Site) -> int:
    from app.db import migrate
    from app.db.sqlsplit import split_sql

    if not site.migrations_dir.is_dir():
        return 0
    try:
        # The runner's own discovery: the same name and numbering rules as `keel migrate`.
        found = migrate.discover([(site.name, site.migrations_dir)])
    except UnicodeDecodeError as exc:
        raise KeelError(
            f"a migration in {site.migrations_dir} is not UTF-8 text",
            why=str(exc),
            fix="save the file as UTF-8",
        ) from None
    except OSError as exc:
        raise _unreadable(Path(exc.filename or site.migrations_dir), exc.strerror or "") from None
    except KeelError as exc:
        raise KeelError(
            f"{exc.problem} (in {site.migrations_dir})",
            why=exc.why
            or "migrations are applied in number order and each number is recorded once in "
            "the database",
            fix=exc.fix,
        ) from None
    for m in found:
        path = site.migrations_dir / f"{m.number:04d}_{m.name}.sql"
        try:
            statements = split_sql(m.sql)
        except KeelError as exc:
            raise KeelError(
                f"migration {path}: {exc.problem}",
                why=exc.why,
                fix=exc.fix,
            ) from None
        if not statements:
            raise KeelError(
                f"migration {path} has no SQL statement",
                why="`keel migrate` would record it as applied and refuse it once it is filled "
                "in (applied migrations must not change)",
                fix="write its statements, or delete the file until you have them",
            )
    return len(found)


def _check_templates(site: sites.Site, files: list[tuple[str, bytes]]) -> None:
    import jinja2

    env = jinja2.Environment(autoescape=True)  # parsing only: nothing is rendered
    for rel, data in files:
        if not rel.startswith("templates/") or not rel.endswith((".html", ".txt", ".j2")):
            continue
        try:
            env.parse(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise KeelError(
                f"template {site.root / rel} is not UTF-8 text",
                why=str(exc),
                fix="save the file as UTF-8",
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise KeelError(
                f"template {site.root / rel}:{exc.lineno}: {exc.message}",
                why="the page using it would fail to render",
                fix=f"correct line {exc.lineno} of {rel}",
            ) from None


def _check_declarations(site: sites.Site) -> tuple[str, ...]:
    """Import resources.py in a child interpreter running this Keel; its resource slugs."""
    code_root = str(Path(app.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if k != "KEEL_SITE_DIR"}
    try:
        result = subprocess.run(
            # -I: no user site, no PYTHONPATH, no current directory on the path; -B: no
            # __pycache__ written into the project.
            [sys.executable, "-I", "-B", "-c", _CHECK_SCRIPT, code_root, str(site.root)],
            cwd=site.root,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise KeelError(
            f"importing {site.root / sites.DECLARATIONS} did not finish in {CHECK_TIMEOUT} s",
            why="the declarations module runs code when imported; something in it waits or loops",
            fix="keep resources.py to declarations: no network, database or input at import",
        ) from None
    verdict: object = None
    for line in result.stdout.splitlines():
        if line.startswith(_CHECK_MARK):
            verdict = json.loads(line[len(_CHECK_MARK) :])
    if not isinstance(verdict, dict):
        tail = (result.stderr.strip().splitlines() or ["it printed nothing"])[-1]
        raise KeelError(
            f"importing {site.root / sites.DECLARATIONS} stopped the checking process",
            why=f"exit status {result.returncode}: {tail}",
            fix="remove calls that exit or abort from resources.py and the modules it imports",
        )
    if not verdict.get("ok"):
        raise KeelError(
            str(verdict.get("problem", "the declarations are not valid")),
            why=str(verdict.get("why", "")),
            fix=str(verdict.get("fix") or f"correct {site.root / sites.DECLARATIONS}"),
        )
    return tuple(str(r) for r in verdict.get("resources", []))


# -- packing -----------------------------------------------------------------------------------


def site_build_id(keel_build_id: str, files: tuple[tuple[str, bytes], ...]) -> str:
    """Hash of the base build and every embedded file: any change gives another id."""
    digest = hashlib.sha256(f"keel-site\0{keel_build_id}\0".encode())
    for rel, data in sorted(files):
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class _Entry:
    """One zip member as written: its data already in final (raw) form."""

    name: str
    mode: int
    date_time: tuple[int, int, int, int, int, int]
    method: int  # zipfile.ZIP_DEFLATED or zipfile.ZIP_STORED
    crc: int
    size: int  # uncompressed
    data: bytes  # as stored in the archive
    flags: int


def _copied(raw: BinaryIO, info: zipfile.ZipInfo, mode: int) -> _Entry:
    """A member of the base archive, its compressed bytes copied as they are (no recompression:
    the entry is exactly Keel's, and the result does not depend on this host's zlib)."""
    raw.seek(info.header_offset)
    header = raw.read(_LOCAL_HEADER.size)
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    raw.seek(info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1])
    data = raw.read(info.compress_size)
    if len(data) != info.compress_size:
        raise zipfile.BadZipFile(f"{info.filename} is truncated")
    return _Entry(
        info.filename,
        mode,
        info.date_time,
        info.compress_type,
        info.CRC,
        info.file_size,
        data,
        info.flag_bits & 0x800,  # keep only "name is UTF-8"; sizes are in the header
    )


def _stored(
    name: str, mode: int, date_time: tuple[int, int, int, int, int, int], data: bytes
) -> _Entry:
    """A new member, stored uncompressed: its bytes do not depend on the host's zlib."""
    flags = 0 if name.isascii() else 0x800
    return _Entry(
        name, mode, date_time, zipfile.ZIP_STORED, zlib.crc32(data), len(data), data, flags
    )


def _dos_time(date_time: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    return hour << 11 | minute << 5 | second // 2, (year - 1980) << 9 | month << 5 | day


def _write_zip(fh: BinaryIO, prefix: bytes, entries: list[_Entry]) -> None:
    """The archive after `prefix` (the shebang line), offsets counted from the file's start
    as zipfile writes them. No zip64: a Keel executable is far below its limits."""
    if len(entries) >= 0xFFFF:
        raise zipfile.LargeZipFile("too many files for a zip without zip64")
    fh.write(prefix)
    offset = len(prefix)
    central = bytearray()
    for e in entries:
        name = e.name.encode("utf-8")
        dostime, dosdate = _dos_time(e.date_time)
        if offset >= 0xFFFFFFFF or len(e.data) >= 0xFFFFFFFF:
            raise zipfile.LargeZipFile("the executable would need zip64")
        header = _LOCAL_HEADER.pack(
            b"PK\x03\x04",
            20,
            0,
            e.flags,
            e.method,
            dostime,
            dosdate,
            e.crc,
            len(e.data),
            e.size,
            len(name),
            0,
        )
        central += _CENTRAL_HEADER.pack(
            b"PK\x01\x02",
            20,
            3,
            20,
            0,
            e.flags,
            e.method,
            dostime,
            dosdate,
            e.crc,
            len(e.data),
            e.size,
            len(name),
            0,
            0,
            0,
            0,
            (stat.S_IFREG | e.mode) << 16,
            offset,
        )
        central += name
        fh.write(header)
        fh.write(name)
        fh.write(e.data)
        offset += len(header) + len(name) + len(e.data)
    fh.write(central)
    fh.write(
        _END_RECORD.pack(b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), offset, 0)
    )


def _not_keel(path: Path, why: str) -> KeelError:
    return KeelError(
        f"{path} is not a Keel executable",
        why=why,
        fix="build from the `keel` executable of a release, or run `python build.py` in a "
        "checkout first",
    )


def pack(base: Path, prepared: PreparedSite, output: Path) -> SiteBuild:
    """Write base + prepared site to output (atomically: nothing is left on failure)."""
    try:
        with base.open("rb") as fh:
            first = fh.readline()
        zf = zipfile.ZipFile(base)
    except (OSError, zipfile.BadZipFile) as exc:
        raise _not_keel(base, str(exc)) from None
    with zf:
        infos = zf.infolist()
        names = {info.filename for info in infos}
        if ENVIRONMENT_ENTRY not in names or BUILD_INFO_ENTRY not in names:
            raise _not_keel(base, f"it has no {ENVIRONMENT_ENTRY} or app/{BUILD_INFO_FILE}")
        try:
            environment = json.loads(zf.read(ENVIRONMENT_ENTRY))
            info = json.loads(zf.read(BUILD_INFO_ENTRY))
            if not isinstance(environment, dict) or not isinstance(info, dict):
                raise ValueError("not a JSON object")
            # A site executable can be the base of another build: the site it holds is
            # replaced, and the id hashed is still Keel's own.
            keel_build_id = str(info.get("keel_build_id") or info["build_id"])
            keel_version = str(info["version"])
        except (KeyError, ValueError) as exc:
            raise _not_keel(base, f"its build record cannot be read ({exc})") from None
        build_id = site_build_id(keel_build_id, prepared.files)
        site = prepared.site
        for key in SITE_KEYS:
            info.pop(key, None)
        info.update(
            build_id=build_id,
            keel_build_id=keel_build_id,
            site_name=site.name,
            site_version=site.version,
            site_title=site.title,
        )
        environment["build_id"] = build_id
        date_time = infos[0].date_time if infos else (1980, 1, 1, 0, 0, 0)
        replaced = {
            BUILD_INFO_ENTRY: (json.dumps(info, indent=2, sort_keys=True) + "\n").encode(),
            # shiv writes environment.json with json.dumps' defaults; key order is kept.
            ENVIRONMENT_ENTRY: json.dumps(environment).encode(),
        }
        entries: list[_Entry] = []
        try:
            with base.open("rb") as raw:
                for zinfo in infos:
                    name = zinfo.filename
                    if name.endswith("/") or name.startswith(EMBED_PREFIX):
                        continue
                    mode = 0o755 if (zinfo.external_attr >> 16) & 0o111 else 0o644
                    if name in replaced:
                        entries.append(_stored(name, mode, zinfo.date_time, replaced[name]))
                    else:
                        entries.append(_copied(raw, zinfo, mode))
        except (OSError, zipfile.BadZipFile) as exc:
            raise _not_keel(base, f"it cannot be read back ({exc})") from None
        entries += [
            _stored(EMBED_PREFIX + rel, 0o644, date_time, data) for rel, data in prepared.files
        ]
        entries.sort(key=lambda entry: entry.name)
        shebang = first if first.startswith(b"#!") else b""
        output = output.expanduser().absolute()
        if output.is_dir():
            raise KeelError(
                f"{output} is a directory",
                why="the output is the executable file to write",
                fix=f"name a file, e.g. -o {output / site.name}",
            )
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        except OSError as exc:
            raise KeelError(
                f"cannot write to {output.parent}",
                why=exc.strerror or str(exc),
                fix="choose another output with -o, or fix the directory's permissions",
            ) from None
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                _write_zip(fh, shebang, entries)
            tmp.chmod(0o755)
            tmp.replace(output)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, zipfile.LargeZipFile):
                raise KeelError(
                    f"the executable for {site.name} would be too large",
                    why=str(exc),
                    fix="move large static files out of the project (serve them elsewhere)",
                ) from None
            if isinstance(exc, OSError):
                raise KeelError(
                    f"writing {output} failed",
                    why=exc.strerror or str(exc),
                    fix="free some disk space or choose another output with -o",
                ) from None
            raise
    digest = hashlib.sha256()
    with output.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return SiteBuild(
        output=output,
        site_name=site.name,
        site_version=site.version,
        build_id=build_id,
        keel_version=keel_version,
        keel_build_id=keel_build_id,
        files=len(prepared.files),
        size=output.stat().st_size,
        sha256=digest.hexdigest(),
    )


def build_site(
    directory: str | os.PathLike[str], output: Path | None = None, base: Path | None = None
) -> SiteBuild:
    """Validate the project at directory and write its executable (default ./dist/<name>)."""
    if base is None:
        base = running_executable()
    if base is None:
        raise KeelError(
            "`keel build` must run from a built Keel executable",
            why="it copies the executable it runs from and adds the site; this keel runs from "
            "a source checkout",
            fix="in a checkout, run `python build.py --site DIR` (it builds dist/keel, then the "
            "site's executable), or run `dist/keel build DIR`",
        )
    prepared = prepare(directory)
    target = output if output is not None else Path("dist") / prepared.site.name
    if target.expanduser().resolve() == base.resolve():
        raise KeelError(
            f"the output {target} is the Keel executable being copied",
            why="the build reads that file while it writes the new one",
            fix="choose another output with -o",
        )
    return pack(base, prepared, target)
