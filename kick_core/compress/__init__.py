"""Compress a loaded model in place: ``compress(model, tokenizer, cfg) -> CompressionReport``.

``COMPRESSORS`` maps method names to :class:`~kick_core.compress.layerwise.Compressor` entries;
calibrated ones run on the one layer-sequential driver (:mod:`~kick_core.compress.layerwise`),
statistics-free ones on each weight alone. A new method is a module with a ``solve`` function
and a ``COMPRESSOR`` entry, registered in the method table (:mod:`kick_core.methods`); the config
and this registry both read that table. ``quantize_after`` composes a pruner with rtn/gptq
(:func:`~kick_core.compress.sparse_quant.then_quantise`). How a method's model is compressed,
measured and cached is its family's (:mod:`~kick_core.compress.family`): rewritten in memory
(:mod:`~kick_core.compress.inplace`), or quantised while loading, as bitsandbytes does
(:mod:`~kick_core.compress.loadtime`), where ``compress`` only measures the model. For a cached,
reloadable result from a config use :func:`kick_core.compress.model_cache.load_or_compress`.
See README.md for the methods.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from torch import nn

from kick_core.compress.family import family_of, target
from kick_core.compress.layerwise import Compressor, LayerResult
from kick_core.compress.report import CompressionReport, log_sanity
from kick_core.compress.sparse_quant import then_quantise
from kick_core import methods
from kick_core.config import CompressConfig
from kick_core.errors import lookup
from kick_core.log import StageTimes, timed
from kick_core.models import compression_scope


def _build(method: methods.Method) -> Compressor:
    if method.compressor is None:  # dense; load-time methods (the model is quantised while loading)
        return Compressor(method.name, None, description=method.description)
    return target(method.compressor)


COMPRESSORS: dict[str, Compressor] = {m.name: _build(m) for m in methods.METHODS.values()}
"""Method name -> Compressor, built from the method table. Load-time (bnb_*) entries have no solve
step: the model is quantised while loading (see :mod:`kick_core.compress.loadtime`)."""


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
    """Check `cfg` against the registry, the model's shapes and how it was loaded, before any heavy work."""
    compressor = resolve(cfg)
    family_of(cfg.method).validate(model, cfg, compressor)
    return compressor


def compress(model: nn.Module, tokenizer: Any, cfg: CompressConfig, *, calib: Any = None, progress: bool = True,
             measure_error: bool | None = None, offload: bool = False, batch_size: int = 1,
             world_seed: int = 0) -> CompressionReport:
    """Compress the linears of every decoder block of `model` in place, as `cfg` says.

    Embeddings, norms and the LM head are never touched. An N:M structure is applied whatever
    `cfg.sparsity` says; unstructured sparsity 0 prunes nothing. For bnb_* the model must already
    have been loaded quantised (:func:`kick_core.compress.model_cache.load_or_compress` does that); this
    then only measures it.

    Args:
        calib: a :class:`kick_core.data.CalibrationSet` (or an (n, seqlen) tensor of token ids) to use
            instead of sampling one from ``cfg.calib_dataset`` / ``n_calib`` / ``calib_seqlen`` / ``calib_seed``.
        measure_error: report ‖WX − ŴX‖²/‖WX‖² per linear. None (default): where the method's own Hessian
            gives it for free (SparseGPT, GPTQ, AWQ); True: for Wanda too, at the cost of one in × in
            matrix per distinct linear input of a block; False: never.
        offload: keep calibration activations on the CPU between blocks.
        batch_size: calibration sequences per forward pass.
        world_seed: the embedded world to read when ``cfg.calib_dataset == 'world'``.

    Returns:
        The CompressionReport (realised sparsity, per-linear errors, calibration hash, stage times,
        numerics and sizes as stored).
    """
    family = family_of(cfg.method)
    compressor = validate(model, cfg)
    times = StageTimes()
    applied = family.apply(model, tokenizer, cfg, compressor, times, calib=calib, progress=progress,
                           measure_error=measure_error, offload=offload, batch_size=batch_size,
                           world_seed=world_seed)
    with timed("compress/measure", times):
        measured = family.measure(model, cfg, applied)
        if measured["quant"] is not None:
            measured["quant"]["bits_per_weight"] = measured["size"]["decoder_linears"]["bits_per_weight"]
    report = CompressionReport(
        method=cfg.method,
        config=asdict(cfg),
        target_sparsity=cfg.target_sparsity,
        scope=tuple(compression_scope(model)),
        layers=applied.layers,
        calibration=applied.calibration,
        times=times.as_dict(),
        **measured,
    )
    log_sanity(report)
    return report


__all__ = ["COMPRESSORS", "CompressionReport", "Compressor", "LayerResult", "compress", "get_compressor", "resolve",
           "validate"]
