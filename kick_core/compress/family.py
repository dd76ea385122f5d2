"""A method family as a strategy: how its models are obtained, compressed, measured and cached.

The method table (:mod:`kick_core.methods`) gives each method a family and each family the
``"module:attribute"`` of its :class:`Family`; :func:`family_of` resolves it, and
:func:`kick_core.compress.compress` and :func:`kick_core.compress.model_cache.load_or_compress` call its
four steps without asking which family it is. Two implementations:

* :mod:`~kick_core.compress.inplace` (none, prune, quantise): the model loads as is, its decoder
  linears are rewritten in memory (the driver or each weight alone), measured as dense or
  fake-quant tensors, and cached by fingerprint (dense is not cached: nothing to store);
* :mod:`~kick_core.compress.loadtime` (load-time): the method's loader quantises the model while
  it loads (bitsandbytes); compressing is then nothing, measuring reads the stored low-bit tensors,
  and nothing is cached.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from kick_core import methods
from kick_core.config import CompressConfig, ModelConfig
from kick_core.log import StageTimes


@dataclass(frozen=True)
class Applied:
    """What the compress step of a family did, for the report."""

    layers: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Full linear name -> {'loss', 'rel_error'} (CompressionReport.layers)."""
    calibration: dict[str, Any] | None = None
    """The calibration set's info when one was read."""
    changed: bool = False
    """Whether the weights are not the dense checkpoint's (so they are measured as quantised, if they are)."""


class Family(Protocol):
    """The steps every family provides (see the module docstring for the two there are)."""

    def load(self, model_cfg: ModelConfig, compress_cfg: CompressConfig, *, cache_dir: str | Path | None,
             progress: bool) -> tuple[nn.Module, Any, Any]:
        """The compressed model, its tokenizer and its CompressionReport, from configs (cached where it can be)."""

    def validate(self, model: nn.Module, cfg: CompressConfig, compressor: Any) -> None:
        """Raise before any heavy work if `model` cannot be compressed (or measured) as `cfg` says."""

    def apply(self, model: nn.Module, tokenizer: Any, cfg: CompressConfig, compressor: Any, times: StageTimes,
              **options: Any) -> Applied:
        """Compress `model` in place (``options``: the keywords of :func:`kick_core.compress.compress`)."""

    def measure(self, model: nn.Module, cfg: CompressConfig, applied: Applied) -> dict[str, Any]:
        """The report's ``sparsity``, ``numerics``, ``quant`` and ``size``, read off the model as it is stored."""


def target(spec: str) -> Any:
    """The object a ``"module:attribute"`` string of the method table names."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def family_of(method: str) -> Family:
    """The :class:`Family` of `method`, through the method table."""
    return target(methods.FAMILIES[methods.get(method).family])
