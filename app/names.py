"""The one rule for resource slugs: what a slug may look like and which ones Keel keeps.

Declarations (`register()`), the admin's URL patterns and `keel startapp` all use it, so a
name one of them accepts is never refused or misrouted by another. Imports nothing heavy:
`keel --help` loads it.
"""

from __future__ import annotations

import re
import unicodedata

# A URL segment and a permission prefix (`<slug>.view`), so: lowercase ASCII, digits,
# underscores, starting with a letter; 63 characters like a PostgreSQL identifier.
SLUG = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Built-in pages under /admin/ that no resource may shadow.
RESERVED_SLUGS = frozenset({"users", "groups", "audit", "search", "api", "invitations"})
# The `{resource}` part of an admin route: any slug except the reserved ones. Every admin
# route continues with "/" after the slug, which the lookahead relies on.
ROUTE_SLUG = r"{resource:(?!(?:" + "|".join(sorted(RESERVED_SLUGS)) + r")/)[a-z][a-z0-9_]{0,62}}"


def slug_problem(slug: str) -> str | None:
    """Why `slug` cannot name a resource, or None."""
    if not SLUG.match(slug):
        return (
            "a slug is lowercase letters, digits and underscores, starting with a letter, "
            "at most 63 characters"
        )
    if slug in RESERVED_SLUGS:
        return f"/admin/{slug}/ is a built-in page"
    return None


def slugify(name: str) -> str:
    """A slug for a table name: `Kunden` → `kunden`, `straße` → `strasse`, `_archive` →
    `archive`, `Order Lines` → `order_lines`. May still be reserved: callers check."""
    text = name.replace("ß", "ss").replace("ẞ", "SS")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not text or not text[0].isalpha():
        text = f"t_{text}".rstrip("_")
    return text[:63]
