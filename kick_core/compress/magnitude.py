"""One-shot magnitude pruning: zero the smallest |W| (the LLM-KICK baseline, ``lib/prune.py::prune_magnitude``).

Needs no calibration data, so the layer-sequential driver is skipped: every decoder linear is
pruned on its own weights. The comparison group is the whole matrix as in the study
(``magnitude_scope: matrix``: threshold at the sorted |W| index ``int(numel * sparsity)``, every
weight ``<=`` it zeroed, so realised sparsity is one weight above target), or each output row
(``magnitude_scope: row``: exactly ``int(in_features * sparsity)`` per row). N:M removes the N
smallest of every M consecutive inputs of a row. Pruning an already pruned matrix again at the
same sparsity changes nothing.

Not included: the study's dead variants (random scores, layer schedules, per-block thresholds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kick_core.compress.layerwise import Compressor, LayerResult
from kick_core.compress.masks import apply_mask, select_mask
from kick_core.config import CompressConfig


def prune_weight(W: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None,
                 per_row: bool = False) -> torch.Tensor:
    """W (out, in) with its smallest-magnitude weights zeroed (fp32 copy)."""
    W = W.float()
    return apply_mask(W, select_mask(W.abs(), sparsity, nm, per_row))


def solve(W: torch.Tensor, stats: Mapping[str, Any], cfg: CompressConfig) -> LayerResult:
    """The compressor's per-linear step (no statistics needed)."""
    return LayerResult(prune_weight(W, cfg.target_sparsity, cfg.nm, per_row=cfg.magnitude_scope == "row"))


COMPRESSOR = Compressor("magnitude", solve, stats=(), description="one-shot |W| pruning, no calibration")
