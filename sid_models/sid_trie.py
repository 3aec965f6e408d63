"""The valid SIDs of a tokenizer version as a trie, for decoding that can only emit catalogue items.

Level t holds one node per distinct SID prefix of length t (level 0: the root). Its edges are stored sparse
(CSR): `keys[t]` sorted node * K_t + code, `children[t]` the node each edge leads to (at the last level, the
item's catalogue row). Memory grows with the number of items, not with K ** L, and a batch of nodes gets its
allowed-code mask and its next nodes with a few vectorised lookups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class SidTrie:
    codebook_sizes: list[int]
    keys: list[torch.Tensor]  # level t: int64 [edges_t], sorted node * K_t + code
    children: list[torch.Tensor]  # level t: int64 [edges_t], next-level node (last level: item row)
    starts: list[torch.Tensor]  # level t: int64 [nodes_t + 1], node n's edges are keys[t][starts[n]:starts[n + 1]]

    @classmethod
    def build(cls, sids: np.ndarray, codebook_sizes: list[int]) -> SidTrie:
        """From the catalogue's SIDs [N, L] (row i: item i). SIDs must be unique and each code within its
        codebook; the error names the first offending row."""
        sids = np.asarray(sids, dtype=np.int64)
        if sids.ndim != 2 or sids.shape[1] != len(codebook_sizes) or len(sids) == 0:
            raise ValueError(f"sids must be [items, {len(codebook_sizes)}] with at least one item, got {sids.shape}")
        for position, size in enumerate(codebook_sizes):
            bad = np.flatnonzero((sids[:, position] < 0) | (sids[:, position] >= size))
            if len(bad):
                raise ValueError(f"row {bad[0]}: code {sids[bad[0], position]} at position {position} is outside "
                                 f"its codebook of {size}")
        _, first, counts = np.unique(sids, axis=0, return_index=True, return_counts=True)
        if (counts > 1).any():
            duplicated = sids[first[np.argmax(counts > 1)]]
            rows = np.flatnonzero((sids == duplicated).all(axis=1))
            raise ValueError(f"rows {rows.tolist()} share the SID {duplicated.tolist()}: SIDs must be unique")
        keys, children, starts = [], [], []
        node = np.zeros(len(sids), dtype=np.int64)  # each item's node at the current level
        for level, size in enumerate(codebook_sizes):
            last = level == len(codebook_sizes) - 1
            edge_keys = node * size + sids[:, level]
            unique_keys, edge_of_item = np.unique(edge_keys, return_inverse=True)
            # Next level: one node per edge (a distinct prefix of length level + 1), numbered in key order.
            child = np.zeros(len(unique_keys), dtype=np.int64)
            if last:
                child[edge_of_item] = np.arange(len(sids))
            else:
                child = np.arange(len(unique_keys))
            n_nodes = int(node.max()) + 1
            keys.append(torch.from_numpy(unique_keys))
            children.append(torch.from_numpy(child))
            starts.append(torch.from_numpy(np.searchsorted(unique_keys, np.arange(n_nodes + 1) * size)))
            node = edge_of_item.reshape(-1)
        return cls(list(codebook_sizes), keys, children, starts)

    @property
    def depth(self) -> int:
        return len(self.codebook_sizes)

    def edges(self, level: int, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every edge out of `nodes` [n] (nodes < 0 have none): (row in `nodes`, code, child) per edge."""
        valid = nodes >= 0
        safe = nodes.clamp(min=0)
        begin, end = self.starts[level][safe], self.starts[level][safe + 1]
        counts = torch.where(valid, end - begin, torch.zeros_like(begin))
        rows = torch.repeat_interleave(torch.arange(len(nodes)), counts)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        edge = begin[rows] + offsets
        return rows, self.keys[level][edge] % self.codebook_sizes[level], self.children[level][edge]

    def allowed(self, level: int, nodes: torch.Tensor) -> torch.Tensor:
        """bool [n, K_level]: which codes continue each node's prefix to a catalogue SID."""
        rows, codes, _ = self.edges(level, nodes)
        mask = torch.zeros(len(nodes), self.codebook_sizes[level], dtype=torch.bool)
        mask[rows, codes] = True
        return mask

    def step(self, level: int, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The child of each (node, code) [n]: a next-level node, at the last level an item row; -1 where the
        edge does not exist."""
        size = self.codebook_sizes[level]
        wanted = nodes * size + codes
        position = torch.searchsorted(self.keys[level], wanted).clamp(max=max(len(self.keys[level]) - 1, 0))
        found = (nodes >= 0) & (codes >= 0) & (codes < size) & (self.keys[level][position] == wanted)
        return torch.where(found, self.children[level][position], torch.full_like(wanted, -1))

    def path_masks(self, sids: torch.Tensor) -> list[torch.Tensor]:
        """For catalogue SIDs [n, L]: per level t, bool [n, K_t], the codes the trie allows after each SID's
        first t codes (the support of a softmax restricted to the catalogue, `trie_softmax`)."""
        nodes, masks = torch.zeros(len(sids), dtype=torch.long), []
        for level in range(self.depth):
            masks.append(self.allowed(level, nodes))
            nodes = self.step(level, nodes, sids[:, level])
        return masks
