"""bitsandbytes LLM.int8() and NF4/FP4: quantisation applied *while loading* the model.

Unlike the other compressors, these run inside ``from_pretrained`` through transformers'
``BitsAndBytesConfig``: every ``nn.Linear`` except the LM head becomes a ``Linear8bitLt`` or
``Linear4bit`` computing with real low-bit kernels (not simulated weights).

What the installed bitsandbytes supports depends on its version and the device. ``probe(device)``
finds out by running each kernel on a tiny tensor in inference mode; ``check_supported`` calls it
before any model loads and raises a HardwareError naming what is missing — kick never silently
falls back to an unquantised model. bitsandbytes 0.50 runs all three modes on CPU and CUDA
(measured here on CPU). On a CPU with AVX512-BF16, its 4-bit inference path repacks each weight
on the first forward pass, which needs out_features % 32 == 0 and in_features % 64 == 0 and
rounds the absmax scales to bfloat16; :func:`check_shapes` rejects other shapes after loading,
before any forward pass, instead of letting the first forward crash.

Sizes and sparsity read the real stored tensors: :func:`stored_bits` (codes plus absmax / row
scales) and :func:`dequantized` (the values the kernels compute with). :data:`LOADER` is the
load-time family's :class:`~kick_core.compress.loadtime.Loader` for bnb_int8 / bnb_nf4 / bnb_fp4
(the method table names it; :mod:`~kick_core.compress.loadtime` runs it).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import torch

from kick_core.compress.report import measure_size, measure_sparsity
from kick_core.config import CompressConfig, ModelConfig
from kick_core.errors import ConfigError, HardwareError, MissingDependencyError
from kick_core.models import decoder_blocks, decoder_blocks_path, linear_layers, load_model

log = logging.getLogger(__name__)

MODES = {"bnb_int8": "int8", "bnb_nf4": "nf4", "bnb_fp4": "fp4"}
LAYER_TYPES = {"int8": "Linear8bitLt", "nf4": "Linear4bit", "fp4": "Linear4bit"}
"""Mode -> the class bitsandbytes puts in place of each decoder ``nn.Linear``."""
FORMATS = {
    "int8": "bitsandbytes Linear8bitLt: int8 codes + fp32 scale per output row (outliers above the threshold "
            "are computed in fp16 at run time, not stored)",
    "nf4": "bitsandbytes Linear4bit: packed 4-bit NF4 codes + fp32 absmax per 64 weights + 16-entry code book",
    "fp4": "bitsandbytes Linear4bit: packed 4-bit FP4 codes + fp32 absmax per 64 weights + 16-entry code book",
}
"""Mode -> the report's ``size.format``: what the stored size counts."""


def _import_bnb():
    try:
        import bitsandbytes
    except ImportError as err:
        raise MissingDependencyError(
            "bitsandbytes is not installed (needed for method bnb_int8 / bnb_nf4 / bnb_fp4). Fix: "
            "pip install 'kick[gpu]' (or pip install bitsandbytes), or use method: rtn for simulated "
            f"quantisation. ({err})"
        ) from None
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # int8 logs a line per layer per forward
    return bitsandbytes


@lru_cache(maxsize=8)
def probe(device: str) -> dict[str, bool | str]:
    """Which bitsandbytes modes work on `device` ('cpu', 'cuda', 'cuda:1', ...): runs each kernel once."""
    bnb = _import_bnb()
    result: dict[str, bool | str] = {"version": bnb.__version__}
    x = torch.randn(4, 64, device=device)
    for mode in ("int8", "nf4", "fp4"):
        try:
            if mode == "int8":
                layer = bnb.nn.Linear8bitLt(64, 32, bias=False, has_fp16_weights=False, threshold=6.0)
            else:
                layer = bnb.nn.Linear4bit(64, 32, bias=False, compute_dtype=torch.float32, quant_type=mode)
            layer = layer.to(device).eval()
            with torch.no_grad():  # the inference path (CPU 4-bit repacks weights only there)
                y = layer(x if mode != "int8" else x.to(torch.float16 if x.is_cuda else torch.float32))
            result[mode] = bool(torch.isfinite(y.float()).all())
        except Exception as err:  # noqa: BLE001 - any kernel failure means "not supported here"
            log.debug("bitsandbytes %s on %s failed: %s", mode, device, err)
            result[mode] = False
    return result


def check_supported(cfg: CompressConfig, device: str | torch.device) -> None:
    """Raise HardwareError (before loading) if `cfg.method` cannot run on `device`."""
    mode = MODES[cfg.method]
    device = str(device)
    support = probe(device)
    if not support.get(mode):
        raise HardwareError(
            f"method={cfg.method!r} ({mode}) does not run on device {device!r} with bitsandbytes "
            f"{support['version']}: its {mode} kernels failed there. It needs a CUDA GPU (or a "
            "bitsandbytes build with a backend for this device). Fix: run on a CUDA machine, or use "
            "method: rtn (simulated quantisation on any device)."
        )


