"""The in-place families (none, prune, quantise): the decoder linears are rewritten in memory.

The model loads as is; calibrated methods then run on the layer-sequential driver
(:func:`~kick_core.compress.layerwise.run_layerwise`), the others on each weight alone
(:func:`~kick_core.compress.layerwise.solve_uncalibrated`). The result is measured on the
weights: realised sparsity, and sizes as dense tensors or, for rtn/gptq/awq and ``quantize_after``,
as the packed checkpoint would hold them (:mod:`~kick_core.compress.bit_accounting`). It is
cached by fingerprint (:mod:`~kick_core.compress.model_cache`), except dense, which has nothing to store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kick_core.compress import compress
from kick_core.compress.bit_accounting import layer_stored_bits, quant_spec, storage_format
from kick_core.compress.family import Applied
from kick_core.compress.layerwise import Compressor, run_layerwise, solve_uncalibrated
from kick_core.compress.masks import check_nm
from kick_core.compress.report import DENSE, FAKE_QUANT, measure_size, measure_sparsity
from kick_core.config import CompressConfig, ModelConfig
from kick_core.errors import HardwareError
from kick_core.log import StageTimes, timed
from kick_core.models import decoder_blocks, decoder_blocks_path, linear_layers, load_model, weight_view

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InPlace:
    """:class:`~kick_core.compress.family.Family` of methods that rewrite a loaded model's weights."""

    cached: bool = True
    """Whether results are written to (and restored from) the compressed-model cache."""

    def load(self, model_cfg: ModelConfig, compress_cfg: CompressConfig, *, cache_dir: str | Path | None = None,
             progress: bool = True) -> tuple[nn.Module, Any, Any]:
        model, tokenizer = load_model(model_cfg)
        if not self.cached:
            return model, tokenizer, compress(model, tokenizer, compress_cfg, progress=progress,
                                              world_seed=model_cfg.world_seed)
        from kick_core.compress.model_cache import restore_or_compress

        report = restore_or_compress(model, tokenizer, model_cfg, compress_cfg, cache_dir=cache_dir, progress=progress)
        return model, tokenizer, report

    def validate(self, model: nn.Module, cfg: CompressConfig, compressor: Compressor) -> None:
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
                if cfg.nm is not None:  # the config allows a structure on pruning methods only
                    check_nm(W.shape[1], *cfg.nm, name=f"{prefix}.{i}.{name}")

    def apply(self, model: nn.Module, tokenizer: Any, cfg: CompressConfig, compressor: Compressor, times: StageTimes,
              *, calib: Any = None, progress: bool = True, measure_error: bool | None = None, offload: bool = False,
              batch_size: int = 1, world_seed: int = 0) -> Applied:
        target = cfg.target_sparsity
        if compressor.solve is None or (cfg.nm is None and target <= 0 and cfg.bits is None):
            log.info("%s: nothing to compress (target sparsity %g)", cfg.method, target)
            return Applied()
        if not compressor.needs_calibration:
            with timed(f"compress/{cfg.method}", times):
                outcomes = solve_uncalibrated(model, compressor, cfg, progress=progress)
            return Applied(_layers(outcomes), changed=True)
        if calib is None:
            from kick_core.data.calibration import calibration_batches

            with timed("compress/calibration_data", times):
                calib = calibration_batches(tokenizer, cfg.calib_dataset, cfg.n_calib, cfg.calib_seqlen,
                                            cfg.calib_seed, world_seed=world_seed)
        elif isinstance(calib, torch.Tensor):
            from kick_core.data.calibration import from_ids

            calib = from_ids(calib)
        info = calib.info()
        with timed(f"compress/{cfg.method}", times):
            outcomes = run_layerwise(model, compressor, cfg, calib.input_ids, batch_size=batch_size,
                                     offload=offload, measure_error=measure_error, progress=progress)
        return Applied(_layers(outcomes), info, changed=True)

    def measure(self, model: nn.Module, cfg: CompressConfig, applied: Applied) -> dict[str, Any]:
        quant = quant_spec(cfg)
        packed = quant is not None and applied.changed
        return {
            "sparsity": measure_sparsity(model),
            "numerics": FAKE_QUANT if packed else DENSE,
            "quant": quant,
            "size": measure_size(model, layer_stored_bits(cfg) if packed else lambda layer: None,
                                 storage_format(cfg) if applied.changed else storage_format(CompressConfig())),
        }


def _layers(outcomes: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    return {name: {"loss": o.loss, "rel_error": o.rel_error} for name, o in outcomes.items()}


DENSE_FAMILY = InPlace(cached=False)
"""Family ``none`` (dense): measured, not cached."""
IN_PLACE = InPlace()
"""Families ``prune`` and ``quantise``."""
