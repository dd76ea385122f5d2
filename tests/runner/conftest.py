"""Fixtures of the runner tests: a params file over the counting fixture notebook, and its counter."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

COUNT_NB = Path(__file__).resolve().parents[1] / "fixtures" / "notebooks" / "count.ipynb"


@pytest.fixture
def counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """File the fixture notebook appends its run id to, once per execution."""
    path = tmp_path / "counter.txt"
    path.touch()
    monkeypatch.setenv("KICK_TEST_COUNTER", str(path))
    return path


@pytest.fixture
def make_params(tmp_path: Path):
    """Write a params file running count.ipynb over ``sweep`` (a list of sweep blocks)."""

    def make(sweep: list[dict], name: str = "t", **base) -> Path:
        path = tmp_path / f"{name}.yaml"
        raw = {"study": name, "notebook": str(COUNT_NB), "base": {"model": "tiny", "n_examples": 2, **base},
               "sweep": sweep}
        path.write_text(yaml.safe_dump(raw))
        return path

    return make
