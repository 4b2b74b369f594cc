"""`keel secret rotate`: the next key of the ring, and the steps to put it in place."""

from __future__ import annotations

import argparse

from app.cli.common import common_options, config_from, out_from
from app.errors import KeelError

CREDENTIALS = "/etc/keel/credentials"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "secret",
        parents=[common_options()],
        help="rotate the secret key",
        description="Manage the secret key ring (secret_keys: the first key signs, all verify).",
    )
    actions = p.add_subparsers(title="actions", dest="action", metavar="<action>")
    rotate = actions.add_parser(
        "rotate",
        parents=[common_options()],
        help="generate the next key and print the steps to rotate to it",
        description="Generate a new key and print the exact steps: put it first in the "
        "secret_keys credential, keep the old keys after it, restart, and let `keel doctor` "
        "say when an old key can be retired. Nothing is written: the credential files belong "
        "to root and to your configuration management.",
    )
    rotate.set_defaults(run=run_rotate)
    p.set_defaults(run=lambda _args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_rotate(args: argparse.Namespace) -> int:
    from app.keyring import live_window, new_key, public_id

    out = out_from(args)
    try:
        config = config_from(args)
        ring, window = config.ring, live_window(config)
        single = bool(config.secret_key) and not config.secret_keys
    except KeelError:
        ring, window, single = (), 43200.0, False
    key = new_key()
    out.result(key)
    out.line(f"New key {public_id(key)}. Current ring: " + (
        ", ".join(public_id(k) for k in ring) or "no key configured"
    ))  # fmt: skip
    out.line("")
    path = f"{CREDENTIALS}/secret_keys"
    if single:
        out.line(f"1. Create {path} (root:keel, 0640) with two lines: the new key above, then")
        out.line(f"   your current secret_key. Then delete {CREDENTIALS}/secret_key (or remove")
        out.line("   secret_key from keel.toml): secret_key and secret_keys cannot both be set.")
    else:
        out.line(f"1. Put the new key above as the FIRST line of {path} (root:keel, 0640);")
        out.line("   keep every line that is already there, after it.")
    out.line("   Several hosts: first add the new key as the LAST line everywhere and restart,")
    out.line("   then move it first: every host must verify it before any host signs with it.")
    out.line("2. Restart: systemctl restart keel (every host).")
    out.line("3. Check: keel doctor (audit chain ✓, one line per older key).")
    out.line(f"4. Retire an old key no sooner than {window / 3600:g} h after the restart, when")
    out.line("   `keel doctor` says nothing live depends on it. Audit rows it signed need it to be")
    out.line("   verified: keep it for that, or accept that those rows become unverifiable.")
    return 0
