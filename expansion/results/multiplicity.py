"""Family-wise decisions over several tests: Holm's step-down (torch-free).

Holm controls the probability of any false rejection in the family at `alpha` under any
dependence between the tests. The findings page (expansion.results.findings) decides its claims
with it. `holm_adjusted` gives the adjusted p-values: a test is rejected at level alpha exactly
when its adjusted p-value is <= alpha.
"""

from __future__ import annotations

from collections.abc import Sequence


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input's order: max over the smaller-or-equal ranks of
    (m - rank) x p, capped at 1."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Which hypotheses Holm's step-down rejects at family-wise level `alpha`."""
    return [p <= alpha for p in holm_adjusted(p_values)]
