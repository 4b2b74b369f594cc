"""CONF-1..5: sources and precedence, secrets from files and credentials, redaction, bad values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import SETTINGS, Config, config_fields, load_config, redact_url
from app.errors import ConfigError
from tests.helpers import assert_no_traceback, keel, keel_env


def test_defaults_match_spec() -> None:
    c = load_config(env={})
    assert c.listen == "127.0.0.1:8000"
    assert (c.pool_min, c.pool_max) == (2, 10)
    assert c.statement_timeout == 5.0
    assert c.session_idle == 30 * 60 and c.session_absolute == 12 * 3600
    assert c.reauth_window == 15 * 60 and c.password_min_length == 12
    assert c.site_name == "Keel" and c.trusted_proxies == ()


def test_settings_table_and_config_dataclass_agree() -> None:
    assert [s.name for s in SETTINGS] == config_fields()
    for s in SETTINGS:
        assert getattr(Config(), s.name) == s.default, s.name


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    toml = tmp_path / "keel.toml"
    toml.write_text('site_name = "From file"\nlisten = "127.0.0.1:9001"\npool_max = 20\n')
    env = {"KEEL_CONFIG": str(toml), "KEEL_LISTEN": "127.0.0.1:9002"}
    c = load_config(env=env, flags={"pool_max": 30})
    assert c.site_name == "From file"
    assert c.listen == "127.0.0.1:9002"
    assert c.pool_max == 30
    assert c.sources["site_name"].startswith("file ")
    assert c.sources["listen"] == "env KEEL_LISTEN"
    assert c.sources["pool_max"] == "flag"


def test_explicit_config_path_beats_env_path(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('site_name = "A"\n')
    b.write_text('site_name = "B"\n')
    assert load_config(config_path=str(b), env={"KEEL_CONFIG": str(a)}).site_name == "B"


def test_database_url_env_and_keel_override() -> None:
    assert load_config(env={"DATABASE_URL": "postgresql://a/x"}).database_url == "postgresql://a/x"
    both = {"DATABASE_URL": "postgresql://a/x", "KEEL_DATABASE_URL": "postgresql://b/y"}
    assert load_config(env=both).database_url == "postgresql://b/y"


def test_secret_from_file_and_from_systemd_credentials(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("abc123\n")
    assert load_config(env={"KEEL_SECRET_KEY": f"file:{f}"}).secret_key == "abc123"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "secret_key").write_text("from-credential\n")
    (creds / "database_url").write_text("postgresql://u:pw@h/db\n")
    c = load_config(env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert c.secret_key == "from-credential"
    assert c.database_url == "postgresql://u:pw@h/db"
    assert c.sources["secret_key"] == "credential"


def test_missing_secret_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="secret_key.*cannot read"):
        load_config(env={"KEEL_SECRET_KEY": f"file:{tmp_path}/nope"})


def test_redaction_never_shows_secrets() -> None:
    c = load_config(
        env={
            "DATABASE_URL": "postgresql://keel:hunter2@db:5432/keel",
            "KEEL_SECRET_KEY": "s3cr3t",
            "KEEL_SMTP_PASSWORD": "mailpw",
        }
    )
    shown = c.redacted()
    assert shown["database_url"] == "postgresql://keel:***@db:5432/keel"
    assert shown["secret_key"] == "***" and shown["smtp_password"] == "***"
    assert (
        "hunter2" not in repr(shown) and "s3cr3t" not in repr(shown) and "mailpw" not in repr(shown)
    )
    assert redact_url("host=db password=abc dbname=x") == "host=db password=*** dbname=x"


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("listen", "nonsense", "not an address"),
        ("listen", "127.0.0.1:99999", "not an address"),
        ("listen", "unix:relative", "absolute path"),
        ("pool_max", "ten", "not a whole number"),
        ("pool_max", "0", "out of range"),
        ("pool_min", "-1", "out of range"),
        ("statement_timeout", "5 parsecs", "not a duration"),
        ("statement_timeout", "0s", "greater than zero"),
        ("session_idle", "true", "not a duration"),
        ("read_only", "maybe", "not a boolean"),
        ("log_format", "xml", "not allowed"),
        ("trusted_proxies", "10.0.0.0/8,not-an-ip", "not an IP network"),
        ("public_url", "ftp://example.com", "not a https/http URL"),
        ("database_url", "mysql://x/y", "not a postgresql/postgres URL"),
        ("site_name", "x" * 500, "too long"),
        ("site_name", "bad\x07name", "control characters"),
        ("smtp_port", "70000", "out of range"),
        ("max_body_size", "12", "out of range"),
        ("login_lock_failures", "1", "out of range"),
        ("login_lock_failures", "five", "not a whole number"),
        ("login_lock_window", "2h", "out of range"),
        ("login_lock_window", "soon", "not a duration"),
        ("login_lock_duration", "10s", "out of range"),
        ("login_ip_limit", "0", "out of range"),
    ],
)
def test_bad_values_name_the_key_problem_and_fix(key: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={f"KEEL_{key.upper()}": value})
    line = info.value.one_line()
    assert key in line and needle in line and "Fix:" in line
    assert "\n" not in line


def test_pool_min_above_max_is_refused() -> None:
    with pytest.raises(ConfigError, match="pool_min"):
        load_config(env={"KEEL_POOL_MIN": "20", "KEEL_POOL_MAX": "5"})


def test_unknown_key_and_bad_toml_in_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("sitename = 'typo'\n")
    with pytest.raises(ConfigError, match="sitename.*unknown setting"):
        load_config(config_path=str(bad), env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("site_name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(config_path=str(broken), env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_path=str(tmp_path / "missing.toml"), env={})


def test_typed_values_in_toml(tmp_path: Path) -> None:
    f = tmp_path / "k.toml"
    f.write_text(
        'trusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"]\nread_only = true\nsession_idle = "45m"\npool_max = 12\n'
    )
    c = load_config(config_path=str(f), env={})
    assert c.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8")
    assert c.read_only is True and c.session_idle == 2700 and c.pool_max == 12
    f.write_text("pool_max = true\n")
    with pytest.raises(ConfigError, match="pool_max"):
        load_config(config_path=str(f), env={})


def test_cli_bad_setting_is_one_line_exit_2() -> None:
    proc = keel(
        "migrate", "--status", env=keel_env(KEEL_POOL_MAX="lots", DATABASE_URL="postgresql://x/y")
    )
    assert proc.returncode == 2
    assert_no_traceback(proc)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "pool_max" in lines[0] and "Fix:" in lines[0]


def test_configuration_reference_documents_every_setting() -> None:
    """The reference in docs/ is kept complete (CONF)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^### `([a-z_]+)`", text, flags=re.M))
    assert documented == {s.name for s in SETTINGS}


