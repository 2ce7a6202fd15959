"""The stable result field names of an insertion record (docs/design.md 5)."""

RECORD_FIELDS = {
    "position",
    "depth_before",
    "depth_after",
    "seed",
    "function_drift_eval",
    "function_drift_train",
    "descent",
    "jumpboard",
    "realized",
}
DESCENT_FIELDS = {
    "grad_norm_sq_train",
    "grad_norm_sq_val",
    "grad_norm_sq_unbiased",
    "grad_norm_sq_lcb",
    "confidence",
    "condition_holds",
    "cosine_train_val",
    "step",
    "predicted_val_risk_delta",
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
