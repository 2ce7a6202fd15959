"""insertion predictors: one JSON mapping of predictor name to value per insertion

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSONB on PostgreSQL, JSON (text) elsewhere.
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    """Add `insertions.predictors` (NULL for insertions stored before predictors existed)."""
    with op.batch_alter_table("insertions") as batch:
        batch.add_column(sa.Column("predictors", JSON_TYPE, nullable=True))


def downgrade() -> None:
    """Drop `insertions.predictors`."""
    with op.batch_alter_table("insertions") as batch:
        batch.drop_column("predictors")
