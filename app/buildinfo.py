"""What this executable is: version, build id, target Python and platform (OPS-7)."""

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
