"""Coverage of the certificate's and the realized gain's intervals (docs/science.md 2 and 4).

Part 1, `mean_interval` (one fixed model scored on n certificate examples): per-example loss
differences drawn from a known population, n = 287 (digits' certificate split) and 800
(MNIST-1D's), against the plain Student-t interval and the two halves of the envelope alone
(the kurtosis-cut t, Hall's skew-corrected t). Populations: normal; exponential and lognormal
in both skew directions; rare large differences on 3% and on 1% of the examples in both
directions; and, unless `--no-digits`, the per-example differences of nine real jumpboard
models on digits (a conv2d base fitted to a training cross-entropy of about 0.001 nats; its
360 test and 287 held-out examples pooled are the population, resampled with replacement).

Part 2, `gain_interval` (S seeds x N = 300 test examples, expected gain 0.01 nats): example
noise dominating, seed noise 3x and 10x the per-seed example standard error, a per-example
effect shared by the seeds, that effect with a seed effect, and a heavy-tailed shared effect
(rare large differences on 3% of the examples), at S = 2, 3, 5, 8; against a Satterthwaite t on
the summed ANOVA variance and the two-level percentile bootstrap used before issue 20.

    .venv/bin/python benchmarks/interval_coverage.py [--reps 4000] [--no-digits] > table.md
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and its queue.py (the queue
# benchmark) would shadow the standard library's `queue` that torch imports.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from expansion.insertion.bounds import crossed_intervals  # noqa: E402
from expansion.insertion.risk_interval import mean_intervals  # noqa: E402

CONFIDENCE = 0.95
Law = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
Intervals = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# ---- part 1: one fixed model, n examples ------------------------------------------------------


def _moments(x: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = x.shape[-1]
    mean = x.mean(axis=-1)
    centred = x - mean[..., None]
    m2 = np.maximum(np.mean(centred**2, axis=-1), 1e-300)
    skew = np.mean(centred**3, axis=-1) / m2**1.5
    excess = np.mean(centred**4, axis=-1) / m2**2 - 3.0
    return n, mean, np.sqrt(m2 / (n - 1)), skew, excess


def plain_t(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Student-t interval with n - 1 degrees of freedom."""
    n, mean, se, _, _ = _moments(x)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * se
    return mean - half, mean + half


def kurtosis_t(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The t interval with degrees of freedom cut for the excess kurtosis (alone)."""
    n, mean, se, _, excess = _moments(x)
    df = 2.0 / (2.0 / (n - 1) + np.maximum(excess, 0.0) / n)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * se
    return mean - half, mean + half


def hall_t(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hall's skew-corrected t with n - 1 degrees of freedom (alone)."""
    n, mean, se, skew, _ = _moments(x)
    q = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)
    a, b = skew / (3 * math.sqrt(n)), skew / (6 * math.sqrt(n))
    safe = np.where(np.abs(a) < 1e-12, 1.0, a)

    def inverse(u: float) -> np.ndarray:
        v = u - b
        return np.where(np.abs(a) < 1e-12, v, (np.cbrt(1 + 3 * safe * v) - 1) / safe)

    return mean - se * inverse(q), mean - se * inverse(-q)


