"""Rolling and strided perplexity windows and their NLLs."""

import pytest
import torch

from kick_core.engine import rolling_perplexity, rolling_windows, strided_windows, window_nll
from kick_core.testing import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_rolling_windows_are_consecutive_and_drop_the_tail():
    w = rolling_windows(70, 32)
    assert [(x.start, x.end, x.score_from) for x in w] == [(0, 32, 1), (32, 64, 33)]


def test_strided_windows_score_every_token_after_the_first_once():
    w = strided_windows(100, 32, 16)
    scored = [t for x in w for t in range(x.score_from, x.end)]
    assert scored == list(range(1, 100))
    assert all(x.end - x.start <= 32 for x in w)


def test_window_nll_equals_hf_loss_per_window():
    tok = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok))
    ids = tok("the quick brown fox jumps over the lazy dog . " * 12)["input_ids"]
    windows = rolling_windows(len(ids), 32)
    got = window_nll(model, ids, windows, batch_size=3, progress=False)
    for (nll, n), w in zip(got, windows):  # reference: the HF loss of each window
        x = torch.tensor([ids[w.start: w.end]])
        assert n == 31
        assert nll == pytest.approx(model(input_ids=x, labels=x).loss.item(), abs=1e-5)
    assert rolling_perplexity([g[0] for g in got]) == pytest.approx(torch.tensor([g[0] for g in got]).mean().exp().item())
