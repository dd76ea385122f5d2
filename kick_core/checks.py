"""Field checks shared by the frozen config dataclasses (:mod:`kick_core.config`, :mod:`kick_core.judge.config`).

Each raises :class:`~kick_core.errors.ConfigError` naming the field, its value and what it may be.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kick_core.errors import ConfigError, did_you_mean


def check_choice(value: Any, allowed: Iterable[Any], name: str) -> None:
    """``value`` must be one of ``allowed`` (the error lists them and suggests the close one)."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(
            f"{name}={value!r} is not allowed: it must be one of {', '.join(map(repr, allowed))}."
            f"{did_you_mean(str(value), map(str, allowed))}"
        )


def check_positive(value: Any, name: str, *, allow_none: bool = False, zero: bool = False) -> None:
    """``value`` must be an integer >= 1 (>= 0 with ``zero``; None passes with ``allow_none``; bools never do)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        rule = "a non-negative integer" if zero else "a positive integer"
        raise ConfigError(f"{name}={value!r} must be {rule}; fix the value in the params file.")
