"""`keel doctor`: check an installation; ✓/!/✗ per check, `--json`, non-zero on ✗ (OPS-5)."""

from __future__ import annotations

import argparse

from app import sites
from app.cli.common import common_options, out_from, run_async
from app.config import Config, load_config
from app.errors import ConfigError, KeelError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        parents=[common_options()],
        help="check the installation: settings, database, migrations, administrators, audit, mail",
        description="Check the installation and print one line per check. Exit 1 if any check fails.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output for monitoring")
    p.add_argument(
        "--settings",
        action="store_true",
        help="also print every setting (secrets masked) and its source",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from app.ops.doctor import FAIL, OK, Check, run_checks

    out = out_from(args)
    config: Config | None = None
    try:
        config = load_config(
            config_path=getattr(args, "config", None),
            flags={"site_dir": getattr(args, "site", None)},
        )
    except ConfigError as exc:
        checks = [Check("configuration", FAIL, exc.one_line())]
    else:
        # The site named by --site or site_dir, as every other command serves it; a project
        # that cannot load is a failed check, not a crash, so the other checks still run.
        broken: Check | None = None
        if config.site_dir:
            try:
                site = sites.load_site(config.site_dir)
                site.registry()
                sites.activate(site)
            except KeelError as exc:
                sites.activate(None)
                broken = Check("site", FAIL, f"{exc.problem}: {exc.why}")
        checks = run_async(run_checks(config))
        if broken is not None:
            checks = [broken if c.name == "site" else c for c in checks]
    failed = any(c.status == FAIL for c in checks)
    if args.json:
        data: dict[str, object] = {"ok": not failed, "checks": [c.__dict__ for c in checks]}
        if args.settings and config:
            data["settings"] = {
                k: {"value": v, "source": config.sources.get(k, "default")}
                for k, v in config.redacted().items()
            }
        out.json(data)
        return 1 if failed else 0
    for c in checks:
        text = f"{c.name}: {c.detail}"
        if c.status == OK:
            out.ok(text)
        elif c.status == FAIL:
            out.fail(text)
        else:
            out.warn(text)
    if args.settings and config:
        out.result("")
        for key, value in config.redacted().items():
            out.result(f"  {key} = {value!r}  ({config.sources.get(key, 'default')})")
    return 1 if failed else 0
