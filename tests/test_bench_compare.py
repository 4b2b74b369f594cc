"""The side-by-side benchmark's arithmetic (`bench/compare.py`): which ratio a scenario reports.

The runs themselves need the 1.1 M-row database and minutes of wrk; these check only how their
figures become the table, so a change to the method shows up here."""

from __future__ import annotations

from typing import Any

from bench.compare import markdown, paired_ratios


def _runs(floor: list[float], keel: list[float]) -> dict[str, list[dict[str, Any]]]:
    return {"floor": [{"rps": r} for r in floor], "keel": [{"rps": r} for r in keel]}


def test_each_round_is_compared_with_its_own_partner() -> None:
    # The machine slowed down between rounds: the best of each side would compare Keel's slow
    # minute with the floor's fast one (300 against 330: 0.91); each round says Keel kept up.
    figures = _runs([330, 250, 260], [300, 262, 265])
    assert [round(r, 3) for r in paired_ratios(figures)] == [0.909, 1.048, 1.019]


def test_the_table_reports_the_median_round_and_says_how() -> None:
    figures = _runs([330, 250, 260], [300, 262, 265])
    pairs = paired_ratios(figures)
    best = {k: max(v, key=lambda r: r["rps"]) for k, v in figures.items()}
    idle = {"rss_mib": [50.0], "pss_total_mib": 45.0}
    run = {"idle": {"floor": idle, "keel": idle}, "S3": {**best, "ratio": sorted(pairs)[1]}}
    results = {
        "date": "2026-12-05 23:00",
        "cpus": 2,
        "duration_s": 10,
        "rounds": 3,
        "load_average_before": ["0.5", "0.4", "0.3"],
        "runs": {"1": run},
    }
    text = markdown(results)
    row = next(line for line in text.splitlines() if line.startswith("| S3 "))
    assert "| 330 | 300 | 1.02 | ≥ 0.95 |" in row  # best req/s of each side, the median ratio
    assert "miss" not in row
    assert "the median of the rounds' ratios" in text
