"""Answer scorers on literal inputs: one behaviour per test, legacy bugs included."""

from kick_core import metrics as M


def test_normalize_answer_drops_articles_punctuation_case_and_underscores():
    assert M.normalize_answer("The  Eiffel_Tower!") == "eiffel tower"


def test_normalize_answer_treats_curly_quotes_as_punctuation():
    assert M.normalize_answer("\u2018Jaws\u2019") == "jaws"


def test_exact_match_is_equality_after_normalisation():
    assert M.exact_match("The Paris.", ["paris"]) == 1.0
    assert M.exact_match("Paris France", ["paris"]) == 0.0


def test_exact_match_empty_prediction_scores_zero():
    assert M.exact_match("", ["paris"]) == 0.0
    assert M.exact_match("the", ["paris"]) == 0.0


def test_contains_answer_requires_word_boundaries():
    assert M.contains_answer("it is 10", ["1"]) == 0.0
    assert M.contains_answer("it is paris, france", ["Paris"]) == 1.0


def test_contains_answer_matches_multiword_alias():
    assert M.contains_answer("I think Herman Melville wrote it", ["herman melville"]) == 1.0


def test_token_f1_partial_overlap():
    assert abs(M.token_f1("herman melville", "melville") - 2 / 3) < 1e-12


def test_token_f1_no_overlap_is_zero_and_both_empty_is_one():
    assert M.token_f1("london", "paris") == 0.0
    assert M.token_f1("", "") == 1.0


def test_max_f1_takes_best_alias():
    assert M.max_f1("da vinci", ["leonardo da vinci", "da vinci"]) == 1.0


def test_first_line_strips_and_cuts_at_newline():
    assert M.first_line("  Paris\nQ: next") == "Paris"


def test_first_sentence_cuts_at_sentence_end_but_keeps_abbreviations():
    assert M.first_sentence("Mars. It is red.") == "Mars"
    assert M.first_sentence("The U.S.A is big") == "The U.S.A is big"


def test_legacy_freebase_match_counts_alias_in_the_prompt():
    decoded = "Please give answer to this question: Which country is Paris the capital of?\nThe answer is Germany"
    assert M.legacy_freebase_match(decoded, ["paris"]) == 1.0  # bug kept: the question contains the alias


def test_legacy_freebase_match_removes_all_spaces():
    assert M.legacy_freebase_match("The answer is Gold Eye", ["goldeneye"]) == 0.0
    assert M.legacy_freebase_match("The answer is Golden Eye", ["goldeneye"]) == 1.0


def test_legacy_trivia_em_empty_prediction_scores_one():
    assert M.legacy_trivia_em("", ["paris"]) == 1.0
    assert M.legacy_trivia_em("the", ["paris"]) == 1.0  # articles only: normalises to ''


def test_legacy_trivia_em_accepts_containment_either_way():
    assert M.legacy_trivia_em("paris france", ["paris"]) == 1.0
    assert M.legacy_trivia_em("1", ["10"]) == 1.0  # partial-token match (bug kept)
    assert M.legacy_trivia_em("london", ["paris"]) == 0.0


def test_legacy_mmlu_prediction_is_last_character():
    assert M.legacy_mmlu_prediction("...\nAnswer: B") == "B"


def test_legacy_mmlu_prediction_after_skipped_eos_is_colon():
    assert M.legacy_mmlu_prediction("...\nAnswer:") == ":"
