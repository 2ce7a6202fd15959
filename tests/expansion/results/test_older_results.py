"""Results stored before issue 20 are read under today's names; today's pass unchanged."""

from __future__ import annotations

from typing import Any

from result_fixtures import expand_result, grow_result, older_expand_result

from expansion.results.older_results import current_record, current_result, current_section
from expansion.specs.predictor_names import PREDICTOR_NAMES, current_predictors

OLD_NAMES = {
    "verdict",
    "family_verdict",
    "verdict_counts",
    "condition_holds",
    "grad_norm_sq_lcb",
    "seeds_lcb",
    "certified_gain",
    "certified_gain_lcb",
    "p_value",
}


def test_older_expand_result_reads_under_todays_names() -> None:
    older = older_expand_result()
    result = current_result(older)
    for row in result["scan"]["positions"] + result["positions"]:
        assert not OLD_NAMES & set(row), row
        assert row["nonzero_gradient"] in ("shown", "not_shown")
        assert "certificate" not in row  # never measured: shown as n/a, not made up
    by_position = {r["position"]: r for r in result["positions"]}
    assert by_position[4]["nonzero_gradient_counts"] == {"shown": 3, "not_shown": 0}
    assert by_position[2]["nonzero_gradient_counts"] == {"shown": 0, "not_shown": 3}
    assert by_position[4]["grad_norm_sq_unbiased"] == 3.1e-4  # was certified_gain
    assert by_position[4]["seeds_test_limit"] == 0.9e-4  # was seeds_lcb
    scan = {r["position"]: r for r in result["scan"]["positions"]}
    assert scan[0]["nonzero_gradient"] == "not_shown"  # an old `fails` showed nothing
    for record in result["insertions"]:
        descent = record["descent"]
        assert not OLD_NAMES & set(descent)
        assert descent["grad_norm_sq_test_limit"] in (1.2e-4, -3e-5)
    assert older["positions"][0]["certified_gain"] == 2e-5, "the stored dict is not changed"


def test_todays_results_pass_unchanged() -> None:
    for result in (expand_result(), grow_result()):
        assert current_result(result) == result


def test_growth_events_and_per_seed_rows() -> None:
    grow = grow_result()
    grow["grow"]["events"][0] = {
        **{
            k: v for k, v in grow["grow"]["events"][0].items() if k != "grad_norm_sq_unbiased_train"
        },
        "certified_gain": 2e-4,
    }
    (event, _) = current_result(grow)["grow"]["events"]
    assert event["grad_norm_sq_unbiased_train"] == 2e-4 and "certified_gain" not in event
    row: dict[str, Any] = {
        "position": 1,
        "verdict": "undecided",
        "per_seed": [{"seed": 0, "verdict": "holds", "grad_norm_sq_lcb": 1e-4, "p_value": 0.01}],
    }
    (seed,) = current_section(row)["per_seed"]
    assert seed == {
        "seed": 0,
        "nonzero_gradient": "shown",
        "grad_norm_sq_test_limit": 1e-4,
        "nonzero_gradient_p_value": 0.01,
    }


def test_predictors_are_renamed_and_retired() -> None:
    old = {"certificate_lcb": 0.1, "jumpboard_val_gain": 0.2, "certificate_u": 0.3}
    assert current_predictors(old) == {"certificate_u_test_limit": 0.1, "certificate_u": 0.3}
    record = current_record({"position": 0, "predictors": old})
    assert set(record["predictors"]) <= set(PREDICTOR_NAMES)
