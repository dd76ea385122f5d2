"""An on-disk cache of judge replies, keyed by a hash of everything that shapes the reply.

Storage is one SQLite file (stdlib ``sqlite3``) rather than a JSONL file per key: every ``put`` is
one transaction, so a crash or a Ctrl-C never leaves a half-written entry; several threads and
several processes (Ray workers on one machine, two notebooks) can share it, SQLite's file lock
serialising writers; and thousands of judgments stay one file that is easy to copy next to the
results, instead of thousands of small files. Values are JSON text, readable with the ``sqlite3``
command line.

The key (:func:`cache_key`) covers the judge model, the prompt template's hash, the full chat
messages (which hold the question and both answers in their order), decoding parameters and the
repeat index. Identical (question, answers) pairs are therefore judged once, while the k repeats
of a noise-floor measurement are deliberately distinct keys.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


def default_cache_path() -> Path:
    """``$KICK_CACHE/judge/judge_cache.sqlite`` (``KICK_CACHE`` defaults to ``~/.cache/kick``)."""
    from kick_core.paths import cache_root

    return cache_root() / "judge" / "judge_cache.sqlite"


def cache_key(**parts: Any) -> str:
    """sha256 of the canonical JSON of `parts` (sorted keys, so argument order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """A persistent ``key -> JSON dict`` store for judge replies (thread- and process-safe)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
        )

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached value for `key`, or None."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store `value` under `key` atomically (one transaction; an existing entry is replaced)."""
        blob = json.dumps(value, ensure_ascii=False)
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO replies (key, value, created) VALUES (?, ?, ?)",
                               (key, blob, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"JudgeCache({str(self.path)!r})"
