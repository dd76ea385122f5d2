"""Bootstrap, McNemar and the matching rule on literal cases."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from kick_core.errors import ConfigError
from kick_core.stats import bootstrap_ci, mcnemar_exact, paired_analysis, summarize


def _recs(scores, metric="accuracy", prefix="q"):
    return [{"id": f"{prefix}{i}", "scores": {metric: s}} for i, s in enumerate(scores)]


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1] * 5
    a = bootstrap_ci(values, n_bootstrap=500, seed=3)
    assert a == bootstrap_ci(values, n_bootstrap=500, seed=3)
    assert a[0] < np.mean(values) < a[1]


def test_bootstrap_ci_of_constant_values_is_a_point():
    assert bootstrap_ci([1.0] * 20, n_bootstrap=100) == (1.0, 1.0)


def test_bootstrap_ci_of_single_value_is_nan():
    lo, hi = bootstrap_ci([1.0])
    assert math.isnan(lo) and math.isnan(hi)


def test_summarize_skips_none_and_scales():
    out = summarize([1.0, None, 0.0, 1.0, 1.0], n_bootstrap=100, scale=100)
    assert out["n"] == 4 and out["value"] == 75.0 and out["ci_low"] <= 75.0 <= out["ci_high"]


@pytest.mark.parametrize("b,c", [(0, 0), (5, 0), (3, 7), (10, 11), (1, 30)])
def test_mcnemar_exact_equals_two_sided_binomial_test(b, c):
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_paired_analysis_counts_flips_by_id():
    dense = _recs([1, 1, 1, 0, 0, 1])
    comp = _recs([1, 0, 0, 1, 0, 1])
    out = paired_analysis(dense, comp, "accuracy", n_bootstrap=200)
    assert (out["lost"], out["gained"]) == (2, 1)
    assert out["lost_ids"] == ["q1", "q2"] and out["gained_ids"] == ["q3"]
    assert out["mcnemar_p"] == pytest.approx(binomtest(1, 3, 0.5).pvalue)


def test_paired_analysis_joins_on_id_not_order():
    dense = _recs([1, 0])
    comp = list(reversed(_recs([1, 0])))
    assert paired_analysis(dense, comp, "accuracy", n_bootstrap=50)["lost"] == 0


def test_identical_runs_are_matching_with_zero_difference():
    scores = [1, 0, 1, 1] * 50
    out = paired_analysis(_recs(scores), _recs(scores), "accuracy", n_bootstrap=300)
    assert out["difference_ci"] == (0.0, 0.0) and out["verdict"] == "matching"


def test_large_drop_is_not_matching():
    dense = _recs([1] * 180 + [0] * 20)
    comp = _recs([1] * 90 + [0] * 110)
    out = paired_analysis(dense, comp, "accuracy", n_bootstrap=300)
    assert out["verdict"] == "not matching" and out["point_verdict"] == "not matching"


def test_small_sample_near_threshold_is_inconclusive():
    dense = _recs([1] * 15 + [0] * 5)
    comp = _recs([1] * 14 + [0] * 6)  # ratio 0.933, below 0.95 on the point estimate only
    out = paired_analysis(dense, comp, "accuracy", n_bootstrap=500)
    assert out["point_verdict"] == "not matching" and out["verdict"] == "inconclusive"


def test_lower_is_better_metric_uses_inverse_ratio():
    dense = [{"id": f"w{i}", "nll": 2.0} for i in range(10)]
    comp = [{"id": f"w{i}", "nll": 4.0} for i in range(10)]
    out = paired_analysis(dense, comp, "nll", n_bootstrap=50)
    assert out["ratio"] == pytest.approx(0.5) and out["verdict"] == "not matching"


def test_paired_analysis_without_common_examples_raises():
    with pytest.raises(ConfigError, match="no example has metric"):
        paired_analysis(_recs([1]), _recs([1], prefix="x"), "accuracy")
