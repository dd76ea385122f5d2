"""The column-by-column OBS sweep that SparseGPT and GPTQ share (Frantar & Alistarh 2022, 2023).

Columns are visited left to right in blocks of ``blocksize``. Each column's weights ``w`` are
replaced by ``q`` (pruned to 0 by SparseGPT, rounded by GPTQ); the error ``(w - q) / d``, with
``d`` the column's diagonal entry of the upper Cholesky factor of H⁻¹, is pushed onto the columns
not yet visited, within the block at once and onto the rest of the matrix once per block. The two
methods differ only in how a column's ``q`` is chosen, which the caller supplies.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

StartBlock = Callable[[int, int, torch.Tensor, torch.Tensor], None]
"""``start_block(i1, i2, W1, Hinv1)``: called as block [i1, i2) starts; W1 is its working copy (out, b)."""
Target = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]
"""``target(col, i, w, W1)``: the value column ``col`` (``i`` within the block, current weights ``w``) takes."""


def obs_sweep(W: torch.Tensor, Hinv: torch.Tensor, blocksize: int, target: Target,
              start_block: StartBlock | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the sweep on W (out, in) in place; returns (the new weights Q, per-row loss Σ (w − q)² / d² / 2).

    ``W`` is modified (its later columns take the propagated errors), so pass a copy you own;
    ``target`` may read ``W`` (GPTQ's group grids do) and ``W1``.
    """
    rows, cols = W.shape
    Q = torch.zeros_like(W)
    losses = torch.zeros(rows, device=W.device)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()  # (out, b)
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]  # (b, b)
        if start_block is not None:
            start_block(i1, i2, W1, Hinv1)
        for i in range(i2 - i1):
            w = W1[:, i]
            d = Hinv1[i, i]
            q = target(i1 + i, i, w, W1)
            Q1[:, i] = q
            losses += (w - q) ** 2 / d**2 / 2
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return Q, losses
