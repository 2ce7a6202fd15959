"""queue: a partial claim index in the claim's order

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

The claim orders queued jobs by (priority DESC, created_at, id); the old index
`(status, priority, created_at)` did not match that order, so every claim sorted all queued
rows. The new index holds only queued rows, in exactly the claim's order.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    """Replace the claim index by a partial index on queued rows in the claim's order."""
    op.drop_index("ix_jobs_claim", table_name="jobs")
    op.create_index(
        "ix_jobs_queued",
        "jobs",
        [sa.text("priority DESC"), "created_at", "id"],
        postgresql_where=QUEUED,
        sqlite_where=QUEUED,
    )


def downgrade() -> None:
    """Restore the old claim index."""
    op.drop_index("ix_jobs_queued", table_name="jobs")
    op.create_index("ix_jobs_claim", "jobs", ["status", "priority", "created_at"])