def check_shapes(model: torch.nn.Module, cfg: CompressConfig) -> None:
    """Raise HardwareError if a 4-bit layer of `model` has a shape this CPU's bitsandbytes kernel cannot run."""
    if MODES[cfg.method] == "int8":
        return
    prefix = decoder_blocks_path(model)
    for i, block in enumerate(decoder_blocks(model)):
        for name, layer in linear_layers(block).items():
            if layer.weight.device.type != "cpu" or not getattr(layer, "support_avx512bf16_for_cpu", False):
                continue
            if layer.out_features % 32 or layer.in_features % 64:
                raise HardwareError(
                    f"{prefix}.{i}.{name} is {layer.in_features} -> {layer.out_features}: bitsandbytes "
                    f"{_import_bnb().__version__}'s CPU 4-bit kernel (AVX512-BF16 path) needs out_features % 32 "
                    "== 0 and in_features % 64 == 0. Fix: run on a CUDA GPU, or use method: rtn with bits: 4."
                )


def bnb_config(cfg: CompressConfig, compute_dtype: torch.dtype = torch.float32) -> Any:
    """The transformers ``BitsAndBytesConfig`` for bnb_int8 / bnb_nf4 / bnb_fp4."""
    _import_bnb()
    from transformers import BitsAndBytesConfig

    mode = MODES[cfg.method]
    if mode == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=mode, bnb_4bit_compute_dtype=compute_dtype,
                              bnb_4bit_use_double_quant=False)


def storage_bits(model: torch.nn.Module) -> int:
    """Bytes x 8 of the loaded model's parameters and buffers as stored (packed low-bit weights included)."""
    return int(model.get_memory_footprint()) * 8


def _bits(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size() * 8


def stored_bits(layer: torch.nn.Module) -> int | None:
    """Bits of a bitsandbytes layer's weight as stored: codes + row scales (int8) or + absmax and code
    book (4-bit); None for a layer bitsandbytes did not quantise."""
    w = layer.weight
    kind = type(layer).__name__
    if kind == "Linear8bitLt":
        return _bits(w.data) + _bits(getattr(w, "SCB", None) if getattr(w, "SCB", None) is not None
                                     else getattr(layer.state, "SCB", None))
    if kind in ("Linear4bit", "LinearNF4", "LinearFP4") and getattr(w, "quant_state", None) is not None:
        qs = w.quant_state
        nested = _bits(qs.state2.absmax) + _bits(qs.state2.code) if getattr(qs, "nested", False) else 0
        return _bits(w.data) + _bits(qs.absmax) + _bits(qs.code) + nested
    return None


@torch.no_grad()
def dequantized(layer: torch.nn.Module) -> torch.Tensor:
    """The (out, in) fp32 values a bitsandbytes layer computes with (its weight for any other layer)."""
    import copy

    bnb = _import_bnb()
    w = layer.weight
    kind = type(layer).__name__
    if kind == "Linear8bitLt":
        scb = w.SCB if getattr(w, "SCB", None) is not None else layer.state.SCB
        return w.data.float() * (scb.float() / 127).reshape(-1, 1)
    if getattr(w, "quant_state", None) is not None:
        data, qs = w.data, w.quant_state
        if getattr(qs, "packing_format_for_cpu", False):  # repacked by a CPU forward pass: undo on copies
            data, qs = bnb.functional._convert_weight_packed_for_cpu_inverse(data.clone(), copy.deepcopy(qs))
        return bnb.functional.dequantize_4bit(data, qs).float()
    return w.data.float()


def numerics(mode: str) -> str:
    """The report's ``numerics``: real low-bit weights and kernels ('bitsandbytes nf4 kernels')."""
    return f"bitsandbytes {mode} kernels"


class BitsAndBytes:
    """bitsandbytes as a load-time :class:`~kick_core.compress.loadtime.Loader`: ``BitsAndBytesConfig``
    inside ``from_pretrained``, measured from the stored codes and scales."""

    library = "bitsandbytes"

    def check_supported(self, cfg: CompressConfig, device: torch.device) -> None:
        check_supported(cfg, device)

    def load(self, model_cfg: ModelConfig, cfg: CompressConfig,
             compute_dtype: torch.dtype) -> tuple[torch.nn.Module, Any]:
        return load_model(model_cfg, quantization_config=bnb_config(cfg, compute_dtype))

    def check_loaded(self, model: torch.nn.Module, cfg: CompressConfig) -> None:
        want = LAYER_TYPES[MODES[cfg.method]]
        kinds = {type(m).__name__ for b in decoder_blocks(model) for m in linear_layers(b).values()}
        if kinds != {want}:
            raise ConfigError(
                f"method={cfg.method!r} quantises while loading, but this model's decoder linears are "
                f"{', '.join(sorted(kinds))}, not {want}. Fix: use kick_core.compress.model_cache.load_or_compress, or "
                "load_model(cfg, quantization_config=kick_core.compress.bnb.bnb_config(compress_cfg))."
            )
        check_shapes(model, cfg)

    def measure(self, model: torch.nn.Module, cfg: CompressConfig) -> dict[str, Any]:
        mode = MODES[cfg.method]
        return {"sparsity": measure_sparsity(model, dequantized), "numerics": numerics(mode),
                "quant": {"scheme": cfg.method, "bits": cfg.bits, "mode": mode},
                "size": measure_size(model, stored_bits, FORMATS[mode])}


LOADER = BitsAndBytes()
"""The method table's ``loader`` of bnb_int8, bnb_nf4 and bnb_fp4."""
