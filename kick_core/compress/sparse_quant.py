"""Sparse + quantised: a pruning compressor followed by rtn/gptq in the same pass, its mask kept.

:func:`then_quantise` turns a pruning compressor into SparseGPT-style *sparse + quantised*
(``quantize_after: rtn|gptq``): in the one driver pass each linear is pruned, then quantised
with the pruned positions as a mask, so they stay exactly zero (GPTQ propagates their error to
the kept weights; RTN re-zeroes them after rounding, since a grid with a zero point only maps 0
to 0 up to rounding of the zero point). What the result holds as stored is
:mod:`~kick_core.compress.bit_accounting`'s business.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kick_core.compress import gptq, rtn
from kick_core.compress.layerwise import Compressor, LayerResult
from kick_core.config import CompressConfig


def then_quantise(prune: Compressor, quant: str) -> Compressor:
    """`prune` followed, per linear and in the same pass, by `quant` ('rtn' or 'gptq') with the mask kept."""

    def solve(W: torch.Tensor, stats: Mapping[str, Any], cfg: CompressConfig) -> LayerResult:
        pruned = prune.solve(W, stats, cfg)
        mask = pruned.weight == 0  # (out, in), True = pruned
        if quant == "gptq":
            q = gptq.solve(pruned.weight, stats, cfg, mask=mask)
        else:
            q = LayerResult(rtn.quantize_weight(pruned.weight, cfg.bits, cfg.group_size, cfg.symmetric, mask=mask)[0])
        return LayerResult(q.weight, q.loss if q.loss is not None else pruned.loss)

    stats = tuple(dict.fromkeys(prune.stats + (("hessian",) if quant == "gptq" else ())))
    return Compressor(f"{prune.name}+{quant}", solve, stats=stats,
                      description=f"{prune.description}, then {quant} with the mask kept")
