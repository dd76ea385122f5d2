"""Cache of compressed models: compress once, reload bit-identically by fingerprint.

Layout, keyed by :func:`kick_core.models.fingerprint` (base model + revision/file hashes + dtype +
the full compression spec)::

    $KICK_CACHE/compressed/<fingerprint>/      (default KICK_CACHE: ~/.cache/kick)
        weights.safetensors    the decoder-linear weights after compression, model dtype, by parameter name
        spec.json              model config, compression config, fingerprint, format version
        report.json            the CompressionReport of the run that produced it

An entry is written into a temporary folder beside its final place and renamed into it, so a
crash or a parallel writer never leaves a half-written entry. Loading is strict: every compressed
weight must be present with its exact shape, or the entry is rejected. Fake-quantised weights
(rtn, gptq, awq, quantize_after) are cached like pruned ones: dequantised, in the model dtype.

``load_or_compress`` asks the method's family (:mod:`~kick_core.compress.family`, through the
method table) for the model: the in-place families restore or fill an entry here
(:func:`restore_or_compress`; dense is only measured); the load-time family (bitsandbytes) is
never cached: it quantises inside ``from_pretrained`` in seconds, its packed tensors are not plain
weights, and the report's ``cache_note`` says so (:mod:`~kick_core.compress.loadtime`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kick_core.compress import compress, resolve
from kick_core.compress.family import family_of
from kick_core.compress.report import CompressionReport, log_sanity
from kick_core.config import CompressConfig, ModelConfig
from kick_core.errors import KickError
from kick_core.log import StageTimes, timed
from kick_core.models import concrete_dtype, decoder_blocks, decoder_blocks_path, fingerprint, linear_layers
from kick_core.results import crash_point

log = logging.getLogger(__name__)

FORMAT = 1
WEIGHTS, SPEC, REPORT = "weights.safetensors", "spec.json", "report.json"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else $KICK_CACHE, else ~/.cache/kick; compressed models live under its 'compressed/'."""
    from kick_core.paths import cache_root as kick_cache

    return (Path(cache_dir).expanduser() if cache_dir else kick_cache()) / "compressed"


def compressed_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameter name -> weight of every decoder linear (what compression changes)."""
    prefix = decoder_blocks_path(model)
    return {f"{prefix}.{i}.{name}.weight": layer.weight
            for i, block in enumerate(decoder_blocks(model)) for name, layer in linear_layers(block).items()}


def save_entry(path: Path, model: nn.Module, spec: dict[str, Any], report: CompressionReport) -> Path:
    """Write an entry atomically (temp dir + rename); keeps an existing complete entry."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tensors = {k: w.detach().to("cpu").contiguous() for k, w in compressed_weights(model).items()}
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": str(FORMAT)})
        (tmp / SPEC).write_text(json.dumps(spec, indent=2, sort_keys=True, default=str))
        (tmp / REPORT).write_text(json.dumps(report.as_dict(), indent=2, default=str))
        crash_point("cache", path)
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / REPORT).is_file():
                raise
            log.info("cache entry %s was written by another process meanwhile; keeping it", path.name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


@torch.no_grad()
def restore_entry(path: Path, model: nn.Module) -> CompressionReport:
    """Copy an entry's weights into `model` (strict) and return its stored report."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        stored = load_file(str(path / WEIGHTS))  # safetensors only: a cache file is never unpickled
    except SafetensorError as err:
        raise KickError(f"cache entry {path}: {WEIGHTS} is not a valid safetensors file ({err}); kick never unpickles "
                        "cache files. Fix: delete that folder to recompute it.") from None
    params = compressed_weights(model)
    missing, extra = sorted(set(params) - set(stored)), sorted(set(stored) - set(params))
    if missing or extra:
        raise KickError(
            f"cache entry {path} does not match the model: missing {missing[:3]}, unexpected {extra[:3]}. "
            "Fix: delete that folder to recompute it."
        )
    for name, param in params.items():
        if stored[name].shape != param.shape:
            raise KickError(f"cache entry {path}: {name} has shape {tuple(stored[name].shape)}, the model "
                            f"{tuple(param.shape)}. Fix: delete that folder to recompute it.")
        param.copy_(stored[name].to(param.device))
    return CompressionReport.from_dict(json.loads((path / REPORT).read_text()))


def load_or_compress(model_cfg: ModelConfig, compress_cfg: CompressConfig, *, cache_dir: str | Path | None = None,
                     progress: bool = True) -> tuple[nn.Module, Any, CompressionReport]:
    """Load the base model, then restore its cached compression or compress it now and cache that
    (or, for a load-time method, load it quantised: measured, not cached).

    Returns:
        (model, tokenizer, report); ``report.cached`` says whether the weights came from the cache.
    """
    resolve(compress_cfg)  # fail on an unknown method before loading anything
    model_cfg = concrete_dtype(model_cfg)  # the dtype the weights will have keys the cache and names the report
    return family_of(compress_cfg.method).load(model_cfg, compress_cfg, cache_dir=cache_dir, progress=progress)


def restore_or_compress(model: nn.Module, tokenizer: Any, model_cfg: ModelConfig, compress_cfg: CompressConfig, *,
                        cache_dir: str | Path | None = None, progress: bool = True) -> CompressionReport:
    """Restore the entry of (`model_cfg`, `compress_cfg`) into the loaded `model`, or compress it and write one."""
    key = fingerprint(model_cfg, compress_cfg)
    path = cache_root(cache_dir) / key
    if (path / REPORT).is_file():
        times = StageTimes()
        with timed("compress/load_cache", times):
            report = restore_entry(path, model)
        report = dataclasses.replace(report, cached=True, times={**report.times, **times.as_dict()})
        log.info("restored %s from cache %s", compress_cfg.slug, path)
        log_sanity(report)
        return report
    report = compress(model, tokenizer, compress_cfg, progress=progress, world_seed=model_cfg.world_seed)
    report = dataclasses.replace(report, fingerprint=key)
    spec = {"format": FORMAT, "fingerprint": key, "model": dataclasses.asdict(model_cfg),
            "compress": dataclasses.asdict(compress_cfg)}
    save_entry(path, model, spec, report)
    log.info("cached %s at %s", compress_cfg.slug, path)
    return report
