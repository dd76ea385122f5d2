"""Dense vs compressed, example by example: pairing runs, flips, the matching table and an ipywidgets browser.

A *pair* is a compressed run and the dense run of the same task, protocol, model and seed. A *flip*
is an example whose headline score changed between them ("lost": right when dense, wrong when
compressed; "gained": the reverse). Flips are what a mean hides: two models with the same accuracy
can disagree on many examples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from kick_core.errors import MissingDependencyError
from kick_core.results import load_examples
from kick_core.stats import example_score

_KEYS = ["task", "variant", "metric", "protocol", "model", "seed"]


CORPUS_TASKS = ("perplexity",)
"""Tasks whose metric is corpus-level (no per-example right/wrong): no flips, no paired test."""


def dense_pairs(runs: pd.DataFrame, *, exclude: Sequence[str] = CORPUS_TASKS) -> pd.DataFrame:
    """Each compressed run's headline metric(s) next to its dense twin (same task, metric, protocol, model, seed).

    Headline metrics are those of :func:`kick_core.plots.primary` (ICR-QA: closed- and open-book).
    """
    from kick_core.plots import primary

    df = primary(runs)
    if "variant" not in df:
        df = df.assign(variant="")
    df = df[~df["task"].isin(list(exclude))]
    dense = df[df["method"] == "dense"][_KEYS + ["run_id", "run_dir", "value"]]
    comp = df[df["method"] != "dense"]
    return comp.merge(dense, on=_KEYS, suffixes=("", "_dense"), how="inner").reset_index(drop=True)


def compare_examples(dense: Sequence[Mapping[str, Any]], compressed: Sequence[Mapping[str, Any]],
                     metric: str) -> pd.DataFrame:
    """Per-example table of dense vs compressed outputs and scores, flips first (joined on ``id``)."""
    by_id = {str(e.get("id")): e for e in dense}
    rows = []
    for c in compressed:
        d = by_id.get(str(c.get("id")))
        if d is None:
            continue
        sd, sc = example_score(d, metric), example_score(c, metric)
        flip = "" if sd is None or sc is None or sd == sc else ("lost" if sc < sd else "gained")
        rows.append({"id": c.get("id"), "flip": flip, "dense_score": sd, "compressed_score": sc,
                     "prompt": c.get("prompt", d.get("prompt")), "reference": c.get("reference", d.get("reference")),
                     "dense_output": d.get("output"), "compressed_output": c.get("output")})
    df = pd.DataFrame(rows, columns=["id", "flip", "dense_score", "compressed_score", "prompt", "reference",
                                     "dense_output", "compressed_output"])
    order = df["flip"].map({"lost": 0, "gained": 1, "": 2})
    return df.assign(_o=order).sort_values(["_o", "id"], kind="stable").drop(columns="_o").reset_index(drop=True)


def flips_overview(runs: pd.DataFrame) -> pd.DataFrame:
    """Per compressed run: examples compared, lost, gained and agreement with dense on the headline metric."""
    rows = []
    for p in dense_pairs(runs).itertuples():
        table = compare_examples(load_examples(p.run_dir_dense), load_examples(p.run_dir), p.metric)
        n = len(table)
        lost, gained = int((table["flip"] == "lost").sum()), int((table["flip"] == "gained").sum())
        rows.append({"task": p.task, "protocol": p.protocol, "slug": p.slug, "metric": p.metric, "n": n,
                     "lost": lost, "gained": gained, "agreement": (n - lost - gained) / n if n else None})
    return pd.DataFrame(rows, columns=["task", "protocol", "slug", "metric", "n", "lost", "gained", "agreement"])


GENERATIVE_TASKS = ("summarisation", "instruction")


def rouge_vs_dense(runs: pd.DataFrame, *, tasks: Sequence[str] = GENERATIVE_TASKS, n_bootstrap: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """ROUGE-1/L F1 of each compressed run's outputs against its dense twin's outputs on the same prompts.

    A judge-free measure of how far compression moved what the model writes (1 = the same text).
    One row per compressed run of ``tasks``: ``n`` prompts answered by both, mean and bootstrap 95 % CI.
    """
    from kick_core.metrics import rouge
    from kick_core.stats import bootstrap_ci

    rows = []
    sel = runs[runs["task"].isin(list(tasks))].drop_duplicates("run_id")
    for _, group in sel.groupby(["task", "protocol", "model", "seed"], sort=True):
        dense_runs = group[group["method"] == "dense"]
        if dense_runs.empty:
            continue
        dense = {str(e.get("id")): e.get("output") or "" for e in load_examples(dense_runs.iloc[0]["run_dir"])}
        for p in group[group["method"] != "dense"].sort_values(["method", "slug"]).itertuples():
            scores = [rouge(c.get("output") or "", dense[str(c.get("id"))])
                      for c in load_examples(p.run_dir) if str(c.get("id")) in dense]
            row = {"task": p.task, "protocol": p.protocol, "compression": p.slug, "method": p.method,
                   "sparsity": p.sparsity, "n": len(scores)}
            for name in ("rouge1", "rougeL"):
                values = [s[name] for s in scores]
                row.update({name: sum(values) / len(values) if values else None,
                            f"{name}_ci": bootstrap_ci(values, n_bootstrap=n_bootstrap, seed=seed)})
            rows.append(row)
    return pd.DataFrame(rows, columns=["task", "protocol", "compression", "method", "sparsity", "n", "rouge1",
                                       "rouge1_ci", "rougeL", "rougeL_ci"])


def _flatten(result: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in result.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[f"{prefix}{k}"] = v
        elif isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
            out[f"{prefix}{k}"] = tuple(v)
    return out


def matching_table(runs: pd.DataFrame, *, tolerance: float = 0.05, n_bootstrap: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """The paper's "matching" rule per compressed run, with a paired test against its dense twin.

    One row per compressed run: task, protocol, compression, dense and compressed headline values,
    and ``kick_core.stats.paired_analysis`` (flips, McNemar p, paired-bootstrap CI of the
    difference, verdict matching | not matching | inconclusive) flattened into columns.
    """
    try:
        from kick_core.stats import paired_analysis
    except ImportError as err:
        raise MissingDependencyError(f"the matching table needs kick_core.stats.paired_analysis ({err}).") from None
    rows = []
    for p in dense_pairs(runs).itertuples():
        res = paired_analysis(load_examples(p.run_dir_dense), load_examples(p.run_dir), p.metric,
                              n_bootstrap=n_bootstrap, seed=seed, tolerance=tolerance)
        rows.append({"task": p.task, "variant": p.variant, "protocol": p.protocol, "compression": p.slug,
                     "sparsity": p.sparsity, "metric": p.metric, "dense": p.value_dense, "compressed": p.value,
                     **_flatten(res)})
    return pd.DataFrame(rows)


def explorer(runs: pd.DataFrame, *, max_rows: int = 50):
    """An ipywidgets browser: pick task, method and level; see dense vs compressed outputs, flips first."""
    import ipywidgets as widgets

    pairs = dense_pairs(runs)
    body = widgets.HTML()
    if pairs.empty:
        body.value = "No compressed run has a dense twin in these results."
        return body
    task = widgets.Dropdown(options=sorted(pairs["task"].unique()), description="task")
    method = widgets.Dropdown(description="method")
    level = widgets.Dropdown(description="level")

    def _methods(*_: Any) -> None:
        method.options = sorted(pairs.loc[pairs["task"] == task.value, "method"].unique())
        method.value = method.options[0] if method.options else None

    def _levels(*_: Any) -> None:
        sel = pairs[(pairs["task"] == task.value) & (pairs["method"] == method.value)]
        level.options = list(dict.fromkeys(sel.sort_values("sparsity")["slug"]))
        level.value = level.options[0] if level.options else None

    def _show(*_: Any) -> None:
        sel = pairs[(pairs["task"] == task.value) & (pairs["method"] == method.value) & (pairs["slug"] == level.value)]
        if sel.empty:
            body.value = ""
            return
        p = sel.iloc[0]
        table = compare_examples(load_examples(p["run_dir_dense"]), load_examples(p["run_dir"]), p["metric"])
        body.value = (f"<p><b>{p['slug']}</b> on {p['task']} ({p['metric']}): dense {p['value_dense']:.3g}, "
                      f"compressed {p['value']:.3g}; {(table['flip'] == 'lost').sum()} lost, "
                      f"{(table['flip'] == 'gained').sum()} gained</p>" + table.head(max_rows).to_html(index=False))

    task.observe(_methods, "value")
    method.observe(_levels, "value")
    level.observe(_show, "value")
    _methods()
    _levels()
    _show()
    return widgets.VBox([widgets.HBox([task, method, level]), body])
