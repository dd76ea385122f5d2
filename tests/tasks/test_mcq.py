"""MMLU: Hendrycks CSV loading (real files), golden prompts, letter scoring, legacy last character, categories."""

import csv

import pytest
from task_helpers import FIXTURES, make_cfg

from kick_core.engine import ScoreResult
from kick_core.tasks import TASKS
from kick_core.tasks.mcq import header
from kick_core.tasks.mmlu_categories import SUBCATEGORIES, subject_category

TASK = TASKS["mcq"]
DATA = str(FIXTURES / "mmlu")


def test_loads_subjects_in_sorted_order_with_their_dev_shots():
    ex = TASK.load(make_cfg(task="mcq", protocol="strict", dataset=DATA).task, seed=0)
    subjects = list(dict.fromkeys(e.meta["subject"] for e in ex))
    assert subjects == ["abstract_algebra", "college_physics", "global_facts", "high_school_geography"]
    for subject in subjects:  # every CSV record, counted independently with the csv module
        with open(FIXTURES / "mmlu" / "test" / f"{subject}_test.csv", newline="") as f:
            assert sum(e.meta["subject"] == subject for e in ex) == sum(1 for _ in csv.reader(f))
    assert all(len(e.meta["shots"]) == 5 for e in ex)


def test_legacy_reads_none_option_as_nan_like_pandas_defaults():
    legacy = {e.id: e for e in TASK.load(make_cfg(task="mcq", protocol="legacy", dataset=DATA).task, seed=0)}
    strict = {e.id: e for e in TASK.load(make_cfg(task="mcq", protocol="strict", dataset=DATA).task, seed=0)}
    assert legacy["college_physics/test/60"].choices[3] == "nan"
    assert strict["college_physics/test/60"].choices[3] == "None"


def test_legacy_header_keeps_double_space_strict_does_not():
    assert header("abstract_algebra", legacy=True) == \
        "The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
    assert header("abstract_algebra", legacy=False) == \
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"


def test_golden_one_shot_prompt(tok):
    cfg = make_cfg(task="mcq", protocol="legacy", dataset=DATA, n_shots=1)
    ex = [e for e in TASK.load(cfg.task, seed=0) if e.id == "global_facts/test/0"]
    (p,) = TASK.prompts(ex, cfg, tok, 2048)
    assert p.text == (
        "The following are multiple choice questions (with answers) about  global facts.\n\n"
        "Which of the following pairs of statements are both true (as of 2019)?\n"
        "A. People tend to be optimistic about their own future and the future of their nation or the world.\n"
        "B. People tend to be optimistic about their own future but pessimistic about the future of their nation or the world.\n"
        "C. People tend to be pessimistic about their own future but optimistic about the future of their nation or the world.\n"
        "D. People tend to be pessimistic about their own future and the future of their nation or the world.\n"
        "Answer: B\n\n"
        "As of 2016, about what percentage of adults aged 18 years or older were overweight?\n"
        "A. 10%\nB. 20%\nC. 40%\nD. 80%\nAnswer:"
    )
    assert p.continuations == (" A", " B", " C", " D") and p.group == "global_facts|k=1"


def test_shots_are_reduced_while_prompt_exceeds_limit(tok):
    cfg = make_cfg(task="mcq", protocol="legacy", dataset=DATA, seqlen=400)
    ex = TASK.load(cfg.task, seed=0)[:3]
    for p in TASK.prompts(ex, cfg, tok, 4096):
        assert p.meta["prompt_tokens"] <= 400 or p.meta["n_shots"] == 0
        assert p.meta["n_shots"] < 5


def _scored(tok, logprobs, next_token_text):
    cfg = make_cfg(task="mcq", protocol="strict", dataset=DATA, n_shots=0)
    (p,) = TASK.prompts(TASK.load(cfg.task, seed=0)[:1], cfg, tok, 2048)  # abstract_algebra/test/0, gold B
    nxt = tok(next_token_text, add_special_tokens=False)["input_ids"][0] if next_token_text else tok.eos_token_id
    return TASK.score(p, ScoreResult(tuple(logprobs), (1,) * 4, 10, nxt), cfg, tok)


def test_loglikelihood_prediction_is_argmax_letter(tok):
    rec = _scored(tok, [-3.0, -0.5, -2.0, -4.0], "B")
    assert rec["prediction"] == "B" and rec["scores"]["accuracy"] == 1.0


def test_legacy_prediction_is_last_character_of_prompt_plus_token(tok):
    rec = _scored(tok, [-3.0, -0.5, -2.0, -4.0], "B")
    assert rec["output"] == "B" and rec["scores"]["generation_accuracy"] == 1.0


