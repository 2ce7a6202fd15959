"""job devices: jobs.devices, how many devices a job needs (a worker claims it only if it
offers at least that many)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("devices", sa.Integer(), nullable=False, server_default=sa.text("1"))
        )
    # Jobs still waiting keep what their spec asks: train.devices, where it says more than 1.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE jobs SET devices = (spec -> 'train' ->> 'devices')::int "
            "WHERE status = 'queued' AND (spec -> 'train' ->> 'devices') IS NOT NULL"
        )
    else:
        op.execute(
            "UPDATE jobs SET devices = CAST(json_extract(spec, '$.train.devices') AS INTEGER) "
            "WHERE status = 'queued' AND json_extract(spec, '$.train.devices') IS NOT NULL"
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("devices")
