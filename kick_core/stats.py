"""Uncertainty for every score: bootstrap CIs, McNemar's exact test, paired bootstrap and the "matching" rule.

The paper calls a compressed model "matching" when its score is within 5% (relative) of the dense
model's, applied to point estimates. Here the rule is stated with its uncertainty: a paired
bootstrap over the *same* examples gives a CI of the ratio compressed/dense (dense/compressed when
lower is better), and the verdict is

* ``matching``      when the whole CI lies at or above ``1 - tolerance``,
* ``not matching``  when the whole CI lies below it,
* ``inconclusive``  when the CI straddles it (the data cannot tell).

Everything is seeded (numpy ``default_rng(seed)``) and works on plain lists of per-example
records as written to ``examples.jsonl`` (``record["scores"][metric]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kick_core.errors import ConfigError

_CHUNK = 200  # bootstrap resamples drawn at once (bounds memory for n ~ 14k examples)


def _resample_stat(values: np.ndarray, n_bootstrap: int, seed: int,
                   statistic: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``statistic`` over ``n_bootstrap`` resamples of the rows of ``values`` (shape (n,) or (n, k))."""
    rng = np.random.default_rng(seed)
    n = len(values)
    out = []
    for start in range(0, n_bootstrap, _CHUNK):
        idx = rng.integers(0, n, size=(min(_CHUNK, n_bootstrap - start), n))
        out.append(statistic(values[idx]))
    return np.concatenate(out)


def _mean_rows(sample: np.ndarray) -> np.ndarray:
    return sample.mean(axis=1)


def bootstrap_ci(values: Sequence[float], *, n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95,
                 statistic: Callable[[np.ndarray], np.ndarray] = _mean_rows) -> tuple[float, float]:
    """Percentile bootstrap CI of a statistic of ``values`` (default: the mean).

    ``statistic`` maps an (n_resamples, n) array to (n_resamples,). With fewer than two values the
    CI is (nan, nan): one observation says nothing about spread.
    """
    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return (math.nan, math.nan)
    boots = _resample_stat(arr, n_bootstrap, seed, statistic)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return float(lo), float(hi)


def summarize(values: Sequence[float | None], *, higher_is_better: bool = True, n_bootstrap: int = 1000,
              seed: int = 0, scale: float = 1.0) -> dict[str, Any]:
    """``{"value", "ci_low", "ci_high", "n", "higher_is_better"}`` for the mean of ``values`` (None skipped)."""
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0, "higher_is_better": higher_is_better}
    lo, hi = bootstrap_ci(kept, n_bootstrap=n_bootstrap, seed=seed)
    nan_none = lambda x: None if math.isnan(x) else x * scale  # noqa: E731
    return {"value": float(np.mean(kept)) * scale, "ci_low": nan_none(lo), "ci_high": nan_none(hi),
            "n": len(kept), "higher_is_better": higher_is_better}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b (1->0) and c (0->1).

    Under H0 the b + c discordant pairs split as Binomial(b + c, 1/2); p = min(1, 2 * P(X <= min(b, c))).
    """
    from scipy.stats import binom  # here, not at module level: importing scipy.stats costs each run about a second

    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(b, c), n, 0.5)))


def example_score(record: Mapping[str, Any], metric: str) -> float | None:
    """An example record's score for ``metric``: ``record['scores'][metric]`` or ``record[metric]``."""
    scores = record.get("scores")
    value = scores.get(metric) if isinstance(scores, Mapping) else None
    if value is None:
        value = record.get(metric)
    return None if value is None else float(value)


