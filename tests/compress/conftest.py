"""Shared compression-test fixtures: a fixed torch RNG state per test, and a small calibration file."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)


@pytest.fixture()
def calib_file(tmp_path):
    """A local JSONL calibration file (the real `{"text": ...}` layout), enough tokens for tiny models."""
    path = tmp_path / "calib.jsonl"
    rows = [{"text": " ".join(["question : what is the capital of france ? answer : paris ."] * 6)}] * 5
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path