def envelope(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`mean_interval`, the product's interval."""
    return mean_intervals(x, CONFIDENCE)


ONE_SAMPLE: dict[str, Intervals] = {
    "plain t": plain_t,
    "kurtosis t": kurtosis_t,
    "Hall t": hall_t,
    "mean_interval": envelope,
}


def _rare(rate: float, sign: float) -> Law:
    def draw(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        rare = (rng.random(shape) < rate) * rng.lognormal(0.0, 1.0, shape) * 0.3
        return rng.normal(0.0, 0.02, shape) + sign * rare

    return draw


LAWS: dict[str, Law] = {
    "normal": lambda rng, shape: rng.normal(0.0, 1.0, shape),
    "exponential, right skew": lambda rng, shape: rng.exponential(1.0, shape),
    "exponential, left skew": lambda rng, shape: -rng.exponential(1.0, shape),
    "lognormal(1), right": lambda rng, shape: rng.lognormal(0.0, 1.0, shape),
    "lognormal(1), left": lambda rng, shape: -rng.lognormal(0.0, 1.0, shape),
    "lognormal(1.5), right": lambda rng, shape: rng.lognormal(0.0, 1.5, shape),
    "lognormal(1.5), left": lambda rng, shape: -rng.lognormal(0.0, 1.5, shape),
    "rare 3%, gains": _rare(0.03, 1.0),
    "rare 3%, losses": _rare(0.03, -1.0),
    "rare 1%, gains": _rare(0.01, 1.0),
    "rare 1%, losses": _rare(0.01, -1.0),
}


def digits_pools() -> dict[str, np.ndarray]:
    """Per-example base-minus-jumpboard losses of 9 jumpboard models (3 positions x 3 seeds) of
    a conv2d base trained hard on digits, on its 360 test and 287 held-out examples."""
    import torch
    import torch.nn.functional as F

    from expansion.data.datasets import load_dataset
    from expansion.insertion.jumpboard import (
        base_losses,
        fit_jumpboard,
        loss_differences,
        per_sample_losses,
    )
    from expansion.insertion.scan import scan_positions
    from expansion.models.network import build_model
    from expansion.specs.sections import DataSpec, ModelSpec

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = DataSpec(name="digits", val_fraction=0.15, certify_fraction=0.2)
    bundle = load_dataset(data, "conv2d", "cpu")
    model = build_model(ModelSpec(kind="conv2d", width=16, depth=2, norm="layer"), data, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(1500):
        idx = torch.randint(0, len(bundle.y_train), (64,), generator=generator)
        loss = F.cross_entropy(model(bundle.x_train[idx]), bundle.y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert bundle.x_certify is not None and bundle.y_certify is not None
    val = (bundle.x_val, bundle.y_val)
    pool = (
        torch.cat([bundle.x_test, bundle.x_certify]),
        torch.cat([bundle.y_test, bundle.y_certify]),
    )
    scan = scan_positions(
        model,
        (bundle.x_train, bundle.y_train),
        val,
        list(range(model.num_positions)),
        [0, 1, 2],
        batch_size=64,
    )
    base_val = base_losses(model, val, val).val
    base_pool = per_sample_losses(model, *pool)[0]
    pools = {}
    for (position, seed), grad in sorted(scan.gradients.items()):
        fit = fit_jumpboard(model, grad, val, 8, base_val)
        pools[f"digits p{position} s{seed}"] = loss_differences(model, grad, fit, pool, base_pool)
    return pools


def _resample(values: np.ndarray, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Draws with replacement from a stored population of per-example loss differences."""
    drawn: np.ndarray = rng.choice(values, shape)
    return drawn


def one_sample_table(reps: int, sizes: list[int], pools: dict[str, np.ndarray]) -> None:
    """Print part 1: coverage (lower-limit misses / upper-limit misses) per law and method."""
    print("| population | n | skewness | " + " | ".join(ONE_SAMPLE) + " | width / plain t |")
    print("|---|---|---|" + "---|" * len(ONE_SAMPLE) + "---|")
    rng = np.random.default_rng(0)
    sources: list[tuple[str, Law, float]] = []
    for name, law in LAWS.items():
        sources.append((name, law, float(law(rng, (4_000_000,)).mean())))
    for name, values in pools.items():
        sources.append((name, partial(_resample, values), float(values.mean())))
    for name, law, mean in sources:
        for n in sizes:
            x = law(rng, (reps, n))
            cells, widths = [], {}
            for method, intervals in ONE_SAMPLE.items():
                low, high = intervals(x)
                cover = float(np.mean((low <= mean) & (mean <= high)))
                cells.append(f"{cover:.3f} ({np.mean(low > mean):.3f}/{np.mean(high < mean):.3f})")
                widths[method] = float(np.mean(high - low))
            skew = float(stats.skew(law(rng, (200_000,))))
            ratio = widths["mean_interval"] / widths["plain t"]
            print(f"| {name} | {n} | {skew:+.1f} | " + " | ".join(cells) + f" | {ratio:.2f} |")


# ---- part 2: seeds x test examples ------------------------------------------------------------

MU = 0.01
EXAMPLES = 300
SE = 0.2 / math.sqrt(EXAMPLES)
REGIMES: dict[str, tuple[float, float, float, bool]] = {
    # seed sd, shared per-example sd, interaction sd, heavy-tailed shared effect
    "examples dominate": (0.2 * SE, 0.0, 0.2, False),
    "seeds 3x": (3 * SE, 0.0, 0.2, False),
    "seeds 10x": (10 * SE, 0.0, 0.2, False),
    "shared effect": (SE, 0.2, 0.05, False),
    "shared effect + seeds 3x": (3 * 0.21 / math.sqrt(EXAMPLES), 0.15, 0.15, False),
    "heavy shared effect + seeds 1x": (SE, 0.0, 0.05, True),
}


def crossed(regime: str, seeds: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, seeds, EXAMPLES) per-example gains with expected value MU."""
    seed_sd, shared_sd, noise_sd, heavy = REGIMES[regime]
    shared = rng.normal(0.0, 1.0, (reps, 1, EXAMPLES)) * shared_sd
    if heavy:  # rare large shared differences, centred so the expectation stays MU
        rare = _rare(0.03, 1.0)
        shared = rare(rng, (reps, 1, EXAMPLES)) - float(rare(rng, (2_000_000,)).mean())
    return (
        MU
        + rng.normal(0.0, seed_sd, (reps, seeds, 1))
        + shared
        + rng.normal(0.0, noise_sd, (reps, seeds, EXAMPLES))
    )


def satterthwaite(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A t interval on the summed ANOVA variance with Satterthwaite's degrees of freedom."""
    s, n = d.shape[-2:]
    mean = d.mean(axis=(-2, -1))
    seed_means, example_means = d.mean(axis=-1), d.mean(axis=-2)
    ms_s = n * np.sum((seed_means - mean[..., None]) ** 2, axis=-1) / (s - 1)
    ms_i = s * np.sum((example_means - mean[..., None]) ** 2, axis=-1) / (n - 1)
    resid = d - seed_means[..., :, None] - example_means[..., None, :] + mean[..., None, None]
    ms_e = np.sum(resid**2, axis=(-2, -1)) / ((s - 1) * (n - 1))
    a, b = np.maximum(ms_s, ms_e), np.maximum(ms_i, ms_e)
    total = a + b - ms_e
    df = total**2 / (a**2 / (s - 1) + b**2 / (n - 1) + ms_e**2 / ((s - 1) * (n - 1)))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * np.sqrt(total / (s * n))
    return mean - half, mean + half


def bootstrap(
    d: np.ndarray, rng: np.random.Generator, resamples: int = 1000
) -> tuple[float, float]:
    """The two-level percentile bootstrap used before issue 20 (seeds, then examples)."""
    s, n = d.shape
    counts = rng.multinomial(s, np.full(s, 1.0 / s), size=resamples).astype(float)
    per_example = counts @ d / s
    picks = rng.integers(0, n, (resamples, n))
    means = np.take_along_axis(per_example, picks, axis=1).mean(axis=1)
    low, high = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def crossed_table(reps: int, bootstrap_reps: int) -> None:
    """Print part 2: coverage per regime, number of seeds and method."""
    print(
        "| regime | S | gain_interval | Satterthwaite t | two-level bootstrap "
        "| width / Satterthwaite |"
    )
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    for regime in REGIMES:
        for seeds in (2, 3, 5, 8):
            d = crossed(regime, seeds, reps, rng)
            low, high = crossed_intervals(d, CONFIDENCE)
            s_low, s_high = satterthwaite(d)
            ours = float(np.mean((low <= MU) & (high >= MU)))
            theirs = float(np.mean((s_low <= MU) & (s_high >= MU)))
            hits = [lo <= MU <= hi for lo, hi in (bootstrap(x, rng) for x in d[:bootstrap_reps])]
            ratio = float(np.mean(high - low) / np.mean(s_high - s_low))
            print(
                f"| {regime} | {seeds} | {ours:.3f} | {theirs:.3f} | {np.mean(hits):.3f} "
                f"| {ratio:.2f} |",
                flush=True,
            )


def main() -> None:
    """Print both tables in markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4000)
    parser.add_argument("--bootstrap-reps", type=int, default=500)
    parser.add_argument("--no-digits", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    pools = {} if args.no_digits else digits_pools()
    print(
        f"Part 1: {args.reps} samples per cell; coverage of the 95% interval "
        "(share whose lower limit is above the mean / upper limit below it).\n"
    )
    one_sample_table(args.reps, [287, 800], pools)
    print(
        f"\nPart 2: {args.reps} replications per cell ({args.bootstrap_reps} for the bootstrap).\n"
    )
    crossed_table(args.reps, args.bootstrap_reps)
    print(f"\n({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
