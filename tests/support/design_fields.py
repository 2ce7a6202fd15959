"""The stable result field names of an insertion record (docs/design.md 5)."""

RECORD_FIELDS = {
    "position",
    "depth_before",
    "depth_after",
    "seed",
    "function_drift_eval",
    "function_drift_train",
    "descent",
    "certificate",
    "jumpboard",
    "realized",
}
DESCENT_FIELDS = {
    "grad_norm_sq_train",
    "grad_norm_sq_val",
    "grad_norm_sq_unbiased",
    "grad_norm_sq_test_limit",
    "confidence",
    "nonzero_gradient",
    "nonzero_gradient_p_value",
    "cosine_train_val",
    "step",
    "predicted_val_risk_delta",
}
CERTIFICATE_FIELDS = {
    "risk_decrease",
    "risk_decrease_ci",
    "interval_method",
    "confidence",
    "min_effect",
    "p_value",
    "verdict",
    "verdict_reason",
    "examples",
    "source",
    "base_risk",
}
JUMPBOARD_FIELDS = {"step", "val_risk_delta", "test_risk_delta", "test_risk_delta_ci"}
REALIZED_FIELDS = {
    "steps",
    "base_test_risk",
    "base_test_error",
    "expanded_test_risk",
    "expanded_test_error",
    "control_test_risk",
    "control_test_error",
    "gain_vs_control",
}
