"""Trie-constrained beam search: never an invalid SID, exact with a beam as wide as the catalogue, exclusions
respected; and the trie's own lookups."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sid_models.beam_search import beam_search
from sid_models.sid_trie import SidTrie


class PrefixModel:
    """A stand-in decoder whose log-probabilities are a fixed random function of (user, prefix), which records
    every prefix it is asked to extend."""

    def __init__(self, sizes: list[int], users: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.sizes = sizes
        self.user_logits = [torch.randn(users, k, generator=g) * 2 for k in sizes]
        self.token_logits = [[torch.randn(max(sizes), k, generator=g) for _ in range(level)] for level, k in
                             enumerate(sizes)]
        self.seen: list[tuple[int, ...]] = []

    def log_probs(self, user: int, prefix: tuple[int, ...]) -> torch.Tensor:
        level = len(prefix)
        logits = self.user_logits[level][user] + sum((self.token_logits[level][t][c] for t, c in enumerate(prefix)),
                                                     torch.zeros(self.sizes[level]))
        return torch.log_softmax(logits, dim=0)

    def step_fn(self, batch: int):
        state = {"prefix": [], "user": None}

        def step(level, parents, codes):
            if level == 0:
                state["user"], state["prefix"] = parents.clone(), [() for _ in range(len(parents))]
            else:
                state["user"] = state["user"][parents]
                state["prefix"] = [state["prefix"][p] + (int(c),) for p, c in zip(parents.tolist(), codes.tolist())]
            self.seen.extend(state["prefix"])
            return torch.stack([self.log_probs(int(u), p) for u, p in zip(state["user"], state["prefix"])])
        return step

    def exhaustive(self, user: int, sids: np.ndarray, renormalized: bool = False) -> np.ndarray:
        """Every SID's summed log-probability; `renormalized`: each step's softmax over the codes some SID
        continues the prefix with (worked out from the SIDs, not the trie)."""
        def level_log_prob(sid: list[int], t: int) -> float:
            log_probs = self.log_probs(user, tuple(sid[:t]))
            if renormalized:
                children = sorted({other[t] for other in sids.tolist() if other[:t] == sid[:t]})
                log_probs = log_probs - torch.logsumexp(log_probs[children], dim=0)
            return float(log_probs[sid[t]])
        return np.array([sum(level_log_prob(sid, t) for t in range(len(sid))) for sid in sids.tolist()])


def random_catalogue(rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    sizes = rng.integers(2, 6, size=rng.integers(1, 5)).tolist()
    space = int(np.prod(sizes))
    n = int(rng.integers(1, min(space, 40) + 1))
    flat = rng.choice(space, size=n, replace=False)
    return np.stack(np.unravel_index(flat, sizes), axis=1).astype(np.int64), sizes


def test_beam_search_only_ever_extends_and_returns_catalogue_sids():
    rng = np.random.default_rng(0)
    for case in range(150):
        sids, sizes = random_catalogue(rng)
        trie = SidTrie.build(sids, sizes)
        batch, beam = int(rng.integers(1, 4)), int(rng.integers(1, 9))
        model = PrefixModel(sizes, batch, seed=case)
        items, scores = beam_search(model.step_fn(batch), trie, batch, beam)
        prefixes = {tuple(sid[:t]) for sid in sids.tolist() for t in range(len(sizes))}
        assert set(model.seen) <= prefixes, f"case {case}: extended a prefix no SID has"
        assert items.shape == (batch, beam)
        for user in range(batch):
            found = items[user][items[user] >= 0].tolist()
            assert all(0 <= i < len(sids) for i in found) and len(set(found)) == len(found)
            assert len(found) == min(beam, len(sids))
            exhaustive = model.exhaustive(user, sids)
            assert np.allclose(scores[user][:len(found)].numpy(), exhaustive[found], atol=1e-5)


@pytest.mark.parametrize("renormalize", [False, True])
def test_a_beam_as_wide_as_the_catalogue_ranks_like_exhaustive_scoring(renormalize):
    rng = np.random.default_rng(1)
    for case in range(40):
        sids, sizes = random_catalogue(rng)
        trie = SidTrie.build(sids, sizes)
        model = PrefixModel(sizes, 2, seed=100 + case)
        items, scores = beam_search(model.step_fn(2), trie, 2, beam=len(sids), renormalize=renormalize)
        for user in range(2):
            exhaustive = model.exhaustive(user, sids, renormalized=renormalize)
            assert items[user].tolist() == np.argsort(-exhaustive, kind="stable").tolist()
            assert np.allclose(scores[user].numpy(), np.sort(exhaustive)[::-1], atol=1e-5)
            if renormalize:  # the scores are then a distribution over the catalogue's items
                assert torch.logsumexp(scores[user], dim=0).item() == pytest.approx(0.0, abs=1e-5)


def test_path_masks_are_the_codes_each_prefix_continues_with():
    sids = np.array([[0, 0, 1], [0, 2, 0], [0, 2, 1], [1, 1, 0]])
    masks = SidTrie.build(sids, [2, 3, 2]).path_masks(torch.as_tensor(sids))
    assert masks[0].tolist() == [[True, True]] * 4
    assert masks[1].tolist() == [[True, False, True]] * 3 + [[False, True, False]]
    assert masks[2].tolist() == [[False, True], [True, True], [True, True], [True, False]]


def test_excluded_items_never_come_back():
    sids = np.array([[0, 0], [0, 1], [1, 0], [1, 2], [2, 2]])
    trie = SidTrie.build(sids, [3, 3])
    model = PrefixModel([3, 3], 2, seed=7)
    exclude = torch.tensor([[1, 3, -1], [-1, -1, -1]])
    items, scores = beam_search(model.step_fn(2), trie, 2, beam=5, exclude=exclude)
    assert set(items[0].tolist()) == {0, 2, 4, -1} and items[0, -2:].tolist() == [-1, -1]
    assert torch.isinf(scores[0, -2:]).all()
    assert sorted(items[1].tolist()) == [0, 1, 2, 3, 4]
    ranked = [i for i in np.argsort(-model.exhaustive(0, sids)).tolist() if i not in (1, 3)]
    assert items[0, :3].tolist() == ranked


def test_trie_lookups_and_bad_sids():
    trie = SidTrie.build(np.array([[2, 0, 1], [2, 1, 0], [0, 1, 1]]), [3, 2, 2])
    assert trie.allowed(0, torch.tensor([0])).tolist() == [[True, False, True]]
    level1 = trie.step(0, torch.tensor([0, 0, 0]), torch.tensor([0, 1, 2]))
    assert level1[1] == -1 and (level1[[0, 2]] >= 0).all()
    assert trie.allowed(1, level1).tolist() == [[False, True], [False, False], [True, True]]
    level2 = trie.step(1, level1[[2, 2]], torch.tensor([0, 1]))
    assert trie.step(2, level2, torch.tensor([1, 0])).tolist() == [0, 1]  # item rows
    assert trie.step(2, level2, torch.tensor([0, 1])).tolist() == [-1, -1]
    with pytest.raises(ValueError, match=r"rows \[0, 2\] share the SID \[1, 1\]"):
        SidTrie.build(np.array([[1, 1], [0, 1], [1, 1]]), [2, 2])
    with pytest.raises(ValueError, match="row 1: code 5 at position 1 is outside its codebook of 2"):
        SidTrie.build(np.array([[1, 1], [0, 5]]), [2, 2])
