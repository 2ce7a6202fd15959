"""How an `expand` job's time divides between its stages, from the spec alone (the cost
model's FLOP counts, `expansion.specs.cost`): the progress bar's slices, so that its fraction
tracks time and the page's estimate of the time left holds from early in the job.

Counted per stage (F: forward FLOPs per example of the base, Fe: of the expanded network; a
training step costs 3 forwards): base training, 3F per example per epoch; the scan, a
forward-backward over the training and certificate examples plus every (position, seed)'s line
search on validation and its certificate on the certificate examples; the certificate stage,
two drift passes and the jumpboard model on the test set per chosen (position, seed); the
continuation, every arm's steps plus its test evaluation; the predictors, each chosen
(position, seed)'s probe; keeping the expanded network, one arm again. Measured against the
default job's stage times in docs/benchmarks.md.
"""

from __future__ import annotations

from expansion.specs.cost import _network_cost
from expansion.specs.experiments import ExpandExperiment
from expansion.specs.split_sizes import TEST_SIZES, split_sizes

PROBE_FRACTION = 0.1
"""The probe predictor's steps as a fraction of the continuation's (its default)."""
FRESH_CERTIFICATE_BATCHES = 16
"""Fresh certificate batches of `teacher` when `expand.grad_batches` is unset."""
TRAINING_OVERHEAD = 2.0
"""Base training's time per FLOP relative to the continuation's: Lightning's per-step work,
validation every epoch and augmentation (the default job's base took 7% of its time where
FLOPs say 3%, the converged example's 28% where they say 18%: docs/benchmarks.md)."""
SCAN_OVERHEAD = 3.0
"""The scan's time per FLOP relative to the continuation's: many small evaluations (every
(position, seed)'s line search and certificate); the default job's scan took 6-12% of its
time where FLOPs say 2.5% (docs/benchmarks.md, issue 21: fitted on those two runs)."""
CERTIFY_OVERHEAD = 1.5
"""The certificate stage's, likewise (3-4% measured where FLOPs say 2.3%)."""
EXPAND_STAGES = ("train", "scan", "certify", "continue", "predictors", "keep")
"""The stages weighed, in the order they run."""


def continued_positions(spec: ExpandExperiment) -> int:
    """How many positions the job continues (at most all for `certified`, not known before)."""
    e, positions = spec.expand, spec.model.num_positions
    return {
        "all": positions,
        "explicit": len(e.positions),
        "top_k": min(e.top_k, positions),
        "certified": positions,
    }[e.select]


def stage_weights(spec: ExpandExperiment, base_given: bool = False) -> dict[str, float]:
    """Each stage's share of the job's compute (summing to 1); training 0 for a given base."""
    e = spec.expand
    _, base_f, _ = _network_cost(spec, spec.model.total_blocks)
    _, expanded_f, _ = _network_cost(spec, spec.model.total_blocks + 1)
    sizes = split_sizes(spec.data)
    certify = sizes.certify
    if spec.data.name == "teacher":
        certify = (e.grad_batches or FRESH_CERTIFICATE_BATCHES) * spec.grad_batch_size
    test = (
        spec.data.teacher_test_size if spec.data.name == "teacher" else TEST_SIZES[spec.data.name]
    )
    seeds, chosen = len(e.seeds), continued_positions(spec)
    scanned = spec.model.num_positions * seeds
    batch, steps = spec.train.batch_size, e.continue_steps
    probe = e.probe_steps or max(1, round(PROBE_FRACTION * steps))
    flops = {
        "train": 0.0
        if base_given
        else TRAINING_OVERHEAD * 3.0 * base_f * sizes.train * spec.train.epochs,
        "scan": SCAN_OVERHEAD
        * (
            3.0 * base_f * (sizes.train + certify)
            + scanned * base_f * (e.line_search_points * sizes.val + certify)
        ),
        "certify": CERTIFY_OVERHEAD * chosen * seeds * 3.0 * expanded_f * test,
        "continue": (chosen + 1) * seeds * (3.0 * expanded_f * steps * batch + expanded_f * test),
        "predictors": chosen * seeds * 3.0 * expanded_f * probe * batch,
        "keep": 3.0 * expanded_f * steps * batch,
    }
    total = sum(flops.values())
    return {name: flops[name] / total for name in EXPAND_STAGES}


def stage_slices(
    spec: ExpandExperiment, base_given: bool = False
) -> dict[str, tuple[float, float]]:
    """Each stage's (start, end) on the progress bar, from `stage_weights`."""
    out, start = {}, 0.0
    weights = stage_weights(spec, base_given)
    for name in EXPAND_STAGES:
        out[name] = (start, min(1.0, start + weights[name]))
        start = out[name][1]
    return out
