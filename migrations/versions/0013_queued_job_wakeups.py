"""queued-job wake-ups: a NOTIFY on channel `jumpboard_jobs` whenever a job becomes queued

A row trigger on `jobs` (PostgreSQL only) notifies when a job is inserted as, or changes to,
`queued`: a submission, a sweep's points, a hand-back, an expired lease put back. Idle workers
LISTEN on the channel (`app.queue.wakeups`) and claim at once instead of at their next poll.
PostgreSQL folds identical notifications of one transaction into one, so a sweep of hundreds of
points sends one. SQLite has no NOTIFY: its workers keep polling.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION jumpboard_notify_queued() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('jumpboard_jobs', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER jobs_notify_queued
        AFTER INSERT OR UPDATE OF status ON jobs
        FOR EACH ROW WHEN (NEW.status = 'queued')
        EXECUTE FUNCTION jumpboard_notify_queued()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS jobs_notify_queued ON jobs")
    op.execute("DROP FUNCTION IF EXISTS jumpboard_notify_queued()")
