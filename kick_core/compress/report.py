"""The compression report: what a compressor actually did to the model, measured afterwards.

Sparsity is always *measured* on the weights (zeros / entries), never copied from the config:
per decoder weight matrix, per decoder block, over all decoder linears (``overall``, the study's
``check_sparsity``) and over every parameter of the model (``model``: embeddings, norms and LM
head included, tied weights counted once). Alongside: the scope, per-linear losses and relative
output errors, the calibration sample hash, and time and peak memory per stage.

Quantised models also say what was evaluated (``numerics``: simulated fake-quant weights or real
bitsandbytes kernels) and how big the weights would be as stored (``size``, :func:`measure_size`):
bits per decoder weight *including* scales and zero points, and bytes of the decoder linears and
of the whole model. The sizes count what a packed checkpoint holds, not what the cache file holds
(the cache keeps fake-quant weights dequantised in the model dtype so they reload bit-identically).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kick_core.models import decoder_blocks, decoder_blocks_path, linear_layers, weight_view

log = logging.getLogger(__name__)


DENSE = "dense fp weights (model dtype)"
FAKE_QUANT = "fake-quant (dequantised fp weights)"
"""Numerics of rtn/gptq/awq (and sparse + quantised): weights snapped to the low-bit grid, then
stored and multiplied in the model dtype. Quality is that of the low-bit model; speed and memory
at evaluation are those of the dense one."""


@torch.no_grad()
def measure_sparsity(model: nn.Module, weight: Callable[[nn.Module], torch.Tensor] = weight_view) -> dict[str, Any]:
    """Realised sparsity: ``overall`` (decoder linears), ``model`` (all parameters), ``min``/``max``
    over matrices, ``per_matrix`` {full name: fraction} and ``per_block`` {index: fraction}.

    Args:
        weight: the (out, in) values of a decoder linear (default: its weight; bitsandbytes layers
            pass a dequantiser, since their packed codes are not the values).
    """
    prefix = decoder_blocks_path(model)
    per_matrix: dict[str, float] = {}
    per_block: dict[str, float] = {}
    zeros_all = total_all = 0
    counted: set[int] = set()
    for i, block in enumerate(decoder_blocks(model)):
        zeros_b = total_b = 0
        for name, layer in linear_layers(block).items():
            W = weight(layer)
            counted.add(id(layer.weight))
            zeros, total = W.numel() - int(torch.count_nonzero(W)), W.numel()
            per_matrix[f"{prefix}.{i}.{name}"] = zeros / total
            zeros_b, total_b = zeros_b + zeros, total_b + total
        per_block[str(i)] = zeros_b / total_b if total_b else 0.0
        zeros_all, total_all = zeros_all + zeros_b, total_all + total_b
    model_zeros, model_total = zeros_all, total_all
    for p in model.parameters():  # parameters() yields tied tensors once
        if id(p) in counted:
            continue
        model_zeros += p.numel() - int(torch.count_nonzero(p))  # no int64 copy, as (p == 0).sum() makes
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


def _bits_of(t: torch.Tensor) -> int:
    return t.numel() * t.element_size() * 8


@torch.no_grad()
def measure_size(model: nn.Module, stored_bits: Callable[[nn.Module], int | None], fmt: str) -> dict[str, Any]:
    """Sizes as stored: the decoder linears' weights (``stored_bits(layer)``, None = its tensor as
    is) and the whole model (those plus every other parameter in its dtype, tied ones once).

    Returns:
        {'dtype', 'format', 'decoder_linears': {'weights', 'dense_bytes', 'stored_bytes',
        'bits_per_weight'}, 'model': {'params', 'dense_bytes', 'stored_bytes'}}; ``dense_bytes`` is
        the size in the model's floating dtype, bits per weight include scales and zero points.
    """
    floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
    dtype = max(set(floats), key=floats.count) if floats else torch.float32
    dense_bits = torch.finfo(dtype).bits
    weights = lin_bits = 0
    counted: set[int] = set()
    for block in decoder_blocks(model):
        for layer in linear_layers(block).values():
            out, inp = (layer.out_features, layer.in_features) if hasattr(layer, "out_features") \
                else tuple(weight_view(layer).shape)
            bits = stored_bits(layer)
            weights += out * inp
            lin_bits += bits if bits is not None else _bits_of(layer.weight)
            counted.add(id(layer.weight))
    other_params = other_bits = 0
    for p in model.parameters():
        if id(p) not in counted:
            other_params += p.numel()
            other_bits += _bits_of(p)
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "format": fmt,
        "decoder_linears": {"weights": weights, "dense_bytes": weights * dense_bits // 8,
                            "stored_bytes": -(-lin_bits // 8),
                            "bits_per_weight": lin_bits / weights if weights else 0.0},
        "model": {"params": weights + other_params, "dense_bytes": (weights * dense_bits + other_bits) // 8,
                  "stored_bytes": -(-(lin_bits + other_bits) // 8)},
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
    numerics: str = DENSE
    """What the evaluation computes with: DENSE, FAKE_QUANT, or a load-time loader's (bnb.numerics(mode))."""
    quant: dict[str, Any] | None = None
    """Quantisation scheme (scheme, bits, group_size, symmetric, act_order, scale/zero-point bits); None if none."""
    size: dict[str, Any] | None = None
    """See :func:`measure_size`: bits per weight and bytes as stored."""
    cache_note: str | None = None
    """Why the result is not cached, when it is not (bitsandbytes quantises while loading)."""

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
        size = ""
        if self.quant is not None and self.size is not None:
            lin = self.size["decoder_linears"]
            size = (f"; {self.numerics}, {lin['bits_per_weight']:.4f} bits/weight incl. scales and zero points, "
                    f"decoder linears {lin['stored_bytes'] / 2**20:.2f} MiB stored ({lin['dense_bytes'] / 2**20:.2f} "
                    f"MiB dense)")
        return (f"{self.method}: target {self.target_sparsity:.4f}, realised {s['overall']:.4f} over "
                f"{s['n_matrices']} decoder matrices (min {s['min']:.4f}, max {s['max']:.4f}), "
                f"{s['model']:.4f} of all parameters{err}{size}")


def log_sanity(report: CompressionReport) -> None:
    """The sanity facts at INFO, as the study's 'Sparsity sanity check' line (plus size when quantised)."""
    log.info("sparsity sanity check: %s", report.summary())
