"""AWQ: activation-aware weight quantisation (Lin et al., MLSys 2024, https://arxiv.org/abs/2306.00978).

Weights that meet large activations matter most. AWQ scales input channel j of W by
s_j = mean|x_j|^α / mean|ŵ_j|^(1-α) before quantising (and divides the activations by s, which a
deployment folds into the previous norm or linear), choosing α on a grid to minimise the layer's
output error on calibration inputs; then it searches a per-(row, group) clipping range the same
way. Both searches follow the authors' ``auto_scale`` / ``auto_clip``, applied per linear layer
(the output error of the linear itself) rather than per group of linears sharing an input.

The evaluated weight is the effective one, Q(clip(W·s))/s, fake-quantised on the :mod:`rtn`
grid; the scales cost no storage once folded. We implement it here because AutoAWQ is archived
and needs CUDA kernels, while this runs on any device.

Shapes: W (out, in); X (n_tokens, in) calibration inputs of this linear.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kick_core.compress.rtn import QuantGrid, dequantize_on_grid, make_grid


@dataclass(frozen=True)
class AWQResult:
    """The effective fake-quantised weight and what the searches chose."""

    weight: torch.Tensor  # (out, in), fp32
    grid: QuantGrid  # grid of the scaled, clipped weight
    scales: torch.Tensor  # (in,) per-input-channel scales s
    ratio: float | None  # chosen α (None: no scaling beat plain RTN)
    error: float  # output MSE of the result on X
    rtn_error: float  # output MSE of plain RTN on X, for comparison


def _rtn(W: torch.Tensor, bits: int, group_size: int | None, symmetric: bool) -> tuple[torch.Tensor, QuantGrid]:
    grid = make_grid(W, bits, group_size, symmetric)
    return dequantize_on_grid(W, grid), grid


def _output_mse(X: torch.Tensor, W: torch.Tensor, Wq: torch.Tensor) -> float:
    return float(((X @ (W - Wq).T) ** 2).mean())


def _weight_channel_mean(W: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """Mean over rows of |w| normalised by its group's max, per input channel (AutoAWQ's w_mean)."""
    out, cols = W.shape
    gs = cols if group_size is None or group_size >= cols or cols % group_size else group_size
    w = W.abs().reshape(-1, gs)
    w = w / w.amax(dim=1, keepdim=True).clamp(min=1e-8)
    return w.reshape(out, cols).mean(0)


def search_scales(W: torch.Tensor, X: torch.Tensor, bits: int, group_size: int | None, symmetric: bool,
                  n_grid: int = 20) -> tuple[torch.Tensor, float | None, float]:
    """Grid-search α in [0, 1): returns (scales (in,), best α, its output MSE).

    No scaling (s = 1, α None) is a candidate too, so the result is never worse than RTN on X.
    """
    x_mean = X.abs().mean(0)
    w_mean = _weight_channel_mean(W, group_size)
    best: tuple[torch.Tensor, float | None, float] = (
        torch.ones_like(x_mean), None, _output_mse(X, W, _rtn(W, bits, group_size, symmetric)[0]))
    for k in range(n_grid):
        ratio = k / n_grid
        s = (x_mean.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4)).clamp(min=1e-4)
        s = s / torch.sqrt(s.max() * s.min())
        Wq = _rtn(W * s, bits, group_size, symmetric)[0] / s
        err = _output_mse(X, W, Wq)
        if err < best[2]:
            best = (s, ratio, err)
    return best


def search_clip(W: torch.Tensor, X: torch.Tensor, bits: int, group_size: int | None, symmetric: bool,
                n_grid: int = 20, max_shrink: float = 0.5, chunk: int = 256) -> torch.Tensor:
    """Per-(row, group) clipping: the max |w| kept, chosen on a grid down to (1 - max_shrink)·max.

    Returns W clamped to [-c, c] per (row, group) with the c that minimised that group's share of
    the output error on X (AutoAWQ's ``_compute_best_clip``).
    """
    out, cols = W.shape
    gs = cols if group_size is None or group_size >= cols or cols % group_size else group_size
    G = cols // gs
    Xg = X.reshape(-1, G, gs)  # (n, G, gs)
    clipped = torch.empty_like(W)
    for r0 in range(0, out, chunk):
        Wc = W[r0:r0 + chunk].reshape(-1, G, gs)  # (o, G, gs)
        org_max = Wc.abs().amax(dim=-1, keepdim=True)  # (o, G, 1)
        best_err = torch.full(org_max.shape, float("inf"), device=W.device)
        best_max = org_max.clone()
        for k in range(int(max_shrink * n_grid)):
            max_val = org_max * (1 - k / n_grid)
            cur = torch.clamp(Wc, -max_val, max_val).reshape(-1, cols)
            q = _rtn(cur, bits, group_size, symmetric)[0].reshape(-1, G, gs)
            err = torch.einsum("ngk,ogk->nog", Xg, Wc - q).pow(2).mean(0).unsqueeze(-1)  # (o, G, 1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_max = torch.where(better, max_val, best_max)
        clipped[r0:r0 + chunk] = torch.clamp(Wc, -best_max, best_max).reshape(-1, cols)
    return clipped


def quantize_weight(W: torch.Tensor, X: torch.Tensor, bits: int, group_size: int | None = 128,
                    symmetric: bool = False, n_grid: int = 20, clip: bool = True) -> AWQResult:
    """AWQ-quantise W (out, in) given calibration inputs X (n, in) of this linear."""
    W, X = W.float(), X.float()
    rtn_error = _output_mse(X, W, _rtn(W, bits, group_size, symmetric)[0])
    s, ratio, _ = search_scales(W, X, bits, group_size, symmetric, n_grid)
    Ws = W * s
    if clip:
        Ws = search_clip(Ws, X / s, bits, group_size, symmetric, n_grid)
    Wq_scaled, grid = _rtn(Ws, bits, group_size, symmetric)
    Wq = Wq_scaled / s
    return AWQResult(Wq, grid, s, ratio, _output_mse(X, W, Wq), rtn_error)
