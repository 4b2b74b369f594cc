"""Build dist/keel: one reproducible, executable shiv zipapp of Keel (SPEC OPS-7).

With `--site DIR`, then also the site's own executable (default dist/<site name>): dist/keel
plus the site project, packed by app/sitebuild.py, the same code `keel build` runs.
"""

from __future__ import annotations

import argparse
import ast
import email.parser
import hashlib
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ENTRY_POINT = "app.__main__:main"
REQUIREMENTS = ROOT / "build-requirements.txt"
BUILD_INFO = "_build_info.json"

# Never shipped: caches and editor droppings that differ between two checkouts of one tree.
SKIP_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
SKIP_SUFFIXES = (".pyc", ".pyo", "~", ".swp", ".swo", ".orig", ".rej")
SKIP_NAMES = frozenset({".DS_Store", BUILD_INFO})

# Compiles in a pristine interpreter, fed relative paths in sorted order: marshal output
# depends on the compiling process's state (reference counts of interned strings), so the
# same process shape is what makes the bytes repeat. CHECKED_HASH pycs stay valid after
# shiv's extraction resets every mtime, and a hand-edited extracted source is still noticed.
COMPILE_SCRIPT = """\
import importlib.util, py_compile, sys
failed = 0
for rel in sys.stdin.read().splitlines():
    try:
        py_compile.compile(rel, cfile=importlib.util.cache_from_source(rel), dfile=rel,
                           doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    except py_compile.PyCompileError:
        failed += 1
print(failed)
"""


class BuildError(Exception):
    """A build failure explained as Problem / Why / Fix, printed without a traceback."""

    def __init__(self, problem: str, why: str, fix: str) -> None:
        super().__init__(problem)
        self.problem, self.why, self.fix = problem, why, fix

    def render(self) -> str:
        return f"Problem: {self.problem}\nWhy: {self.why}\nFix: {self.fix}"


@dataclass(frozen=True)
class Target:
    """What the artifact runs on: a CPython minor version and, optionally, a wheel platform."""

    python: str
    platforms: tuple[str, ...]

    @property
    def native(self) -> bool:
        return not self.platforms and self.python == build_python()

    @property
    def platform_label(self) -> str:
        return ",".join(self.platforms) if self.platforms else sysconfig.get_platform()


