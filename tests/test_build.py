"""The artifact (OPS-7): build.py output, reproducibility, running it on a clean host, pruning."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app import __version__
from app.buildinfo import build_info
from app.ops import extraction

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 600
RUN_TIMEOUT = 120
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")

Runner = Callable[..., subprocess.CompletedProcess[str]]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def build_result(keel_artifact: tuple[Path, str]) -> tuple[Path, str]:
    """dist/keel as built once per test run (conftest.py): its path and build.py's output."""
    return keel_artifact


@pytest.fixture(scope="module")
def artifact(build_result: tuple[Path, str]) -> Path:
    """dist/keel built once per test run from the working tree; reuse it for artifact checks."""
    return build_result[0]


@pytest.fixture(scope="module")
def artifact_build_id(artifact: Path) -> str:
    with zipfile.ZipFile(artifact) as zf:
        return str(json.loads(zf.read("site-packages/app/_build_info.json"))["build_id"])


@pytest.fixture(scope="module")
def unpacked_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One extraction root for the tests that only run the artifact: unpacking it costs more
    CPU than a run. Tests about extraction and pruning pass a root of their own."""
    return tmp_path_factory.mktemp("shiv")


@pytest.fixture
def run_artifact(artifact: Path, host_python: Path, unpacked_root: Path, tmp_path: Path) -> Runner:
    """Run the artifact from outside the repository with a minimal environment."""
    home = tmp_path / "home"
    home.mkdir()

    def run(
        *args: str, shiv_root: Path = unpacked_root, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{host_python}:/usr/bin:/bin",
            "HOME": str(home),
            "SHIV_ROOT": str(shiv_root),
            **extra_env,
        }
        return subprocess.run(
            [str(artifact), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )

    return run


# -- building ---------------------------------------------------------------------------------


def test_build_prints_path_size_and_checksum(build_result: tuple[Path, str]) -> None:
    output, stdout = build_result
    assert str(output) in stdout
    assert f"{output.stat().st_size} bytes" in stdout
    assert "MiB" in stdout
    assert sha256(output) in stdout
    assert os.access(output, os.X_OK)
    assert output.read_bytes().startswith(b"#!/usr/bin/env python3.11\n")


# That a copy of the sources in another directory builds the very bytes of the run's dist/keel
# is proven in tests/test_site_build.py (test_build_py_site_gives_the_same_executable_as_keel_build:
# `build.py --site` in a copy writes dist/keel first). A full build costs ~20 s: one, not two.


def test_artifact_holds_every_resource_bytecode_docs_and_build_info(artifact: Path) -> None:
    with zipfile.ZipFile(artifact) as zf:
        names = set(zf.namelist())
        contents = {name: zf.read(name) for name in names}
    for path in (ROOT / "app").rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        rel = path.relative_to(ROOT).as_posix()
        assert f"site-packages/{rel}" in names, rel
        if path.suffix == ".py":
            pyc = f"site-packages/{path.parent.relative_to(ROOT).as_posix()}/__pycache__/"
            pyc += f"{path.stem}.cpython-311.pyc"
            assert pyc in names, pyc
    for doc in [*ROOT.glob("docs/*.md"), *ROOT.glob("docs/security/*.md")]:
        rel = doc.relative_to(ROOT / "docs").as_posix()
        assert f"site-packages/app/docs/{rel}" in names, rel
    # The binary psycopg implementation ships, so the host needs no libpq.
    assert any(n.startswith("site-packages/psycopg_binary/") for n in names)
    info = json.loads(contents["site-packages/app/_build_info.json"])
    assert info["version"] == __version__
    assert re.fullmatch(r"[0-9a-f]{16}", info["build_id"])
    assert info["python"] == "3.11"
    assert json.loads(contents["environment.json"])["build_id"] == info["build_id"]
    for name, data in contents.items():
        assert str(ROOT).encode() not in data, name
        assert b"keel-build-" not in data, name


def test_build_never_writes_into_the_source_tree(artifact: Path) -> None:
    assert not (ROOT / "app" / "_build_info.json").exists()
    assert not (ROOT / "app" / "docs").exists()


def test_build_without_a_package_index_fails_with_an_explanation(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1")
    result = subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "--output", str(tmp_path / "keel")],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env=env,
    )
    assert result.returncode == 1
    assert "Problem: pip could not install" in result.stderr
    assert "Fix:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "keel").exists()


# -- running on a clean host ------------------------------------------------------------------


def test_help_lists_the_commands(run_artifact: Runner) -> None:
    result = run_artifact("--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate", "doctor", "docs", "version"):
        assert command in result.stdout


def test_version_reports_the_release_and_build_id(
    run_artifact: Runner, artifact_build_id: str
) -> None:
    result = run_artifact("version")
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout
    assert artifact_build_id in result.stdout
    assert "dev" not in result.stdout.split()


def test_extracts_under_shiv_root_and_uses_the_shipped_bytecode(
    run_artifact: Runner, artifact_build_id: str, tmp_path: Path
) -> None:
    root = tmp_path / "elsewhere-root"
    result = run_artifact("version", shiv_root=root, PYTHONVERBOSE="1")
    assert result.returncode == 0, result.stderr
    current = root / f"keel_{artifact_build_id}"
    assert (current / "site-packages" / "app" / "__init__.py").is_file()
    assert not (tmp_path / "home" / ".shiv").exists()
    # Python reports rewriting a stale or missing pyc as "# wrote …"; shipped pycs are used.
    rewritten = [ln for ln in result.stderr.splitlines() if ln.startswith("# wrote")]
    assert rewritten == []


def test_starting_removes_other_builds_but_not_busy_or_current_ones(
    run_artifact: Runner, artifact_build_id: str, tmp_path: Path
) -> None:
    root = tmp_path / "shiv"
    old = root / "keel_0123456789abcdef"
    (old / "site-packages" / "app").mkdir(parents=True)
    (old / "site-packages" / "app" / "__init__.py").write_text("")
    half = root / "keel_fedcba9876543210.tmp"
    half.mkdir()
    (root / ".keel_0123456789abcdef_lock").touch()
    busy = root / "keel_1111111111111111"
    busy.mkdir()
    unrelated = root / "other-tool_0123456789abcdef"
    unrelated.mkdir()
    marker = os.open(busy / extraction.IN_USE_MARKER, os.O_RDONLY | os.O_CREAT)
    try:
        fcntl.flock(marker, fcntl.LOCK_SH)
        first = run_artifact("version", shiv_root=root)
        second = run_artifact("version", shiv_root=root)
    finally:
        os.close(marker)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert not old.exists()
    assert not half.exists()
    assert not (root / ".keel_0123456789abcdef_lock").exists()
    assert busy.is_dir()
    assert unrelated.is_dir()
    assert (root / f"keel_{artifact_build_id}" / "site-packages").is_dir()


# -- app.buildinfo and app.ops.extraction from source -----------------------------------------


def test_build_info_from_source_says_dev() -> None:
    info = build_info()
    assert info["version"] == __version__
    assert info["build_id"] == "dev"
    assert info["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_from_source_there_is_no_extraction_and_nothing_to_prune() -> None:
    assert extraction.extraction_dir() is None
    assert extraction.prune_old_extractions() == []


def test_extraction_root_follows_shiv_rules(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SHIV_ROOT", raising=False)
    assert extraction.extraction_root() == tmp_path / ".shiv"
    monkeypatch.setenv("SHIV_ROOT", "~/cache")
    assert extraction.extraction_root() == tmp_path / "cache"
    monkeypatch.setenv("SHIV_ROOT", "$KEEL_TEST_ROOT")
    monkeypatch.setenv("KEEL_TEST_ROOT", str(tmp_path / "indirect"))
    assert extraction.extraction_root() == tmp_path / "indirect"


@pytest.fixture
def shiv_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "shiv"
    (root / "keel_aaaaaaaaaaaaaaaa" / "site-packages").mkdir(parents=True)
    yield root


def test_prune_skips_a_build_that_shiv_is_extracting(shiv_root: Path) -> None:
    other = shiv_root / "keel_bbbbbbbbbbbbbbbb.tmp"
    other.mkdir()
    lock = os.open(shiv_root / ".keel_bbbbbbbbbbbbbbbb_lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert extraction.prune_siblings(shiv_root / "keel_aaaaaaaaaaaaaaaa") == []
        assert other.is_dir()
    finally:
        os.close(lock)
    assert extraction.prune_siblings(shiv_root / "keel_aaaaaaaaaaaaaaaa") == [other]


def test_prune_keeps_other_names_and_non_build_directories(shiv_root: Path) -> None:
    keep = [
        shiv_root / "keelx_bbbbbbbbbbbbbbbb",
        shiv_root / "keel_notahexbuildid00",
        shiv_root / "keel_bbbb",
    ]
    for path in keep:
        path.mkdir()
    old = shiv_root / "keel_cccccccccccccccc"
    old.mkdir()
    current = shiv_root / "keel_aaaaaaaaaaaaaaaa"
    assert extraction.prune_siblings(current) == [old]
    assert all(path.is_dir() for path in keep)
    assert current.is_dir()


# -- the artifact alone runs the server ---------------------------------------------------------


def test_artifact_migrates_and_serves_from_the_file_alone(
    artifact: Path,
    host_python: Path,
    unpacked_root: Path,
    tmp_path: Path,
    empty_database_url: str,
    secret_key: str,
) -> None:
    """OPS-7: `keel migrate` and `keel serve` work from dist/keel with no project on the path."""
    import signal
    import urllib.request

    from tests.helpers import free_port, wait_http

    env = {
        "PATH": f"{host_python}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SHIV_ROOT": str(unpacked_root),
        "DATABASE_URL": empty_database_url,
        "KEEL_SECRET_KEY": secret_key,
    }
    migrated = subprocess.run(
        [str(artifact), "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "applied" in migrated.stdout
    port = free_port()
    proc = subprocess.Popen(
        [str(artifact), "serve", "--listen", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_http(f"http://127.0.0.1:{port}/readyz", timeout=30, proc=proc) == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            page = resp.read().decode()
        assert "Keel" in page and "/static/keel.css?v=" in page, (
            "templates and static come from the file"
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_packaging_metadata_builds_without_deprecation_warnings(tmp_path: Path) -> None:
    """`pip install -e '.[dev]'` (README) builds the metadata in an isolated environment with
    the setuptools that `[build-system]` allows: it must build and warn about nothing."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert isinstance(project["project"]["license"], str), "an SPDX expression, not a table"
    [setuptools] = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    assert ">=77" in setuptools and "<" in setuptools, "pinned: a floor and a ceiling"
    # Built from a copy: setuptools writes build/ and *.egg-info next to pyproject.toml.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "app", src / "app", ignore=IGNORE)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(wheels), str(src)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    if proc.returncode != 0 and "No matching distribution found for setuptools" in proc.stderr:
        pytest.skip("no package index reachable for setuptools")
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert "eprecat" not in output, output[-4000:]
    assert list(wheels.glob("keel-*.whl"))
