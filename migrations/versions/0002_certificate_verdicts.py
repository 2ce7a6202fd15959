"""certificate verdicts: three-valued verdict, certificate source and training-batch values

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("verdict", sa.String(length=16)),
    ("certificate_source", sa.String(length=16)),
    ("certificate_batches", sa.Integer()),
    ("grad_norm_sq_unbiased_train", sa.Float()),
    ("grad_norm_sq_lcb_train", sa.Float()),
)


def upgrade() -> None:
    """Add the certificate's verdict columns to `insertions` (null in older rows)."""
    with op.batch_alter_table("insertions") as batch:
        for name, column_type in COLUMNS:
            batch.add_column(sa.Column(name, column_type, nullable=True))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("insertions") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
