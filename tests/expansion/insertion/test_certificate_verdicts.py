"""The certificate's verdict where the truth is known.

- Helps: an untrained base on a task labelled by a fixed linear teacher. The inserted block's
  population gradient is far from zero, so a small step along -g_train lowers the population
  risk; 20,000 further fresh samples confirm the jumpboard model's decrease, and the certificate
  on 287 fresh examples (digits' certificate split) holds.
- Cannot help: labels drawn from the base's own softmax. The base is then the Bayes predictor,
  and no model has lower population cross-entropy (Gibbs' inequality), so every jumpboard model
  decreases the population risk by at most 0. Over 100 draws (new W1 seed, new data, every
  position in turn) the certificate may hold at most at the nominal rate (2.5%: the lower limit
  of a two-sided 95% interval) up to binomial noise. Scored on the training data that chose
  their direction, the same models "hold" almost every time: the test can fail.
"""

from __future__ import annotations

import torch
from scipy import stats
from tiny_networks import inputs, tiny_model

from expansion.insertion.certificate import (
    CertificateBatches,
    certificate_data,
    certificate_record,
    certify,
)
from expansion.insertion.jumpboard import (
    base_losses,
    fit_jumpboard,
    jumpboard_model,
    loss_differences,
    per_sample_losses,
    risk,
)
from expansion.insertion.scan import scan_positions
from expansion.models.network import PostNormResNet
from expansion.results.records import CertificateSource, Verdict

CERTIFICATE_EXAMPLES = 287
DRAWS = 100
NOMINAL = 0.025
"""P(lower limit of a two-sided 95% interval > the truth)."""


def linear_teacher(x: torch.Tensor) -> torch.Tensor:
    """Labels from a fixed random linear teacher."""
    w = torch.randn(x[0].numel(), 10, generator=torch.Generator().manual_seed(99))
    return (x.flatten(1) @ w).argmax(dim=1)


@torch.no_grad()
def own_softmax_labels(model: PostNormResNet, x: torch.Tensor, seed: int) -> torch.Tensor:
    """Labels drawn from `model`'s own predictive distribution: `model` is the Bayes predictor."""
    probabilities = torch.softmax(model.eval()(x), dim=1)
    return torch.multinomial(probabilities, 1, generator=torch.Generator().manual_seed(seed))[:, 0]


def test_a_block_that_provably_helps_is_certified() -> None:
    model = tiny_model("mlp").eval()
    x, vx, cx = inputs(model, 256), inputs(model, 128, seed=7), inputs(model, 287, seed=11)
    y, vy, cy = linear_teacher(x), linear_teacher(vx), linear_teacher(cx)
    scan = scan_positions(model, (x, y), (vx, vy), [1], [3], batch_size=32)
    grad = scan.gradients[(1, 3)]
    batches = scan_positions(model, (cx, cy), (cx, cy), [1], [3], batch_size=32)
    data = certificate_data(model, cx, cy, CertificateSource.FRESH)
    out = certify(
        model,
        grad,
        CertificateBatches(batches.gradients[(1, 3)].batches, CertificateSource.FRESH),
        data,
        (vx, vy),
        (vx, vy),
        confidence=0.95,
        line_search_points=6,
    )
    # the truth, on 20,000 samples the certificate never saw
    px = inputs(model, 20_000, seed=12)
    py = linear_teacher(px)
    chosen = jumpboard_model(model, 1, 3, grad.train, out.jumpboard["step"])
    truth = risk(model, px, py) - risk(chosen, px, py)
    assert truth > 0.01
    assert out.certificate["verdict"] == Verdict.HOLDS, out.certificate
    low, high = out.certificate["risk_decrease_ci"]
    assert low is not None and high is not None and low <= truth <= high
    # a minimum effect above what the model gains cannot hold
    record = certificate_record(
        out.certificate_diffs, CertificateSource.FRESH, 0.0, confidence=0.95, min_effect=10 * truth
    )
    assert record["verdict"] == Verdict.FAILS


def test_a_bayes_optimal_base_is_never_certified_beyond_the_nominal_rate() -> None:
    base = tiny_model("mlp").eval()
    with torch.no_grad():  # confident, varied predictions: a base worth improving on, if one could
        base.head.weight.mul_(4.0)
    holds_on_certificate, holds_on_training = 0, 0
    for draw in range(DRAWS):
        position, seed = draw % base.num_positions, 1000 + draw
        x, vx = inputs(base, 128, seed=3 * draw), inputs(base, 96, seed=3 * draw + 1)
        cx = inputs(base, CERTIFICATE_EXAMPLES, seed=3 * draw + 2)
        y, vy = own_softmax_labels(base, x, draw), own_softmax_labels(base, vx, draw + 10**6)
        cy = own_softmax_labels(base, cx, draw + 2 * 10**6)
        grad = scan_positions(base, (x, y), (vx, vy), [position], [seed], batch_size=32)
        gradient = grad.gradients[(position, seed)]
        base_val = base_losses(base, (vx, vy), (vx, vy)).val
        fit = fit_jumpboard(base, gradient, (vx, vy), 5, base_val)
        cert_base = per_sample_losses(base, cx, cy)[0]
        diffs = loss_differences(base, gradient, fit, (cx, cy), cert_base)
        record = certificate_record(
            diffs, CertificateSource.FRESH, 0.0, confidence=0.95, min_effect=0.0
        )
        holds_on_certificate += record["verdict"] == Verdict.HOLDS
        # the same model judged on the training data that chose its direction
        on_train = loss_differences(base, gradient, fit, (x, y), per_sample_losses(base, x, y)[0])
        train_record = certificate_record(
            on_train, CertificateSource.FRESH, 0.0, confidence=0.95, min_effect=0.0
        )
        holds_on_training += train_record["verdict"] == Verdict.HOLDS
    # P(X >= limit) < 0.5% for X ~ Binomial(DRAWS, NOMINAL): more would reject the nominal rate
    limit = int(stats.binom.ppf(0.995, DRAWS, NOMINAL))
    assert holds_on_certificate <= limit, (holds_on_certificate, limit)
    assert holds_on_training > DRAWS // 2, holds_on_training
