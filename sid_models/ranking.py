"""A PPNet-style ranker (Kuaishou's Parameter Personalized Network, the backbone of ADC-SID's ranking experiments):
an MLP over user and item features whose hidden layers are each scaled by a personalised gate.

Item features are the SID tokens (an embedding table per SID position, kept as row blocks of one table) scaled by
a per-position weight (ADC-SID's importance R(e_b) on the behavioral positions, 1 elsewhere; 0 masks a position,
e.g. an unknown code -1), and optionally an item-id embedding, so item-ID only, SID only and hybrid rankers share
one module. Each gate, 2 * sigmoid(MLP(user embedding, sg(item features))), lies in (0, 2): it sharpens or mutes
hidden units per user without letting the gate's gradient disturb the item embeddings (PPNet's stop-gradient on
the general features). The ONNX graph holds Gathers, one ScatterElements and matrix products, no Loop
(`nn.EmbeddingBag` would export to one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_SETS = ("sid", "item_id", "hybrid")  # which item features a ranker reads


@dataclass
class RankerConfig:
    n_users: int  # user vocabulary, index 0 = a user unseen in training
    n_items: int  # item vocabulary for the item-id embedding, index 0 = unknown
    codebook_sizes: list[int] = field(default_factory=list)  # one per SID position; empty: no SID features
    features: str = "sid"  # sid | item_id | hybrid
    embedding_dim: int = 16
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    gate_hidden: int = 64
    dropout: float = 0.1
    # Not part of PPNet: a user-item dot product added to the logit, <user embedding, W item features>; on
    # Amazon Beauty it lifted the ADC-SID ranker's test AUC from 0.526 to 0.537 (uniform negatives).
    dot_interaction: bool = True
    # Not part of PPNet either: the mean item features of the user's `history_length` latest items (0: off), fed to
    # the tower, the gates and the dot term. On Amazon Beauty's chronological split it lifted the ADC-SID ranker's
    # test AUC from 0.572 to 0.805: a fifth of the test users have no train rows, and their id embedding is blank.
    history_length: int = 20

    def __post_init__(self):
        if self.features not in FEATURE_SETS:
            raise ValueError(f"features must be one of {FEATURE_SETS}, got {self.features!r}")
        if self.features != "item_id" and not self.codebook_sizes:
            raise ValueError(f"features={self.features!r} needs SID positions (codebook_sizes)")
        if self.history_length < 0:
            raise ValueError(f"history_length must be >= 0, got {self.history_length}")
        if self.n_users < 1 or self.n_items < 1 or not self.hidden:
            raise ValueError("n_users and n_items must be >= 1 and hidden must name at least one layer")

    @property
    def uses_sids(self) -> bool:
        return self.features in ("sid", "hybrid")

    @property
    def uses_item_id(self) -> bool:
        return self.features in ("item_id", "hybrid")


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class PPNetRanker(nn.Module):
    def __init__(self, config: RankerConfig):
        super().__init__()
        self.config = config
        d = config.embedding_dim
        self.user_embedding = nn.Embedding(config.n_users, d)
        self.item_embedding = nn.Embedding(config.n_items, d) if config.uses_item_id else None
        sizes = torch.tensor(config.codebook_sizes if config.uses_sids else [], dtype=torch.long)
        # The SID tables live as row blocks of one table: position p's block is a blank row (code -1, unknown) and
        # then its K_p codes, so code c of position p is row slot_base[p] + c and an unknown code needs no masking
        # op. One Gather then serves every position, where a table per position cost the ONNX graph 37 Gathers
        # and their Concats per batch (most of its serving time).
        self.sid_embedding = nn.Embedding(int((sizes + 1).sum()), d) if len(sizes) else None
        self.register_buffer("sid_slot_base", (sizes + 1).cumsum(0) - sizes, persistent=False)
        # [rows, positions]: the position a row belongs to, all zeros on blank rows (it zeroes them below)
        owner = torch.repeat_interleave(torch.arange(len(sizes)), sizes + 1)
        known = torch.ones(len(owner), dtype=torch.bool)
        known[self.sid_slot_base - 1] = False
        self.register_buffer("sid_row_position", ((owner[:, None] == torch.arange(len(sizes))) & known[:, None]).float(),
                             persistent=False)
        item_dim = self.item_dim = d * (len(sizes) + (1 if config.uses_item_id else 0))
        context_dim = d + item_dim * (2 if config.history_length else 1)  # user, item, pooled history
        widths = [context_dim, *config.hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.gates = nn.ModuleList(mlp(context_dim, config.gate_hidden, width) for width in config.hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(config.hidden[-1], 1)
        self.item_projection = nn.Linear(item_dim, d, bias=False) if config.dot_interaction else None
        self.history_projection = (nn.Linear(item_dim, d, bias=False)
                                   if config.dot_interaction and config.history_length else None)
        for table in [self.user_embedding, self.item_embedding, self.sid_embedding]:
            if table is not None:
                nn.init.normal_(table.weight, std=0.05)

    def sid_table(self) -> torch.Tensor:
        """The SID embedding rows with the blank rows zeroed: an unknown code reads zeros."""
        return self.sid_embedding.weight * self.sid_row_position.sum(dim=1, keepdim=True)

    def bag_features(self, codes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """[B, L * d]: per SID position, the weighted sum over a bag of items (`codes` and `weights` [B, H, L]) of
        their embeddings; codes -1 add nothing. Computed as a [B, rows] matrix of summed weights times the
        block-diagonal table (an EmbeddingBag as a matrix product) rather than by gathering B * H * L rows and
        weighting them: the gathered rows and their products were most of the ONNX graph's time."""
        batch, length = codes.shape[:2]
        slots = codes.reshape(batch, -1) + self.sid_slot_base.repeat(length)  # [B, H * L]: one broadcast row
        bag = torch.zeros(batch, self.sid_embedding.num_embeddings, dtype=weights.dtype, device=weights.device)
        bag = bag.scatter_add(1, slots, weights.reshape(batch, -1))
        block_table = (self.sid_embedding.weight[:, None, :] * self.sid_row_position[:, :, None]).flatten(1)
        return bag @ block_table

    def item_features(self, item_index: torch.Tensor, sid_codes: torch.Tensor, sid_weights: torch.Tensor
                      ) -> torch.Tensor:
        """[B, item_dim]: each SID position's embedding times its weight (zeros for code -1, unknown), then the
        item-id embedding when the feature set has it."""
        parts = []
        if self.sid_embedding is not None:
            rows = F.embedding(sid_codes + self.sid_slot_base, self.sid_table())  # [B, L, d]
            parts.append((rows * sid_weights.unsqueeze(-1)).flatten(1))
        if self.item_embedding is not None:
            parts.append(self.item_embedding(item_index))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def pooled_history(self, history_index: torch.Tensor, history_codes: torch.Tensor,
                       history_weights: torch.Tensor) -> torch.Tensor | None:
        """[B, item_dim]: the mean item features of each row's history items (an entry counts when it has an item
        index or a SID); None when the ranker reads no history."""
        if not self.config.history_length:
            return None
        batch, length = history_index.shape
        if length == 0:
            return torch.zeros(batch, self.item_dim, device=history_index.device)
        # An item's codes are all known or all -1, so its first code tells whether it has a SID.
        present = (history_index > 0) | (history_codes[:, :, 0] >= 0) if history_codes.shape[2] else history_index > 0
        present = present.float()
        count = present.sum(dim=1, keepdim=True).clamp(min=1.0)  # [B, 1]
        parts = []
        if self.sid_embedding is not None:  # absent entries have codes -1: they add nothing to the bag
            parts.append(self.bag_features(history_codes, history_weights.float()) / count)
        if self.item_embedding is not None:
            parts.append(torch.bmm((present / count)[:, None, :], self.item_embedding(history_index)).squeeze(1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(self, user_index: torch.Tensor, item_index: torch.Tensor, sid_codes: torch.Tensor,
                sid_weights: torch.Tensor, history_index: torch.Tensor, history_codes: torch.Tensor,
                history_weights: torch.Tensor) -> torch.Tensor:
        """Logits [B] for (user, item) rows: user_index and item_index int64 [B], sid_codes int64 [B, L] and
        sid_weights float [B, L]; the history the same per row and history item, [B, H] and [B, H, L]. Inputs a
        ranker does not read (L = 0 or H = 0) are still taken, so every ranker has one signature."""
        context = self.context(user_index, item_index, sid_codes, sid_weights, history_index, history_codes,
                               history_weights)
        user, item, history = context[0], context[1], context[2] if len(context) > 2 else None
        hidden = torch.cat(context, dim=1)
        for layer, gate in zip(self.layers, self.personal_gates(context)):
            hidden = self.dropout(F.relu(layer(hidden)) * gate)
        logit = self.output(hidden).squeeze(1)
        if self.item_projection is not None:
            taste = user if self.history_projection is None else user + self.history_projection(history)
            logit = logit + (taste * self.item_projection(item)).sum(dim=1)
        return logit

    def context(self, user_index, item_index, sid_codes, sid_weights, history_index, history_codes,
                history_weights) -> list[torch.Tensor]:
        """[user embedding, item features, pooled history (when read)]: the tower's input, in parts."""
        user = self.user_embedding(user_index)
        item = self.item_features(item_index, sid_codes, sid_weights.float())
        history = self.pooled_history(history_index, history_codes, history_weights)
        return [user, item] if history is None else [user, item, history]

    def personal_gates(self, context: list[torch.Tensor]) -> list[torch.Tensor]:
        """One gate [B, width] in (0, 2) per hidden layer, from the user embedding and, gradient stopped, the
        item (and history) features: the gates personalise the tower without reshaping the item embeddings."""
        gate_input = torch.cat([context[0], *(part.detach() for part in context[1:])], dim=1)
        return [2.0 * torch.sigmoid(gate(gate_input)) for gate in self.gates]

    def gate_values(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """The personalised gates of a batch (the forward's inputs), for inspection and tests."""
        return self.personal_gates(self.context(*inputs))
