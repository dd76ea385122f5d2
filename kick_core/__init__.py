"""kick: what compressing an LLM (pruning, quantisation) really costs it — the LLM-KICK study.

Importing the package is cheap (configs only); torch-heavy names load on first use, so that
`kick run` rejects a bad params file before torch is even imported.
"""

from __future__ import annotations

from typing import Any

from kick_core.openmp import bound_spinning

bound_spinning()  # before anything imports torch: bounded OpenMP spin-waiting (kick_core/openmp.py)

from kick_core.config import CompressConfig, EvalConfig, ModelConfig, RunConfig, TaskConfig
from kick_core.paramsfile import load_params
from kick_core.errors import ConfigError, KickError

__version__ = "0.1.0"

_LAZY = {
    "load_model": "kick_core.models",
    "load_or_compress": "kick_core.compress.model_cache",
    "compress": "kick_core.compress",
    "evaluate": "kick_core.evaluate",
    "write_run": "kick_core.results",
    "load_runs": "kick_core.results",
}

__all__ = [
    "CompressConfig",
    "ConfigError",
    "EvalConfig",
    "KickError",
    "ModelConfig",
    "RunConfig",
    "TaskConfig",
    "__version__",
    "load_params",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        # Importing `kick_core.evaluate` binds the *submodule* as a package attribute; overwrite it
        # with the function so `from kick_core import evaluate` always gives the callable.
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kick_core' has no attribute {name!r}")
