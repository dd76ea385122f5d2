"""Batched greedy generation equals one-at-a-time decoding; stops, budgets and sampling behave."""

import pytest

from kick_core.engine import Sampling, generate
from kick_core.testing import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

PROMPTS = ["the quick brown fox", "question : what is the capital of france ? answer :", "a",
           "A B C D 0 1 2 3 4 5 6 7 8 9 , ; : ! ? the lazy", "model that is pruned"]
BUDGETS = [5, 12, 3, 20, 8]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.mark.parametrize("family", ["llama", "opt", "gpt2"])
def test_batched_equals_one_at_a_time(tok, family):
    model = tiny_model(family, vocab_size=len(tok))
    batched = generate(model, tok, PROMPTS, max_new_tokens=BUDGETS, batch_tokens=4096, progress=False)
    for prompt, budget, b in zip(PROMPTS, BUDGETS, batched):
        (single,) = generate(model, tok, [prompt], max_new_tokens=budget, progress=False)
        assert b.token_ids == single.token_ids


def test_matches_hf_generate_greedy(tok):
    model = tiny_model("llama", vocab_size=len(tok))
    out = generate(model, tok, PROMPTS, max_new_tokens=6, progress=False)
    for prompt, g in zip(PROMPTS, out):
        ref = model.generate(**tok(prompt, return_tensors="pt"), max_new_tokens=6, do_sample=False,
                             pad_token_id=tok.pad_token_id)[0].tolist()
        assert list(g.prompt_ids + g.token_ids) == ref[: len(g.prompt_ids) + len(g.token_ids)]


def test_per_prompt_budget_is_respected(tok):
    model = tiny_model("opt", vocab_size=len(tok))
    out = generate(model, tok, PROMPTS, max_new_tokens=BUDGETS, progress=False)
    for g, budget in zip(out, BUDGETS):
        assert len(g.token_ids) == budget or g.stop_reason == "eos"


def test_stop_string_cuts_output_where_unstopped_run_continues(tok):
    model = tiny_model("gpt2", vocab_size=len(tok))
    (free,) = generate(model, tok, ["a"], max_new_tokens=12, progress=False)
    pieces = [tok.decode([i]) for i in free.token_ids]
    stop = next(t for t in pieces[1:] if t.isascii() and t.isalnum() and t != pieces[0])
    (cut,) = generate(model, tok, ["a"], max_new_tokens=12, stop=(stop,), progress=False)
    assert cut.stop_reason == "stop"
    assert stop not in cut.text
    assert free.text.startswith(cut.text) and len(cut.token_ids) < len(free.token_ids)


def test_stop_string_needs_text_before_it():
    from kick_core.engine.generation import _cut

    assert _cut("\n\nParis\nQ:", ("\n",)) == ("\n\nParis", True)
    assert _cut("xxx", ("x",)) == ("x", True)
    assert _cut("  ", ("\n",)) == ("  ", False)


def test_zero_budget_generates_nothing(tok):
    (g,) = generate(tiny_model("llama", vocab_size=len(tok)), tok, ["abc"], max_new_tokens=0, progress=False)
    assert g.token_ids == () and g.stop_reason == "length"


def test_sampling_is_seeded_and_independent_of_batching(tok):
    model = tiny_model("llama", vocab_size=len(tok))
    s = Sampling(temperature=1.0, top_p=0.9, seed=3)
    a = generate(model, tok, PROMPTS, max_new_tokens=8, sampling=s, batch_tokens=4096, progress=False)
    b = generate(model, tok, PROMPTS, max_new_tokens=8, sampling=s, batch_tokens=16, progress=False)
    c = generate(model, tok, PROMPTS, max_new_tokens=8, sampling=Sampling(1.0, 0.9, 4), progress=False)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in c]


def test_outputs_come_back_in_input_order(tok):
    model = tiny_model("llama", vocab_size=len(tok))
    order = []
    out = generate(model, tok, PROMPTS, max_new_tokens=BUDGETS, progress=False, on_result=lambda i, g: order.append(i))
    assert [g.prompt_ids for g in out] == [tuple(tok(p)["input_ids"]) for p in PROMPTS]
    assert sorted(order) == list(range(len(PROMPTS)))


SHARED = ["question : what is the capital of france ? answer :", "question : the lazy dog ? answer :",
          "question : a ? answer :", "question : A B C D 0 1 2 3 4 5 6 7 8 9 , ; : ! ? answer :",
          "question : model that is pruned forgets facts . answer : the", "question : what is the"]


@pytest.mark.parametrize("family", ["llama", "opt", "gpt2", "mistral"])
def test_shared_prefix_groups_and_retirement_match_one_at_a_time(tok, family, monkeypatch):
    """Prompts sharing a template prefix, prefilled in several groups, rows finishing at different steps."""
    import kick_core.engine.generation as generation

    model = tiny_model(family, vocab_size=len(tok))
    budgets = [3, 9, 1, 14, 6, 11]
    singles = [generate(model, tok, [p], max_new_tokens=b, progress=False)[0] for p, b in zip(SHARED, budgets)]
    monkeypatch.setattr(generation, "PREFILL_TOKENS", 120)  # prefill groups of 3, 2 and 1 rows
    monkeypatch.setattr(generation, "COMPACT_FRACTION", 0.3)  # some finished rows wait, some get dropped
    batched = generate(model, tok, SHARED, max_new_tokens=budgets, batch_tokens=4096, progress=False)
    assert [g.token_ids for g in batched] == [g.token_ids for g in singles]


def test_shared_prefix_and_groups():
    from kick_core.engine.generation import _prefill_groups, _shared_prefix

    assert _shared_prefix([[0, 5, 6, 7], [0, 5, 6, 8, 9], [0, 5, 9]]) == 2
    assert _shared_prefix([[0, 5], [0, 5, 6]]) == 1  # every row keeps one token of its own
    assert _shared_prefix([[1, 2], [3, 4]]) == 0
    assert _prefill_groups([2, 3, 3, 5, 9], 10) == [range(0, 3), range(3, 4), range(4, 5)]
    assert _prefill_groups([20], 10) == [range(0, 1)]

