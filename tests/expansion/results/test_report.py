"""The table `jumpboard run` prints: verdicts and intervals, and older results without them."""

from __future__ import annotations

from expansion.results.report import position_table


def test_table_shows_verdicts_bounds_and_intervals() -> None:
    result = {
        "scan": {
            "method": "single_pass",
            "certificate_batches": 16,
            "certificate_source": "holdout",
            "family_method": "holm",
            "positions": [{"family_verdict": "holds"}, {"family_verdict": "fails"}],
        },
        "positions": [
            {
                "position": 1,
                "n_seeds": 3,
                "verdict": "holds",
                "verdict_counts": {"holds": 3, "fails": 0, "undecided": 0},
                "family_verdict": "holds",
                "seeds_lcb": 2e-4,
                "certified_gain": 5e-4,
                "predicted_val_risk_delta": -1e-3,
                "gain_mean": 0.002,
                "gain_ci": [-0.001, 0.005],
                "gain_ci_method": "two_level_paired_bootstrap(seeds, test_examples)",
            }
        ],
    }
    lines = position_table(result).splitlines()
    assert "holds (3/0/0)" in lines[2] and "+2.00e-04" in lines[2]
    assert "[-0.00100, +0.00500]" in lines[2]
    assert "holds at 1 of 2 positions" in lines[-1] and "test_examples" in lines[-1]


def test_older_results_show_na() -> None:
    old = {"positions": [{"position": 0, "condition_holds": True, "gain_mean": 0.1}]}
    row = position_table(old).splitlines()[2]
    assert row.split()[1] == "holds" and "n/a" in row
    assert "no positions" in position_table({"scan": {"positions": []}})
