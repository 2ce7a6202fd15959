"""certificate in nats: the |E g|^2 test renamed for what it is, the certificate's columns

The |E g|^2 = 0 test keeps its data under honest names: its three-valued `verdict` becomes the
two-valued `nonzero_gradient` (holds -> shown; fails and undecided -> not_shown; rows with only
`condition_holds` mapped the same way) and its one-sided limits `grad_norm_sq_lcb*` become
`grad_norm_sq_test_limit*` (a test statistic, not a lower bound of |E g|^2). New columns hold
the certificate in nats and each seed's realized-gain interval (NULL in older rows). In the
`predictors` mapping `certificate_lcb` becomes `certificate_u_test_limit`, and
`jumpboard_val_gain` (chosen and measured on the same validation data) is dropped.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

NEW_COLUMNS = (
    ("nonzero_gradient", sa.String(length=16)),
    ("certificate_risk_decrease", sa.Float()),
    ("certificate_risk_decrease_low", sa.Float()),
    ("certificate_risk_decrease_high", sa.Float()),
    ("certificate_p_value", sa.Float()),
    ("certificate_verdict", sa.String(length=16)),
    ("gain_ci_low", sa.Float()),
    ("gain_ci_high", sa.Float()),
)
RENAMED = (
    ("grad_norm_sq_lcb", "grad_norm_sq_test_limit"),
    ("grad_norm_sq_lcb_train", "grad_norm_sq_test_limit_train"),
)
OLD_COLUMNS = (("verdict", sa.String(length=16)), ("condition_holds", sa.Boolean()))
RENAMED_PREDICTORS = {"certificate_lcb": "certificate_u_test_limit"}
RETIRED_PREDICTORS = ("jumpboard_val_gain",)
NEW_PREDICTORS = ("jumpboard_certificate_gain",)

insertions = sa.table(
    "insertions",
    sa.column("id", sa.Integer()),
    sa.column("verdict", sa.String()),
    sa.column("condition_holds", sa.Boolean()),
    sa.column("nonzero_gradient", sa.String()),
    sa.column("predictors", JSON_TYPE),
)


def _rename_predictors(renames: dict[str, str], dropped: Sequence[str]) -> None:
    """Rewrite every stored `predictors` mapping with `renames` applied and `dropped` removed."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(insertions.c.id, insertions.c.predictors).where(
            insertions.c.predictors.is_not(None)
        )
    ).all()
    for row_id, predictors in rows:
        if not isinstance(predictors, dict):
            continue
        if not any(k in predictors for k in (*renames, *dropped)):
            continue
        updated: dict[str, Any] = {}
        for key, value in predictors.items():
            if key in dropped:
                continue
            updated[renames.get(key, key)] = value
        bind.execute(
            sa.update(insertions).where(insertions.c.id == row_id).values(predictors=updated)
        )


def upgrade() -> None:
    """Rename the |E g|^2 test's columns, add the certificate's, rewrite predictor names."""
    with op.batch_alter_table("insertions") as batch:
        for name, column_type in NEW_COLUMNS:
            batch.add_column(sa.Column(name, column_type, nullable=True))
        for old, new in RENAMED:
            batch.alter_column(old, new_column_name=new, existing_type=sa.Float())
    outcome = sa.case(
        (insertions.c.verdict == "holds", "shown"),
        (insertions.c.verdict.in_(("fails", "undecided")), "not_shown"),
        (insertions.c.condition_holds.is_(True), "shown"),
        (insertions.c.condition_holds.is_(False), "not_shown"),
        else_=None,
    )
    op.execute(sa.update(insertions).values(nonzero_gradient=outcome))
    with op.batch_alter_table("insertions") as batch:
        for name, _ in OLD_COLUMNS:
            batch.drop_column(name)
    _rename_predictors(RENAMED_PREDICTORS, RETIRED_PREDICTORS)


def downgrade() -> None:
    """Back to the three-valued `verdict` (shown -> holds, not_shown -> undecided: which of
    fails and undecided it was is not kept) and `condition_holds`."""
    with op.batch_alter_table("insertions") as batch:
        for name, column_type in OLD_COLUMNS:
            batch.add_column(sa.Column(name, column_type, nullable=True))
    op.execute(
        sa.update(insertions).values(
            verdict=sa.case(
                (insertions.c.nonzero_gradient == "shown", "holds"),
                (insertions.c.nonzero_gradient == "not_shown", "undecided"),
                else_=None,
            ),
            condition_holds=sa.case(
                (insertions.c.nonzero_gradient == "shown", True),
                (insertions.c.nonzero_gradient == "not_shown", False),
                else_=None,
            ),
        )
    )
    with op.batch_alter_table("insertions") as batch:
        for old, new in RENAMED:
            batch.alter_column(new, new_column_name=old, existing_type=sa.Float())
        for name, _ in reversed(NEW_COLUMNS):
            batch.drop_column(name)
    _rename_predictors({new: old for old, new in RENAMED_PREDICTORS.items()}, NEW_PREDICTORS)
