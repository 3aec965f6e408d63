"""Batched beam search that can only emit catalogue SIDs: at every level each beam may continue only with the
codes its prefix has in the SID trie, so every finished beam is an item.

The model is reached through one callback, `step(level, parents, codes) -> log-probs [n, K_level]`: at level 0
it is called with parents = arange(batch) and codes = None and scores each user's first token; afterwards
`parents` [n] says which row of the previous call each new row extends and `codes` [n] the code it appended, so
a decoder can reorder its key/value cache and feed one new token per row. Scores are sums of the model's
log-probabilities; masking leaves them unnormalised over the allowed codes, as in TIGER's decoding, unless
`renormalize` restricts each step's softmax to the allowed codes (a model trained with `trie_softmax`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sid_models.sid_trie import SidTrie

Step = Callable[[int, torch.Tensor, torch.Tensor | None], torch.Tensor]


def beam_search(step: Step, trie: SidTrie, batch: int, beam: int, exclude: torch.Tensor | None = None,
                renormalize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(items, scores), both [batch, beam] and best first: the catalogue rows of the `beam` highest-scoring
    valid SIDs per user (-1 and -inf where the trie has fewer). `exclude` [batch, E] (-1 padded) lists item rows
    a user must not get back, e.g. the history. `renormalize`: each step's log-probabilities are renormalised over
    the codes the trie allows (before exclusion), so the scores are log-probabilities over catalogue items."""
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    user = torch.arange(batch)  # which user each live row belongs to
    nodes = torch.zeros(batch, dtype=torch.long)  # every user starts at the root
    scores = torch.zeros(batch)
    log_probs = step(0, user, None)
    for level, size in enumerate(trie.codebook_sizes):
        last = level == trie.depth - 1
        allowed = trie.allowed(level, nodes)
        if renormalize:
            log_probs = log_probs.float().masked_fill(~allowed, float("-inf"))
            norm = torch.logsumexp(log_probs, dim=1, keepdim=True)
            log_probs = log_probs - torch.where(torch.isfinite(norm), norm, torch.zeros_like(norm))  # dead rows
        if last and exclude is not None:
            allowed &= ~_excluded(trie, level, nodes, user, exclude)
        candidates = (scores[:, None] + log_probs.float()).masked_fill(~allowed, float("-inf"))
        width = len(nodes) // batch
        top_scores, top = candidates.reshape(batch, width * size).topk(min(beam, width * size), dim=1)
        # A row without a valid candidate (the trie is narrower than the beam) stays dead: score -inf, node -1,
        # and it repeats its user's best row, so the model is only ever asked to extend catalogue prefixes.
        live = torch.isfinite(top_scores)
        top = torch.where(live, top, top[:, :1])
        parents = (torch.arange(batch)[:, None] * width + top // size).reshape(-1)
        codes = (top % size).reshape(-1)
        scores = top_scores.reshape(-1)
        nodes = torch.where(live.reshape(-1), trie.step(level, nodes[parents], codes), torch.full_like(codes, -1))
        user = user[parents]
        if not last:
            log_probs = step(level + 1, parents, codes)
    items, scores = nodes.reshape(batch, -1), scores.reshape(batch, -1)
    if items.shape[1] < beam:  # a trie narrower than the beam: pad
        pad = beam - items.shape[1]
        items = torch.cat([items, torch.full((batch, pad), -1, dtype=items.dtype)], dim=1)
        scores = torch.cat([scores, torch.full((batch, pad), float("-inf"))], dim=1)
    return items, scores


def _excluded(trie: SidTrie, level: int, nodes: torch.Tensor, user: torch.Tensor, exclude: torch.Tensor
              ) -> torch.Tensor:
    """bool [n, K]: the last-level codes that would give a row's user one of its excluded items."""
    rows, codes, items = trie.edges(level, nodes)
    hit = (items[:, None] == exclude[user[rows]]).any(dim=1)
    mask = torch.zeros(len(nodes), trie.codebook_sizes[level], dtype=torch.bool)
    mask[rows[hit], codes[hit]] = True
    return mask
