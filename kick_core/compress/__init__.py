"""Compress a loaded model in place: ``compress(model, tokenizer, cfg) -> CompressionReport``.

``COMPRESSORS`` maps method names to :class:`~kick_core.compress.layerwise.Compressor` entries;
calibrated ones run on the one layer-sequential driver (:mod:`~kick_core.compress.layerwise`),
statistics-free ones on each weight alone. A new method (e.g. GPTQ) is a module with a ``solve``
function and a ``COMPRESSOR`` entry added here. For a cached, reloadable result from a config use
:func:`kick_core.compress.cache.load_or_compress`. See README.md for the methods.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from kick_core.compress import magnitude, sparsegpt, wanda
from kick_core.compress.layerwise import Compressor, LayerResult, run_layerwise, solve_uncalibrated
from kick_core.compress.masks import check_nm
from kick_core.compress.report import CompressionReport, log_sanity, measure_sparsity
from kick_core.config import BNB_METHODS, PRUNE_METHODS, QUANT_METHODS, CompressConfig
from kick_core.errors import ConfigError, HardwareError, lookup
from kick_core.log import StageTimes, timed
from kick_core.models import compression_scope, decoder_blocks, decoder_blocks_path, linear_layers, weight_view

log = logging.getLogger(__name__)

COMPRESSORS: dict[str, Compressor] = {
    "dense": Compressor("dense", None, description="no compression (identity)"),
    "magnitude": magnitude.COMPRESSOR,
    "wanda": wanda.COMPRESSOR,
    "sparsegpt": sparsegpt.COMPRESSOR,
}
"""Method name -> Compressor. Quantisers (rtn, gptq, awq) and bnb_* are not registered yet."""

_PLANNED = (*QUANT_METHODS, *BNB_METHODS)


def get_compressor(method: str) -> Compressor:
    """The registry entry for `method`; a clear ConfigError for methods not implemented yet."""
    if method in _PLANNED and method not in COMPRESSORS:
        raise ConfigError(
            f"method {method!r} is not implemented yet: compress() supports {', '.join(COMPRESSORS)}. "
            "Fix: use one of those, or wait for the quantisation issue."
        )
    return lookup(COMPRESSORS, method, "compression method")


def validate(model: nn.Module, cfg: CompressConfig) -> Compressor:
    """Check `cfg` against the registry and the model's shapes before any heavy work."""
    compressor = get_compressor(cfg.method)
    if cfg.quantize_after is not None:
        raise ConfigError(
            f"quantize_after={cfg.quantize_after!r} (sparse + quantised) is not implemented yet. "
            "Fix: remove quantize_after to prune only."
        )
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
            if cfg.method in PRUNE_METHODS and cfg.nm is not None:
                check_nm(W.shape[1], *cfg.nm, name=f"{prefix}.{i}.{name}")
    return compressor


def compress(model: nn.Module, tokenizer: Any, cfg: CompressConfig, *, calib: Any = None, progress: bool = True,
             measure_error: bool = True, offload: bool = False, batch_size: int = 1,
             world_seed: int = 0) -> CompressionReport:
    """Compress the linears of every decoder block of `model` in place, as `cfg` says.

    Embeddings, norms and the LM head are never touched. An N:M structure is applied whatever
    `cfg.sparsity` says; unstructured sparsity 0 prunes nothing.

    Args:
        calib: a :class:`kick_core.data.CalibrationSet` (or an (n, seqlen) tensor of token ids) to use
            instead of sampling one from ``cfg.calib_dataset`` / ``n_calib`` / ``calib_seqlen`` / ``calib_seed``.
        measure_error: report ‖WX − ŴX‖²/‖WX‖² per linear (costs one in × in matrix per linear of a block).
        offload: keep calibration activations on the CPU between blocks.
        batch_size: calibration sequences per forward pass.
        world_seed: the embedded world to read when ``cfg.calib_dataset == 'world'``.

    Returns:
        The CompressionReport (realised sparsity, per-linear errors, calibration hash, stage times).
    """
    compressor = validate(model, cfg)
    times = StageTimes()
    target = cfg.target_sparsity
    prunes = compressor.solve is not None and (cfg.nm is not None or target > 0)
    outcomes: dict[str, Any] = {}
    calib_info = None
    if not prunes:
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
        sparsity = measure_sparsity(model)
    report = CompressionReport(
        method=cfg.method,
        config=asdict(cfg),
        target_sparsity=target,
        sparsity=sparsity,
        scope=tuple(compression_scope(model)),
        layers={name: {"loss": o.loss, "rel_error": o.rel_error} for name, o in outcomes.items()},
        calibration=calib_info,
        times=times.as_dict(),
    )
    log_sanity(report)
    return report


__all__ = ["COMPRESSORS", "CompressionReport", "Compressor", "LayerResult", "compress", "get_compressor", "validate"]
