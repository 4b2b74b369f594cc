"""`keel build DIR -o FILE` and `build.py --site DIR`: a site's own executable.

Everything runs the built dist/keel (conftest.py builds it once per run) from a bare venv of
the base interpreter, against a project written in a temporary directory outside the
repository: what a company does on a host that has only the Keel executable and Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.helpers import assert_no_traceback, free_port, keel, keel_env, wait_http

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 120
EMBED = "site-packages/app/_site/"
INFO = "site-packages/app/_build_info.json"

PROJECT = {
    "site.toml": '[site]\nname = "acme"\nversion = "0.3.0"\ntitle = "Acme back office"\n',
    "resources.py": (
        "from app.admin import Resource, register\n\n"
        "from .labels import NAME_LABEL\n\n"
        "REGISTRY = register(\n"
        '    Resource("customers", list_display=("id", "name"), search_fields=("name",),\n'
        '             labels={"name": NAME_LABEL}),\n'
        ")\n"
    ),
    "labels.py": 'NAME_LABEL = "Customer name"\n',
    "migrations/0001_customers.sql": (
        "CREATE TABLE customers (\n"
        "    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        "    name text NOT NULL -- a comment; with a semicolon\n"
        ");\n"
    ),
    "templates/acme/note.html": "<p>Version one of the note.</p>\n",
    "static/acme.css": "body { color: #123; }\n",
    # Never embedded: local configuration, documentation, version control, caches, data.
    "keel.toml": 'database_url = "postgresql://secret@localhost/acme"\n',
    "README.md": "# acme\n",
    ".gitignore": "keel.toml\n",
    ".git/config": "[core]\n",
    "__pycache__/resources.cpython-311.pyc": "junk",
    "data/dump.sql": "COPY customers FROM stdin;\n",
    "migrations/README.txt": "numbered, append-only\n",
}
EMBEDDED = sorted(
    [
        "site.toml",
        "resources.py",
        "labels.py",
        "migrations/0001_customers.sql",
        "templates/acme/note.html",
        "static/acme.css",
    ]
)


def write_project(root: Path, files: dict[str, str] = PROJECT) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def zip_json(path: Path, name: str) -> dict[str, str]:
    with zipfile.ZipFile(path) as zf:
        data = json.loads(zf.read(name))
    assert isinstance(data, dict)
    return data


Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def shiv_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One extraction root for the module: dist/keel is unpacked once, not once per test."""
    return tmp_path_factory.mktemp("shiv")


