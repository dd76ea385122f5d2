"""TriviaQA rc: loaders (jsonl / json), golden prompts, legacy and strict scoring, token truncation."""

import json

import pytest
from task_helpers import FIXTURES, make_cfg

from kick_core.engine import Generation
from kick_core.errors import ConfigError
from kick_core.tasks import TASKS
from kick_core.tasks.icr_qa import read_trivia_file

TASK = TASKS["icr_qa"]
DATA = str(FIXTURES / "triviaqa")


def _gen(text):
    return Generation(text=text, prompt_ids=(), token_ids=(1,), stop_reason="length")


def test_loads_jsonl_rows_with_first_wiki_and_search_context():
    ex = TASK.load(make_cfg(task="icr_qa", protocol="legacy", dataset=DATA).task, seed=0)
    assert [e.id for e in ex] == ["tc_1", "tc_2", "tc_3", "tc_4"]
    assert ex[1].context[1] == "" and ex[2].context[0] == "" and ex[0].answers == ("sunset boulevard", "sunset blvd")


def test_json_export_with_data_key_reads_like_jsonl(tmp_path):
    rows = [json.loads(line) for line in (FIXTURES / "triviaqa" / "validation.jsonl").read_text().splitlines()]
    (tmp_path / "validation.json").write_text(json.dumps({"data": rows}))
    assert [e.id for e in read_trivia_file(tmp_path / "validation.json")] == ["tc_1", "tc_2", "tc_3", "tc_4"]


def test_one_record_per_book_with_both(tok):
    cfg = make_cfg(task="icr_qa", protocol="legacy", dataset=DATA, n_examples=2)
    ids = [p.id for p in TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)]
    assert ids == ["tc_1/closed", "tc_1/open", "tc_2/closed", "tc_2/open"]


def test_golden_closed_book_prompt(tok):
    cfg = make_cfg(task="icr_qa", protocol="legacy", dataset=DATA, book="closed", n_examples=1)
    (p,) = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)
    assert p.text == "Answer these questions:\n\nQ: Which Lloyd Webber musical premiered in the US on 10th December 1993?\nA:"
    assert p.max_new_tokens == 32


def test_golden_legacy_open_book_concatenates_without_separator_and_strips(tok):
    cfg = make_cfg(task="icr_qa", protocol="legacy", dataset=DATA, book="open", n_examples=2)
    p = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)[1]
    assert p.text == ("Alvin and the Chipmunks were created by Ross Bagdasarian, who used the stage name David Seville."
                      "\n\nBased on these texts, answer these questions:\n\nQ: Who was the man behind The Chipmunks?\nA:")


def test_legacy_open_book_context_is_cut_to_3072_characters(tok):
    cfg = make_cfg(task="icr_qa", protocol="legacy", dataset=DATA, book="open")
    p = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)[2]  # 80 x 56-char web context
    assert p.meta["evidence_chars"] == 3072
    assert p.text.endswith("\n\nBased on these texts, answer these questions:\n\nQ: What is the capital of France?\nA:")


def test_strict_joins_documents_with_newline(tok):
    cfg = make_cfg(task="icr_qa", protocol="strict", dataset=DATA, book="open", n_examples=1, split="validation")
    ex = TASK.load(make_cfg(task="icr_qa", protocol="legacy", dataset=DATA, n_examples=1).task, seed=0)
    (p,) = TASK.prompts(ex, cfg, tok, 4096)
    wiki, web = ex[0].context
    assert p.text.startswith(wiki + "\n" + web + "\n\nBased on these texts") and p.meta["truncated"] is False


def test_strict_truncation_by_tokens_keeps_the_question(tok):
    cfg = make_cfg(task="icr_qa", protocol="strict", dataset=DATA, book="open")
    ex = [e for e in TASK.load(make_cfg(task="icr_qa", protocol="legacy", dataset=DATA).task, seed=0) if e.id == "tc_3"]
    (p,) = TASK.prompts(ex, cfg, tok, 300)
    assert p.meta["truncated"] is True
    assert len(tok(p.text)["input_ids"]) <= 300 - 32
    assert p.text.endswith("Based on these texts, answer these questions:\n\nQ: What is the capital of France?\nA:")
    assert p.meta["evidence_chars"] < len(ex[0].context[1]) and p.meta["answer_in_evidence"] is True


def test_legacy_scores_empty_prediction_as_em_one(tok):
    cfg = make_cfg(task="icr_qa", protocol="legacy", dataset=DATA, book="closed", n_examples=1)
    (p,) = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)
    rec = TASK.score(p, _gen(" the \n"), cfg, tok)
    assert rec["prediction"] == "the" and rec["scores"] == {"em_closed": 1.0, "f1_closed": 0.0}


def test_strict_scores_em_contains_and_f1_separately(tok):
    cfg = make_cfg(task="icr_qa", protocol="strict", dataset=DATA, book="closed", n_examples=4)
    p = [x for x in TASK.prompts(TASK.load(make_cfg(task="icr_qa", protocol="legacy", dataset=DATA).task, seed=0),
                                 cfg, tok, 2048) if x.id == "tc_1/closed"][0]
    rec = TASK.score(p, _gen(" It was Sunset Boulevard\nQ: next"), cfg, tok)
    assert rec["prediction"] == "It was Sunset Boulevard"
    assert rec["scores"]["exact_match_closed"] == 0.0 and rec["scores"]["contains_closed"] == 1.0
    assert rec["scores"]["f1_closed"] == pytest.approx(2 / 3)  # P = 2/4, R = 1


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_chat_prompts_wrap_both_books_in_the_models_template_and_still_fit(tok):
    import copy

    chat_tok = copy.deepcopy(tok)
    chat_tok.chat_template = CHATML
    cfg = make_cfg(task="icr_qa", protocol="strict", dataset=DATA, prompt_format="chat")
    ex = [e for e in TASK.load(make_cfg(task="icr_qa", protocol="legacy", dataset=DATA).task, seed=0) if e.id == "tc_3"]
    closed, opened = TASK.prompts(ex, cfg, chat_tok, 300)
    assert closed.text == ("<|im_start|>user\nAnswer in a few words: What is the capital of France?<|im_end|>\n"
                           "<|im_start|>assistant\n")
    assert opened.text.endswith("Based on these texts, answer in a few words: What is the capital of France?"
                                "<|im_end|>\n<|im_start|>assistant\n")
    assert opened.text.startswith("<|im_start|>user\nQuestion: What is the capital of France?\n\n")  # asked before too
    assert opened.meta["truncated"] is True and len(chat_tok(opened.text)["input_ids"]) <= 300 - 32
    raw = TASK.prompts(ex, make_cfg(task="icr_qa", protocol="strict", dataset=DATA), chat_tok, 300)
    assert raw[0].text.startswith("Answer these questions:")  # raw stays the study's prompt


def test_chat_prompts_are_refused_where_they_do_not_exist():
    with pytest.raises(ConfigError, match="prompt_format='chat' with task='icr_qa', protocol='legacy'"):
        make_cfg(task="icr_qa", protocol="legacy", prompt_format="chat")
    with pytest.raises(ConfigError, match="prompt_format"):
        make_cfg(task="mcq", prompt_format="chat")
    with pytest.raises(ConfigError, match="prompt_format"):
        make_cfg(task="icr_qa", prompt_format="chatml")
