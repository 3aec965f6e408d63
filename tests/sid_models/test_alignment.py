"""ADC-SID's alignment and load-balancing equations (eq. 15-21, 23) against direct computations."""

import math

import pytest
import torch

from sid_models.alignment import (activation_sparsity, alignment_strength, info_nce, load_balancing_loss,
                                  norm_normalise, symmetric_info_nce, total_alignment, update_lb_lambda)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def loop_info_nce(anchor: torch.Tensor, positive: torch.Tensor, tau: float) -> torch.Tensor:
    """-log( exp(sim(a_i, p_i)/tau) / sum_j exp(sim(a_i, p_j)/tau) ), one row at a time."""
    losses = []
    for i in range(len(anchor)):
        sims = torch.stack([torch.cosine_similarity(anchor[i], positive[j], dim=0) for j in range(len(positive))])
        numerator = torch.exp(sims[i] / tau)
        losses.append(-torch.log(numerator / torch.exp(sims / tau).sum()))
    return torch.stack(losses)


def test_controller_curve_at_known_points():
    n = torch.tensor([0.0, 0.9, 1.0])
    w = alignment_strength(n)
    assert w[2].item() == pytest.approx(1.0)
    assert w[0].item() == pytest.approx(sigmoid(-9) / sigmoid(1))
    assert w[1].item() == pytest.approx(0.5 / sigmoid(1))  # the threshold n = beta / alpha gives sigmoid(0)


def test_controller_is_monotone_and_shaped_by_alpha_and_beta():
    n = torch.linspace(0, 1, 101)
    w = alignment_strength(n)
    assert (w[1:] > w[:-1]).all()
    assert w.min() > 0 and w.max() == pytest.approx(1.0)
    # A larger beta moves the threshold right: mid-norm items are aligned less.
    assert alignment_strength(torch.tensor(0.5), 10, 9) < alignment_strength(torch.tensor(0.5), 10, 3)
    # A larger alpha (same threshold beta/alpha) gives a steeper curve.
    below, above = torch.tensor(0.4), torch.tensor(0.6)
    assert alignment_strength(below, 20, 10) < alignment_strength(below, 5, 2.5)
    assert alignment_strength(above, 20, 10) > alignment_strength(above, 5, 2.5)


def test_norm_normalise_range_and_clamping():
    norms = torch.tensor([2.0, 3.0, 4.0, 6.0])
    out = norm_normalise(norms, 2.0, 6.0)
    assert torch.allclose(out, torch.tensor([0.0, 0.25, 0.5, 1.0]))
    # Items encoded later can fall outside the fitted range: they clamp to [0, 1].
    assert torch.equal(norm_normalise(torch.tensor([0.5, 9.0]), 2.0, 6.0), torch.tensor([0.0, 1.0]))
    assert torch.equal(norm_normalise(torch.tensor([3.0, 3.0]), 3.0, 3.0), torch.ones(2))


def test_info_nce_equals_a_direct_loop():
    generator = torch.Generator().manual_seed(0)
    anchor, positive = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    assert torch.allclose(info_nce(anchor, positive, tau=0.07), loop_info_nce(anchor, positive, 0.07), atol=1e-4)
    assert torch.allclose(info_nce(anchor, positive, tau=0.5), loop_info_nce(anchor, positive, 0.5), atol=1e-5)
    # Matching pairs (positive = scaled anchor, cosine ignores scale) score lower than shuffled ones.
    assert info_nce(anchor, 3 * anchor).mean() < info_nce(anchor, positive).mean()


def test_symmetric_info_nce_sums_both_directions():
    generator = torch.Generator().manual_seed(1)
    a, b = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    expected = loop_info_nce(a, b, 0.1) + loop_info_nce(b, a, 0.1)
    assert torch.allclose(symmetric_info_nce(a, b, 0.1), expected, atol=1e-5)
    assert torch.allclose(symmetric_info_nce(a, b, 0.1), symmetric_info_nce(b, a, 0.1), atol=1e-5)


def test_total_alignment_weights_behavior_terms_per_item():
    generator = torch.Generator().manual_seed(2)
    text, visual, behavior = (torch.randn(7, 8, generator=generator) for _ in range(3))
    w = torch.rand(7, generator=generator)
    total = total_alignment({"text": text, "visual": visual}, behavior, w, tau=0.2)
    expected = (symmetric_info_nce(text, visual, 0.2) + w * info_nce(text, behavior, 0.2)
                + w * info_nce(visual, behavior, 0.2)).mean()
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    # w = 0 leaves only the content-content term; one content modality has no content-content term.
    only_content = total_alignment({"text": text, "visual": visual}, behavior, torch.zeros(7), tau=0.2)
    assert only_content.item() == pytest.approx(symmetric_info_nce(text, visual, 0.2).mean().item(), rel=1e-5)
    text_only = total_alignment({"text": text}, behavior, torch.ones(7), tau=0.2)
    assert text_only.item() == pytest.approx(info_nce(text, behavior, 0.2).mean().item(), rel=1e-5)


def test_load_balancing_lambda_moves_toward_the_target_sparsity():
    assert update_lb_lambda(1e-3, sparsity=0.2, target_sparsity=0.5, alpha=1.2) == pytest.approx(1.2e-3)
    assert update_lb_lambda(1e-3, sparsity=0.8, target_sparsity=0.5, alpha=1.2) == pytest.approx(1e-3 / 1.2)
    assert update_lb_lambda(1e-3, sparsity=0.5, target_sparsity=0.5, alpha=1.2) == pytest.approx(1e-3)
    assert update_lb_lambda(1e-4, sparsity=0.9, target_sparsity=0.5, alpha=1.2, floor=1e-4) == pytest.approx(1e-4)


def test_load_balancing_loss_is_l1_and_weights_overused_experts():
    r = torch.tensor([[0.5, 0.0, 1.0], [0.2, 0.0, 0.0], [0.1, 0.3, 0.0], [0.4, 0.0, 0.0]], requires_grad=True)
    assert activation_sparsity(r) == pytest.approx(6 / 12)
    plain = load_balancing_loss(r, lam=0.1, balanced=False)
    assert plain.item() == pytest.approx(0.1 * r.detach().sum(1).mean().item())
    # Balanced (ReMoE f_lb): expert 0 is active for every item, so its L1 term weighs 4x the one of expert 1.
    balanced = load_balancing_loss(r, lam=0.1, target_sparsity=0.5, balanced=True)
    load = torch.tensor([4, 1, 1]) / 4 * 3 / 1.5
    assert balanced.item() == pytest.approx(0.1 * (r.detach().mean(0) * load).sum().item())
    balanced.backward()
    assert (r.grad[r.detach() == 0] == 0).all() and (r.grad[r.detach() > 0] > 0).all()
    # At a uniform load equal to the target, the balanced penalty equals the plain one.
    uniform = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert load_balancing_loss(uniform, 1.0, 0.5, True).item() == pytest.approx(
        load_balancing_loss(uniform, 1.0, 0.5, False).item())
