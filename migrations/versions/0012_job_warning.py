"""job warning: jobs.warning, a note for the job's reader that is neither its error nor its
progress message (a result discarded because another attempt had started)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, not a batch: on SQLite a batch copies `jobs` and drops the old table,
# and with foreign keys on, dropping it deletes every job's rows in the child tables.


def upgrade() -> None:
    """Apply this revision."""
    op.add_column("jobs", sa.Column("warning", sa.Text(), nullable=True))


def downgrade() -> None:
    """Revert this revision (SQLite 3.35 or later drops the column in place)."""
    op.drop_column("jobs", "warning")
