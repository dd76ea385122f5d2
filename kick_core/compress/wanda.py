"""Wanda: prune by weight magnitude times input activation norm (Sun et al., ICLR 2024,
https://arxiv.org/abs/2306.11695; the study's ``lib/prune.py::prune_wanda``).

Score S_ij = |W_ij| · sqrt(s_j), where s_j is the running mean over calibration sequences of input
feature j's squared L2 norm (:class:`kick_core.compress.calib_stats.InputNormStats`). Weights are ranked
within each *output row* (stable sort) and ``int(in_features * sparsity)`` are removed per row;
N:M removes the N lowest scores of every M consecutive inputs. No weight update. Blocks are
pruned one after another by :mod:`kick_core.compress.layerwise`, each on the outputs of the
already pruned blocks before it.

Not included: the study's ``--use_variant`` (per-row α bisection), unused in its experiments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kick_core.compress.layerwise import Compressor, LayerResult
from kick_core.compress.masks import apply_mask, select_mask
from kick_core.config import CompressConfig


def score(W: torch.Tensor, norm_sq: torch.Tensor) -> torch.Tensor:
    """|W| · sqrt(s): W (out, in), norm_sq s (in,) -> scores (out, in)."""
    return W.float().abs() * torch.sqrt(norm_sq.float()).reshape(1, -1)


def prune_weight(W: torch.Tensor, norm_sq: torch.Tensor, sparsity: float,
                 nm: tuple[int, int] | None = None) -> torch.Tensor:
    """W (out, in) with its lowest Wanda scores zeroed, per output row (fp32 copy)."""
    return apply_mask(W.float(), select_mask(score(W, norm_sq), sparsity, nm, per_row=True))


def solve(W: torch.Tensor, stats: Mapping[str, Any], cfg: CompressConfig) -> LayerResult:
    """The compressor's per-linear step, from the layer's InputNormStats."""
    return LayerResult(prune_weight(W, stats["norms"].norm_sq, cfg.target_sparsity, cfg.nm))


COMPRESSOR = Compressor("wanda", solve, stats=("norms",), description="|W|·‖X‖ per output row")