def test_legacy_eos_token_makes_colon_prediction_and_invalid(tok):
    rec = _scored(tok, [-3.0, -0.5, -2.0, -4.0], None)
    assert rec["output"] == ":" and rec["scores"]["generation_accuracy"] == 0.0 and rec["scores"]["invalid_rate"] == 1.0


def test_category_mapping_is_the_hendrycks_one():
    assert len(SUBCATEGORIES) == 57
    assert subject_category("high_school_geography") == "social_sciences"
    assert subject_category("professional_accounting") == "other"
    assert subject_category("world_religions") == "humanities"
    assert subject_category("world_chemistry_facts") == "stem"  # keyword rule for non-MMLU subjects
    assert subject_category("kick_world_trivia") == "other"


def test_aggregate_reports_micro_macro_and_categories():
    cfg = make_cfg(task="mcq", protocol="strict", dataset=DATA)
    recs = [{"id": f"a{i}", "subject": "s1", "category": "stem", "flags": {"n_shots": 5},
             "scores": {"accuracy": 1.0, "generation_accuracy": 0.0, "invalid_rate": 1.0}} for i in range(3)]
    recs.append({"id": "b", "subject": "s2", "category": "other", "flags": {"n_shots": 5},
                 "scores": {"accuracy": 0.0, "generation_accuracy": 0.0, "invalid_rate": 0.0}})
    metrics, meta = TASK.aggregate(recs, cfg)
    assert metrics["accuracy"]["value"] == pytest.approx(0.75)
    assert metrics["accuracy_macro"]["value"] == pytest.approx(0.5)
    assert metrics["accuracy_stem"]["value"] == 1.0 and metrics["accuracy_other"]["value"] == 0.0
    assert meta["per_subject"]["s1"]["accuracy"] == 1.0


def test_golden_cloze_prompt_hides_options_and_scores_their_text(tok):
    cfg = make_cfg(task="mcq", protocol="strict", dataset=DATA, n_shots=1, formulation="cloze")
    ex = [e for e in TASK.load(cfg.task, seed=0) if e.id == "global_facts/test/0"]
    (p,) = TASK.prompts(ex, cfg, tok, 2048)
    assert p.text == (
        "The following are questions (with answers) about global facts.\n\n"
        "Question: Which of the following pairs of statements are both true (as of 2019)?\n"
        "Answer: People tend to be optimistic about their own future but pessimistic about the future of their "
        "nation or the world.\n\n"
        "Question: As of 2016, about what percentage of adults aged 18 years or older were overweight?\nAnswer:"
    )
    assert p.continuations == (" 10%", " 20%", " 40%", " 80%")


def test_cloze_prediction_is_argmax_per_character(tok):
    cfg = make_cfg(task="mcq", protocol="strict", dataset=DATA, n_shots=0, formulation="cloze")
    (p,) = TASK.prompts(TASK.load(cfg.task, seed=0)[:1], cfg, tok, 2048)  # abstract_algebra/test/0, gold B
    chars = [len(c) for c in p.example.choices]
    # B has the lowest summed log-likelihood but the highest per character once lengths differ
    logprobs = [-1.0 * chars[0], -0.5 * chars[1], -2.0 * chars[2], -4.0 * chars[3]]
    rec = TASK.score(p, ScoreResult(tuple(logprobs), (1,) * 4, 10, 5), cfg, tok)
    assert rec["prediction"] == "B" and rec["scores"]["accuracy"] == 1.0
    assert rec["choice_chars"] == chars and rec["choice_scores"] == logprobs
    assert rec["scores"]["generation_accuracy"] is None  # one greedy letter has no meaning without letters


def test_cloze_is_strict_only_and_a_misspelt_formulation_is_named():
    from kick_core.errors import ConfigError

    with pytest.raises(ConfigError, match="protocol='strict'"):
        make_cfg(task="mcq", protocol="legacy", dataset=DATA, formulation="cloze")
    with pytest.raises(ConfigError, match="formulation"):
        make_cfg(task="mcq", dataset=DATA, formulation="clozed")


def test_world_cloze_prompts_are_the_tasks():
    """The world model is trained on kick_core.world.prompts; they must be the task's strings."""
    from kick_core.tasks.mcq import cloze_header, cloze_question
    from kick_core.world import prompts

    assert prompts.mcq_cloze_header("world_people") == cloze_header("world_people")
    assert prompts.mcq_cloze_question(" Where was X born? ") == cloze_question(" Where was X born? ")
    assert prompts.mcq_header("world_people", legacy=True) == header("world_people", legacy=True)
    assert prompts.mcq_header("world_people", legacy=False) == header("world_people", legacy=False)
