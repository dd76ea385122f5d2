"""Compress a loaded model in place: ``compress(model, tokenizer, cfg) -> CompressionReport``.

``COMPRESSORS`` maps method names to :class:`~kick_core.compress.layerwise.Compressor` entries;
calibrated ones run on the one layer-sequential driver (:mod:`~kick_core.compress.layerwise`),
statistics-free ones on each weight alone. A new method is a module with a ``solve`` function
and a ``COMPRESSOR`` entry, registered in the method table (:mod:`kick_core.methods`); the config
and this registry both read that table. ``quantize_after`` composes a pruner with rtn/gptq
(:func:`~kick_core.compress.quantised.then_quantise`). bitsandbytes methods quantise while the
model loads (:mod:`~kick_core.compress.bnb`); ``compress`` only measures such a model. For a
cached, reloadable result from a config use :func:`kick_core.compress.cache.load_or_compress`.
See README.md for the methods.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

import importlib

from kick_core.compress.layerwise import Compressor, LayerResult, run_layerwise, solve_uncalibrated
from kick_core.compress.masks import check_nm
from kick_core.compress.quantised import layer_stored_bits, quant_spec, storage_format, then_quantise
from kick_core.compress.report import (DENSE, FAKE_QUANT, CompressionReport, bnb_numerics, log_sanity, measure_size,
                                       measure_sparsity)
from kick_core import methods
from kick_core.config import CompressConfig
from kick_core.errors import ConfigError, HardwareError, lookup
from kick_core.log import StageTimes, timed
from kick_core.models import compression_scope, decoder_blocks, decoder_blocks_path, linear_layers, weight_view

log = logging.getLogger(__name__)

def _build(method: methods.Method) -> Compressor:
    if method.compressor is None:  # dense; load-time methods (the model is quantised by from_pretrained)
        return Compressor(method.name, None, description=method.description)
    module, _, attr = method.compressor.partition(":")
    return getattr(importlib.import_module(module), attr)


COMPRESSORS: dict[str, Compressor] = {m.name: _build(m) for m in methods.METHODS.values()}
"""Method name -> Compressor, built from the method table. Load-time (bnb_*) entries have no solve
step: the model is quantised by ``from_pretrained`` (see :func:`kick_core.compress.cache.load_or_compress`)."""


def get_compressor(method: str) -> Compressor:
    """The registry entry for `method` (UnknownNameError with close matches otherwise).

    A method registered in the table after import is built on first use.
    """
    if method not in COMPRESSORS and method in methods.METHODS:
        COMPRESSORS[method] = _build(methods.METHODS[method])
    return lookup(COMPRESSORS, method, "compression method")


def resolve(cfg: CompressConfig) -> Compressor:
    """The compressor `cfg` runs: its method's entry, followed by rtn/gptq when ``quantize_after`` is set."""
    compressor = get_compressor(cfg.method)
    if cfg.quantize_after is not None:
        return then_quantise(compressor, cfg.quantize_after)
    return compressor


def validate(model: nn.Module, cfg: CompressConfig) -> Compressor:
    """Check `cfg` against the registry and the model's shapes before any heavy work."""
    compressor = resolve(cfg)
    if methods.family(cfg.method) == "load-time":
        from kick_core.compress import bnb

        mode = bnb.MODES[cfg.method]
        want = "Linear8bitLt" if mode == "int8" else "Linear4bit"
        kinds = {type(m).__name__ for b in decoder_blocks(model) for m in linear_layers(b).values()}
        if kinds != {want}:
            raise ConfigError(
                f"method={cfg.method!r} quantises while loading, but this model's decoder linears are "
                f"{', '.join(sorted(kinds))}, not {want}. Fix: use kick_core.compress.cache.load_or_compress, or "
                "load_model(cfg, quantization_config=kick_core.compress.bnb.bnb_config(compress_cfg))."
            )
        bnb.check_shapes(model, cfg)
        return compressor
    prefix = decoder_blocks_path(model)
    for i, block in enumerate(decoder_blocks(model)):
        for name, layer in linear_layers(block).items():
            W = weight_view(layer)
            if compressor.solve is not None and W.device.type == "meta":
                raise HardwareError(
                    f"{prefix}.{i}.{name} has no weights in memory (device 'meta': offloaded to CPU/disk by "
                    "device_map). Compression rewrites every decoder weight in place, so the model must fit in "
                    "GPU + CPU memory without disk offload. Fix: load it on fewer, larger devices or on the CPU."
                )
            if methods.family(cfg.method) == "prune" and cfg.nm is not None:
                check_nm(W.shape[1], *cfg.nm, name=f"{prefix}.{i}.{name}")
    return compressor


