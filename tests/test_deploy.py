"""deploy/ stays valid, hardened and consistent with the app (OPS-6).

The systemd checks run the real `systemd-analyze` and skip only where it is not installed.
`verify` checks that ExecStart= names an executable that exists, and the test host has no
/usr/local/bin/keel: the unit is copied to a temporary directory with that one path pointed
at a stub script (nothing else changes), and keel.socket is verified next to it because a
socket unit needs its service. `verify` only warns about unknown or misspelt directives, so
the tests also require its stderr to be empty.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import stat
import subprocess
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest

from app.config import SETTINGS, load_config, parse_duration

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SERVICE = DEPLOY / "keel.service"
SOCKET = DEPLOY / "keel.socket"
SYSUSERS = DEPLOY / "sysusers.d" / "keel.conf"
EXAMPLE = DEPLOY / "keel.toml.example"
NGINX = DEPLOY / "nginx" / "keel.conf"
KEELCTL = DEPLOY / "keelctl"
BINARY = "/usr/local/bin/keel"
# The unit's exposure as systemd 252 (Debian 12) scores it today: "the current exposure or
# better". A newer systemd scores some options differently; review the unit, then this figure.
MAX_EXPOSURE = 1.2

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed"
)


def directives(path: Path) -> dict[str, list[str]]:
    """`Section.Key` → values in order, from a systemd unit file (comments dropped)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a directive: {raw!r}"
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def one(units: Mapping[str, list[str]], key: str) -> str:
    values = units.get(key, [])
    assert len(values) == 1, f"{key} should be set exactly once, found {values}"
    return values[0]


def systemd_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYSTEMD_")}
    env.update(SYSTEMD_LOG_LEVEL="notice", SYSTEMD_PAGER="", LC_ALL="C.UTF-8")
    return env


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=120,
        env=systemd_env(),
        cwd=cwd,
        check=False,
    )


def systemd_seconds(text: str) -> float:
    """The few systemd time spans used in deploy/ ("45s", "2s", "30", "1min")."""
    m = re.fullmatch(r"(\d+)\s*(s|sec|min|m)?", text.strip())
    assert m, f"unexpected time span {text!r}"
    return int(m.group(1)) * (60 if m.group(2) in ("min", "m") else 1)


def example() -> dict[str, object]:
    with EXAMPLE.open("rb") as fh:
        return tomllib.load(fh)


def socket_path() -> str:
    listen = one(directives(SOCKET), "Socket.ListenStream")
    assert listen.startswith("/"), "keel.socket should listen on a unix socket for nginx"
    return listen


def units_with_stub_binary(tmp_path: Path) -> tuple[Path, Path]:
    """keel.service and keel.socket in tmp_path, ExecStart= pointing at an existing stub."""
    stub = tmp_path / "keel"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    text = SERVICE.read_text(encoding="utf-8")
    exec_start = f"\nExecStart={BINARY} "
    assert text.count(exec_start) == 1
    service = tmp_path / "keel.service"
    service.write_text(text.replace(exec_start, f"\nExecStart={stub} "), encoding="utf-8")
    socket = tmp_path / "keel.socket"
    shutil.copyfile(SOCKET, socket)
    return service, socket


# ---- systemd-analyze ---------------------------------------------------------------------