def paired_scores(dense_examples: Sequence[Mapping[str, Any]], comp_examples: Sequence[Mapping[str, Any]],
                  metric: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Ids and aligned score arrays of the examples both runs scored (joined on ``id``, dense order)."""
    comp = {str(e.get("id")): example_score(e, metric) for e in comp_examples}
    ids, d, c = [], [], []
    for e in dense_examples:
        key = str(e.get("id"))
        sd, sc = example_score(e, metric), comp.get(key)
        if sd is not None and sc is not None:
            ids.append(key)
            d.append(sd)
            c.append(sc)
    return ids, np.asarray(d, dtype=float), np.asarray(c, dtype=float)


def paired_analysis(dense_examples: list[dict], comp_examples: list[dict], metric: str, *,
                    n_bootstrap: int = 1000, seed: int = 0, tolerance: float = 0.05,
                    higher_is_better: bool | None = None) -> dict[str, Any]:
    """Compare a compressed run with its dense twin on the same examples.

    Args:
        dense_examples: per-example records of the dense run (``id`` and ``scores[metric]``).
        comp_examples: the compressed run's records; joined on ``id``.
        metric: the per-example score to compare (e.g. 'accuracy', 'exact_match').
        n_bootstrap: paired bootstrap resamples.
        seed: bootstrap seed.
        tolerance: the paper's relative tolerance (0.05 = "within 5% of dense").
        higher_is_better: direction of the metric; default: True unless the metric is 'nll'/'perplexity'.

    Returns:
        A dict with ``n``, ``dense``, ``compressed`` (means), ``difference`` and its paired-bootstrap
        ``difference_ci``; for 0/1 scores also ``lost`` (right -> wrong), ``gained`` (wrong -> right),
        ``lost_ids``, ``gained_ids`` and ``mcnemar_p``; and ``ratio``, ``ratio_ci``, ``threshold``,
        ``verdict`` (matching | not matching | inconclusive) and ``point_verdict`` (the paper's rule on
        point estimates alone).

    Raises:
        ConfigError: no example is scored in both runs, or tolerance is outside [0, 1).
    """
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance={tolerance!r} must be in [0, 1); the paper uses 0.05.")
    if higher_is_better is None:
        higher_is_better = metric not in ("nll", "perplexity", "loss")
    ids, d, c = paired_scores(dense_examples, comp_examples, metric)
    if len(ids) == 0:
        raise ConfigError(
            f"no example has metric {metric!r} in both runs (joined on 'id'); check the metric name and that "
            "both runs evaluated the same task and examples."
        )
    out: dict[str, Any] = {"metric": metric, "n": len(ids), "dense": float(d.mean()), "compressed": float(c.mean()),
                           "difference": float(c.mean() - d.mean()), "higher_is_better": higher_is_better}
    binary = bool(np.isin(d, (0.0, 1.0)).all() and np.isin(c, (0.0, 1.0)).all())
    if binary:
        lost = [i for i, a, b in zip(ids, d, c) if a == 1 and b == 0]
        gained = [i for i, a, b in zip(ids, d, c) if a == 0 and b == 1]
        out.update(lost=len(lost), gained=len(gained), lost_ids=lost, gained_ids=gained,
                   mcnemar_p=mcnemar_exact(len(lost), len(gained)))
    pairs = np.stack([d, c], axis=1)  # (n, 2): resample examples, keep each pair together
    boots = _resample_stat(pairs, n_bootstrap, seed, lambda s: s.mean(axis=1))  # (B, 2)
    diff = boots[:, 1] - boots[:, 0]
    out["difference_ci"] = tuple(float(x) for x in np.quantile(diff, [0.025, 0.975]))
    num, den = (boots[:, 1], boots[:, 0]) if higher_is_better else (boots[:, 0], boots[:, 1])
    point_num, point_den = (c.mean(), d.mean()) if higher_is_better else (d.mean(), c.mean())
    threshold = 1 - tolerance
    out["threshold"] = threshold
    if point_den <= 0:
        out.update(ratio=None, ratio_ci=(None, None), verdict="inconclusive", point_verdict="inconclusive")
        return out
    # A resample with a zero denominator has an unbounded ratio; a large finite stand-in keeps quantiles defined.
    ratios = np.where(den > 0, num / np.where(den > 0, den, 1), np.where(num > 0, 1e12, 1.0))
    lo, hi = (float(x) for x in np.quantile(ratios, [0.025, 0.975]))
    ratio = float(point_num / point_den)
    out.update(ratio=ratio, ratio_ci=(lo, hi), point_verdict="matching" if ratio >= threshold else "not matching")
    out["verdict"] = "matching" if lo >= threshold else "not matching" if hi < threshold else "inconclusive"
    return out
