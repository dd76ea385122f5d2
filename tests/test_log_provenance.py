"""Provenance records, seeding, stage timing, progress bars and did-you-mean lookups."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from kick_core.config import RunConfig
from kick_core.errors import UnknownNameError, lookup
from kick_core.log import StageTimes, progress, timed
from kick_core.provenance import collect_provenance, set_seed


def test_provenance_has_versions_git_hardware_seeds_and_resolved_config():
    cfg = RunConfig.from_flat(method="wanda", sparsity=0.5, calib_seed=3, seed=1)
    prov = collect_provenance(cfg)
    assert prov["packages"]["torch"] == torch.__version__
    assert set(prov["git"]) == {"commit", "dirty"}
    assert prov["hardware"]["cpu_count"] >= 1 and isinstance(prov["hardware"]["gpus"], list)
    assert prov["seeds"] == {"seed": 1, "calib_seed": 3}
    assert prov["config"]["compress"]["sparsity"] == 0.5 and prov["config"]["compress"]["n_calib"] == 128


def test_set_seed_makes_python_numpy_and_torch_repeat():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    set_seed(7)
    a = draw()
    set_seed(7)
    assert draw() == a


def test_timed_records_wall_time_and_peak_memory(caplog):
    times = StageTimes()
    with caplog.at_level(logging.INFO, logger="kick_core"), timed("stage/x", into=times):
        sum(range(1000))
    rec = times.as_dict()["stage/x"]
    assert rec["seconds"] >= 0 and rec["peak_rss_mb"] > 0 and rec["peak_gpu_mb"] is None
    assert "stage/x" in caplog.text


def test_progress_degrades_to_plain_text_under_papermill(monkeypatch, capsys):
    monkeypatch.setenv("KICK_PROGRESS", "plain")
    assert list(progress(range(3), desc="plain")) == [0, 1, 2]
    assert "plain" in capsys.readouterr().out


def test_lookup_suggests_close_names_and_lists_all():
    with pytest.raises(UnknownNameError) as info:
        lookup({"wanda": 1, "magnitude": 2}, "wandda", "compressor")
    assert str(info.value) == "Unknown compressor 'wandda'. Did you mean: wanda? Available: magnitude, wanda."
