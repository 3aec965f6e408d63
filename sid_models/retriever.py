"""A T5-style encoder-decoder that reads a user's history as SID tokens and generates the next item's SID, one
level at a time (TIGER's generative retrieval).

Encoder input: the latest `max_history` items, each as its L SID tokens (token id = the position's offset + code
+ 1, 0 = padding) plus learned embeddings of the SID position and of the item's slot; either one position per
item (the sum of its token embeddings, the default) or one per token as in TIGER. Decoder: a start token,
then the generated codes; level t's logits come from the hidden state at step t over that level's K_t codes.
Pre-norm blocks with RMSNorm and ReLU feed-forward layers as in T5; attention width n_heads * d_head need not
equal d_model (TIGER: 6 heads of 64 on d_model 128).

`decoder_step` serves beam search (`beam_search.py`): it keeps a key/value cache per row and attends to each
user's encoder output without copying it per beam, the rows of one user being contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class RetrieverConfig:
    codebook_sizes: list[int] = field(default_factory=list)  # K per SID level
    max_history: int = 20  # items the encoder reads
    # How the encoder reads the history: "item", one position per item holding the sum of its SID token
    # embeddings (L times fewer positions to attend over); "sid", one position per SID token (TIGER).
    history_tokens: str = "item"
    d_model: int = 128
    n_heads: int = 6
    d_head: int = 64
    d_ff: int = 1024
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.1
    # True: each level's softmax runs over the codes the trie allows after the prefix (the target's in training,
    # the beam's in decoding), so a SID's probability is a distribution over catalogue items and the model need
    # not learn which codes exist; a level where the prefix has one child costs nothing. False: over all K_t,
    # as TIGER. True raised ADC-SID's test Recall@10 on Amazon Beauty by 8% (README: Benchmarks).
    trie_softmax: bool = True

    def __post_init__(self):
        if not self.codebook_sizes or min(self.codebook_sizes) < 1:
            raise ValueError(f"codebook_sizes must name at least one level, got {self.codebook_sizes}")
        if self.history_tokens not in ("item", "sid"):
            raise ValueError(f"history_tokens must be 'item' or 'sid', got {self.history_tokens!r}")
        if min(self.max_history, self.d_model, self.n_heads, self.d_head, self.d_ff) < 1:
            raise ValueError("max_history, d_model, n_heads, d_head and d_ff must be >= 1")

    @property
    def levels(self) -> int:
        return len(self.codebook_sizes)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Attention(nn.Module):
    def __init__(self, config: RetrieverConfig):
        super().__init__()
        inner = config.n_heads * config.d_head
        self.heads, self.d_head = config.n_heads, config.d_head
        self.query = nn.Linear(config.d_model, inner, bias=False)
        self.key_value = nn.Linear(config.d_model, 2 * inner, bias=False)
        self.out = nn.Linear(inner, config.d_model, bias=False)
        self.dropout = config.dropout

    def split(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, inner] -> [B, heads, T, d_head]
        return x.view(x.shape[0], x.shape[1], self.heads, self.d_head).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key, value = self.key_value(x).chunk(2, dim=-1)
        return self.split(key), self.split(value)

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """x [B, T, d] attends to keys/values [B, heads, S, d_head]; mask: bool, True = may attend."""
        out = F.scaled_dot_product_attention(self.split(self.query(x)), keys, values, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0, is_causal=causal)
        return self.out(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class FeedForward(nn.Sequential):
    def __init__(self, config: RetrieverConfig):
        super().__init__(nn.Linear(config.d_model, config.d_ff, bias=False), nn.ReLU(), nn.Dropout(config.dropout),
                         nn.Linear(config.d_ff, config.d_model, bias=False))


class EncoderBlock(nn.Module):
    def __init__(self, config: RetrieverConfig):
        super().__init__()
        self.norm1, self.attention = RMSNorm(config.d_model), Attention(config)
        self.norm2, self.feed_forward = RMSNorm(config.d_model), FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.dropout(self.attention(h, *self.attention.keys_values(h), mask=mask))
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class DecoderBlock(nn.Module):
    def __init__(self, config: RetrieverConfig):
        super().__init__()
        self.norm1, self.self_attention = RMSNorm(config.d_model), Attention(config)
        self.norm2, self.cross_attention = RMSNorm(config.d_model), Attention(config)
        self.norm3, self.feed_forward = RMSNorm(config.d_model), FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cross_kv: tuple[torch.Tensor, torch.Tensor], memory_mask: torch.Tensor,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x [N, T, d] -> (x, this block's self-attention keys/values). Without a cache the T steps attend
        causally (teacher forcing); with one, x is one new step per row attending to the cache and itself. The
        rows of one memory (cross_kv [B, heads, S, d_head]) are contiguous: x is read as [B, N / B * T, d]."""
        h = self.norm1(x)
        key, value = self.self_attention.keys_values(h)
        if cache is not None:
            key, value = torch.cat([cache[0], key], dim=2), torch.cat([cache[1], value], dim=2)
        x = x + self.dropout(self.self_attention(h, key, value, causal=cache is None))
        h = self.norm2(x).reshape(cross_kv[0].shape[0], -1, x.shape[-1])
        x = x + self.dropout(self.cross_attention(h, *cross_kv, mask=memory_mask).reshape(x.shape))
        return x + self.dropout(self.feed_forward(self.norm3(x))), (key, value)