def build_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def read_version(root: Path) -> str:
    """app.__version__, read without importing the tree being built."""
    tree = ast.parse((root / "app" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise BuildError(
        "app/__init__.py has no __version__ string.",
        "The artifact records its version in _build_info.json.",
        'Add `__version__ = "X.Y.Z"` to app/__init__.py.',
    )


def normalise_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """Pinned `name==version` lines of the requirements file, keyed by normalised name."""
    pins: dict[str, str] = {}
    pattern = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = pattern.match(line)
        if match is None:
            raise BuildError(
                f"{path.name}: {line!r} is not an exact pin.",
                "Reproducible builds need every runtime dependency at one exact version.",
                "Write it as name==version (take the version from `.venv/bin/pip freeze`).",
            )
        pins[normalise_name(match.group(1))] = match.group(2)
    return pins


def pip_platforms(platforms: Sequence[str]) -> list[str]:
    """The given wheel platforms plus the older manylinux tags that the same host runs.

    glibc is backward compatible, but pip takes `--platform manylinux_2_28_aarch64` literally
    and would refuse a dependency that only publishes manylinux2014 (glibc 2.17) wheels.
    """
    tags: list[str] = []
    for tag in platforms:
        tags.append(tag)
        match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", tag)
        if match:
            glibc, arch = int(match.group(1)), match.group(2)
            tags += [f"manylinux_2_{minor}_{arch}" for minor in range(glibc - 1, 16, -1)]
            if glibc >= 17:
                tags.append(f"manylinux2014_{arch}")
    return list(dict.fromkeys(tags))


def pip_install(site: Path, requirements: Path, target: Target) -> None:
    """Install the pinned third-party runtime dependencies (never `app` itself) into site."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(site),
        "--requirement",
        str(requirements),
        # pip's own pycs carry mtimes and absolute paths; we compile deterministically below.
        "--no-compile",
        # A wheel built locally from an sdist is not byte-stable; insist on published wheels.
        "--only-binary=:all:",
        "--no-input",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--quiet",
    ]
    if not target.native:
        cmd += ["--python-version", target.python, "--implementation", "cp"]
        for platform in pip_platforms(target.platforms):
            cmd += ["--platform", platform]
    env = dict(os.environ)
    # These would fight `--target` (shiv's own pip wrapper drops the first for the same reason).
    for name in ("PIP_REQUIRE_VIRTUALENV", "PIP_USER", "PIP_TARGET", "PIP_PREFIX"):
        env.pop(name, None)
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        sys.stderr.write("\n".join(output[-20:]) + "\n\n")
        why = next((ln.strip() for ln in reversed(output) if ln.strip()), "pip failed")
        raise BuildError(
            f"pip could not install the pinned runtime dependencies for "
            f"CPython {target.python} on {target.platform_label}.",
            why,
            "Check access to the package index (or point PIP_INDEX_URL / PIP_FIND_LINKS at a "
            "mirror or a wheel directory), and that every pin in build-requirements.txt "
            "publishes a wheel for this Python and platform. Then run build.py again.",
        )


def installed_dists(site: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    parser = email.parser.HeaderParser()
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        headers = parser.parsestr(meta.read_text(encoding="utf-8", errors="replace"))
        found[normalise_name(headers["Name"])] = headers["Version"]
    return found


def check_pins(site: Path, pins: dict[str, str]) -> None:
    """Refuse a dependency that pip resolved outside the pins: the build would drift."""
    problems = [
        f"{name}=={version}" + (f" (pinned {pins[name]})" if name in pins else " (not pinned)")
        for name, version in installed_dists(site).items()
        if pins.get(name) != version
    ]
    if problems:
        raise BuildError(
            "pip installed dependencies that build-requirements.txt does not pin: "
            + ", ".join(problems)
            + ".",
            "A transitive dependency changed; an unpinned one makes the artifact drift.",
            "Pin them in build-requirements.txt at the versions in .venv (`pip freeze`).",
        )


def walk_files(top: Path) -> Iterator[Path]:
    """Files under top in sorted order, minus caches and editor junk."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES):
                continue
            yield Path(dirpath, name)


def stage_sources(root: Path, site: Path) -> None:
    """Copy app/ verbatim (no pip: its RECORD would hold absolute paths) and the docs."""
    src = root / "app"
    for path in walk_files(src):
        dest = site / "app" / path.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    # `keel docs` reads these through importlib.resources.files("app") / "docs".
    for pattern in ("*.md", "security/*.md"):
        for path in sorted((root / "docs").glob(pattern)):
            dest = site / "app" / "docs" / path.relative_to(root / "docs")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)


def normalise_tree(site: Path) -> None:
    """Remove what is machine-specific and fix modes, which shiv stores in the zip."""
    # Console scripts carry the build interpreter's absolute path in their shebang.
    shutil.rmtree(site / "bin", ignore_errors=True)
    for path in sorted(site.rglob("*")):
        if path.is_dir() and path.name == "__pycache__":
            shutil.rmtree(path)
    for path in site.rglob("*"):
        if path.is_file():
            mode = path.stat().st_mode
            path.chmod(0o755 if mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH) else 0o644)


def staged_files(site: Path) -> list[tuple[str, Path]]:
    return sorted(
        (path.relative_to(site).as_posix(), path) for path in site.rglob("*") if path.is_file()
    )


