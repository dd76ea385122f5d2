"""Helpers for task tests: fixture paths and a config builder."""

from pathlib import Path

from kick_core.config import RunConfig

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def make_cfg(**flat) -> RunConfig:
    """A RunConfig from flat names, with a small bootstrap so aggregation stays fast."""
    flat.setdefault("n_bootstrap", 100)
    return RunConfig.from_flat(**flat)
