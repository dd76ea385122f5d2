"""GPTQ: quantise a weight matrix column by column, folding each column's rounding error into
the columns not yet quantised through the inverse Hessian (Frantar et al., 2023,
https://arxiv.org/abs/2210.17323; the reference code's ``GPTQ.fasterquant``).

Pure numerics: ``quantize_weight(W, H, ...)`` takes the weight (out, in) and the layer's input
Hessian H = (2/n) Σ x xᵀ (in, in) collected by :class:`kick_core.compress.calib_stats.HessianStats`,
and returns the fake-quantised weight on the same grid as :mod:`rtn`. With H = c·I there is no
error to propagate and the result equals RTN (tested).

A ``mask`` of pruned positions turns this into the sparse + quantised pass of SparseGPT's joint
mode: masked weights are quantised to exactly zero and their error is propagated like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kick_core.compress.layerwise import Compressor, LayerResult
from kick_core.compress.obs import obs_sweep
from kick_core.compress.rtn import QuantGrid, find_params, quantize
from kick_core.compress.calib_stats import fix_dead_columns, inverse_hessian_cholesky
from kick_core.config import CompressConfig


def quantize_weight(W: torch.Tensor, H: torch.Tensor, bits: int, group_size: int | None = None,
                    symmetric: bool = False, blocksize: int = 128, percdamp: float = 0.01,
                    act_order: bool = False, mask: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, QuantGrid, float]:
    """GPTQ-quantise W (out, in) given H (in, in).

    Args:
        group_size: columns per quantisation group (None: one grid per row, found before the sweep).
        act_order: quantise columns in order of decreasing diag(H) (groups then follow that order).
        mask: boolean (out, in), True = pruned; those entries end exactly zero.

    Returns:
        (fake-quantised W in fp32, the grid, summed OBS loss Σ (w - q)² / d² / 2).
    """
    W = W.float().clone()
    H = H.float().clone()
    out, cols = W.shape
    maxq = 2**bits - 1
    fix_dead_columns(W, H)
    perm = None
    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True)
        W, H = W[:, perm], H[perm][:, perm]
        mask = mask[:, perm] if mask is not None else None
    gs = cols if group_size is None or group_size >= cols else group_size
    n_groups = -(-cols // gs)
    scales = torch.empty(out, n_groups, device=W.device)
    zeros = torch.empty(out, n_groups, device=W.device)
    if gs == cols:
        s, z = find_params(W, bits, symmetric)
        scales[:, 0], zeros[:, 0] = s, z
    Hinv = inverse_hessian_cholesky(H, percdamp)

    def target(col: int, i: int, w: torch.Tensor, W1: torch.Tensor) -> torch.Tensor:
        if gs != cols and col % gs == 0:
            # As the reference code: the group's grid comes from W, whose columns in this block
            # are still as they were when the block started (identical when gs == blocksize).
            s, z = find_params(W[:, col:col + gs], bits, symmetric)
            scales[:, col // gs], zeros[:, col // gs] = s, z
        g = col // gs
        q = quantize(w, scales[:, g], zeros[:, g], maxq)
        return q.masked_fill(mask[:, col], 0.0) if mask is not None else q

    Q, loss = obs_sweep(W, Hinv, blocksize, target)
    if perm is not None:
        inv = torch.argsort(perm)
        Q = Q[:, inv]
        # Re-express the grid column-wise in the original order so QuantGrid lookups stay valid.
        col_scale = scales[:, torch.arange(cols, device=W.device) // gs][:, inv]
        col_zero = zeros[:, torch.arange(cols, device=W.device) // gs][:, inv]
        return Q, QuantGrid(col_scale, col_zero, bits, 1), float(loss.sum())
    return Q, QuantGrid(scales, zeros, bits, gs), float(loss.sum())


def solve(W: torch.Tensor, stats: Mapping[str, Any], cfg: CompressConfig,
          mask: torch.Tensor | None = None) -> LayerResult:
    """The compressor's per-linear step, from the layer's HessianStats (`mask`: pruned positions kept 0)."""
    Q, _, loss = quantize_weight(W, stats["hessian"].H, cfg.bits, cfg.group_size, cfg.symmetric, cfg.blocksize,
                                 cfg.percdamp, cfg.act_order, mask)
    return LayerResult(Q, loss)


COMPRESSOR = Compressor("gptq", solve, stats=("hessian",), description="column-wise rounding with OBS error feedback")
