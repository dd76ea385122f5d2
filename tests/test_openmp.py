"""Bounded OpenMP spin-waiting (kick_core/openmp.py): set by importing kick_core before torch, never
over the user's choice, and without changing a single trained weight."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kick_core.openmp import SPINCOUNT

_CLEAN = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}


def _python(code: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], env={**_CLEAN, **env}, capture_output=True, text=True,
                         check=True, timeout=300)
    return out.stdout.strip()


SEEN = "import os; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"


def test_importing_kick_core_first_bounds_spinning():
    assert _python(f"import kick_core; {SEEN}") == f"{SPINCOUNT} None"
    assert _python("import kick_core; from kick_core.openmp import spinning; print(spinning())") \
        == f"GOMP_SPINCOUNT={SPINCOUNT}"


@pytest.mark.parametrize("env, seen", [({"GOMP_SPINCOUNT": "5"}, "5 None"),
                                       ({"OMP_WAIT_POLICY": "ACTIVE"}, "None ACTIVE")])
def test_a_users_choice_is_kept(env, seen):
    assert _python(f"import kick_core; {SEEN}", **env) == seen


def test_too_late_after_torch_is_left_alone_and_reported_as_default():
    code = "import torch, kick_core; from kick_core.openmp import spinning; print(spinning())"
    assert _python(code) == "default"


TRAIN = """
import hashlib, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0); torch.set_num_threads(2)
m = LlamaForCausalLM(LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                 intermediate_size=96, vocab_size=256, max_position_embeddings=128))
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
x = torch.randint(0, 256, (4, 128))
for _ in range(3):
    m(input_ids=x, labels=x).loss.backward(); opt.step(); opt.zero_grad()
print(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in m.parameters())).hexdigest())
"""


def test_the_spin_count_changes_no_trained_weight():
    """2 threads, three AdamW steps: the same bits whether idle threads spin 300,000 times, 10,000 or not at all."""
    hashes = {_python(TRAIN), _python(TRAIN, GOMP_SPINCOUNT=SPINCOUNT), _python(TRAIN, OMP_WAIT_POLICY="PASSIVE")}
    assert len(hashes) == 1