def test_the_policy_knows_the_same_roles_as_the_ladder() -> None:
    from app import config as config_module
    from app.authority.principal import ROLES

    assert tuple(ROLES) == config_module._ROLE_NAMES


def test_a_bad_mfa_policy_is_refused_with_the_key_and_a_fix() -> None:
    from app.config import load_config
    from app.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(env={}, flags={"mfa_policy": "required:admins"})
    assert "mfa_policy" in str(info.value.problem) and "administrator" in str(info.value.fix)


# ---- the key ring (secret_keys) ------------------------------------------------------------


def test_a_ring_file_holds_one_key_per_line_and_the_first_signs(tmp_path: Path) -> None:
    from app.config import ring_problem

    new, old = "n" * 43, "o" * 43
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "secret_keys").write_text(f"{new}\n{old}\n\n")
    (creds / "secret_key").write_text("\n")  # the unit's empty default for the unused form
    c = load_config(env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert c.ring == (new, old) and c.secret_key == new
    assert c.sources["secret_keys"] == "credential"
    assert ring_problem(c) is None
    assert c.redacted()["secret_keys"] == "***"
    # The single-key form is a ring of one.
    assert load_config(env={"KEEL_SECRET_KEY": old}).ring == (old,)
    assert load_config(env={"KEEL_SECRET_KEYS": f"{new}, {old}"}).ring == (new, old)


def test_a_bad_ring_is_refused_with_a_fix(tmp_path: Path) -> None:
    from app.config import ring_problem

    good = "g" * 43
    with pytest.raises(ConfigError) as both:
        load_config(env={"KEEL_SECRET_KEY": good, "KEEL_SECRET_KEYS": good})
    assert both.value.key == "secret_keys" and "both secret_key" in str(both.value)
    assert "move the secret_key value into secret_keys" in both.value.fix
    with pytest.raises(ConfigError, match="listed twice"):
        load_config(env={"KEEL_SECRET_KEYS": f"{good},{good}"})
    short = load_config(env={"KEEL_SECRET_KEYS": f"{good},tooshort"})
    assert ring_problem(short) == "secret_keys key 2: decodes to 6 bytes; at least 32 are needed"
    ring = tmp_path / "ring"
    ring.write_text(f"{good}\ntooshort\n")
    proc = keel(
        "serve",
        env=keel_env(
            site=False, KEEL_SECRET_KEYS=f"file:{ring}", KEEL_DATABASE_URL="postgresql://x/y"
        ),
    )
    assert proc.returncode != 0 and "secret_keys" in proc.stderr and "key 2" in proc.stderr
    assert_no_traceback(proc)
    proc = keel("doctor", env=keel_env(site=False, KEEL_SECRET_KEY=good, KEEL_SECRET_KEYS=good))
    assert proc.returncode != 0 and "both secret_key" in proc.stdout + proc.stderr
    assert_no_traceback(proc)


def test_secret_rotate_prints_a_new_key_and_the_steps() -> None:
    from app.keyring import public_id

    old = "o" * 43
    proc = keel("secret", "rotate", env=keel_env(site=False, KEEL_SECRET_KEY=old))
    assert proc.returncode == 0, proc.stderr
    key, *lines = proc.stdout.splitlines()
    assert len(key) == 43 and key != old
    text = "\n".join(lines)
    assert f"New key {public_id(key)}. Current ring: {public_id(old)}" in text
    assert "/etc/keel/credentials/secret_keys" in text and "cannot both be set" in text
    assert "systemctl restart keel" in text and "keel doctor" in text
    ring = keel("secret", "rotate", env=keel_env(site=False, KEEL_SECRET_KEYS=f"{old},{'p' * 43}"))
    assert "FIRST line" in ring.stdout and "cannot both be set" not in ring.stdout
