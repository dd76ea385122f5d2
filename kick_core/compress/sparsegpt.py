"""SparseGPT: one-shot pruning with optimal-brain-surgeon weight updates (Frantar & Alistarh,
ICML 2023, https://arxiv.org/abs/2301.00774; the study copies ``SparseGPT.fasterprune`` of
IST-DASLab/sparsegpt at f5c2500).

From the layer Hessian H = (2/n) Σ X Xᵀ (:class:`kick_core.compress.calib_stats.HessianStats`), columns
are swept left to right in blocks of ``blocksize``. Pruning column i sets the masked weights to
zero and spreads their error (w − q)/d over the not-yet-visited columns through the upper Cholesky
factor of H⁻¹ (d its diagonal), which minimises the layer's output error on the calibration
inputs. The unstructured mask is chosen once per column block over all rows × block columns with
score w²/d² (so every column block has the target sparsity, rows vary); the N:M mask is chosen
inside the sweep at every column i with i mod M = 0, on the already updated weights.

Shapes: W (out, in), H (in, in), Hinv (in, in) upper triangular.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kick_core.compress.layerwise import Compressor, LayerResult
from kick_core.compress.masks import nm_mask, unstructured_mask
from kick_core.compress.obs import obs_sweep
from kick_core.compress.calib_stats import fix_dead_columns, inverse_hessian_cholesky
from kick_core.config import CompressConfig
from kick_core.errors import ConfigError


def prune_weight(W: torch.Tensor, H: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None,
                 blocksize: int = 128, percdamp: float = 0.01) -> tuple[torch.Tensor, float]:
    """Prune W (out, in) given H (in, in); returns (new W in fp32, OBS loss Σ (w − q)² / d² / 2)."""
    if nm is not None and blocksize % nm[1]:
        raise ConfigError(
            f"blocksize={blocksize} must be a multiple of M={nm[1]} for structure '{nm[0]}:{nm[1]}' "
            "(N:M groups must not straddle column blocks). Fix: use blocksize 128."
        )
    W = W.float().clone()
    H = H.float().clone()
    fix_dead_columns(W, H)
    Hinv = inverse_hessian_cholesky(H, percdamp)
    block: dict[str, torch.Tensor] = {}  # the current block's mask and diag(Hinv1)

    def start_block(i1: int, i2: int, W1: torch.Tensor, Hinv1: torch.Tensor) -> None:
        d1 = block["d1"] = torch.diag(Hinv1)  # (b,)
        block["mask"] = (unstructured_mask(W1**2 / d1.reshape(1, -1) ** 2, sparsity) if nm is None
                         else torch.zeros_like(W1, dtype=torch.bool))

    def target(col: int, i: int, w: torch.Tensor, W1: torch.Tensor) -> torch.Tensor:
        mask1 = block["mask"]
        if nm is not None and i % nm[1] == 0:  # N:M: each group's mask from its current weights
            j = i + nm[1]
            mask1[:, i:j] = nm_mask(W1[:, i:j] ** 2 / block["d1"][i:j].reshape(1, -1) ** 2, *nm)
        return w.masked_fill(mask1[:, i], 0.0)

    Q, losses = obs_sweep(W, Hinv, blocksize, target, start_block)
    return Q, float(losses.sum())


def solve(W: torch.Tensor, stats: Mapping[str, Any], cfg: CompressConfig) -> LayerResult:
    """The compressor's per-linear step, from the layer's HessianStats."""
    W_new, loss = prune_weight(W, stats["hessian"].H, cfg.target_sparsity, cfg.nm, cfg.blocksize, cfg.percdamp)
    return LayerResult(W_new, loss)


COMPRESSOR = Compressor("sparsegpt", solve, stats=("hessian",), description="OBS updates from the layer Hessian")
