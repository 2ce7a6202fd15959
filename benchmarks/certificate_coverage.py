"""Level, power and coverage of the |E g|^2 test's jackknife-t limit (docs/science.md 5), no
training.

Synthetic per-batch gradients g_i = mu + noise_i (i = 1..n, dimension d) with a known
theta = |mu|^2, for five noise laws (unit variance per coordinate on average):
`gaussian`; `anisotropic` (variance of coordinate k proportional to 1/k, the signal along
the largest one); `heavy` (Student t with 3 degrees of freedom); `skewed` (centred
exponential, its long tail along the signal); `left_skewed` (the same mirrored: the long tail
points against the signal). theta is given relative to the noise of the mean, trace(Cov)/n.

For each cell: coverage P(limit <= theta) of the jackknife-t limit at 95% (over all
replications, and over those where the test can show anything: n >= 8, outside the numerical
floor), that share, power P(shown), and the coverage of the previous limit (Student-t on the
projection terms, no jackknife factor) for comparison. At theta = 0 one minus the coverage is
the test's false-positive rate; at theta > 0 the coverage says whether the limit could be read
as a lower bound of theta (it cannot under `left_skewed` noise at theta = 10-50).

    python benchmarks/certificate_coverage.py --reps 2000 > table.md
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from scipy import stats

from expansion.insertion.bounds import (
    MIN_BATCHES,
    gradient_test_outcome,
    limit_arrays,
    numerical_floor,
)
from expansion.results.records import TestOutcome

KINDS = ("gaussian", "anisotropic", "heavy", "skewed", "left_skewed")
CONFIDENCE = 0.95


def noise(kind: str, rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """Mean-zero noise of the named law, average per-coordinate variance 1."""
    d = shape[-1]
    if kind == "gaussian":
        return rng.standard_normal(shape)
    if kind == "anisotropic":
        scale = 1.0 / np.sqrt(np.arange(1, d + 1))
        return rng.standard_normal(shape) * scale * math.sqrt(d / float((scale**2).sum()))
    if kind == "heavy":
        return rng.standard_t(3, shape) / math.sqrt(3.0)
    if kind == "skewed":
        return rng.exponential(1.0, shape) - 1.0
    if kind == "left_skewed":
        return 1.0 - rng.exponential(1.0, shape)
    raise ValueError(kind)


def grams(kind: str, n: int, d: int, theta: float, reps: int, seed: int) -> np.ndarray:
    """(reps, n, n) Gram matrices of per-batch gradients with |E g|^2 = theta."""
    rng = np.random.default_rng(seed)
    mu = np.zeros(d)
    mu[0] = math.sqrt(theta)  # along the noisiest coordinate (anisotropic: the worst case)
    out = []
    for start in range(0, reps, 200):
        g = noise(kind, rng, (min(200, reps - start), n, d)) + mu
        out.append(np.einsum("rid,rjd->rij", g, g))
    return np.concatenate(out)


def previous_bound(gram: np.ndarray, confidence: float) -> np.ndarray:
    """The bound before issue 10: Student-t on the projection terms, no jackknife factor."""
    n = gram.shape[-1]
    psi = (gram.sum(axis=-1) - np.diagonal(gram, axis1=-2, axis2=-1)) / (n - 1)
    spread = 2.0 * psi.std(axis=-1, ddof=1) / math.sqrt(n)
    bound: np.ndarray = psi.mean(axis=-1) - float(stats.t.ppf(confidence, n - 1)) * spread
    return bound


def cell(kind: str, n: int, d: int, theta_rel: float, reps: int, seed: int) -> dict[str, float]:
    """Coverage, the share that can show anything and power of one (noise, n, d, theta)
    cell."""
    theta = theta_rel * d / n
    gram = grams(kind, n, d, theta, reps, seed)
    _, _, limit, batch_mean = limit_arrays(gram, CONFIDENCE)
    tests = [
        gradient_test_outcome(
            n, None if math.isnan(b) else float(b), numerical_floor(float(m)), CONFIDENCE
        )
        for b, m in zip(limit, batch_mean, strict=True)
    ]
    decided = np.array(["fewer than" not in r and "floor" not in r for _, r in tests])
    decided &= ~np.isnan(limit)
    holds = np.array([o is TestOutcome.SHOWN for o, _ in tests])
    covered = limit <= theta
    return {
        "coverage": float(np.mean(covered)) if n >= 3 else float("nan"),
        "coverage_decided": float(np.mean(covered[decided])) if decided.any() else float("nan"),
        "decided": float(np.mean(decided)),
        "power": float(np.mean(holds)),
        "previous_coverage": float(np.mean(previous_bound(gram, CONFIDENCE) <= theta)),
    }


def main() -> None:
    """Print the markdown table of every cell."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--dims", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--ns", type=int, nargs="+", default=[2, 3, 4, 8, 16, 32])
    parser.add_argument("--thetas", type=float, nargs="+", default=[0.0, 0.5, 2.0, 10.0, 50.0])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        f"{args.reps} replications per cell, confidence {CONFIDENCE}, "
        f"the test shows anything only from n >= {MIN_BATCHES}.\n"
    )
    print(
        "| noise | d | n | theta / (tr Cov / n) | coverage (all) | coverage (can show) "
        "| can show | power P(shown) | previous limit coverage |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    seed = 0
    for kind in args.kinds:
        for d in args.dims:
            for n in args.ns:
                for theta_rel in args.thetas:
                    seed += 1
                    r = cell(kind, n, d, theta_rel, args.reps, seed)
                    print(
                        f"| {kind} | {d} | {n} | {theta_rel:g} | {r['coverage']:.3f} "
                        f"| {r['coverage_decided']:.3f} | {r['decided']:.3f} | {r['power']:.3f} "
                        f"| {r['previous_coverage']:.3f} |",
                        flush=True,
                    )
    print(f"\n({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
