"""Round-to-nearest (RTN) weight quantisation: the grid every quantiser here shares.

The grid is GPTQ's min-max quantiser (``quant.py`` of the GPTQ reference code): per output row,
or per (row, group of ``group_size`` consecutive input columns), the range [min(x, 0), max(x, 0)]
is split into ``2**bits - 1`` steps. Asymmetric grids carry an integer zero point; symmetric ones
centre the range on zero. Zero is always exactly representable, so a pruned weight stays zero.

Shapes: W is (out_features, in_features); scale and zero are (out_features, n_groups).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from kick_core.compress.layerwise import Compressor, LayerResult
from kick_core.config import CompressConfig


@dataclass(frozen=True)
class QuantGrid:
    """Per-(row, group) quantisation parameters; ``dequantize(q)`` maps integer codes back."""

    scale: torch.Tensor  # (out, n_groups)
    zero: torch.Tensor  # (out, n_groups), integer-valued floats
    bits: int
    group_size: int  # columns per group; == in_features for per-channel

    @property
    def maxq(self) -> int:
        return 2**self.bits - 1

    def column_params(self, col: int | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero) of the group(s) holding input column(s) `col`, shaped (out,) or (out, k)."""
        if isinstance(col, int):
            g = col // self.group_size
            return self.scale[:, g], self.zero[:, g]
        idx = torch.arange(col.start, col.stop) // self.group_size
        return self.scale[:, idx], self.zero[:, idx]


def find_params(x: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max grid of each row of x (rows, cols) -> (scale, zero), each (rows,)."""
    maxq = 2**bits - 1
    x = x.float()
    xmin = torch.minimum(x.min(dim=1).values, torch.zeros(x.shape[0], device=x.device))
    xmax = torch.maximum(x.max(dim=1).values, torch.zeros(x.shape[0], device=x.device))
    if symmetric:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    flat = (xmin == 0) & (xmax == 0)  # an all-zero row: any grid works
    xmin = torch.where(flat, -torch.ones_like(xmin), xmin)
    xmax = torch.where(flat, torch.ones_like(xmax), xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) / 2) if symmetric else torch.round(-xmin / scale)
    return scale, zero


def quantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, maxq: int) -> torch.Tensor:
    """Fake-quantise: snap x to the grid and map back (same shape as x; scale/zero broadcast)."""
    q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero)


def codes(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, maxq: int) -> torch.Tensor:
    """The integer codes of x on the grid (what a packed checkpoint would store)."""
    return torch.clamp(torch.round(x / scale) + zero, 0, maxq).to(torch.int32)


def _groups(W: torch.Tensor, group_size: int) -> torch.Tensor:
    """W (out, in) as (out, n_groups, group_size), the last group padded with zeros when it is short:
    the padding changes no group's grid, whose range always includes 0 (:func:`find_params`)."""
    pad = -W.shape[1] % group_size
    return (torch.nn.functional.pad(W, (0, pad)) if pad else W).reshape(W.shape[0], -1, group_size)


def make_grid(W: torch.Tensor, bits: int, group_size: int | None = None, symmetric: bool = False) -> QuantGrid:
    """Grid of W (out, in): one (scale, zero) per row, or per row and group of `group_size` columns."""
    cols = W.shape[1]
    gs = cols if group_size is None or group_size >= cols else group_size
    groups = _groups(W, gs)
    s, z = find_params(groups.reshape(-1, gs), bits, symmetric)  # every (row, group) as one row
    return QuantGrid(s.reshape(groups.shape[:2]), z.reshape(groups.shape[:2]), bits, gs)


def dequantize_on_grid(W: torch.Tensor, grid: QuantGrid) -> torch.Tensor:
    """Fake-quantise every column of W on `grid` (the grid's groups along the input dimension)."""
    out, cols = W.shape
    Q = quantize(_groups(W.float(), grid.group_size), grid.scale[..., None], grid.zero[..., None], grid.maxq)
    return Q.reshape(out, -1)[:, :cols].contiguous()


def quantize_weight(W: torch.Tensor, bits: int, group_size: int | None = None, symmetric: bool = False,
                    mask: torch.Tensor | None = None) -> tuple[torch.Tensor, QuantGrid]:
    """RTN: the fake-quantised W (fp32, same shape) and its grid.

    Args:
        mask: optional boolean (out, in) tensor of *pruned* positions; they stay exactly zero.
    """
    W = W.float()
    if mask is not None:
        W = W.masked_fill(mask, 0.0)
    grid = make_grid(W, bits, group_size, symmetric)
    Q = dequantize_on_grid(W, grid)
    if mask is not None:
        Q = Q.masked_fill(mask, 0.0)
    return Q, grid


def storage_bits(out_features: int, in_features: int, bits: int, group_size: int | None,
                 symmetric: bool, scale_bits: int = 16) -> int:
    """Bits to store one quantised matrix: codes plus an fp16 scale (and a `bits`-wide zero point
    unless symmetric) per (row, group) — how GPTQ/AWQ checkpoints pack them."""
    gs = in_features if group_size is None or group_size >= in_features else group_size
    n_groups = -(-in_features // gs)
    per_group = scale_bits + (0 if symmetric else bits)
    return out_features * in_features * bits + out_features * n_groups * per_group


def solve(W: torch.Tensor, stats: Mapping[str, Any], cfg: CompressConfig) -> LayerResult:
    """The compressor's per-linear step (no statistics needed)."""
    return LayerResult(quantize_weight(W, cfg.bits, cfg.group_size, cfg.symmetric)[0])


COMPRESSOR = Compressor("rtn", solve, stats=(), description="round to nearest on a min-max grid, no calibration")
