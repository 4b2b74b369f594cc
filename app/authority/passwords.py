"""Password hashing (Argon2id, off the event loop, bounded) and the password policy (LOGIN-5/6)."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from app.errors import Invalid

if TYPE_CHECKING:
    from app.config import Config

T = TypeVar("T")
MAX_BYTES = 1024  # LOGIN-6 upper bound; also keeps hostile 1 MB "passwords" cheap
_DUMMY_PASSWORD = "keel-dummy-password-for-unknown-accounts"


@dataclass(frozen=True)
class Cost:
    """Argon2id parameters: passes, memory in KiB, lanes."""

    time_cost: int
    memory_cost: int
    parallelism: int


# argon2-cffi's defaults (RFC 9106's second recommendation); hashes made with anything else are
# rehashed at the next sign-in. The tests' cheaper set never lives in app/.
PRODUCTION = Cost(time_cost=3, memory_cost=65536, parallelism=4)


class Hasher:
    """Argon2id with the `PRODUCTION` parameters (64 MiB, 3 passes, 4 lanes) unless told otherwise.

    Every hash and verify runs in a private thread pool of at most `max_in_flight` workers,
    entered through a semaphore, so a burst of logins waits its turn on the event loop instead
    of allocating 64 MiB per request (LOGIN-5). One per app and per CLI command.
    """

    def __init__(
        self,
        *,
        max_in_flight: int | None = None,
        time_cost: int | None = None,
        memory_cost: int | None = None,
        parallelism: int | None = None,
    ) -> None:
        base = PRODUCTION
        self._ph = PasswordHasher(
            time_cost=time_cost or base.time_cost,
            memory_cost=memory_cost or base.memory_cost,
            parallelism=parallelism or base.parallelism,
        )
        self.max_in_flight = max(1, max_in_flight or os.cpu_count() or 1)
        self._executor = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="keel-argon2")
        self._slots = asyncio.Semaphore(self.max_in_flight)
        self._dummy_hash: str | None = None

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def hash(self, password: str) -> str:
        """A self-describing `$argon2id$…` PHC string (INV-1)."""
        return await self._run(self._ph.hash, _bounded(password))

    async def verify(self, stored: str | None, password: str) -> tuple[bool, bool]:
        """(ok, needs_rehash). A missing or malformed hash is a failure that costs the same."""
        if not stored or not stored.startswith("$argon2"):
            await self.dummy_verify(password)
            return False, False
        return await self._run(self._verify_sync, stored, _bounded(password))

    def _verify_sync(self, stored: str, password: bytes) -> tuple[bool, bool]:
        try:
            self._ph.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
        return True, self._ph.check_needs_rehash(stored)

    async def dummy_verify(self, password: str) -> None:
        """Spend what a real verify costs, for unknown emails (LOGIN-1: similar timing)."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._run(self._ph.hash, _DUMMY_PASSWORD)
        await self._run(self._verify_sync, self._dummy_hash, _bounded(password))

    def needs_rehash(self, stored: str) -> bool:
        return self._ph.check_needs_rehash(stored)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _bounded(password: str) -> bytes:
    # Never hash more than the policy allows (a 10 MB body must not cost 10 MB of Blake2b), and
    # never raise on a lone surrogate from hostile input: it simply cannot match.
    return password.encode("utf-8", "surrogatepass")[:MAX_BYTES]


# ---- policy (LOGIN-6) -------------------------------------------------------------------


@functools.cache
def common_passwords() -> frozenset[str]:
    """The embedded list (Django's common-passwords list, BSD-3-Clause), loaded once on first use."""
    text = (resources.files("app.authority") / "common_passwords.txt").read_text("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def check_policy(password: object, *, email: str, site_name: str, min_length: int) -> str | None:
    """Why `password` is refused, naming the rule, or None. No composition rules (LOGIN-6)."""
    if not isinstance(password, str) or not password:
        return "Enter a password."
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:
        return "The password contains characters that cannot be stored; type it again."
    if len(password) < min_length:
        return (
            f"Too short: use at least {min_length} characters (this one has {len(password)}). "
            "A few unrelated words make a long password that is easy to remember."
        )
    if size > MAX_BYTES:
        return f"Too long: use at most {MAX_BYTES} bytes (this one has {size})."
    folded = password.casefold()
    if folded.strip() in common_passwords():
        return "This password is on the list of commonly used passwords; choose another."
    local = email.partition("@")[0].casefold()
    if len(local) >= 3 and local in folded:
        return f"The password contains your email name ({local!r}); choose one without it."
    site = site_name.strip().casefold()
    if len(site) >= 3 and site in folded:
        return (
            f"The password contains the site name ({site_name.strip()!r}); choose one without it."
        )
    return None


@dataclass(frozen=True)
class Policy:
    """The two settings the policy needs, so callers pass one value (no reads deep into the configuration)."""

    min_length: int = 12
    site_name: str = "Keel"

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(config.password_min_length, config.site_name)

    def check(self, password: object, *, email: str) -> str | None:
        return check_policy(
            password, email=email, site_name=self.site_name, min_length=self.min_length
        )

    def rules(self) -> str:
        """The rules `check` applies, in one sentence for the forms that ask for a password."""
        return (
            f"At least {self.min_length} characters; not a commonly used password; not "
            f"containing the part of your email before the @ or the site name "
            f"({self.site_name.strip()}). No other rules: a few unrelated words make a good one."
        )


async def hash_new(hasher: Hasher, policy: Policy, password: object, *, email: str) -> str:
    """Check the policy, then hash: the one way a chosen password becomes a stored hash."""
    problem = policy.check(password, email=email)
    if problem:
        raise Invalid(
            problem,
            fields={"password": problem},
            why="the password policy refuses it",
            fix="choose a longer, less common password",
        )
    assert isinstance(password, str)  # check() refuses anything else
    return await hasher.hash(password)


# Lowercase letters and digits without look-alikes (0/o, 1/l/i), in dash-separated groups, so
# a password read aloud or copied from a terminal survives (used for one-time passwords).
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def generate(groups: int = 4, size: int = 5) -> str:
    """A random one-time password, e.g. `k3nq8-…`: 4×5 characters ≈ 99 bits."""
    import secrets

    return "-".join("".join(secrets.choice(_ALPHABET) for _ in range(size)) for _ in range(groups))
