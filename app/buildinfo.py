"""What this executable is: version, build id, target Python and platform, and the site
that `keel build` put into it (site_name, site_version, keel_build_id).
"""

from __future__ import annotations

import json
import sys
import sysconfig
from importlib import resources

from app import __version__

BUILD_INFO_FILE = "_build_info.json"
DEV_BUILD_ID = "dev"


def build_info() -> dict[str, str]:
    """The record build.py wrote into the artifact, or a "dev" record when run from source."""
    resource = resources.files("app") / BUILD_INFO_FILE
    try:
        raw = json.loads(resource.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError):
        # From a source checkout (or a damaged artifact) there is no record: describe the
        # running interpreter instead, and say "dev" so nobody mistakes it for a release.
        raw = {}
    info = {
        "version": __version__,
        "build_id": DEV_BUILD_ID,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "platform": sysconfig.get_platform(),
    }
    if isinstance(raw, dict):
        info.update({str(k): str(v) for k, v in raw.items()})
    return info


def describe(info: dict[str, str] | None = None) -> str:
    """One line naming this executable: `keel 0.4.0 (build …)`, or for a site built by
    `keel build`: `acme 1.2.0 (build …), keel 0.4.0 (build …)`."""
    info = build_info() if info is None else info
    keel = f"keel {info['version']}"
    if "site_name" not in info:
        return f"{keel} (build {info['build_id']})"
    site = f"{info['site_name']} {info.get('site_version', '')}".rstrip()
    return f"{site} (build {info['build_id']}), {keel} (build {info.get('keel_build_id', '?')})"
