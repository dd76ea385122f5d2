"""kick's exceptions: one base class and a few specific kinds, each a one-liner."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

V = TypeVar("V")


class KickError(Exception):
    """Base class of every error kick raises on purpose."""


class ConfigError(KickError, ValueError):
    """A params file or config value breaks a rule; the message names the value, the rule and the fix."""


class UnknownNameError(ConfigError):
    """A name (method, task, dataset, key) that kick does not know; the message suggests close matches."""


class MissingDependencyError(KickError, ImportError):
    """An optional dependency is needed for what was asked; the message says how to install it."""


class HardwareError(KickError, RuntimeError):
    """What was asked needs hardware this machine lacks (e.g. a CUDA GPU); never silently falls back."""


class JudgeParseError(KickError):
    """A judge reply that could not be parsed; carries the raw text."""

    def __init__(self, message: str, raw_text: str):
        super().__init__(message)
        self.raw_text = raw_text


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' Did you mean: x?' for close matches of `name` among `candidates`, or ''."""
    close = difflib.get_close_matches(str(name), list(candidates), n=3, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def lookup(table: Mapping[str, V], name: str, kind: str) -> V:
    """`table[name]`, or an UnknownNameError like "Unknown compressor 'wandda'. Did you mean: wanda? Available: ..."."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise UnknownNameError(
            f"Unknown {kind} {name!r}.{did_you_mean(name, table)} Available: {', '.join(sorted(table))}."
        ) from None