@needs_systemd_analyze
def test_service_exposure_level_stays_where_it_is() -> None:
    result = run(SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", SERVICE)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"systemd-analyze complained about the unit:\n{result.stderr}"
    m = re.search(
        r"Overall exposure level for keel\.service:\s*([0-9]+(?:\.[0-9]+)?)", result.stdout
    )
    assert m, f"no exposure line in:\n{result.stdout[-2000:]}"
    assert float(m.group(1)) <= MAX_EXPOSURE, result.stdout


@needs_systemd_analyze
def test_service_and_socket_pass_verify(tmp_path: Path) -> None:
    service, socket = units_with_stub_binary(tmp_path)
    result = run(SYSTEMD_ANALYZE, "verify", "--man=no", socket, service, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"systemd-analyze verify warned:\n{result.stderr}"


@needs_systemd_analyze
def test_verify_reports_a_misspelt_directive(tmp_path: Path) -> None:
    """The empty-stderr rule above has teeth: verify exits 0 but names the bad line."""
    service, _socket = units_with_stub_binary(tmp_path)
    service.write_text(
        service.read_text(encoding="utf-8").replace("NoNewPrivileges=", "NoNewPrivilege="),
        encoding="utf-8",
    )
    result = run(SYSTEMD_ANALYZE, "verify", "--man=no", service, cwd=tmp_path)
    assert "NoNewPrivilege" in result.stderr


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed"
)
def test_sysusers_creates_a_system_user_without_login(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    for name in ("passwd", "group", "shadow", "gshadow"):
        (etc / name).touch()
    if os.geteuid() != 0:
        # Writing an alternative root needs root (the files are chowned): parse only.
        result = run("systemd-sysusers", "--dry-run", f"--root={tmp_path}", SYSUSERS)
        assert result.returncode == 0, result.stderr
        assert "Creating user 'keel'" in result.stdout + result.stderr
        return
    result = run("systemd-sysusers", f"--root={tmp_path}", SYSUSERS)
    assert result.returncode == 0, result.stderr
    entry = next(
        line.split(":")
        for line in (etc / "passwd").read_text().splitlines()
        if line.startswith("keel:")
    )
    uid, home, shell = int(entry[2]), entry[5], entry[6]
    assert uid < 1000, "a system account"
    assert shell.endswith("nologin")
    assert home == "/"


# ---- keel.service: what it promises ------------------------------------------------------


def test_service_is_a_notify_service_with_a_watchdog() -> None:
    units = directives(SERVICE)
    assert one(units, "Service.Type") == "notify"
    assert one(units, "Service.NotifyAccess") == "main"
    assert systemd_seconds(one(units, "Service.WatchdogSec")) > 0
    assert one(units, "Service.ExecStart") == f"{BINARY} serve"
    assert one(units, "Service.Restart") == "on-failure"


def test_service_runs_as_the_static_keel_user() -> None:
    units = directives(SERVICE)
    assert one(units, "Service.User") == "keel"
    assert one(units, "Service.Group") == "keel"
    assert units.get("Service.DynamicUser", ["no"]) == ["no"]
    sysusers = [line.split() for line in SYSUSERS.read_text().splitlines()]
    assert ["u", "keel"] in [fields[:2] for fields in sysusers if fields and fields[0] != "#"]


def test_service_gets_its_secrets_as_credentials() -> None:
    units = directives(SERVICE)
    loaded = dict(v.split(":", 1) for v in units.get("Service.LoadCredential", []))
    secrets = {s.name for s in SETTINGS if s.secret}
    assert set(loaded) == secrets, "one LoadCredential= per secret setting"
    assert all(Path(p).parent == Path("/etc/keel/credentials") for p in loaded.values())
    # Optional secrets fall back to an empty value instead of failing the start.
    defaults = [v.split(":", 1)[0] for v in units.get("Service.SetCredential", [])]
    assert defaults == ["secret_key", "secret_keys", "smtp_password"]
    assert not any(
        "KEEL_SECRET" in e or "PASSWORD" in e for e in units.get("Service.Environment", [])
    )


def test_service_unpacks_into_its_cache_directory() -> None:
    units = directives(SERVICE)
    assert one(units, "Service.CacheDirectory") == "keel"
    assert "SHIV_ROOT=%C/keel" in units.get("Service.Environment", [])
    assert one(units, "Service.RuntimeDirectory") == "keel"
    # keel.socket's socket lives in the runtime directory: it must survive a stopped service.
    assert one(units, "Service.RuntimeDirectoryPreserve") == "yes"


def test_service_sandbox_settings() -> None:
    units = directives(SERVICE)
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "PrivateUsers": "yes",
        "NoNewPrivileges": "yes",
        "MemoryDenyWriteExecute": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "SystemCallArchitectures": "native",
        "UMask": "0077",
        "ProtectProc": "invisible",
        "ProcSubset": "pid",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
    }
    for key, value in expected.items():
        assert one(units, f"Service.{key}") == value, key
    filters = " ".join(units.get("Service.SystemCallFilter", []))
    assert "@system-service" in filters
    assert re.search(r"~.*@privileged", filters) and re.search(r"~.*@resources", filters)
    families = set(one(units, "Service.RestrictAddressFamilies").split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # PostgreSQL and SMTP may be anywhere: no IP allow list.
    assert "Service.IPAddressDeny" not in units
    assert "Service.PrivateNetwork" not in units


def test_stop_timeout_outlasts_graceful_shutdown() -> None:
    units = directives(SERVICE)
    stop = systemd_seconds(one(units, "Service.TimeoutStopSec"))
    grace = parse_duration("shutdown_timeout", example()["shutdown_timeout"])
    assert stop > grace


# ---- keel.socket, keelctl and nginx agree on paths ---------------------------------------


def test_socket_is_reachable_by_nginx_only() -> None:
    units = directives(SOCKET)
    assert one(units, "Socket.SocketMode") == "0660"
    assert one(units, "Socket.SocketUser") == "keel"
    assert one(units, "Socket.SocketGroup") in ("www-data", "nginx")
    assert one(units, "Install.WantedBy") == "sockets.target"
    # The runtime directory exists as keel:keel before the socket is bound, so the service's
    # RuntimeDirectory= never re-owns the socket (systemd.exec(5)).
    runtime = str(Path(socket_path()).parent)
    assert one(units, "Socket.ExecStartPre").endswith(f"-o keel -g keel -m 0755 {runtime}")
    assert runtime == "/run/" + one(directives(SERVICE), "Service.RuntimeDirectory")


def test_example_listen_nginx_upstream_and_socket_agree() -> None:
    path = socket_path()
    assert example()["listen"] == f"unix:{path}"
    assert f"server unix:{path};" in NGINX.read_text(encoding="utf-8")


def test_keelctl_runs_keel_as_the_service_does() -> None:
    text = KEELCTL.read_text(encoding="utf-8")
    assert os.stat(KEELCTL).st_mode & stat.S_IXUSR, "keelctl should be executable"
    assert run("sh", "-n", KEELCTL).returncode == 0
    units = directives(SERVICE)
    assert 'user="${KEEL_USER:-' + one(units, "Service.User") + '}"' in text
    assert 'sudo -u "$user"' in text and 'runuser" -u "$user"' in text
    # %C is /var/cache for system services.
    assert "SHIV_ROOT=/var/cache/keel" in text
    credential_dirs = {
        str(Path(v.split(":", 1)[1]).parent) for v in units["Service.LoadCredential"]
    }
    assert credential_dirs == {"/etc/keel/credentials"}
    assert "CREDENTIALS_DIRECTORY=/etc/keel/credentials" in text
    assert f"${{KEEL_BIN:-{BINARY}}}" in text


def _keelctl_stub(base: Path) -> Path:
    """A stand-in for the keel executable that prints who runs it and with what."""
    stub = base / "keel"
    stub.write_text(
        '#!/bin/sh\necho "user=$(id -un) creds=$CREDENTIALS_DIRECTORY shiv=$SHIV_ROOT"\n'
        'for a in "$@"; do echo "arg=$a"; done\n',
        encoding="utf-8",
    )
    stub.chmod(0o755)
    return stub


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_keelctl_as_root_needs_no_sudo(tmp_path: Path) -> None:
    """A minimal Debian has no sudo and root's PATH may lack /usr/sbin: runuser is found."""
    base = Path(tempfile.mkdtemp(prefix="keelctl-"))  # pytest's tmp root is 0700
    try:
        base.chmod(0o755)
        env = {"PATH": "/usr/bin:/bin", "KEEL_BIN": str(_keelctl_stub(base)), "KEEL_USER": "nobody"}
        proc = subprocess.run(
            ["/bin/sh", str(KEELCTL), "doctor", "--reason", "two words"],
            capture_output=True, text=True, env=env, timeout=30, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "user=nobody creds=/etc/keel/credentials shiv=/var/cache/keel",
        "arg=doctor", "arg=--reason", "arg=two words",
    ]  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
@pytest.mark.skipif(shutil.which("sudo") is not None, reason="sudo is installed here")
def test_keelctl_without_sudo_and_not_root_says_what_to_do() -> None:
    proc = subprocess.run(
        ["/usr/sbin/runuser", "-u", "nobody", "--", "/bin/sh", str(KEELCTL), "doctor"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("Problem: keelctl must switch to the keel account")
    assert "Fix: run keelctl as root" in proc.stderr


def test_nginx_site_forwards_and_logs_safely() -> None:
    text = NGINX.read_text(encoding="utf-8")
    for header in (
        "proxy_set_header X-Request-ID $request_id;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header Host $host;",
    ):
        assert header in text, header
    log_format = text[text.index("log_format") : text.index(";", text.index("log_format"))]
    for leaky in ("$request_uri", "$request ", "$args", "$query_string", "$http_referer"):
        assert leaky not in log_format, f"access log must not record {leaky}"
    assert "~^/reset/" in text, "recovery tokens in the path are masked in the log"
    metrics = text[text.index("location = /metrics") :]
    assert "deny all;" in metrics[: metrics.index("}")]
    # HSTS and the other security headers come from keel (SEC-2), once.
    assert "add_header Strict-Transport-Security" not in text
    m = re.search(r"client_max_body_size (\d+)m;", text)
    assert m and int(m.group(1)) * 1024 * 1024 == example()["max_body_size"]


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_nginx_accepts_the_site(tmp_path: Path) -> None:
    """`nginx -t` on the site, with certificate, log and cache paths moved to tmp_path."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = run(
        *("openssl", "req", "-x509", "-nodes", "-newkey", "ec"),
        *("-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=admin.example.com"),
    )
    assert made.returncode == 0, made.stderr
    site = NGINX.read_text(encoding="utf-8")
    site = re.sub(r"ssl_certificate\s+(\S+);", f"ssl_certificate {cert};", site)
    site = re.sub(r"ssl_certificate_key\s+(\S+);", f"ssl_certificate_key {key};", site)
    site = site.replace("/var/log/nginx/", f"{tmp_path}/").replace(
        "/var/cache/nginx/keel", f"{tmp_path}/cache"
    )
    (tmp_path / "keel.conf").write_text(site, encoding="utf-8")
    temp = " ".join(
        f"{kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ access_log off; {temp} include {tmp_path}/keel.conf; }}\n",
        encoding="utf-8",
    )
    result = run(
        *("nginx", "-t", "-q", "-p", tmp_path),
        *("-e", tmp_path / "error.log", "-c", tmp_path / "nginx.conf"),
    )
    assert result.returncode == 0, result.stderr


# ---- keel.toml.example -------------------------------------------------------------------


def test_example_config_uses_only_real_settings() -> None:
    names = {s.name for s in SETTINGS}
    unknown = sorted(set(example()) - names)
    assert not unknown, f"not settings: {unknown}"


def test_example_config_documents_every_setting() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = [s.name for s in SETTINGS if not re.search(rf"^#? ?{s.name} =", text, re.M)]
    assert not missing, f"settings missing from {EXAMPLE.name}: {missing}"


def test_example_config_keeps_secrets_out() -> None:
    data = example()
    assert not [s.name for s in SETTINGS if s.secret and s.name in data]


def test_example_config_loads_with_production_values() -> None:
    config = load_config(config_path=str(EXAMPLE), env={})
    assert config.public_url.startswith("https://")
    assert config.mfa_policy == "optional"
    assert config.log_format in ("auto", "json")
    for cidr in (*config.trusted_proxies, *config.metrics_allow):
        assert ipaddress.ip_network(cidr).is_loopback


@needs_systemd_analyze
def test_the_no_pause_upgrade_unit_of_the_docs_is_a_valid_second_server_on_the_socket(
    tmp_path: Path,
) -> None:
    """docs/operations.md's `sed` turns keel.service into keel-next.service: the same unit on
    keel.socket running keel.new, which systemd accepts, as hardened as keel.service."""
    docs = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    found = re.search(r"^sed -e .*?keel-next\.service$", docs, re.M | re.S)
    assert found, "the sed command is gone from docs/operations.md"
    command = found.group(0).replace("\\\n", " ")
    service, socket = units_with_stub_binary(tmp_path)
    text = service.read_text(encoding="utf-8").replace(
        f"ExecStart={tmp_path / 'keel'} ", f"ExecStart={BINARY} "
    )
    source = tmp_path / "keel.service.orig"
    source.write_text(text, encoding="utf-8")
    command = command.replace("/etc/systemd/system/keel.service", str(source))
    command = command.replace("/etc/systemd/system/keel-next.service", str(tmp_path / "next"))
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    made = (tmp_path / "next").read_text(encoding="utf-8")
    assert f"\nExecStart={BINARY}.new serve" in made and "\nSockets=keel.socket\n" in made
    # Everything else is keel.service's, line for line.
    extra = set(made.splitlines()) - set(text.splitlines())
    assert extra == {f"ExecStart={BINARY}.new serve", "Sockets=keel.socket"}, extra
    stub = tmp_path / "keel.new"
    shutil.copy2(tmp_path / "keel", stub)
    next_unit = tmp_path / "keel-next.service"
    next_unit.write_text(made.replace(f"{BINARY}.new", str(stub)), encoding="utf-8")
    result = run(SYSTEMD_ANALYZE, "verify", "--man=no", socket, next_unit, cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
