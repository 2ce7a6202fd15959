"""The table `jumpboard run` prints: the certificate in nats and the |E g|^2 test beside the
realized gain, and older results read under today's names."""

from __future__ import annotations

from typing import Any

from result_fixtures import older_expand_result

from expansion.results.report import position_table


def test_table_shows_the_certificate_the_test_and_intervals() -> None:
    certificate: dict[str, Any] = {
        "risk_decrease": 0.0021,
        "risk_decrease_ci": [0.0008, 0.0034],
        "verdict": "holds",
        "family_verdict": "holds",
    }
    result: dict[str, Any] = {
        "scan": {
            "method": "single_pass",
            "certificate_examples": 287,
            "certificate_source": "holdout",
            "min_effect": 0.0,
            "family_method": "holm",
            "positions": [
                {"position": 1, "certificate": certificate},
                {"position": 2, "certificate": {**certificate, "family_verdict": "fails"}},
            ],
        },
        "positions": [
            {
                "position": 1,
                "n_seeds": 3,
                "certificate": certificate,
                "nonzero_gradient": "shown",
                "nonzero_gradient_counts": {"shown": 2, "not_shown": 1},
                "grad_norm_sq_unbiased": 5e-4,
                "predicted_val_risk_delta": -1e-3,
                "gain_mean": 0.002,
                "gain_ci": [-0.001, 0.005],
                "gain_ci_method": "crossed_random_effects_t(seeds, test_examples)",
            }
        ],
    }
    lines = position_table(result).splitlines()
    assert "holds (holds)" in lines[2] and "+0.00210 [+0.00080, +0.00340]" in lines[2]
    assert "2/3 seeds" in lines[2] and "[-0.00100, +0.00500]" in lines[2]
    assert "287 holdout examples" in lines[-1] and "holds family-wise" in lines[-1]
    assert "at 1 of 2 positions" in lines[-1] and "crossed_random_effects_t" in lines[-1]


def test_older_results_show_na_for_the_certificate() -> None:
    lines = position_table(older_expand_result()).splitlines()
    row = lines[3]  # position 4, where the old three-valued verdict held at every seed
    assert row.split()[0] == "4" and row.split()[1] == "n/a"
    assert "3/3 seeds" in row and "+0.01200" in row
    oldest = {"positions": [{"position": 0, "condition_holds": True, "gain_mean": 0.1}]}
    assert "shown" in position_table(oldest).splitlines()[2]
    assert "no positions" in position_table({"scan": {"positions": []}})