class SidRetriever(nn.Module):
    def __init__(self, config: RetrieverConfig):
        super().__init__()
        self.config = config
        sizes = torch.tensor(config.codebook_sizes)
        self.register_buffer("token_offset", (sizes.cumsum(0) - sizes + 1), persistent=False)  # 0 = padding
        d = config.d_model
        self.token_embedding = nn.Embedding(int(sizes.sum()) + 1, d, padding_idx=0)
        self.slot_embedding = nn.Embedding(config.max_history, d)
        self.level_embedding = nn.Embedding(config.levels, d)  # SID position, in encoder and decoder
        self.start = nn.Parameter(torch.zeros(d))
        self.encoder = nn.ModuleList(EncoderBlock(config) for _ in range(config.encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(config) for _ in range(config.decoder_layers))
        self.encoder_norm, self.decoder_norm = RMSNorm(d), RMSNorm(d)
        self.head = nn.Linear(d, int(sizes.sum()), bias=False)  # level t's logits: its slice of the output
        self.dropout = nn.Dropout(config.dropout)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.start, std=0.02)

    def tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Token ids of SID codes [..., T] of levels 0 .. T - 1 (code -1: padding, id 0)."""
        return torch.where(codes >= 0, codes + self.token_offset[:codes.shape[-1]], torch.zeros_like(codes))

    def encode(self, history_codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """history_codes [B, H, L] (latest item last; -1 rows pad) -> memory [B, S, d] (S = H, or H * L when
        history_tokens is "sid") and its attention mask [B, 1, 1, S] (True = a real position)."""
        batch, length, levels = history_codes.shape
        ids = self.tokens(history_codes)
        slots = torch.arange(length, device=ids.device) + (self.config.max_history - length)  # right-aligned
        tokens = self.token_embedding(ids) + self.level_embedding.weight[:levels]  # [B, H, L, d]
        if self.config.history_tokens == "item":
            x, present = tokens.sum(dim=2) + self.slot_embedding(slots), (ids > 0).any(dim=2)
        else:
            x = (tokens + self.slot_embedding(slots)[:, None]).reshape(batch, length * levels, -1)
            present = ids > 0
        present = present.reshape(batch, 1, 1, -1)
        present = present | ~present.any(dim=-1, keepdim=True)  # an empty history attends to its padding
        x = self.dropout(x)
        for block in self.encoder:
            x = block(x, present)
        return self.encoder_norm(x), present

    def decoder_input(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, T + 1, d]: the start token, then the embeddings of `codes` [B, T] (levels 0 .. T - 1)."""
        levels = torch.arange(codes.shape[1], device=codes.device)
        steps = self.token_embedding(self.tokens(codes)) + self.level_embedding(levels)
        return torch.cat([self.start.expand(codes.shape[0], 1, -1), steps], dim=1)

    def level_logits(self, hidden: torch.Tensor, level: int) -> torch.Tensor:
        start = int(self.token_offset[level]) - 1
        return hidden @ self.head.weight[start:start + self.config.codebook_sizes[level]].T

    def forward(self, history_codes: torch.Tensor, target_codes: torch.Tensor) -> list[torch.Tensor]:
        """Teacher-forced logits, one [B, K_t] per level, for target_codes [B, L]."""
        memory, mask = self.encode(history_codes)
        x = self.dropout(self.decoder_input(target_codes[:, :-1]))
        for block in self.decoder:
            x, _ = block(x, block.cross_attention.keys_values(memory), mask)
        hidden = self.decoder_norm(x)
        return [self.level_logits(hidden[:, t], t) for t in range(self.config.levels)]

    def loss(self, history_codes: torch.Tensor, target_codes: torch.Tensor, token_weights: torch.Tensor | None = None,
             allowed: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Cross-entropy of the target SIDs, each level weighted by token_weights [B, L] (1 if None), averaged
        over the weights. `allowed` (per level bool [B, K_t], `SidTrie.path_masks`) restricts each level's softmax
        to the codes the trie allows after the target's prefix."""
        logits = [level.float() for level in self(history_codes, target_codes)]
        if allowed is not None:
            logits = [level.masked_fill(~mask, float("-inf")) for level, mask in zip(logits, allowed)]
        losses = torch.stack([F.cross_entropy(level, target_codes[:, t], reduction="none")
                              for t, level in enumerate(logits)], dim=1)
        if token_weights is None:
            return losses.mean()
        return (losses * token_weights).sum() / token_weights.sum().clamp(min=1e-8)

    def decoder_step(self, history_codes: torch.Tensor):
        """A `beam_search` step callback for a batch of histories: it encodes once, then decodes one token per
        row and call with a key/value cache reordered by `parents`."""
        memory, mask = self.encode(history_codes)
        cross = [block.cross_attention.keys_values(memory) for block in self.decoder]
        state: dict = {}

        def step(level: int, parents: torch.Tensor, codes: torch.Tensor | None) -> torch.Tensor:
            if level == 0:
                x, caches = self.start.expand(len(parents), 1, -1), [None] * len(self.decoder)
            else:
                parents = parents.to(memory.device)
                ids = codes.to(memory.device) + self.token_offset[level - 1]
                x = (self.token_embedding(ids) + self.level_embedding.weight[level - 1])[:, None]
                caches = [(key[parents], value[parents]) for key, value in state["caches"]]
            state["caches"] = []
            for block, cache, cross_kv in zip(self.decoder, caches, cross):
                x, kv = block(x, cross_kv, mask, cache)
                state["caches"].append(kv)
            return torch.log_softmax(self.level_logits(self.decoder_norm(x[:, 0]), level).float(), dim=-1).cpu()

        return step
