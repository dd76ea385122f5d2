"""Shared-prefix / KV-reused log-likelihood scoring equals plain per-choice scoring."""

import pytest
import torch

from kick_core.engine import ScoreRequest, loglikelihood, loglikelihood_naive
import os

from kick_core.engine.batching import GQA_ENV, broadcast_rows, cpu_masked_gqa, token_batches
from kick_core.testing import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

SHOTS = "the quick brown fox jumps over the lazy dog . A B C \n"
REQUESTS = [
    ScoreRequest(SHOTS + "question : what is ?\nAnswer:", (" A", " B", " C", " D"), group="subject"),
    ScoreRequest(SHOTS + "answer : paris is the capital\nAnswer:", (" A", " B", " C", " D"), group="subject"),
    ScoreRequest(SHOTS + "the dog\nAnswer:", (" A", " B", " C", " D"), group="subject"),
    ScoreRequest("question : what is the capital of france ?", (" paris", " the lazy dog", " yes .")),
    ScoreRequest("a model that is", (" pruned forgets", " pruned", " 0 1 2"), group="g2"),
    ScoreRequest("a model that", (" is", " 7"), group="g2"),
    ScoreRequest("trailing space ", ("answer",)),
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.mark.parametrize("family", ["llama", "opt", "gpt2"])
def test_shared_prefix_scores_equal_per_choice_scores(tok, family):
    model = tiny_model(family, vocab_size=len(tok))
    fast = loglikelihood(model, tok, REQUESTS, batch_tokens=96, progress=False)
    slow = loglikelihood_naive(model, tok, REQUESTS)
    for f, s in zip(fast, slow):
        assert f.n_tokens == s.n_tokens
        assert f.logprobs == pytest.approx(s.logprobs, abs=1e-4)
        assert f.greedy_next == s.greedy_next


def test_results_do_not_depend_on_batch_budget(tok):
    model = tiny_model("llama", vocab_size=len(tok))
    small = loglikelihood(model, tok, REQUESTS, batch_tokens=1, progress=False)
    large = loglikelihood(model, tok, REQUESTS, batch_tokens=100_000, progress=False)
    for a, b in zip(small, large):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


def test_continuation_is_tokenised_in_context_and_trailing_space_moves(tok):
    (r,) = loglikelihood_naive(tiny_model("llama", vocab_size=len(tok)), tok, [ScoreRequest("the answer is ", ("yes",))])
    whole = tok("the answer is yes")["input_ids"]
    assert r.n_context_tokens == len(tok("the answer is")["input_ids"])
    assert r.n_tokens == (len(whole) - r.n_context_tokens,)


def test_greedy_next_is_the_one_token_greedy_generation(tok):
    model = tiny_model("llama", vocab_size=len(tok))
    (r,) = loglikelihood(model, tok, [REQUESTS[0]], progress=False)
    ids = tok(REQUESTS[0].context, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)
    assert r.greedy_next == int(out[0, -1])


def test_on_result_reports_every_request_once(tok):
    seen = []
    loglikelihood(tiny_model("llama", vocab_size=len(tok)), tok, REQUESTS, batch_tokens=64, progress=False,
                  on_result=lambda i, r: seen.append(i))
    assert sorted(seen) == list(range(len(REQUESTS)))


def test_broadcast_rows_does_not_mutate_the_shared_cache(tok):
    from transformers import DynamicCache

    model = tiny_model("llama", vocab_size=len(tok))
    cache = DynamicCache(config=model.config)
    model(input_ids=torch.tensor([[5, 6, 7]]), use_cache=True, past_key_values=cache)
    before = [layer.keys.clone() for layer in cache.layers]
    copy = broadcast_rows(cache, 4)
    model(input_ids=torch.full((4, 2), 9), use_cache=True, past_key_values=copy)
    assert copy.get_seq_length() == 5 and cache.get_seq_length() == 3
    assert all(torch.equal(b, layer.keys) for b, layer in zip(before, cache.layers))
    with pytest.raises(ValueError, match="one-row cache"):
        broadcast_rows(copy, 2)


def test_masked_gqa_on_cpu_gives_the_repeated_heads_result_bit_for_bit(tok, monkeypatch):
    model = tiny_model("llama", vocab_size=len(tok)).to(torch.bfloat16)
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # GQA, or this tests nothing
    monkeypatch.delenv(GQA_ENV, raising=False)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(k.get("enable_gqa", False)) or sdpa(*a, **k))
    with cpu_masked_gqa(torch.device("cpu")):
        assert os.environ[GQA_ENV] == "1"
        grouped = loglikelihood(model, tok, REQUESTS, batch_tokens=96, progress=False)
    assert GQA_ENV not in os.environ and calls and all(calls)
    calls.clear()
    monkeypatch.setenv(GQA_ENV, "0")  # a user's own setting is kept: transformers repeats the heads
    repeated = loglikelihood(model, tok, REQUESTS, batch_tokens=96, progress=False)
    assert os.environ[GQA_ENV] == "0" and calls and not all(calls)  # masked batches repeated their heads
    assert [r.logprobs for r in grouped] == [r.logprobs for r in repeated]
    monkeypatch.delenv(GQA_ENV)
    with cpu_masked_gqa(torch.device("meta")):  # off a CPU: transformers' own rule
        assert GQA_ENV not in os.environ


def test_token_batches_respect_budget_and_cover_all_rows():
    lengths = [5, 50, 7, 20, 20, 3]
    batches = token_batches(lengths, 60)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 60


def test_token_batches_max_pad_bounds_each_rows_padding():
    lengths = [100, 95, 81, 79, 40, 39, 10, 100]
    batches = token_batches(lengths, 10_000, extra=[500] * len(lengths), max_pad=0.2)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [sorted(b) for b in batches] == [[0, 1, 2, 7], [3], [4, 5], [6]]  # 81 >= 0.8 * 100 > 79
    for b in batches:
        width = max(lengths[i] for i in b)
        assert all(lengths[i] >= 0.8 * width for i in b)
    assert len(token_batches(lengths, 10_000, extra=[500] * len(lengths))) == 1  # without max_pad: budget only


def test_encode_requests_tokenises_each_distinct_string_once(tok):
    from kick_core.engine.scoring import encode_requests

    calls = []

    def counting(texts, **kwargs):
        calls.append(list(texts))
        return tok(texts, **kwargs)

    wholes, n_ctx, raw = encode_requests(counting, REQUESTS)
    texts = [t for c in calls for t in c]
    assert len(texts) == len(set(texts))
    plain = [[tok(r.context + c)["input_ids"] for c in r.continuations] for r in REQUESTS[:3]]
    assert [[list(w) for w in row] for row in wholes[:3]] == plain


def test_empty_continuation_is_rejected(tok):
    with pytest.raises(ValueError, match="no tokens of its own"):
        loglikelihood(tiny_model("llama", vocab_size=len(tok)), tok, [ScoreRequest("abc", ("",))], progress=False)
