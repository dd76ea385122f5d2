"""The load-time family: the model is quantised while it loads, then only measured; never cached.

Each load-time method names a :class:`Loader` in the method table (``Method.loader``; bitsandbytes:
:data:`kick_core.compress.bnb.LOADER`). :data:`LOAD_TIME` runs every such method the same way:

1. ``load``: check the hardware runs it (before anything loads), then load the model quantised,
   computing in the model's dtype when given, else fp16 on a GPU and fp32 on the CPU;
2. ``validate`` (inside :func:`kick_core.compress.compress`): the model must have been loaded this
   way, with shapes the kernels run;
3. ``apply``: nothing, the weights already are what the kernels compute with;
4. ``measure``: the loader reads sparsity and sizes off the stored low-bit tensors.

The result is not cached: quantising while loading takes seconds, and the packed tensors are not
plain weights; the report's ``cache_note`` says so.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from kick_core.compress import compress
from kick_core.compress.family import Applied, target
from kick_core import methods
from kick_core.config import CompressConfig, ModelConfig
from kick_core.log import StageTimes, timed
from kick_core.models import concrete_dtype, fingerprint, load_device

log = logging.getLogger(__name__)


class Loader(Protocol):
    """What one load-time method provides."""

    library: str
    """Who quantises, for the log and the report's cache note ('bitsandbytes')."""

    def check_supported(self, cfg: CompressConfig, device: torch.device) -> None:
        """Raise HardwareError, before anything loads, if `cfg.method` cannot run on `device`."""

    def load(self, model_cfg: ModelConfig, cfg: CompressConfig, compute_dtype: torch.dtype) -> tuple[nn.Module, Any]:
        """(model, tokenizer), the model quantised while loading."""

    def check_loaded(self, model: nn.Module, cfg: CompressConfig) -> None:
        """Raise ConfigError if `model` was not loaded this way (HardwareError for shapes the kernels cannot run)."""

    def measure(self, model: nn.Module, cfg: CompressConfig) -> dict[str, Any]:
        """The report's ``sparsity``, ``numerics``, ``quant`` and ``size`` of the loaded model."""


def loader(method: str) -> Loader:
    """The :class:`Loader` the method table names for `method`."""
    return target(methods.get(method).loader)


@dataclass(frozen=True)
class LoadTime:
    """:class:`~kick_core.compress.family.Family` of methods that quantise while loading."""

    def load(self, model_cfg: ModelConfig, compress_cfg: CompressConfig, *, cache_dir: str | Path | None = None,
             progress: bool = True) -> tuple[nn.Module, Any, Any]:
        quantiser = loader(compress_cfg.method)
        model_cfg = concrete_dtype(model_cfg)
        device = load_device(model_cfg)
        quantiser.check_supported(compress_cfg, device)
        # the kernels compute in this dtype: the model's when given, else fp16 on a GPU and fp32 on the CPU
        compute = getattr(torch, model_cfg.dtype) if model_cfg.dtype != "auto" else (
            torch.float16 if device.type == "cuda" else torch.float32)
        times = StageTimes()
        with timed(f"compress/{compress_cfg.method}_load", times):
            model, tokenizer = quantiser.load(model_cfg, compress_cfg, compute)
        report = compress(model, tokenizer, compress_cfg, progress=False)
        report = dataclasses.replace(
            report, fingerprint=fingerprint(model_cfg, compress_cfg), times={**times.as_dict(), **report.times},
            cache_note=f"not cached: {quantiser.library} quantises while loading (seconds); nothing is written "
                       "to the cache")
        return model, tokenizer, report

    def validate(self, model: nn.Module, cfg: CompressConfig, compressor: Any) -> None:
        loader(cfg.method).check_loaded(model, cfg)

    def apply(self, model: nn.Module, tokenizer: Any, cfg: CompressConfig, compressor: Any, times: StageTimes,
              **options: Any) -> Applied:
        log.info("%s: quantised by %s while loading; measuring it", cfg.method, loader(cfg.method).library)
        return Applied(changed=True)

    def measure(self, model: nn.Module, cfg: CompressConfig, applied: Applied) -> dict[str, Any]:
        return loader(cfg.method).measure(model, cfg)


LOAD_TIME = LoadTime()
