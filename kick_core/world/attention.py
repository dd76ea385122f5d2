"""Attention of packed training rows, computed segment by segment instead of over whole rows.

A packed row holds several examples, each attending only to itself (block-diagonal causal
attention). transformers' ``sdpa`` path computes that as full ``seq_len x seq_len`` attention with
a mask, so a row of ten 30-token QA examples costs as much as one 384-token document. Here every
segment (a run of positions counting up from 0) is attended on its own: segments are gathered into
groups of equal padded length (a multiple of ``bucket`` tokens), each group is one causal
``scaled_dot_product_attention`` call, and the outputs are put back in place. The result equals the
masked full-row attention up to float rounding. Attention is about 2/5 of a training step on the
CPU; done this way it costs about 40 % less, and a step about 5 % less on 2 cores (the small calls
keep the second core less busy than one large one).

Registered with transformers as the attention implementation :data:`NAME` (no mask is built for it);
the training loop switches the model to it and back to ``sdpa`` before the model is returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NAME = "kick_packed_segments"
"""The attention implementation's name in transformers' ``AttentionInterface``."""


@dataclass(frozen=True)
class SegmentPlan:
    """Where each segment of a packed batch goes: groups of equal padded length, and the way back."""

    groups: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    """Per group: token indices ``[n, L]`` into the flattened batch (padded by repeating a segment's
    last token), and the flat indices ``[m]`` of the real (not padded) entries among the ``n * L``."""
    inverse: torch.Tensor
    """Index into the concatenated real outputs that restores the batch's token order."""


def plan_segments(positions: torch.Tensor, bucket: int = 32) -> SegmentPlan:
    """The :class:`SegmentPlan` of a batch of packed rows, from their position ids ``[rows, seq]``.

    A segment starts wherever the position is 0 (every row starts one), so segments never cross rows.
    """
    rows, seq = positions.shape
    n_tokens = rows * seq
    starts = (positions.reshape(-1) == 0).nonzero().flatten()
    lengths = torch.diff(starts, append=torch.tensor([n_tokens]))
    padded = (lengths + bucket - 1) // bucket * bucket
    groups, order = [], []
    for length in padded.unique().tolist():
        chosen = (padded == length).nonzero().flatten()
        span = torch.arange(length)
        seg_start, seg_len = starts[chosen], lengths[chosen]
        index = seg_start[:, None] + torch.minimum(span[None, :], seg_len[:, None] - 1)
        real = (span[None, :] < seg_len[:, None]).reshape(-1).nonzero().flatten()
        groups.append((index, real))
        order.append(index.reshape(-1)[real])
    inverse = torch.empty(n_tokens, dtype=torch.long)
    inverse[torch.cat(order)] = torch.arange(n_tokens)
    return SegmentPlan(tuple(groups), inverse)


def segment_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, *,
                      segment_plan: SegmentPlan, **kwargs):
    """transformers attention interface: ``query [B, H, S, D]``, key/value ``[B, Hkv, S, D]`` ->
    ``([B, S, H, D], None)``, attending within the segments of `segment_plan` only."""
    rows, heads, seq, dim = query.shape
    kv_heads = key.shape[1]

    def tokens(t: torch.Tensor) -> torch.Tensor:  # [B, h, S, D] -> [B * S, h, D]
        return t.transpose(1, 2).reshape(rows * seq, t.shape[1], dim)

    q, k, v = tokens(query), tokens(key), tokens(value)
    outs = []
    for index, real in segment_plan.groups:
        n, length = index.shape
        flat = index.reshape(-1)

        def gather(t: torch.Tensor) -> torch.Tensor:  # -> [n, h, L, D]
            return t.index_select(0, flat).view(n, length, t.shape[1], dim).transpose(1, 2)

        out = torch.nn.functional.scaled_dot_product_attention(
            gather(q), gather(k), gather(v), dropout_p=dropout, is_causal=True, scale=scaling,
            enable_gqa=kv_heads != heads)
        outs.append(out.transpose(1, 2).reshape(n * length, heads, dim).index_select(0, real))
    out = torch.cat(outs).index_select(0, segment_plan.inverse)
    return out.view(rows, seq, heads, dim), None


def register() -> None:
    """Make :data:`NAME` a transformers attention implementation (idempotent); it needs no mask."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, segment_attention)
    AttentionMaskInterface.register(NAME, lambda *args, **kwargs: None)
