"""Longest test files first, so that two workers finish together.

`scripts/test` runs pytest-xdist with `--dist loadfile` (a file's module fixtures, such as a
browser and a live server, are set up once, on one worker). By default xdist hands out files by
number of tests, most first: the browser files, the guides and the site builds have few tests
each but take the longest, so they went last and one worker ran them alone while the other sat
idle. `scripts/test` passes `--no-loadscope-reorder`, so xdist keeps the order decided here:
files by expected seconds, longest first (the classic longest-processing-time rule).

The expected seconds of a file are what it took in the previous run, kept in pytest's cache
(`.pytest_cache`, under `keel/file_seconds`); a file not seen yet (a fresh clone, as in CI) is
estimated from `KNOWN_SLOW` or else from its number of tests. The order changes only which
worker runs a file and when; every test still runs.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

CACHE_KEY = "keel/file_seconds"
# Seconds a file takes, measured; used until the cache knows better.
KNOWN_SLOW = {
    # Measured in a fresh clone on two cores (2026-12-05, 23:00), rounded; exact paths first.
    "tests/browser/test_journeys.py": 49.0,
    "tests/test_site_build.py": 42.0,
    "tests/web/test_workers.py": 22.0,
    "tests/browser/test_axe.py": 16.5,
    "tests/web/test_slow_clients.py": 16.5,
    "tests/site/test_sites.py": 15.0,
    "tests/browser/test_invitations.py": 15.0,
    "tests/ops/test_demo.py": 14.0,
    "tests/admin/test_import.py": 14.0,
    "tests/admin/test_list_fuzz.py": 13.5,
    "tests/browser/test_ui.py": 13.0,
    "tests/admin/test_route_matrix.py": 12.5,
    "tests/browser/test_page_bugs.py": 12.0,
    "tests/browser/test_axe_more.py": 12.0,
    "tests/docs/test_guides.py": 11.5,
    "tests/browser/test_mfa.py": 11.5,
    "tests/governance/test_ai.py": 11.0,
    "tests/admin/test_any_schema.py": 10.5,
    "tests/web/test_account_acceptance.py": 10.0,
    "tests/test_build.py": 9.0,
    "tests/admin/test_edit_pages.py": 9.0,
    "tests/web/test_upgrade.py": 8.5,
    "tests/browser/test_relations.py": 8.5,
    "tests/browser/test_filterbar.py": 8.0,
    "tests/web/test_db_stopped.py": 7.5,
    "tests/governance/test_memory.py": 7.0,
    "tests/web/test_admin_users.py": 7.0,
    "tests/web/test_serve.py": 7.0,
    "tests/authority/test_cli_user.py": 6.5,
    "tests/site/test_built_site.py": 6.5,
    "tests/browser/": 4.0,
}
# The other files' tests took 0.21 s each on average in that run.
SECONDS_PER_TEST = 0.25

_spent: dict[str, float] = defaultdict(float)


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def expected_seconds(path: str, tests: int, cached: dict[str, float]) -> float:
    if path in cached:
        return cached[path]
    for prefix, seconds in KNOWN_SLOW.items():
        if path.startswith(prefix):
            return seconds
    return tests * SECONDS_PER_TEST


def longest_first(nodeids: list[str], cached: dict[str, float]) -> list[str]:
    """The files of `nodeids` ordered by expected seconds, longest first (ties by name, so
    every worker computes the same order, as xdist requires)."""
    counts: dict[str, int] = defaultdict(int)
    for nodeid in nodeids:
        counts[_file(nodeid)] += 1
    return sorted(counts, key=lambda p: (-expected_seconds(p, counts[p], cached), p))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache = getattr(config, "cache", None)
    cached = cache.get(CACHE_KEY, {}) if cache is not None else {}
    rank = {path: n for n, path in enumerate(longest_first([i.nodeid for i in items], cached))}
    # A stable sort: the tests of one file keep their order.
    items.sort(key=lambda item: rank[_file(item.nodeid)])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _spent[_file(report.nodeid)] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    cache = getattr(config, "cache", None)
    # Under xdist the controller sees every worker's reports; the workers write nothing.
    if cache is None or hasattr(config, "workerinput") or not _spent:
        return
    known = dict(cache.get(CACHE_KEY, {}))
    known.update({path: round(seconds, 2) for path, seconds in _spent.items()})
    cache.set(CACHE_KEY, known)
