"""The generative retriever: cached decoding equals teacher forcing, beam search over the model ranks like
exhaustive scoring, the loss weights act per level, Recall/NDCG of a hand-worked list, prefix examples, and a
planted next-item rule that training learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sid_models.beam_search import beam_search
from sid_models.metrics import metrics_from_ranks
from sid_models.retriever import RetrieverConfig, SidRetriever
from sid_models.sequences import LeaveOneOut, SequenceData, prefix_examples
from sid_models.sid_trie import SidTrie
from sid_models.train_retriever import (RetrievalData, RetrieverTrainConfig, evaluate, level_weights, lr_factor,
                                        train_retriever)

SIZES = [5, 4, 3]
TINY = dict(codebook_sizes=SIZES, max_history=6, d_model=32, n_heads=2, d_head=8, d_ff=64, encoder_layers=2,
            decoder_layers=2, dropout=0.0)


def catalogue(n: int = 25, seed: int = 0) -> np.ndarray:
    flat = np.random.default_rng(seed).choice(int(np.prod(SIZES)), n, replace=False)
    return np.stack(np.unravel_index(flat, SIZES), axis=1).astype(np.int64)


def exhaustive_scores(model: SidRetriever, history: torch.Tensor, sids: np.ndarray) -> torch.Tensor:
    """[B, N]: every catalogue SID's summed log-probability under teacher forcing (with `trie_softmax`, each
    level's softmax over the codes some catalogue SID continues the prefix with)."""
    targets = torch.as_tensor(sids)
    children = []  # level t: bool [N, K_t], the codes some SID continues SID i's first t codes with
    for t, size in enumerate(SIZES):
        same_prefix = (targets[:, None, :t] == targets[None, :, :t]).all(dim=2)  # [N, N]
        children.append((same_prefix.float() @ torch.nn.functional.one_hot(targets[:, t], size).float()) > 0)
    rows = []
    for user in range(len(history)):
        logits = model(history[user:user + 1].expand(len(sids), -1, -1), targets)
        if model.config.trie_softmax:
            logits = [level.masked_fill(~children[t], float("-inf")) for t, level in enumerate(logits)]
        rows.append(sum(torch.log_softmax(level, -1)[torch.arange(len(sids)), targets[:, t]]
                        for t, level in enumerate(logits)))
    return torch.stack(rows)


@pytest.mark.parametrize("history_tokens,trie_softmax", [("item", False), ("sid", False), ("item", True)])
def test_beam_search_over_the_model_ranks_like_exhaustive_scoring(history_tokens, trie_softmax):
    torch.manual_seed(0)
    model = SidRetriever(RetrieverConfig(**TINY, history_tokens=history_tokens, trie_softmax=trie_softmax)).eval()
    history = torch.randint(0, 3, (3, 6, 3))
    history[0, :2] = -1  # padding before a short history
    history[2] = -1  # no history at all
    sids = catalogue()
    with torch.no_grad():
        items, scores = beam_search(model.decoder_step(history), SidTrie.build(sids, SIZES), 3, beam=len(sids),
                                    renormalize=trie_softmax)
        expected = exhaustive_scores(model, history, sids)
    for user in range(3):
        assert items[user].tolist() == torch.argsort(expected[user], descending=True).tolist()
        assert torch.allclose(scores[user], expected[user].sort(descending=True).values, atol=1e-5)


def test_loss_weights_act_per_level():
    torch.manual_seed(0)
    model = SidRetriever(RetrieverConfig(**TINY)).eval()
    history, target = torch.randint(0, 3, (4, 6, 3)), torch.as_tensor(catalogue(4))
    per_level = torch.stack([torch.nn.functional.cross_entropy(logits, target[:, t], reduction="none")
                             for t, logits in enumerate(model(history, target))], dim=1)
    weights = torch.tensor([[1.0, 0.0, 0.5]] * 4)
    assert torch.allclose(model.loss(history, target, weights), (per_level * weights).sum() / weights.sum())
    assert torch.allclose(model.loss(history, target), per_level.mean())


def test_trie_softmax_loss_is_cross_entropy_over_the_allowed_codes():
    torch.manual_seed(0)
    model = SidRetriever(RetrieverConfig(**TINY)).eval()
    history, target = torch.randint(0, 3, (4, 6, 3)), torch.as_tensor(catalogue(4))
    allowed = [torch.rand(4, k) < 0.5 for k in SIZES]
    allowed[2][:] = False  # the last level: only the target's own code, which then costs nothing
    for t, mask in enumerate(allowed):
        mask[torch.arange(4), target[:, t]] = True
    per_level = torch.stack([torch.nn.functional.cross_entropy(logits.masked_fill(~allowed[t], -1e9), target[:, t],
                                                               reduction="none")
                             for t, logits in enumerate(model(history, target))], dim=1)
    assert torch.allclose(per_level[:, 2], torch.zeros(4))
    assert torch.allclose(model.loss(history, target, allowed=allowed), per_level.mean())
    assert model.loss(history, target, allowed=allowed) < model.loss(history, target)


