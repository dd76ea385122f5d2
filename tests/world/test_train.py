"""Seconds-long training smoke run, model round trip through from_pretrained, and the build cache."""

from __future__ import annotations

import json

import pytest

from kick_core.world import TrainConfig, ensure_world, ensure_world_data
from kick_core.world.examples import Mix, epoch_examples, is_document
from kick_core.world.generate import generate_world
from kick_core.world.train import pack, tokenize_example

TINY = TrainConfig(hidden=32, layers=1, heads=2, kv_heads=2, intermediate=64, vocab_size=600, batch_size=2,
                   steps=4, warmup_steps=1, reading_steps=2, mix=Mix(n_rc=8, n_mcq_blocks=2, n_chat=2))


@pytest.fixture(scope="module")
def built():
    return ensure_world(0, TINY, progress=False)


def test_tiny_model_saves_reloads_and_generates(built):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built.model_dir)
    model = AutoModelForCausalLM.from_pretrained(built.model_dir)
    assert tok.bos_token == "<s>" and tok.eos_token == "</s>" and tok.pad_token == "<pad>" and tok.unk_token == "<unk>"
    enc = tok(["Answer these questions:\n\nQ: Where was X born?\nA:"], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3
    assert model.config.rope_parameters["rope_theta"] == 10000.0
    # trained with segment attention, saved as a plain sdpa model that any transformers loads
    assert json.loads((built.model_dir / "config.json").read_text()).get("_attn_implementation") in (None, "sdpa")
    assert model.config._attn_implementation == "sdpa"
    record = json.loads((built.root / "world.json").read_text())
    assert record["seed"] == 0 and record["train"]["steps"] == 4


def test_build_record_has_the_training_speed_per_window(built):
    tp = json.loads((built.root / "world.json").read_text())["throughput"]
    assert tp["window_steps"] == TINY.steps and tp["first_steps_per_s"] > 0 and tp["last_steps_per_s"] > 0
    assert tp["first_cpu_s_per_step"] > 0


def test_second_call_is_a_cache_hit(built, monkeypatch):
    import kick_core.world.train as train

    def boom(*a, **k):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(train, "train_model", boom)
    again = ensure_world(0, TINY, progress=False)
    assert again == built


def test_training_is_deterministic_for_a_seed(tmp_path):
    import torch

    from kick_core.world.cache import tokenizer_texts
    from kick_core.world.tokenizer import train_tokenizer
    from kick_core.world.train import train_model

    world = generate_world(0)
    tok = train_tokenizer(tokenizer_texts(world), TINY.vocab_size)
    a = train_model(world, tok, TINY, progress=False)
    b = train_model(world, tok, TINY, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_model_cache_key_covers_training_code(monkeypatch, tmp_path):
    import kick_core.world.cache as cache

    assert {"train", "tokenizer", "cache"} <= set(cache._MODEL_MODULES)
    before, data_before = cache.code_hash(cache._MODEL_MODULES), cache.code_hash()
    real = cache.Path(cache.__file__).parent
    for name in cache._MODEL_MODULES:
        text = (real / f"{name}.py").read_text()
        (tmp_path / f"{name}.py").write_text(text + ("# edited\n" if name == "train" else ""))
    monkeypatch.setattr(cache, "__file__", str(tmp_path / "cache.py"))
    assert cache.code_hash(cache._MODEL_MODULES) != before
    assert cache.code_hash() == data_before  # editing training code keeps the exported data


def test_data_cache_returns_the_same_directory():
    assert ensure_world_data(0) == ensure_world_data(0)


def test_packing_never_splits_an_example():
    from kick_core.world.cache import tokenizer_texts
    from kick_core.world.tokenizer import train_tokenizer

    world = generate_world(0)
    tok = train_tokenizer(tokenizer_texts(world), 600)
    pages = [e for e in epoch_examples(world, 0, Mix(n_rc=20), warm_up=True) if not is_document(e)]
    exs = [tokenize_example(tok, e) for e in pages]
    rows = pack(exs, 384, tok.pad_token_id)
    starts = sum(r[0].count(tok.bos_token_id) for r in rows)
    assert starts == sum(len(i) <= 384 for i, _ in exs)
    assert all(len(r[0]) == 384 == len(r[1]) == len(r[2]) for r in rows)
    # positions restart at every example's <s>, and only there (padding starts one more block)
    for ids, _, pos in rows:
        starts = [i for i, p in enumerate(pos) if p == 0]
        bos = [i for i, t in enumerate(ids) if t == tok.bos_token_id]
        assert starts[:len(bos)] == bos and all(ids[i] == tok.pad_token_id for i in starts[len(bos):])


def test_warm_up_epoch_holds_entity_documents_and_pages_about_invented_people_only():
    """The warm-up phase memorises prose and learns to read, but asks nothing about the world."""
    world = generate_world(0)
    exs = epoch_examples(world, 0, Mix(n_rc=30), warm_up=True)
    docs = [e[0][0] for e in exs if is_document(e)]
    pages = [e for e in exs if not is_document(e)]
    seen = [e for e in world.entities if e.split != "unseen"]
    assert len(docs) == len(seen) and all(any(e.name in d for d in docs) for e in seen)
    assert len(pages) == 2 * 30
    people = [e.name for e in world.of_kind("person")]
    for page in pages:
        prompt = page[0][0]
        assert "\n\nBased on these texts, answer these questions:" in prompt
        assert not [n for n in people if n in prompt]


def test_a_packed_example_sees_only_itself():
    """The trainer's forward on a packed row gives each example the logits it has alone."""
    import torch

    from kick_core.world.train import build_model, packed_forward

    class Tok:  # build_model reads only these
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

        def __len__(self):
            return 50

    torch.manual_seed(0)
    model = build_model(TINY, Tok()).eval()
    a, b = [1] + list(range(5, 25)), [1] + list(range(30, 42))
    (ids, _, pos), = pack([(a, [-100] * len(a)), (b, [-100] * len(b))], 40, 0)
    with torch.no_grad():
        packed = packed_forward(model, torch.tensor([ids]), torch.tensor([pos])).logits
        alone = model(input_ids=torch.tensor([b])).logits
    assert torch.allclose(packed[0, len(a):len(a) + len(b)], alone[0], atol=1e-5)


def test_packed_loss_equals_the_full_forward_loss():
    """The trainer's loss (LM head at labelled positions only) is the plain forward's loss."""
    import torch

    from kick_core.world.train import build_model, packed_forward, packed_loss

    class Tok:
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

        def __len__(self):
            return 50

    torch.manual_seed(0)
    model = build_model(TINY, Tok())
    a, b = [1] + list(range(5, 25)), [1] + list(range(30, 42))
    packed = pack([(a, [-100] * 15 + a[15:]), (b, [-100] + b[1:])], 40, 0)[0]  # answers labelled, padding not
    text = a + b[:8] + [0] * 11
    streamed = (text, a + b[:8] + [-100] * 11, list(range(40)))  # a stream row: every real token labelled
    ids, labels, pos = (torch.tensor([packed[i], streamed[i]]) for i in range(3))
    with torch.no_grad():
        full = packed_forward(model, ids, pos, labels).loss
        sparse = packed_loss(model, ids, pos, labels)
    assert sparse.item() == pytest.approx(full.item(), abs=1e-6)


def test_segments_tokenise_like_the_eval_prompt():
    from kick_core.world.cache import tokenizer_texts
    from kick_core.world.tokenizer import train_tokenizer

    world = generate_world(0)
    tok = train_tokenizer(tokenizer_texts(world), 600)
    prompt = "Please give answer to this question: Where was X born?\nThe answer is "
    ids, labels = tokenize_example(tok, [(prompt, False), ("Zed\n", True)])
    assert ids[: len(tok(prompt)["input_ids"])] == tok(prompt)["input_ids"]
    assert labels[0] == -100 and labels[-1] != -100


def test_mix_rejects_more_paraphrases_than_templates():
    with pytest.raises(ValueError, match=r"prose_paraphrases=4.*from 1 to 3"):
        Mix(prose_paraphrases=4)


def test_prose_is_streamed_like_the_perplexity_text():
    from kick_core.world.cache import tokenizer_texts
    from kick_core.world.examples import is_document
    from kick_core.world.tokenizer import train_tokenizer
    from kick_core.world.train import stream

    world = generate_world(0)
    tok = train_tokenizer(tokenizer_texts(world), 600)
    exs = epoch_examples(world, 0, Mix(n_rc=4, n_mcq_blocks=2, n_chat=2))
    docs = [e[0][0] for e in exs if is_document(e)]
    assert len(docs) == sum(e.split != "unseen" for e in world.entities)
    rows = stream(docs, tok, 64)
    flat = [t for ids, _, _ in rows for t in ids]
    joined = tok("\n\n".join(docs) + "\n\n")["input_ids"]
    assert len(joined) - 64 < len(flat) <= len(joined) and flat[:200] == joined[:200]
    assert all(ids == labels and pos == list(range(64)) for ids, labels, pos in rows)


def test_cloze_mcq_blocks_train_the_option_text_in_the_task_format():
    from kick_core.tasks.mcq import cloze_header, cloze_question

    world = generate_world(0)
    values = {world.value_name(f) for f in world.facts}
    for frac, cloze in ((1.0, True), (0.0, False)):
        blocks = [e for e in epoch_examples(world, 1, Mix(n_rc=2, n_mcq_blocks=6, n_chat=0, mcq_cloze_frac=frac))
                  if e[0][0].startswith("The following are ")]
        assert len(blocks) == 6
        for block in blocks:
            subject = block[0][0].split(" about ")[1].split(".")[0].replace(" ", "_")
            assert (block[0][0] == cloze_header(subject)) == cloze
            prompts, answers = block[1::2], block[2::2]
            assert all(not train for _, train in prompts) and all(train for _, train in answers)
            if cloze:
                assert all(p.lstrip("\n") == cloze_question(p.lstrip("\n")[len("Question: "):-len("\nAnswer:")])
                           for p, _ in prompts)
                assert all(a[1:] in values for a, _ in answers)
            else:
                assert all(a in (" A", " B", " C", " D") for a, _ in answers)


def test_an_epoch_tokenised_in_one_batch_equals_one_call_per_segment():
    from kick_core.world.cache import tokenizer_texts
    from kick_core.world.tokenizer import train_tokenizer
    from kick_core.world.train import stream, tokenize_examples

    world = generate_world(1)
    tok = train_tokenizer(tokenizer_texts(world), 600)
    exs = epoch_examples(world, 3, Mix(n_rc=6, n_mcq_blocks=2, n_chat=3))
    tasks = [e for e in exs if not is_document(e)]
    expected = []
    for example in tasks:  # the reference: every segment on its own, as the evaluation prompts are
        ids, labels = [tok.bos_token_id], [-100]
        for text, train in example:
            seg = [tok.eos_token_id] if text == "</s>" else tok(text, add_special_tokens=False)["input_ids"]
            ids, labels = ids + seg, labels + (seg if train else [-100] * len(seg))
        expected.append((ids, labels))
    assert tokenize_examples(tok, tasks) == expected
    assert [tokenize_example(tok, e) for e in tasks[:5]] == expected[:5]
    docs = [e[0][0] for e in exs if is_document(e)]
    flat = [t for ids, _, _ in stream(docs, tok, 64) for t in ids]
    one_by_one = [tok.bos_token_id] + [t for d in docs for t in tok(d + "\n\n", add_special_tokens=False)["input_ids"]]
    assert flat == one_by_one[:len(flat)] and len(one_by_one) - len(flat) < 64


def test_probe_callbacks_see_a_plain_model_and_training_resumes_after_them():
    import torch

    from kick_core.world.cache import tokenizer_texts
    from kick_core.world.tokenizer import train_tokenizer
    from kick_core.world.train import train_model

    world = generate_world(0)
    tok = train_tokenizer(tokenizer_texts(world), TINY.vocab_size)
    seen = []

    def probe(step, model):
        with torch.no_grad():  # a plain prompt, as the probes send: no packed positions, no segment plan
            model(**tok(["Q: Where was X born?\nA:"], return_tensors="pt"))
        seen.append((step, model.config._attn_implementation, model.training))

    train_model(world, tok, TINY, progress=False, callback=probe, callback_every=2)
    assert seen == [(2, "sdpa", False), (4, "sdpa", False)]
