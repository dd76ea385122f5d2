"""Where kick keeps what it builds once per machine: one root, ``$KICK_CACHE`` (default ``~/.cache/kick``).

Under it: ``world/`` (the embedded world and its model), ``gguf/`` (converted GGUF models),
``packaged/`` (wheels of the packaged models), ``geofacts/``, ``compressed/`` (compressed models)
and ``judge/`` (the judge's answer cache).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "KICK_CACHE"


def cache_root() -> Path:
    """``$KICK_CACHE`` with ``~`` expanded, else ``~/.cache/kick``."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/kick").expanduser()