def test_level_weights_rescale_each_level_to_mean_one_above_a_floor():
    # row 0 pads; level 0 is a content level (all 1), level 1 behavioral with R = 0, 0.2, 0.1 (mean 0.1)
    weights = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.2], [1.0, 0.1]], dtype=np.float32)
    assert np.allclose(level_weights(weights)[1:], [[1, 0], [1, 2], [1, 1]])
    assert np.allclose(level_weights(weights, floor=0.5)[1:], [[1, 0.5], [1, 1.5], [1, 1]])
    assert np.allclose(level_weights(weights, floor=1.0)[1:], 1.0)
    with pytest.raises(ValueError, match="floor must be in"):
        level_weights(weights, floor=1.5)


def test_cosine_schedule_warms_up_then_decays_to_a_tenth():
    config = RetrieverTrainConfig(lr_schedule="cosine", warmup_steps=10)
    factors = [lr_factor(step, 200, config) for step in range(200)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))  # never rises after the warm-up
    assert lr_factor(5, 20, config) < 1  # warm-up capped at a tenth of a short run: 2 steps
    assert {lr_factor(s, 200, RetrieverTrainConfig(lr_schedule="constant")) for s in range(200)} == {1.0}
    with pytest.raises(ValueError, match="lr_schedule"):
        RetrieverTrainConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="amp"):
        RetrieverTrainConfig(amp="fp16")
    with pytest.raises(ValueError, match="valid_beam must be >= 10"):
        RetrieverTrainConfig(valid_beam=5)


def test_recall_and_ndcg_of_a_hand_worked_list():
    # Targets at ranks 0, 3 and missing (rank = beam, 100): recall@5 = 2/3, ndcg@5 = (1 + 1/log2(5)) / 3.
    metrics = metrics_from_ranks(torch.tensor([0, 3, 100]), ks=(1, 5, 100))
    assert metrics["recall@1"] == pytest.approx(1 / 3) and metrics["recall@5"] == pytest.approx(2 / 3)
    assert metrics["ndcg@5"] == pytest.approx((1 + 1 / np.log2(5)) / 3)
    assert metrics["recall@100"] == pytest.approx(2 / 3)


def test_prefix_examples_are_every_prefix_of_every_sequence():
    train = SequenceData.from_arrays(np.array([0, 0, 0, 1, 2, 2]), np.array([5, 6, 7, 8, 9, 3]), 10)
    histories, targets = prefix_examples(train, max_len=2)
    assert histories.tolist() == [[0, 5], [5, 6], [0, 9]] and targets.tolist() == [6, 7, 3]


def planted_split(users: int = 300, items: int = 24, length: int = 8, seed: int = 0) -> LeaveOneOut:
    """Each user walks the catalogue in steps of +1 from a random start, wrapping around: the next item is the
    last one + 1, and every item is some user's train target."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, items, users)
    item_index = ((starts[:, None] + np.arange(length)) % items + 1).reshape(-1)
    split = np.tile(["train"] * (length - 2) + ["valid", "test"], users)
    return LeaveOneOut.from_events(np.repeat(np.arange(users), length), item_index, split, items)


@pytest.mark.parametrize("amp,trie_softmax", [("off", False), ("bf16", False), ("off", True)])
def test_training_learns_a_planted_next_item_rule(amp, trie_softmax):  # bf16: autocast on the CPU too
    split = planted_split()
    sids = catalogue(24, seed=3)
    data = RetrievalData(split=split, item_codes=np.vstack([np.full((1, 3), -1), sids]),
                         token_weights=np.ones((25, 3), np.float32), codebook_sizes=SIZES)
    model, history = train_retriever(data, RetrieverConfig(**{**TINY, "dropout": 0.1, "trie_softmax": trie_softmax}),
                                     RetrieverTrainConfig(epochs=30, batch_size=64, lr=3e-3, patience=30,
                                                          valid_users=0, seed=0, device="cpu", amp=amp))
    assert len(history) == 30 and history[-1]["loss"] < history[0]["loss"]
    metrics = evaluate(model, data.trie(), data, split.test, beam=10, ks=(1, 10))
    assert metrics["recall@1"] > 0.9  # the rule is deterministic; chance is 1/24
