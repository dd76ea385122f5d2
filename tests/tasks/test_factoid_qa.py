"""FreebaseQA: loaders on the original JSON schema and HF rows, golden prompts, legacy and strict scoring."""

import pytest
from task_helpers import FIXTURES, make_cfg

from kick_core.engine import Generation
from kick_core.errors import ConfigError
from kick_core.tasks import TASKS
from kick_core.tasks.factoid_qa import parse_question

TASK = TASKS["factoid_qa"]
DATA = str(FIXTURES / "freebase")


def _gen(text, prompt_ids=(), token_ids=(), reason="stop"):
    return Generation(text=text, prompt_ids=tuple(prompt_ids), token_ids=tuple(token_ids), stop_reason=reason)


def test_legacy_loads_train_split_in_file_order_with_off_by_one():
    cfg = make_cfg(task="factoid_qa", protocol="legacy", dataset=DATA, n_examples=2)
    ex = TASK.load(cfg.task, seed=0)
    assert [e.id for e in ex] == ["FreebaseQA-train-0", "FreebaseQA-train-1", "FreebaseQA-train-2"]


def test_legacy_aliases_are_first_answer_of_first_parse_only():
    ex = TASK.load(make_cfg(task="factoid_qa", protocol="legacy", dataset=DATA).task, seed=0)
    melville = ex[2]
    assert melville.meta["legacy_aliases"] == ["herman melville", "melville"]
    assert melville.answers == ("herman melville", "melville", "h. melville")


def test_strict_loads_eval_split_and_samples_with_seed():
    cfg = make_cfg(task="factoid_qa", protocol="strict", dataset=DATA, n_examples=3)
    a, b = TASK.load(cfg.task, seed=1), TASK.load(cfg.task, seed=1)
    assert [e.id for e in a] == [e.id for e in b] and len(a) == 3
    assert all(e.id.startswith("FreebaseQA-eval-") for e in a)
    assert [e.id for e in a] == sorted((e.id for e in a), key=lambda x: int(x.rsplit("-", 1)[1]))


def test_hf_row_with_dict_of_lists_parses_like_json():
    row = {"Question-ID": "FreebaseQA-eval-9", "RawQuestion": "Q?", "ProcessedQuestion": "q",
           "Parses": {"Parse-Id": ["p0", "p1"], "Answers": [{"AnswersMid": ["m1"], "AnswersName": [["x", "y"]]},
                                                             {"AnswersMid": ["m2"], "AnswersName": [["z"]]}]}}
    e = parse_question(row)
    assert e.answers == ("x", "y", "z") and e.meta["legacy_aliases"] == ["x", "y"]


def test_missing_split_file_names_the_file():
    cfg = make_cfg(task="factoid_qa", protocol="strict", dataset=DATA, split="dev")
    with pytest.raises(ConfigError, match="FreebaseQA-dev.json"):
        TASK.load(cfg.task, seed=0)


def test_golden_legacy_prompt_has_newline_and_trailing_space(tok):
    cfg = make_cfg(task="factoid_qa", protocol="legacy", dataset=DATA, n_examples=1)
    (p, _) = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)
    assert p.text == "Please give answer to this question: What was Pierce Brosnan's first outing as 007?\nThe answer is "
    assert p.max_new_tokens == 2 * len(tok(p.text)["input_ids"]) and p.stop == ()


def test_golden_strict_prompt_has_no_trailing_space_and_stops_at_newline(tok):
    cfg = make_cfg(task="factoid_qa", protocol="strict", dataset=DATA)
    p = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)[0]
    assert p.text == "Please give answer to this question: Which planet is known as the Red Planet?\nThe answer is"
    assert p.stop == ("\n",) and p.max_new_tokens == 32


def test_legacy_score_matches_alias_inside_prompt(tok):
    cfg = make_cfg(task="factoid_qa", protocol="legacy", dataset=DATA)
    p = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)[1]  # "Which country is Paris the capital of?"
    ids = tok(p.text)["input_ids"]
    rec = TASK.score(p, _gen(" germany", ids, tok(" germany", add_special_tokens=False)["input_ids"]), cfg, tok)
    assert rec["scores"]["accuracy"] == 0.0  # aliases are france / french republic
    p0 = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)[0]
    out = tok(" Golden Eye", add_special_tokens=False)["input_ids"]
    assert TASK.score(p0, _gen(" Golden Eye", tok(p0.text)["input_ids"], out), cfg, tok)["scores"]["accuracy"] == 1.0


def test_strict_score_cuts_continuation_and_reports_em_and_contains(tok):
    cfg = make_cfg(task="factoid_qa", protocol="strict", dataset=DATA)
    p = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)[1]  # Eiffel Tower -> paris / city of light
    rec = TASK.score(p, _gen(" in Paris. It was built in 1889"), cfg, tok)
    assert rec["prediction"] == "in Paris"
    assert rec["scores"] == {"exact_match": 0.0, "contains": 1.0, "contains_excl_leaked": 1.0}


def test_strict_flags_answer_in_question_and_excludes_it(tok):
    cfg = make_cfg(task="factoid_qa", protocol="strict", dataset=DATA)
    p = TASK.prompts(TASK.load(cfg.task, seed=0), cfg, tok, 2048)[2]  # "...Juneau as its capital, Alaska or Hawaii?"
    rec = TASK.score(p, _gen(" Alaska"), cfg, tok)
    assert rec["flags"]["answer_in_question"] is True
    assert rec["scores"]["exact_match"] == 1.0 and rec["scores"]["contains_excl_leaked"] is None


def test_legacy_aggregate_divides_by_n_not_n_plus_one():
    cfg = make_cfg(task="factoid_qa", protocol="legacy", dataset=DATA, n_examples=3)
    records = [{"id": str(i), "scores": {"accuracy": s}, "flags": {}} for i, s in enumerate([1, 1, 0, 1])]
    metrics, meta = TASK.aggregate(records, cfg)
    assert metrics["accuracy"]["value"] == pytest.approx(3 / 3)  # 4 evaluated, 3 right, divided by n = 3
    assert meta["n_evaluated"] == 4 and meta["legacy_denominator"] == 3


def test_chat_prompt_is_the_question_in_the_models_template(tok):
    import copy

    from kick_core.models import format_chat

    chat_tok = copy.deepcopy(tok)
    chat_tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                              "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    cfg = make_cfg(task="factoid_qa", dataset=DATA, n_examples=2, prompt_format="chat")
    examples = TASK.load(cfg.task, seed=0)
    prompts = TASK.prompts(examples, cfg, chat_tok, 2048)
    assert [p.text for p in prompts] == [f"<|im_start|>user\nAnswer in a few words: {e.input}<|im_end|>\n"
                                         "<|im_start|>assistant\n" for e in examples]
    assert prompts[0].stop == ("\n",)
    plain = TASK.prompts(examples, cfg, tok, 2048)  # no template of its own: 'auto' falls back to Vicuna v1.1
    assert plain[0].text == format_chat(tok, [f"Answer in a few words: {examples[0].input}"])
    rec = TASK.score(prompts[0], Generation(f"It is {examples[0].answers[0]}.", (), (1,), "stop"), cfg, tok)
    assert rec["scores"]["contains"] == 1.0