def runner(host_python: Path, shiv_root: Path, workdir: Path) -> Runner:
    """Run an executable as on a fresh host: a bare Python, nothing of the repository; HOME
    and the default working directory in workdir."""
    home = workdir / "home"
    home.mkdir()

    def run(
        exe: Path, *args: str, cwd: Path = workdir, root: Path = shiv_root, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{host_python}:/usr/bin:/bin",
            "HOME": str(home),
            "SHIV_ROOT": str(root),
            **extra,
        }
        return subprocess.run(
            [str(exe), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )

    return run


@pytest.fixture
def run(host_python: Path, shiv_root: Path, tmp_path: Path) -> Runner:
    return runner(host_python, shiv_root, tmp_path)


@pytest.fixture
def keel_exe(keel_artifact: tuple[Path, str]) -> Path:
    return keel_artifact[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """PROJECT in the test's own directory, for tests that change it."""
    return write_project(tmp_path / "acme-project")


def build(run: Runner, keel_exe: Path, project: Path, output: Path) -> Path:
    result = run(keel_exe, "build", str(project), "-o", str(output))
    assert result.returncode == 0, result.stdout + result.stderr
    return output


@dataclass(frozen=True)
class Built:
    """PROJECT (never changed) and the site's executable that dist/keel built from it."""

    project: Path
    output: Path
    result: subprocess.CompletedProcess[str]  # what `keel build` printed


@pytest.fixture(scope="module")
def prebuilt(
    host_python: Path,
    shiv_root: Path,
    keel_artifact: tuple[Path, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Built:
    """PROJECT built once for the module: a build costs two Python starts (the executable and
    the child that imports the declarations). Tests only read the project and the result;
    tests that change a project build their own."""
    base = tmp_path_factory.mktemp("built")
    project = write_project(base / "acme-project")
    output = base / "one" / "acme"
    result = runner(host_python, shiv_root, base)(
        keel_artifact[0], "build", str(project), "-o", str(output)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Built(project, output, result)


# -- a good build -----------------------------------------------------------------------------


def test_build_embeds_the_site_and_is_byte_identical(
    run: Runner, keel_exe: Path, prebuilt: Built, project: Path, tmp_path: Path
) -> None:
    first, result = prebuilt.output, prebuilt.result
    info = zip_json(first, INFO)
    base_info = zip_json(keel_exe, INFO)
    # The summary: name, version, build id, size, checksum.
    assert "acme 0.3.0" in result.stdout
    assert info["build_id"] in result.stdout
    assert f"{first.stat().st_size} bytes" in result.stdout
    assert sha256(first) in result.stdout
    assert os.access(first, os.X_OK)

    # Same project, another output path: the same bytes.
    second = build(run, keel_exe, prebuilt.project, tmp_path / "two" / "acme")
    assert sha256(second) == sha256(first)
    # DIR defaults to the current directory and -o to ./dist/<site name>; the same files in
    # another directory give the same bytes.
    default = run(keel_exe, "build", cwd=project)
    assert default.returncode == 0, default.stderr
    assert sha256(project / "dist" / "acme") == sha256(first)
    shutil.rmtree(project / "dist")
    # The site's executable can build the same project again: still the same bytes.
    again = build(run, first, prebuilt.project, tmp_path / "three" / "acme")
    assert sha256(again) == sha256(first)
    # Checking the declarations imported them without writing bytecode into the project.
    for checked in (prebuilt.project, project):
        pycache = [p.name for p in (checked / "__pycache__").iterdir()]
        assert pycache == ["resources.cpython-311.pyc"], checked

    # What changed against Keel's executable: the site's files and the two build records.
    with zipfile.ZipFile(keel_exe) as base, zipfile.ZipFile(first) as built:
        base_names = set(base.namelist())
        built_names = set(built.namelist())
        assert built_names - base_names == {EMBED + rel for rel in EMBEDDED}
        assert base_names <= built_names
        for name in sorted(base_names - {INFO, "environment.json"}):
            a, b = base.getinfo(name), built.getinfo(name)
            # Copied as they are, compressed bytes included.
            assert (a.date_time, a.external_attr, a.CRC, a.compress_type, a.compress_size) == (
                b.date_time,
                b.external_attr,
                b.CRC,
                b.compress_type,
                b.compress_size,
            )
        assert built.namelist() == sorted(built.namelist())
        for rel in EMBEDDED:
            assert built.read(EMBED + rel) == (prebuilt.project / rel).read_bytes()
            entry = built.getinfo(EMBED + rel)
            assert entry.external_attr >> 16 == stat.S_IFREG | 0o644
            # Stored: the bytes do not depend on the building host's zlib.
            assert entry.compress_type == zipfile.ZIP_STORED
        assert built.testzip() is None
    assert info["site_name"] == "acme"
    assert info["site_version"] == "0.3.0"
    assert info["keel_build_id"] == base_info["build_id"]
    assert info["version"] == base_info["version"]
    assert info["build_id"] != base_info["build_id"]
    assert zip_json(first, "environment.json")["build_id"] == info["build_id"]
    assert first.read_bytes().split(b"\n", 1)[0] == keel_exe.read_bytes().split(b"\n", 1)[0]

    version = run(first, "version")
    assert version.returncode == 0, version.stderr
    assert f"acme 0.3.0 (build {info['build_id']})" in version.stdout
    assert f"keel {base_info['version']} (build {base_info['build_id']})" in version.stdout
    as_json = json.loads(run(first, "version", "--json").stdout)
    assert as_json["site_name"] == "acme" and as_json["build_id"] == info["build_id"]
    # The plain executable still says it holds no site.
    plain = run(keel_exe, "version")
    assert "acme" not in plain.stdout and base_info["build_id"] in plain.stdout


def test_a_changed_template_gives_another_build_id_and_extraction_directory(
    run: Runner, keel_exe: Path, prebuilt: Built, project: Path, tmp_path: Path
) -> None:
    old = prebuilt.output  # PROJECT, as `project` holds it before the change
    (project / "templates/acme/note.html").write_text("<p>Version two.</p>\n", encoding="utf-8")
    new = build(run, keel_exe, project, tmp_path / "new" / "acme")
    old_id, new_id = zip_json(old, INFO)["build_id"], zip_json(new, INFO)["build_id"]
    assert old_id != new_id
    assert zip_json(old, INFO)["keel_build_id"] == zip_json(new, INFO)["keel_build_id"]

    root = tmp_path / "extract"
    note = Path("site-packages/app/_site/templates/acme/note.html")
    assert run(old, "version", root=root).returncode == 0
    assert (root / f"acme_{old_id}" / note).read_text() == "<p>Version one of the note.</p>\n"
    assert run(new, "version", root=root).returncode == 0
    assert (root / f"acme_{new_id}" / note).read_text() == "<p>Version two.</p>\n"
    # Starting the new build removed the old one's idle directory (OPS-7 pruning); the new
    # one never read from it.
    assert not (root / f"acme_{old_id}").exists()


def test_the_built_site_migrates_and_shows_itself_on_the_status_page(
    run: Runner,
    host_python: Path,
    shiv_root: Path,
    prebuilt: Built,
    tmp_path: Path,
    empty_database_url: str,
    secret_key: str,
) -> None:
    acme = prebuilt.output
    build_id = zip_json(acme, INFO)["build_id"]
    env = {"DATABASE_URL": empty_database_url, "KEEL_SECRET_KEY": secret_key}
    migrated = run(acme, "migrate", **env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    with psycopg.connect(empty_database_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        versions = {row[0] for row in conn.execute("SELECT version FROM keel_migrations")}
    assert "customers" in tables
    assert "bookings" not in tables  # no demo table
    assert "acme:0001" in versions

    port = free_port()
    proc = subprocess.Popen(
        [str(acme), "serve", "--listen", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env={
            "PATH": f"{host_python}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "SHIV_ROOT": str(shiv_root),  # where `migrate` just unpacked it
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=proc) == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            page = resp.read().decode()
        assert "acme 0.3.0" in page
        assert build_id in page
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_keel_build_finds_its_executable_through_a_relative_symlink(
    run: Runner, keel_exe: Path, prebuilt: Built, tmp_path: Path
) -> None:
    """shiv opens sys.argv[0]; `keel build` must find the same file however it was started."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "keel-current").symlink_to(keel_exe)
    direct = prebuilt.output  # built by running keel_exe by its path
    result = run(Path("tools/keel-current"), "build", str(prebuilt.project), "-o", "via-link/acme")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sha256(tmp_path / "via-link" / "acme") == sha256(direct)


# -- bad input: Problem / Why / Fix, and nothing written ----------------------------------------


def _set(rel: str, text: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")

    return change


def _remove(rel: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).unlink()


BAD_INPUT: dict[str, tuple[Callable[[Path], object], str]] = {
    "no project directory": (shutil.rmtree, "does not exist"),
    "no site.toml": (_remove("site.toml"), "has no site.toml"),
    "site.toml not TOML": (_set("site.toml", "[site\nname = acme"), "is not valid TOML"),
    "reserved site name": (
        _set("site.toml", '[site]\nname = "core"\n'),
        "is not a usable site name",
    ),
    "unknown manifest key": (
        _set("site.toml", '[site]\nname = "acme"\nowner = "x"\n'),
        "unknown key 'owner'",
    ),
    "no resources.py": (_remove("resources.py"), "has no resources.py"),
    "syntax error in resources.py": (
        _set("resources.py", "REGISTRY = register(\n"),
        "resources.py:",
    ),
    "resources.py imports what does not exist": (
        _set("resources.py", "import acme_billing_sdk\n"),
        "ModuleNotFoundError",
    ),
    "resources.py without REGISTRY": (_set("resources.py", "X = 1\n"), "has no REGISTRY"),
    "two resources with one slug": (
        _set(
            "resources.py",
            "from app.admin import Resource, register\n"
            'REGISTRY = register(Resource("customers"), Resource("customers"))\n',
        ),
        "share the slug",
    ),
    "resources.py exits": (
        _set("resources.py", "import os\nos._exit(3)\n"),
        "stopped the checking process",
    ),
    "malformed migration name": (
        _set("migrations/2_more.sql", "SELECT 1;\n"),
        "malformed name",
    ),
    "duplicate migration number": (
        _set("migrations/0001_again.sql", "SELECT 1;\n"),
        "share number 0001",
    ),
    "unterminated string in a migration": (
        _set("migrations/0002_notes.sql", "ALTER TABLE customers ADD note text DEFAULT 'x;\n"),
        "0002_notes.sql: string opened at line 1 is never closed",
    ),
    "unterminated dollar quote in a migration": (
        _set(
            "migrations/0002_fn.sql",
            "SELECT 1;\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1;\n",
        ),
        "dollar-quoted body $$ opened at line 2",
    ),
    "empty migration": (
        _set("migrations/0002_later.sql", "-- to do\n"),
        "has no SQL statement",
    ),
    "migration not UTF-8": (
        lambda root: (root / "migrations/0002_latin.sql").write_bytes(b"SELECT '\xe9';\n"),
        "not UTF-8",
    ),
    "template syntax error": (
        _set("templates/acme/note.html", "{% if x %}<p>never closed</p>\n"),
        "note.html:",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_explained_and_nothing_is_written(
    case: str, run: Runner, keel_exe: Path, project: Path, tmp_path: Path
) -> None:
    change, expected = BAD_INPUT[case]
    change(project)
    out_dir = tmp_path / "out"
    result = run(keel_exe, "build", str(project), "-o", str(out_dir / "acme"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    for part in ("Problem:", "Why:", "Fix:"):
        assert part in result.stderr, result.stderr
    assert expected in result.stderr
    assert not out_dir.exists()
    if project.is_dir():
        assert not (project / "dist").exists()


def test_output_that_is_a_directory_is_refused(
    run: Runner, keel_exe: Path, project: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    target.mkdir()
    result = run(keel_exe, "build", str(project), "-o", str(target))
    assert result.returncode == 1
    assert "Problem:" in result.stderr and "is a directory" in result.stderr
    assert list(target.iterdir()) == []


@pytest.fixture(scope="module")
def unprivileged(keel_artifact: tuple[Path, str]) -> Iterator[tuple[Path, list[str]]]:
    """A world-readable scratch directory holding dist/keel, and the command prefix that runs
    it as a user without root's power to read anything (permissions mean nothing to root).
    One for the module: the cases share the copy and its extraction under home/shiv."""
    keel_exe = keel_artifact[0]
    scratch = Path(tempfile.mkdtemp(prefix="keel-sitebuild-"))
    try:
        scratch.chmod(0o755)
        exe = scratch / "keel"
        shutil.copyfile(keel_exe, exe)
        exe.chmod(0o755)
        home = scratch / "home"
        home.mkdir()
        home.chmod(0o777)
        prefix: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin")
            if runuser is None:
                pytest.skip("runs as root and runuser is missing")
            try:
                pwd.getpwnam("nobody")
            except KeyError:
                pytest.skip("runs as root and there is no user 'nobody'")
            prefix = [runuser, "-u", "nobody", "--"]
        # A python3.X that user can run (the test's own may live under root's home).
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        candidates = [getattr(sys, "_base_executable", sys.executable), f"/usr/bin/{version}"]
        for candidate in candidates:
            probe = subprocess.run([*prefix, candidate, "-c", "import zipfile"], check=False)
            if probe.returncode == 0:
                (scratch / "bin").mkdir()
                (scratch / "bin" / version).symlink_to(candidate)
                break
        else:
            pytest.skip(f"no {version} that an unprivileged user may run")
        yield scratch, prefix
    finally:
        for path in scratch.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.parametrize(
    ("what", "expected"),
    [("directory", "cannot read"), ("template", "cannot read")],
)
def test_an_unreadable_project_is_explained_and_nothing_is_written(
    what: str, expected: str, unprivileged: tuple[Path, list[str]]
) -> None:
    scratch, prefix = unprivileged
    case = scratch / what  # each case's own project and output directory
    case.mkdir(mode=0o755)
    case.chmod(0o755)
    project = write_project(case / "acme")
    for path in [project, *project.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    if what == "directory":
        project.chmod(0o000)
    else:
        (project / "templates/acme/note.html").chmod(0o000)
    result = subprocess.run(
        [*prefix, str(scratch / "keel"), "build", str(project), "-o", str(case / "out/acme")],
        cwd=case,
        env={
            "PATH": f"{scratch / 'bin'}:/usr/bin:/bin",
            "HOME": str(scratch / "home"),
            "SHIV_ROOT": str(scratch / "home" / "shiv"),
        },
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "Problem: cannot read" in result.stderr and "Fix:" in result.stderr
    assert "read access" in result.stderr
    assert not (case / "out").exists()


# -- from a checkout ----------------------------------------------------------------------------


def test_keel_build_from_a_checkout_says_what_to_run(project: Path) -> None:
    result = keel("build", str(project), env=keel_env(site=False))
    assert result.returncode == 1
    assert_no_traceback(result)
    assert "must run from a built Keel executable" in result.stderr
    assert "build.py --site" in result.stderr


def test_build_py_site_gives_the_same_executable_as_keel_build(
    keel_exe: Path, prebuilt: Built, tmp_path: Path
) -> None:
    """`build.py --site DIR` in a copy of the checkout in another directory: dist/keel with the
    very bytes of the run's dist/keel (the reproducibility check for Keel's own build, kept
    here only so the suite pays for one extra full build), then exactly the bytes the built
    dist/keel's `keel build DIR` writes."""
    copy = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
    for name in ("app", "docs"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    for name in ("build.py", "build-requirements.txt"):
        shutil.copy2(ROOT / name, copy / name)
    result = subprocess.run(
        [sys.executable, str(copy / "build.py"), "--site", str(prebuilt.project)],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sha256(copy / "dist" / "keel") == sha256(keel_exe)
    assert sha256(copy / "dist" / "acme") == sha256(prebuilt.output)
    assert f"Built {copy / 'dist' / 'acme'}" in result.stdout

    refused = subprocess.run(
        [sys.executable, str(copy / "build.py"), "--site", str(tmp_path / "nowhere")],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1
    assert "Problem: the site directory" in refused.stderr and "Fix:" in refused.stderr
