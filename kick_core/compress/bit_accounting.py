"""Bit accounting of fake-quantised weights: the scheme record and what a packed checkpoint holds.

* :func:`quant_spec` is the report's ``quant`` section (rtn, gptq, awq, or a pruner's
  ``quantize_after``);
* :func:`stored_bits` counts what a packed checkpoint of one fake-quantised matrix holds (the
  codes, an fp16 scale and a ``bits``-wide zero point per (row, group), AWQ's per-linear fp16 input
  scales, GPTQ act-order's int32 group index per input column), which
  :func:`kick_core.compress.report.measure_size` sums through :func:`layer_stored_bits`;
* :func:`storage_format` names, in one line, what was counted.

Worked example: 4-bit, group 128, asymmetric, a (4096, 4096) matrix: 4096·4096·4 code bits plus
4096·32 groups·(16 + 4) bits = 4 + 20/128 = 4.15625 bits per weight (tested).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from kick_core.compress import rtn
from kick_core import methods
from kick_core.config import CompressConfig
from kick_core.models import weight_view

SCALE_BITS = 16
"""Scales as fp16, as GPTQ/AWQ checkpoints store them."""


def scheme(cfg: CompressConfig) -> str | None:
    """The fake-quant scheme of `cfg` (rtn, gptq, awq), or None."""
    return cfg.quantize_after or (cfg.method if methods.family(cfg.method) == "quantise" else None)


def quant_spec(cfg: CompressConfig) -> dict[str, Any] | None:
    """The report's ``quant`` section for a fake-quant config (None when nothing is quantised)."""
    name = scheme(cfg)
    if name is None:
        return None
    return {"scheme": name, "bits": cfg.bits, "group_size": cfg.group_size, "symmetric": cfg.symmetric,
            "act_order": cfg.act_order if name == "gptq" else False,
            "true_sequential": cfg.true_sequential, "scale_bits": SCALE_BITS,
            "zero_point_bits": 0 if cfg.symmetric else cfg.bits}


def stored_bits(out_features: int, in_features: int, cfg: CompressConfig) -> int:
    """Bits of one fake-quantised (out, in) matrix as a packed checkpoint would hold it."""
    name = scheme(cfg)
    bits = rtn.storage_bits(out_features, in_features, cfg.bits, cfg.group_size, cfg.symmetric, SCALE_BITS)
    if name == "awq":
        bits += in_features * SCALE_BITS  # per-linear input scales s (not folded: see awq.py)
    if name == "gptq" and cfg.act_order and cfg.group_size is not None and cfg.group_size < in_features:
        bits += in_features * 32  # g_idx: the group of each input column after reordering
    return bits


def layer_stored_bits(cfg: CompressConfig):
    """``stored_bits`` as a function of a layer, for :func:`kick_core.compress.report.measure_size`."""

    def bits(layer: nn.Module) -> int:
        out, inp = weight_view(layer).shape
        return stored_bits(out, inp, cfg)

    return bits


def storage_format(cfg: CompressConfig) -> str:
    """One line naming what the stored size counts."""
    name = scheme(cfg)
    if name is None:
        return "dense tensors in the model dtype (pruned zeros stored explicitly; no sparse format counted)"
    group = f"group of {cfg.group_size} inputs" if cfg.group_size else "output row"
    zero = "" if cfg.symmetric else f" + {cfg.bits}-bit zero point"
    extra = " + fp16 AWQ input scale per input channel" if name == "awq" else ""
    if name == "gptq" and cfg.act_order and cfg.group_size:
        extra = " + int32 group index per input column (act-order)"
    return (f"packed {cfg.bits}-bit codes + fp16 scale{zero} per (row, {group}){extra}; the cache file holds "
            "the dequantised weights in the model dtype")
