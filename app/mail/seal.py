"""Sealed tokens: a link's secret is derived at send time and never stored (INV-1, REC-1).

A recovery token goes into a mail, and the mail waits in the outbox (MAIL-1). Storing the
rendered link would put a live credential in the database, its replicas and its backups for
as long as the row lives. Instead the token is HMAC(key, seal) for a random 32-byte seal: the
outbox row holds the seal and a placeholder where the token goes, the recovery table holds
only the token's hash, and the key is derived from `secret_key`, which is never in the
database. The worker fills the placeholder when it sends and then clears the seal.

Key rotation: the seal's first 4 bytes are the id of the key that made the token (the rest
is random), so a mail queued before a rotation is still sent with the token its link needs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping

# Stands where the token goes in the stored bodies; outside the token alphabet ("!").
PLACEHOLDER = "!keel-sealed-token!"
SEAL_BYTES = 32


def seal_key(audit_key: bytes) -> bytes:
    """Derived from the audit chain key (itself derived from secret_key): one root secret."""
    return hmac.new(audit_key, b"keel-mail-seal-v1", hashlib.sha256).digest()


def token_for(key: bytes, seal: bytes) -> str:
    """43 URL-safe characters, the same shape as every other token (sessions.well_formed)."""
    mac = hmac.new(key, seal, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


KEY_ID_BYTES = 4


def new_sealed_token(key: bytes, key_id: str = "") -> tuple[str, bytes]:
    """(token, seal): hand the token's hash to the recovery table and the seal to the outbox.

    `key_id` names the audit key the seal key came from (app.audit.key_id)."""
    named = bytes.fromhex(key_id)[:KEY_ID_BYTES]
    seal = named + secrets.token_bytes(SEAL_BYTES - len(named))
    return token_for(key, seal), seal


def key_for(keys: Mapping[str, bytes], seal: bytes) -> bytes | None:
    """The key that made this seal: the one its id names. A seal made before key ids were
    recorded names none; it was made with the signing key (the first), unless it was retired."""
    named = keys.get(seal[:KEY_ID_BYTES].hex())
    return named if named is not None else next(iter(keys.values()), None)


def unseal(key: bytes, seal: bytes, text: str) -> str:
    return text.replace(PLACEHOLDER, token_for(key, seal))
