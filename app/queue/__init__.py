"""The job queue: every state change of a job, and nothing else.

The `jobs` table is the queue. `enqueue` adds jobs (a sweep as one parent and a job per grid
point, `sweeps`), `claim` hands one to a worker under a lease, `lease` keeps and loses leases
(heartbeat, hand back, reclaim after expiry), `finish` stores an attempt's outcome. A claim is one
UPDATE ... RETURNING statement (with `FOR UPDATE SKIP LOCKED` on PostgreSQL; under SQLite's
single-writer lock on SQLite) that hands the claimer a fresh random lease token. Every later
write by the claimer is guarded by `WHERE id = :id AND lease_token = :token`; zero rows updated
means the lease was lost (reclaimed after expiry, or handed back) and the caller must stop
working on the job.

Times come from the clock of the process doing the write (UTC), so hosts sharing one database
need synchronized clocks (NTP), which a lease of tens of seconds tolerates easily.
"""

from app.queue.claim import claim_next_job
from app.queue.enqueue import cancel_job, enqueue_job
from app.queue.finish import (
    KEPT_ON_FAILURE,
    SUMMARY_DROPPED_KEYS,
    PendingResultOutcome,
    complete_job,
    describe_artifacts,
    fail_job,
    insertion_row,
    mark_cancelled,
    result_summary,
    store_pending_result,
)
from app.queue.lease import (
    RETRY_FIRST_DELAY_S,
    RETRY_MAX_DELAY_S,
    ClaimedJob,
    JobNotFound,
    MetricPoint,
    QueueError,
    heartbeat,
    is_connection_error,
    reclaim_expired,
    release_job,
    retry_while_leased,
)

__all__ = [
    "KEPT_ON_FAILURE",
    "RETRY_FIRST_DELAY_S",
    "RETRY_MAX_DELAY_S",
    "SUMMARY_DROPPED_KEYS",
    "ClaimedJob",
    "JobNotFound",
    "MetricPoint",
    "PendingResultOutcome",
    "QueueError",
    "cancel_job",
    "claim_next_job",
    "complete_job",
    "describe_artifacts",
    "enqueue_job",
    "fail_job",
    "heartbeat",
    "insertion_row",
    "is_connection_error",
    "mark_cancelled",
    "reclaim_expired",
    "release_job",
    "result_summary",
    "retry_while_leased",
    "store_pending_result",
]
