"""AWQ: activation-aware weight quantisation (Lin et al., MLSys 2024, https://arxiv.org/abs/2306.00978).

Weights that meet large activations matter most. AWQ scales input channel j of W by
s_j = mean|x_j|^α / mean|ŵ_j|^(1-α) before quantising (and divides the activations by s, which a
deployment folds into the previous norm or linear), choosing α on a grid to minimise the layer's
output error on calibration inputs; then it searches a per-(row, group) clipping range the same
way. Both searches follow the authors' ``auto_scale`` / ``auto_clip``, applied per linear layer
(the output error of the linear itself) rather than per group of linears sharing an input.

The evaluated weight is the effective one, Q(clip(W·s))/s, fake-quantised on the :mod:`rtn`
grid. Because s is chosen per linear (not shared by the linears that read the same input, as the
authors do), it could not all be folded into one preceding norm: the size accounting counts it
as one fp16 vector per linear. We implement AWQ here because AutoAWQ is archived and needs CUDA
kernels, while this runs on any device.

Both searches need only two statistics of the inputs X: the second moment H ∝ XᵀX (the output
error of ΔW is tr(ΔW H ΔWᵀ), per (row, group) d H_gg dᵀ) and the per-channel mean |x|. So the
memory is one in × in matrix per linear however many calibration tokens there are, and the loss
is exact over all of them instead of over a token sample.

Shapes: W (out, in); X (n_tokens, in) calibration inputs of this linear; H (in, in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from kick_core.compress.layerwise import Compressor, LayerResult
from kick_core.compress.rtn import QuantGrid, dequantize_on_grid, make_grid
from kick_core.config import CompressConfig


@dataclass(frozen=True)
class AWQResult:
    """The effective fake-quantised weight and what the searches chose."""

    weight: torch.Tensor  # (out, in), fp32
    grid: QuantGrid  # grid of the scaled, clipped weight
    scales: torch.Tensor  # (in,) per-input-channel scales s
    ratio: float | None  # chosen α (None: no scaling beat plain RTN)
    error: float  # output error tr(ΔW H ΔWᵀ)/out of the result (the mean squared output error on X)
    rtn_error: float  # the same for plain RTN, for comparison


def _rtn(W: torch.Tensor, bits: int, group_size: int | None, symmetric: bool) -> tuple[torch.Tensor, QuantGrid]:
    grid = make_grid(W, bits, group_size, symmetric)
    return dequantize_on_grid(W, grid), grid


def _output_error(W: torch.Tensor, Wq: torch.Tensor, H: torch.Tensor) -> float:
    """tr(ΔW H ΔWᵀ) / out: the mean squared output error when H = XᵀX / n (tokens)."""
    D = W - Wq
    return float(torch.einsum("oi,ij,oj->", D, H, D) / W.shape[0])


def _weight_channel_mean(W: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """Mean over rows of |w| normalised by its group's max, per input channel (AutoAWQ's w_mean)."""
    out, cols = W.shape
    gs = cols if group_size is None or group_size >= cols or cols % group_size else group_size
    w = W.abs().reshape(-1, gs)
    w = w / w.amax(dim=1, keepdim=True).clamp(min=1e-8)
    return w.reshape(out, cols).mean(0)


def search_scales(W: torch.Tensor, H: torch.Tensor, x_absmean: torch.Tensor, bits: int, group_size: int | None,
                  symmetric: bool, n_grid: int = 20) -> tuple[torch.Tensor, float | None, float]:
    """Grid-search α in [0, 1): returns (scales (in,), best α, its output error).

    Args:
        H: (in, in) second moment of the inputs (any positive multiple of XᵀX: only the argmin matters).
        x_absmean: (in,) mean |x| per input channel.

    No scaling (s = 1, α None) is a candidate too, so the result is never worse than RTN.
    """
    w_mean = _weight_channel_mean(W, group_size)
    best: tuple[torch.Tensor, float | None, float] = (
        torch.ones_like(x_absmean), None, _output_error(W, _rtn(W, bits, group_size, symmetric)[0], H))
    for k in range(n_grid):
        ratio = k / n_grid
        s = (x_absmean.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4)).clamp(min=1e-4)
        s = s / torch.sqrt(s.max() * s.min())
        Wq = _rtn(W * s, bits, group_size, symmetric)[0] / s
        err = _output_error(W, Wq, H)
        if err < best[2]:
            best = (s, ratio, err)
    return best


def search_clip(W: torch.Tensor, H: torch.Tensor, bits: int, group_size: int | None, symmetric: bool,
                n_grid: int = 20, max_shrink: float = 0.5, chunk: int = 256) -> torch.Tensor:
    """Per-(row, group) clipping: the max |w| kept, chosen on a grid down to (1 - max_shrink)·max.

    Returns W clamped to [-c, c] per (row, group) with the c that minimised that group's share of
    the output error, d H_gg dᵀ with H_gg the group's diagonal block of H (AutoAWQ's
    ``_compute_best_clip``, which measures the same quantity on a sample of tokens).
    """
    out, cols = W.shape
    gs = cols if group_size is None or group_size >= cols or cols % group_size else group_size
    G = cols // gs
    idx = torch.arange(G, device=W.device)
    Hb = H.reshape(G, gs, G, gs)[idx, :, idx, :]  # (G, gs, gs) diagonal blocks
    clipped = torch.empty_like(W)
    for r0 in range(0, out, chunk):
        Wc = W[r0:r0 + chunk].reshape(-1, G, gs)  # (o, G, gs)
        org_max = Wc.abs().amax(dim=-1, keepdim=True)  # (o, G, 1)
        best_err = torch.full(org_max.shape, float("inf"), device=W.device)
        best_max = org_max.clone()
        for k in range(int(max_shrink * n_grid)):
            max_val = org_max * (1 - k / n_grid)
            cur = torch.clamp(Wc, -max_val, max_val).reshape(-1, cols)
            D = Wc - _rtn(cur, bits, group_size, symmetric)[0].reshape(-1, G, gs)  # (o, G, gs)
            err = torch.einsum("ogk,gkl,ogl->og", D, Hb, D).unsqueeze(-1)  # (o, G, 1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_max = torch.where(better, max_val, best_max)
        clipped[r0:r0 + chunk] = torch.clamp(Wc, -best_max, best_max).reshape(-1, cols)
    return clipped


def quantize_weight(W: torch.Tensor, X: torch.Tensor | None = None, bits: int = 4, group_size: int | None = 128,
                    symmetric: bool = False, n_grid: int = 20, clip: bool = True, *, H: torch.Tensor | None = None,
                    x_absmean: torch.Tensor | None = None) -> AWQResult:
    """AWQ-quantise W (out, in) from calibration inputs X (n, in), or from their statistics.

    Args:
        X: the inputs themselves; or give instead
        H: (in, in) a positive multiple of XᵀX (:class:`~kick_core.compress.calib_stats.HessianStats`) and
        x_absmean: (in,) mean |x| per channel (:class:`~kick_core.compress.calib_stats.InputAbsMeanStats`).

    Errors in the result are tr(ΔW H ΔWᵀ)/out: the mean squared output error when X is given.
    """
    W = W.float()
    if X is not None:
        X = X.float()
        H, x_absmean = X.T @ X / X.shape[0], X.abs().mean(0)
    if H is None or x_absmean is None:
        raise ValueError("awq.quantize_weight needs X, or both H and x_absmean")
    H, x_absmean = H.float(), x_absmean.float()
    rtn_error = _output_error(W, _rtn(W, bits, group_size, symmetric)[0], H)
    s, ratio, _ = search_scales(W, H, x_absmean, bits, group_size, symmetric, n_grid)
    Ws = W * s
    if clip:
        Ws = search_clip(Ws, H / s.reshape(-1, 1) / s.reshape(1, -1), bits, group_size, symmetric, n_grid)
    Wq_scaled, grid = _rtn(Ws, bits, group_size, symmetric)
    Wq = Wq_scaled / s
    return AWQResult(Wq, grid, s, ratio, _output_error(W, Wq, H), rtn_error)


def solve(W: torch.Tensor, stats: Mapping[str, Any], cfg: CompressConfig) -> LayerResult:
    """The compressor's per-linear step, from the layer's HessianStats and InputAbsMeanStats."""
    res = quantize_weight(W, bits=cfg.bits, group_size=cfg.group_size, symmetric=cfg.symmetric,
                          H=stats["hessian"].H, x_absmean=stats["absmean"].absmean)
    return LayerResult(res.weight, res.error)


COMPRESSOR = Compressor("awq", solve, stats=("hessian", "absmean"),
                        description="activation-aware scale + clip search, then grouped RTN (in-house)")
