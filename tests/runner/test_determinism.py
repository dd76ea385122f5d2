"""Determinism: the same study run twice, into two results folders, gives the same records.

Each sweep gets a compression cache of its own, so every compression and every evaluation is
computed twice, in different kernel processes (different hash seeds, allocations, thread timing).
Everything in ``record.json`` must match except the fields listed in :data:`VOLATILE`, which
describe the execution rather than the result; ``examples.jsonl`` must match byte for byte.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from kick_core.results import EXAMPLES, read_record
from kick_core.runner import run_study

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "params" / "smoke" / "demo.yaml"

VOLATILE = (
    ("timings",),              # wall seconds and peak RSS of each notebook stage
    ("peak_memory",),          # peak RSS / GPU memory of the run
    ("meta", "timings"),       # evaluate's stage seconds and peak RSS
    ("compression", "times"),  # compression stage seconds and peak RSS
    ("provenance", "date"),    # when the run was recorded
    ("paths", "run_dir"),      # the two sweeps write into different folders by construction
)
"""Record fields that legitimately differ between two executions of one run; nothing else may."""


def without_volatile(record: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(record)
    for *parents, leaf in VOLATILE:
        node = out
        for key in parents:
            node = node.get(key) or {}
        node.pop(leaf, None)
    return out


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Dotted paths where ``a`` and ``b`` differ (for a readable failure)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"[:300]]


def test_without_volatile_drops_exactly_the_named_fields():
    rec = {"metrics": {"acc": {"value": 0.5}}, "timings": {"evaluate": {"seconds": 1.0}}, "peak_memory": {},
           "meta": {"n_prompts": 4, "timings": {}}, "compression": {"sparsity": 0.5, "times": {}},
           "provenance": {"date": "today", "git": {"commit": "abc"}}, "paths": {"run_dir": "/x", "record": "r"}}
    assert without_volatile(rec) == {"metrics": {"acc": {"value": 0.5}}, "meta": {"n_prompts": 4},
                                     "compression": {"sparsity": 0.5}, "provenance": {"git": {"commit": "abc"}},
                                     "paths": {"record": "r"}}
    assert rec["timings"]  # the input is left alone


@pytest.mark.slow
def test_the_smoke_study_run_twice_gives_identical_records(tiny_model_dir, tmp_path, monkeypatch):
    sweeps = []
    for name in ("a", "b"):
        monkeypatch.setenv("KICK_CACHE", str(tmp_path / f"cache-{name}"))  # compress again, in new kernels
        sweeps.append(run_study(SMOKE, results_dir=tmp_path / name, overrides={"model": str(tiny_model_dir)},
                                report=False, progress=False))
    a, b = sweeps
    assert not a.failed and not b.failed and sorted(a.ok) == sorted(b.ok) and len(a.ok) == 22
    for run_id in a.ok:
        ra, rb = (read_record(s.study_dir / run_id) for s in sweeps)
        assert ra["metrics"] == rb["metrics"], run_id
        assert differences(without_volatile(ra), without_volatile(rb)) == [], run_id
        assert (a.study_dir / run_id / EXAMPLES).read_bytes() == (b.study_dir / run_id / EXAMPLES).read_bytes(), run_id
