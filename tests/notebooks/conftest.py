"""Fixtures of the notebook tests: a copy of the committed fixture runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURE_RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "fixture"


@pytest.fixture
def fixture_runs(tmp_path: Path) -> Path:
    """A writable copy of tests/fixtures/runs/fixture (a study folder of 18 run records)."""
    return Path(shutil.copytree(FIXTURE_RUNS, tmp_path / "fixture"))
