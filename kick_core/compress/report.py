"""The compression report: what a compressor actually did to the model, measured afterwards.

Sparsity is always *measured* on the weights (zeros / entries), never copied from the config:
per decoder weight matrix, per decoder block, over all decoder linears (``overall``, the study's
``check_sparsity``) and over every parameter of the model (``model``: embeddings, norms and LM
head included, tied weights counted once). Alongside: the scope, per-linear losses and relative
output errors, the calibration sample hash, and time and peak memory per stage.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kick_core.models import decoder_blocks, decoder_blocks_path, linear_layers, weight_view

log = logging.getLogger(__name__)


@torch.no_grad()
def measure_sparsity(model: nn.Module) -> dict[str, Any]:
    """Realised sparsity: ``overall`` (decoder linears), ``model`` (all parameters), ``min``/``max``
    over matrices, ``per_matrix`` {full name: fraction} and ``per_block`` {index: fraction}."""
    prefix = decoder_blocks_path(model)
    per_matrix: dict[str, float] = {}
    per_block: dict[str, float] = {}
    zeros_all = total_all = 0
    for i, block in enumerate(decoder_blocks(model)):
        zeros_b = total_b = 0
        for name, layer in linear_layers(block).items():
            W = weight_view(layer)
            zeros, total = int((W == 0).sum()), W.numel()
            per_matrix[f"{prefix}.{i}.{name}"] = zeros / total
            zeros_b, total_b = zeros_b + zeros, total_b + total
        per_block[str(i)] = zeros_b / total_b if total_b else 0.0
        zeros_all, total_all = zeros_all + zeros_b, total_all + total_b
    model_zeros = model_total = 0
    for p in model.parameters():  # parameters() yields tied tensors once
        model_zeros += int((p == 0).sum())
        model_total += p.numel()
    values = list(per_matrix.values())
    return {
        "overall": zeros_all / total_all if total_all else 0.0,
        "model": model_zeros / model_total if model_total else 0.0,
        "min": min(values, default=0.0),
        "max": max(values, default=0.0),
        "n_matrices": len(values),
        "per_matrix": per_matrix,
        "per_block": per_block,
    }


@dataclass(frozen=True)
class CompressionReport:
    """Returned by every compressor; ``as_dict()`` goes into the run record as ``compression``."""

    method: str
    config: dict[str, Any]
    """The resolved CompressConfig as a dict."""
    target_sparsity: float
    sparsity: dict[str, Any]
    """See :func:`measure_sparsity`."""
    scope: tuple[str, ...]
    """Full names of the linears compression may touch (every linear of every decoder block)."""
    layers: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Full linear name -> {'loss': method's own loss or None, 'rel_error': ‖WX − ŴX‖²/‖WX‖² or None}."""
    calibration: dict[str, Any] | None = None
    """Dataset, n, seqlen, seed and sha256 of the calibration token ids; None without calibration."""
    times: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Stage -> {'seconds', 'peak_rss_mb', 'peak_gpu_mb'} (kick_core.log.timed)."""
    fingerprint: str | None = None
    """Cache key (kick_core.models.fingerprint) when produced through load_or_compress."""
    cached: bool = False
    """True when the weights were restored from the cache rather than computed now."""

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["scope"] = list(self.scope)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompressionReport:
        """Inverse of :meth:`as_dict` (unknown keys are ignored, for reports of later versions)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["scope"] = tuple(kwargs.get("scope", ()))
        return cls(**kwargs)

    @property
    def rel_error(self) -> float | None:
        """Mean relative output error over the decoder linears (None when not measured)."""
        errors = [v["rel_error"] for v in self.layers.values() if v.get("rel_error") is not None]
        return sum(errors) / len(errors) if errors else None

    def summary(self) -> str:
        """One line: method, target, realised sparsity (decoder and model), min/max over matrices."""
        s = self.sparsity
        err = f", mean rel. output error {self.rel_error:.4f}" if self.rel_error is not None else ""
        return (f"{self.method}: target {self.target_sparsity:.4f}, realised {s['overall']:.4f} over "
                f"{s['n_matrices']} decoder matrices (min {s['min']:.4f}, max {s['max']:.4f}), "
                f"{s['model']:.4f} of all parameters{err}")


def log_sanity(report: CompressionReport) -> None:
    """The sanity facts at INFO, as the study's 'Sparsity sanity check' line."""
    log.info("sparsity sanity check: %s", report.summary())
