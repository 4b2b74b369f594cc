"""The order the suite hands files to its workers: longest first, the same on every worker."""

from __future__ import annotations

from tests.schedule import KNOWN_SLOW, SECONDS_PER_TEST, expected_seconds, longest_first


def test_a_file_with_few_slow_tests_goes_before_one_with_many_quick_ones() -> None:
    quick = [f"tests/web/test_quick.py::test_{n}" for n in range(12)]
    slow = ["tests/browser/test_ui.py::test_a", "tests/browser/test_ui.py::test_b"]
    assert longest_first(quick + slow, {}) == [
        "tests/browser/test_ui.py",
        "tests/web/test_quick.py",
    ]


def test_the_last_run_decides_over_the_estimate() -> None:
    ids = ["tests/a.py::test_x", "tests/browser/test_ui.py::test_y"]
    cached = {"tests/a.py": 90.0, "tests/browser/test_ui.py": 3.0}
    assert longest_first(ids, cached) == ["tests/a.py", "tests/browser/test_ui.py"]


def test_estimates_and_ties_are_deterministic() -> None:
    assert expected_seconds("tests/new.py", 4, {}) == 4 * SECONDS_PER_TEST
    assert expected_seconds("tests/browser/test_x.py", 1, {}) == KNOWN_SLOW["tests/browser/"]
    ids = ["tests/b.py::t", "tests/a.py::t"]
    assert (
        longest_first(ids, {})
        == longest_first(list(reversed(ids)), {})
        == ["tests/a.py", "tests/b.py"]
    )