def compute_build_id(site: Path, target: Target, bytecode: str) -> str:
    digest = hashlib.sha256()
    # The target is hashed too: the same sources with or without pycs must not share a
    # shiv extraction directory.
    digest.update(f"keel\0{target.python}\0{target.platform_label}\0{bytecode}\0".encode())
    for rel, path in staged_files(site):
        data = path.read_bytes()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def find_compiler(target: Target, compile_with: str | None) -> str | None:
    """The interpreter whose bytecode the target can use, or None (pycs are skipped)."""
    candidate = compile_with or (sys.executable if target.python == build_python() else None)
    if candidate is None:
        return None
    probe = subprocess.run(
        [
            candidate,
            "-I",
            "-c",
            "import sys; print(sys.implementation.name, '%d.%d' % sys.version_info[:2])",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0 or probe.stdout.split() != ["cpython", target.python]:
        raise BuildError(
            f"{candidate} cannot compile bytecode for CPython {target.python}.",
            f"It reports {probe.stdout.strip() or probe.stderr.strip() or 'nothing'}.",
            f"Pass --compile-with a CPython {target.python} interpreter, or omit the option.",
        )
    return candidate


def compile_bytecode(site: Path, compiler: str) -> tuple[int, int]:
    sources = [rel for rel, _ in staged_files(site) if rel.endswith(".py")]
    result = subprocess.run(
        [compiler, "-I", "-c", COMPILE_SCRIPT],
        input="\n".join(sources),
        cwd=site,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(
            "Compiling bytecode failed.",
            (result.stderr.strip().splitlines() or ["no output"])[-1],
            "Fix the error above (a syntax error in app/?), then build again.",
        )
    return len(sources), int(result.stdout.strip() or 0)


def run_shiv(site: Path, output: Path, shebang: str, build_id: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "shiv",
        "--site-packages",
        str(site),
        "--entry-point",
        ENTRY_POINT,
        "--output-file",
        str(output),
        "--python",
        shebang,
        "--build-id",
        build_id,
        "--reproducible",
        "--compressed",
        # No --root (SHIV_ROOT then ~/.shiv stay the operator's choice) and no --compile-pyc:
        # the pycs are made here, and shiv's runtime compileall would slow the first start.
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise BuildError(
            "shiv could not create the zipapp.",
            (result.stderr.strip().splitlines() or ["see the output above"])[-1],
            "Install the dev extras (`.venv/bin/pip install -e '.[dev]'`) and run build.py "
            "with .venv/bin/python.",
        )


def finalise_archive(shiv_output: Path, site: Path, output: Path) -> None:
    """Rewrite shiv's zip in canonical order, adding the pycs that shiv leaves out."""
    with shiv_output.open("rb") as fh:
        shebang = fh.readline()
    pycs = [(rel, path) for rel, path in staged_files(site) if rel.endswith(".pyc")]
    with zipfile.ZipFile(shiv_output) as src:
        infos = src.infolist()
        # shiv stamps every entry with one (SOURCE_DATE_EPOCH-derived) time; reuse it.
        date_time = infos[0].date_time
        entries = [(info.filename, src.read(info), info.external_attr >> 16) for info in infos]
    entries += [(f"site-packages/{rel}", path.read_bytes(), 0o100644) for rel, path in pycs]
    # shiv lists its _bootstrap files in directory order, which differs between installs.
    entries.sort(key=lambda entry: entry[0])
    tmp = output.with_name(f".{output.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(shebang)
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            for name, data, mode in entries:
                info = zipfile.ZipInfo(name, date_time=date_time)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3
                perm = 0o755 if mode & 0o111 else 0o644
                info.external_attr = (stat.S_IFREG | perm) << 16
                dst.writestr(info, data)
    tmp.chmod(0o755)
    tmp.replace(output)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build(
    output: Path,
    target: Target,
    shebang: str | None = None,
    compile_with: str | None = None,
    root: Path = ROOT,
) -> str:
    """Build the artifact at output and return its SHA-256."""
    if importlib.util.find_spec("shiv") is None:
        raise BuildError(
            f"shiv is not installed for {sys.executable}.",
            "build.py packs the artifact with shiv (a dev dependency).",
            "Run it with the project's virtualenv: .venv/bin/python build.py "
            "(set it up with `pip install -e '.[dev]'`).",
        )
    requirements = root / "build-requirements.txt"
    version = read_version(root)
    pins = read_pins(requirements)
    compiler = find_compiler(target, compile_with)
    bytecode = f"cpython-{target.python.replace('.', '')}" if compiler else "none"
    shebang = shebang or f"/usr/bin/env python{target.python}"
    output.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="keel-build-") as tmp:
        site = Path(tmp, "site-packages")
        site.mkdir()
        print(
            f"Installing pinned runtime dependencies for CPython {target.python} "
            f"({target.platform_label})…"
        )
        pip_install(site, requirements, target)
        check_pins(site, pins)
        stage_sources(root, site)
        normalise_tree(site)
        build_id = compute_build_id(site, target, bytecode)
        info = {
            "version": version,
            "build_id": build_id,
            "python": target.python,
            "platform": target.platform_label,
            "bytecode": bytecode,
        }
        (site / "app" / BUILD_INFO).write_text(
            json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        (site / "app" / BUILD_INFO).chmod(0o644)
        if compiler:
            total, failed = compile_bytecode(site, compiler)
            note = f" ({failed} skipped: not valid for this Python)" if failed else ""
            print(f"Compiled {total - failed} modules to bytecode{note}.")
        else:
            print(
                f"Note: no bytecode compiled: the build runs CPython {build_python()}, the "
                f"target is {target.python}, and pycs are only valid for one minor version. "
                f"Pass --compile-with python{target.python} to compile them."
            )
        shiv_output = Path(tmp, "keel.shiv")
        run_shiv(site, shiv_output, shebang, build_id)
        finalise_archive(shiv_output, site, output)

    checksum = sha256_file(output)
    size = output.stat().st_size
    print(f"Built {output}")
    print(
        f"  version   {version} (build {build_id}, CPython {target.python}, "
        f"{target.platform_label})"
    )
    print(f"  size      {size} bytes ({size / 2**20:.1f} MiB)")
    print(f"  sha256    {checksum}")
    return checksum


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="build.py",
        description="Build dist/keel, a reproducible single-file shiv executable (OPS-7).",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the artifact (default: dist/keel; with --site, the site's "
        "executable, default dist/<site name>, while Keel's goes to dist/keel)",
    )
    parser.add_argument(
        "--site",
        type=Path,
        default=None,
        metavar="DIR",
        help="also build the executable of the site project in DIR (what `keel build DIR` "
        "does from a built keel)",
    )
    parser.add_argument(
        "--python-version",
        default=build_python(),
        metavar="X.Y",
        help="target CPython minor version (default: the building Python's)",
    )
    parser.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="TAG",
        help="target wheel platform, e.g. manylinux2014_x86_64 or "
        "manylinux2014_aarch64 (repeat to allow several; default: this host)",
    )
    parser.add_argument(
        "--shebang",
        default=None,
        metavar="INTERPRETER",
        help="interpreter line (default: /usr/bin/env pythonX.Y for the target)",
    )
    parser.add_argument(
        "--compile-with",
        default=None,
        metavar="PYTHON",
        help="a CPython of the target version to compile bytecode with, when "
        "it differs from the building Python",
    )
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python_version):
        parser.error(f"--python-version must look like 3.12, not {args.python_version!r}")
    return args


def build_with_site(
    site_dir: Path,
    output: Path | None,
    target: Target,
    shebang: str | None = None,
    compile_with: str | None = None,
) -> None:
    """dist/keel as without --site, then the site's executable from it (app/sitebuild.py)."""
    sys.path.insert(0, str(ROOT))
    from app.errors import KeelError
    from app.sitebuild import pack, prepare

    try:
        # The project is checked first: a mistake in it should not cost a full build.
        prepared = prepare(site_dir)
    except KeelError as exc:
        raise BuildError(exc.problem, exc.why, exc.fix) from None
    base = ROOT / "dist" / "keel"
    output = (output or ROOT / "dist" / prepared.site.name).resolve()
    if output == base.resolve():
        raise BuildError(
            f"the site's executable would overwrite Keel's at {base}",
            f"the site is named {prepared.site.name!r} and dist/keel is where Keel's goes.",
            "Pass --output with another path.",
        )
    build(base, target, shebang, compile_with)
    try:
        built = pack(base, prepared, output)
    except KeelError as exc:
        raise BuildError(exc.problem, exc.why, exc.fix) from None
    for line in built.summary():
        print(line)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    target = Target(args.python_version, tuple(args.platform))
    try:
        if args.site is not None:
            build_with_site(args.site, args.output, target, args.shebang, args.compile_with)
        else:
            output = args.output or ROOT / "dist" / "keel"
            build(output.resolve(), target, args.shebang, args.compile_with)
    except BuildError as exc:
        print(exc.render(), file=sys.stderr)
        return 1

    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