def compress(model: nn.Module, tokenizer: Any, cfg: CompressConfig, *, calib: Any = None, progress: bool = True,
             measure_error: bool = True, offload: bool = False, batch_size: int = 1,
             world_seed: int = 0) -> CompressionReport:
    """Compress the linears of every decoder block of `model` in place, as `cfg` says.

    Embeddings, norms and the LM head are never touched. An N:M structure is applied whatever
    `cfg.sparsity` says; unstructured sparsity 0 prunes nothing. For bnb_* the model must already
    have been loaded quantised (:func:`kick_core.compress.cache.load_or_compress` does that); this
    then only measures it.

    Args:
        calib: a :class:`kick_core.data.CalibrationSet` (or an (n, seqlen) tensor of token ids) to use
            instead of sampling one from ``cfg.calib_dataset`` / ``n_calib`` / ``calib_seqlen`` / ``calib_seed``.
        measure_error: report ‖WX − ŴX‖²/‖WX‖² per linear (costs one in × in matrix per linear of a block).
        offload: keep calibration activations on the CPU between blocks.
        batch_size: calibration sequences per forward pass.
        world_seed: the embedded world to read when ``cfg.calib_dataset == 'world'``.

    Returns:
        The CompressionReport (realised sparsity, per-linear errors, calibration hash, stage times,
        numerics and sizes as stored).
    """
    compressor = validate(model, cfg)
    times = StageTimes()
    target = cfg.target_sparsity
    acts = compressor.solve is not None and (cfg.nm is not None or target > 0 or cfg.bits is not None)
    outcomes: dict[str, Any] = {}
    calib_info = None
    if methods.family(cfg.method) == "load-time":
        log.info("%s: quantised by bitsandbytes while loading; measuring it", cfg.method)
    elif not acts:
        log.info("%s: nothing to compress (target sparsity %g)", cfg.method, target)
    elif compressor.needs_calibration:
        if calib is None:
            from kick_core.data.calibration import calibration_batches

            with timed("compress/calibration_data", times):
                calib = calibration_batches(tokenizer, cfg.calib_dataset, cfg.n_calib, cfg.calib_seqlen,
                                            cfg.calib_seed, world_seed=world_seed)
        elif isinstance(calib, torch.Tensor):
            from kick_core.data.calibration import from_ids

            calib = from_ids(calib)
        calib_info = calib.info()
        with timed(f"compress/{cfg.method}", times):
            outcomes = run_layerwise(model, compressor, cfg, calib.input_ids, batch_size=batch_size,
                                     offload=offload, measure_error=measure_error, progress=progress)
    else:
        with timed(f"compress/{cfg.method}", times):
            outcomes = solve_uncalibrated(model, compressor, cfg, progress=progress)
    with timed("compress/measure", times):
        if methods.family(cfg.method) == "load-time":
            from kick_core.compress import bnb

            mode = bnb.MODES[cfg.method]
            sparsity = measure_sparsity(model, bnb.dequantized)
            numerics, quant = bnb_numerics(mode), {"scheme": cfg.method, "bits": cfg.bits, "mode": mode}
            size = measure_size(model, bnb.stored_bits, _BNB_FORMAT[mode])
        else:
            sparsity = measure_sparsity(model)
            quant = quant_spec(cfg)
            numerics = FAKE_QUANT if quant is not None and acts else DENSE
            size = measure_size(model, layer_stored_bits(cfg) if quant is not None and acts else lambda layer: None,
                                storage_format(cfg) if acts else storage_format(CompressConfig()))
        if quant is not None:
            quant["bits_per_weight"] = size["decoder_linears"]["bits_per_weight"]
    report = CompressionReport(
        method=cfg.method,
        config=asdict(cfg),
        target_sparsity=target,
        sparsity=sparsity,
        scope=tuple(compression_scope(model)),
        layers={name: {"loss": o.loss, "rel_error": o.rel_error} for name, o in outcomes.items()},
        calibration=calib_info,
        times=times.as_dict(),
        numerics=numerics,
        quant=quant,
        size=size,
    )
    log_sanity(report)
    return report


_BNB_FORMAT = {
    "int8": "bitsandbytes Linear8bitLt: int8 codes + fp32 scale per output row (outliers above the threshold "
            "are computed in fp16 at run time, not stored)",
    "nf4": "bitsandbytes Linear4bit: packed 4-bit NF4 codes + fp32 absmax per 64 weights + 16-entry code book",
    "fp4": "bitsandbytes Linear4bit: packed 4-bit FP4 codes + fp32 absmax per 64 weights + 16-entry code book",
}


__all__ = ["COMPRESSORS", "CompressionReport", "Compressor", "LayerResult", "compress", "get_compressor", "resolve",
           "validate"]
