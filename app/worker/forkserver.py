"""Imported by the worker's job fork server only (never by the API or the worker parent): the
libraries every job needs, then `gc.freeze()`.

A job is a child forked from the fork server. What the server imported once, no job imports
again. Freezing the collector's view of those objects matters as much: without it the first
garbage collection in each child walks (and so writes to) every object torch, lightning and
scikit-learn created, copying hundreds of megabytes of shared pages before the first step.
"""

from __future__ import annotations

import gc
import importlib
import logging

log = logging.getLogger(__name__)

JOB_LIBRARIES = (
    "expansion.experiments",
    # `expansion.data` imports scikit-learn only when a job loads `digits`: importing it in
    # each job took 3 of the 3.8 s from claim to first step on a loaded machine.
    "sklearn.datasets",
    "sklearn.model_selection",
    "app.worker.child",
)
"""Modules imported once by the fork server (one that cannot be imported is skipped)."""

for _name in JOB_LIBRARIES:
    try:
        importlib.import_module(_name)
    except ImportError as exc:  # a job that needs it reports the error itself
        log.warning("fork server: cannot preload %s (%s)", _name, exc)

gc.collect()
gc.freeze()
