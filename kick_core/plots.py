"""Figures and small tables for the notebooks (seaborn); every function takes plain data and returns it drawn.

Experiment notebooks show one run (:func:`metrics_frame`, :func:`plot_run_metrics`,
:func:`plot_layer_sparsity`). For a study from :func:`kick_core.results.load_runs` this module picks
each run's headline metric(s) (:func:`primary`) and tabulates them (:func:`summary_table`); the
study's figures are :mod:`kick_core.figures`. Error bars are the runs' own bootstrap 95% CIs, never recomputed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

_METRIC_COLS = ["metric", "value", "ci_low", "ci_high", "n", "higher_is_better"]


def _as_dict(obj: Any) -> dict[str, Any]:
    return dict(obj.as_dict()) if hasattr(obj, "as_dict") else dict(obj or {})


def metrics_frame(result: Any) -> pd.DataFrame:
    """A TaskResult's (or record's) metrics as a table: metric, value, ci_low, ci_high, n, higher_is_better."""
    metrics = _as_dict(result).get("metrics") or {}
    return pd.DataFrame([{"metric": k, **v} for k, v in metrics.items()], columns=_METRIC_COLS)


def plot_run_metrics(result: Any):
    """One run's metrics as points with their 95% CI, one small panel per metric (scales differ)."""
    import matplotlib.pyplot as plt

    df = metrics_frame(result)
    fig, axes = plt.subplots(1, max(1, len(df)), figsize=(2.6 * max(1, len(df)), 2.4), squeeze=False)
    for ax, row in zip(axes[0], df.itertuples()):
        err = _yerr(pd.DataFrame([row._asdict()]))
        ax.errorbar([0], [row.value], yerr=err, fmt="o", capsize=4)
        ax.set_xticks([])
        ax.set_title(f"{row.metric}\n(n={row.n})", fontsize=9)
    fig.tight_layout()
    return fig


def _yerr(df: pd.DataFrame):
    if df["ci_low"].isna().all() or df["ci_high"].isna().all():
        return None
    low = (df["value"] - df["ci_low"]).clip(lower=0).fillna(0)
    high = (df["ci_high"] - df["value"]).clip(lower=0).fillna(0)
    return [low.to_numpy(), high.to_numpy()]


# -- compression report -----------------------------------------------------------------------------
_PER_MATRIX_KEYS = ("per_matrix", "per_layer", "matrices", "layers")


def layer_sparsity_frame(report: Any) -> pd.DataFrame:
    """Realised sparsity per weight matrix from a compression report (columns: matrix, block, sparsity)."""
    rep = _as_dict(report)
    per = None
    # the sparsity section first: a CompressionReport's top-level 'layers' holds losses, not sparsity
    for source in (rep.get("sparsity") if isinstance(rep.get("sparsity"), Mapping) else {}, rep):
        per = next((source[k] for k in _PER_MATRIX_KEYS if isinstance(source.get(k), Mapping)), None)
        if per is not None:
            break
    rows = [{"matrix": name, "sparsity": float(v if not isinstance(v, Mapping) else v.get("sparsity", float("nan")))}
            for name, v in (per or {}).items()]
    df = pd.DataFrame(rows, columns=["matrix", "sparsity"])
    df.insert(1, "block", df["matrix"].str.extract(r"\.(\d+)\.", expand=False).astype("float").astype("Int64"))
    return df


def plot_layer_sparsity(report: Any, target: float | None = None):
    """Bar per decoder weight matrix of its realised sparsity; a dashed line at the target."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = layer_sparsity_frame(report)
    fig, ax = plt.subplots(figsize=(max(4, 0.22 * len(df) + 2), 3))
    if df.empty:
        ax.text(0.5, 0.5, "no per-matrix sparsity in this report (dense or quantised model)", ha="center")
        ax.set_axis_off()
        return fig
    short = df["matrix"].str.replace(r"^.*?(\d+)\.", r"\1.", regex=True)
    sns.barplot(x=short, y=df["sparsity"], hue=df["block"].astype(str), dodge=False, ax=ax, legend=False)
    if target is not None:
        ax.axhline(target, ls="--", color="k", lw=1, label=f"target {target:g}")
        ax.legend(loc="lower right")
    ax.set(xlabel="decoder weight matrix (block.name)", ylabel="realised sparsity", ylim=(0, 1))
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    fig.tight_layout()
    return fig


# -- study figures ----------------------------------------------------------------------------------
EXTRA_PANELS: dict[str, tuple[str, str]] = {"icr_qa": ("_open", "_closed")}
"""Metrics drawn beside a task's headline metric, as (suffix of the headline, suffix of its twin): ICR-QA's
closed-book twin of its open-book headline (exact_match_open -> exact_match_closed, contains_open ->
contains_closed) is the paper's closed- vs open-book contrast."""


def _extra(runs: pd.DataFrame) -> pd.Series:
    """Rows that are the EXTRA_PANELS twin of their run's headline metric."""
    heads = runs.loc[runs["primary"].astype(bool), ["run_id", "task", "metric"]]
    twins = {}
    for run_id, task, metric in heads.itertuples(index=False):
        head, twin = EXTRA_PANELS.get(task, ("", ""))
        if head and metric.endswith(head):
            twins[run_id] = metric[: -len(head)] + twin
    return pd.Series([twins.get(r) == m for r, m in zip(runs["run_id"], runs["metric"])], index=runs.index, dtype=bool)


def primary(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's headline metric (plus the EXTRA_PANELS metrics); ``panel`` names what a figure panel shows.

    ``panel`` is the task name, or ``"<task>: <metric>"`` for tasks drawn with more than one metric.
    """
    df = runs[runs["primary"].astype(bool) | _extra(runs)].copy()
    split = df["task"].isin(list(EXTRA_PANELS))
    df["panel"] = df["task"].where(~split, df["task"] + ": " + df["metric"])
    return df


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Headline metric per task/protocol (rows) and compression (columns), 'value [ci_low, ci_high]'."""
    df = primary(runs)
    if df.empty:
        return pd.DataFrame()
    df["cell"] = [f"{v:.3g} [{lo:.3g}, {hi:.3g}]" if pd.notna(lo) else f"{v:.3g}"
                  for v, lo, hi in zip(df["value"], df["ci_low"], df["ci_high"])]
    df["task"] = df["task"] + " (" + df["metric"] + ", " + df["protocol"] + ")"
    return df.pivot_table(index="task", columns="slug", values="cell", aggfunc="first")
