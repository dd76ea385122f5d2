"""The paper's four questions, answered from a results folder with paired confidence intervals.

1. **Where does knowledge leave the band?** For each pruning method, the lowest sparsity at which
   closed-book factoid QA is *not matching* dense (the paired CI of compressed / dense lies wholly
   below 1 - tolerance), and the same for perplexity (dense / compressed, so below the band means
   worse for both): :func:`band_exits`.
2. **Is open-book retrieval more robust than closed-book recall?** ICR-QA asks every question closed
   and open book; at a sparsity (default 50 %) the fraction of dense each book keeps, and the
   difference open - closed, bootstrapped over questions (both books and both runs resampled
   together): :func:`open_vs_closed`.
3. **Is N:M worse than unstructured at equal sparsity?** 2:4 and 4:8 against 50 % unstructured, per
   method and task, paired over examples: :func:`nm_vs_unstructured`.
4. **Is quantisation at 8 and 4 bits better than pruning at 50 %?** Each quantised run against each
   pruning method at 50 %, paired over examples: :func:`quant_vs_pruning`.

Everything is recomputed from the per-example records (``examples.jsonl``) of the runs
:func:`kick_core.results.load_runs` lists; no model is needed. Perplexity is corpus-level: its ratio
is exp(token-weighted mean NLL of dense - of compressed), bootstrapped over windows
(:func:`perplexity_ratio`). :func:`answers` writes the four answers as sentences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kick_core.config import BF16_IF_NATIVE
from kick_core.results import load_examples
from kick_core.stats import paired_analysis

PRUNING = ("magnitude", "wanda", "sparsegpt")
KNOWLEDGE = ("factoid_qa", "contains")
"""The closed-book knowledge metric of question 1 (FreebaseQA-style factoid QA, answer contained)."""


def _ci(stats: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def perplexity_ratio(dense: Sequence[Mapping[str, Any]], compressed: Sequence[Mapping[str, Any]], *,
                     n_bootstrap: int = 1000, seed: int = 0, tolerance: float = 0.05) -> dict[str, Any]:
    """Dense / compressed perplexity (1 = unchanged, < 1 = worse) with a paired bootstrap CI over windows
    (:func:`kick_core.figures.frames.paired_perplexity`, the test the report's heat map uses)."""
    from kick_core.figures.frames import paired_perplexity

    res = paired_perplexity(list(dense), list(compressed), n_bootstrap=n_bootstrap, seed=seed, tolerance=tolerance)
    if not res["n"]:
        raise ValueError("perplexity_ratio: no window is scored in both runs")
    return res


def _ratio(dense_run: str, comp_run: str, task: str, metric: str, *, n_bootstrap: int, seed: int,
           tolerance: float) -> dict[str, Any]:
    """compressed / dense of a task metric (perplexity: dense / compressed), paired, with CI and verdict."""
    dense, comp = load_examples(dense_run), load_examples(comp_run)
    if task == "perplexity":
        return perplexity_ratio(dense, comp, n_bootstrap=n_bootstrap, seed=seed, tolerance=tolerance)
    res = paired_analysis(dense, comp, metric, n_bootstrap=n_bootstrap, seed=seed, tolerance=tolerance)
    return {"n": res["n"], "ratio": res.get("ratio"), "ratio_ci": tuple(res["ratio_ci"]) if res.get("ratio_ci") else None,
            "verdict": res["verdict"], "dense": res["dense"], "compressed": res["compressed"]}


def _runs(runs: pd.DataFrame, task: str, metric: str) -> pd.DataFrame:
    metric = "perplexity" if task == "perplexity" else metric
    return runs[(runs["task"] == task) & (runs["metric"] == metric)]


def _dense(sel: pd.DataFrame) -> str | None:
    d = sel[sel["method"] == "dense"]
    return None if d.empty else d.iloc[0]["run_dir"]


def sparsity_table(runs: pd.DataFrame, targets: Sequence[tuple[str, str]] = (KNOWLEDGE, ("perplexity", "perplexity")),
                   *, n_bootstrap: int = 1000, seed: int = 0, tolerance: float = 0.05) -> pd.DataFrame:
    """Per pruning method, unstructured sparsity and target (task, metric): ratio to dense, CI, verdict."""
    rows = []
    for task, metric in targets:
        sel = _runs(runs, task, metric)
        dense = _dense(sel)
        if dense is None:
            continue
        pruned = sel[sel["method"].isin(PRUNING) & (sel["structure"] == "unstructured")]
        for r in pruned.sort_values(["method", "sparsity"]).itertuples():
            res = _ratio(dense, r.run_dir, task, metric, n_bootstrap=n_bootstrap, seed=seed, tolerance=tolerance)
            rows.append({"task": task, "metric": metric, "method": r.method, "sparsity": float(r.sparsity),
                         "ratio": res["ratio"], "ratio_ci": res["ratio_ci"], "verdict": res["verdict"]})
    return pd.DataFrame(rows, columns=["task", "metric", "method", "sparsity", "ratio", "ratio_ci", "verdict"])


def band_exits(table: pd.DataFrame, *, tolerance: float = 0.05) -> pd.DataFrame:
    """From :func:`sparsity_table`: per method and target, the lowest sparsity *not matching* dense
    (``exit``), and the lowest whose point ratio is below the band, 1 - ``tolerance`` (``point_exit``);
    None if none."""
    rows = []
    for (task, metric, method), g in table.groupby(["task", "metric", "method"], sort=True):
        g = g.sort_values("sparsity")
        out = g[g["verdict"] == "not matching"]["sparsity"]
        below = g[g["ratio"].notna() & (g["ratio"] < 1 - tolerance)]["sparsity"]
        rows.append({"task": task, "metric": metric, "method": method,
                     "exit": float(out.iloc[0]) if len(out) else None,
                     "point_exit": float(below.iloc[0]) if len(below) else None,
                     "max_tested": float(g["sparsity"].max())})
    return pd.DataFrame(rows, columns=["task", "metric", "method", "exit", "point_exit", "max_tested"])


def _icr_books(records: Sequence[Mapping[str, Any]], metric: str) -> dict[str, dict[str, float]]:
    """question id -> {'closed': score, 'open': score} from ICR-QA records ('<id>/closed', '<id>/open')."""
    out: dict[str, dict[str, float]] = {}
    for r in records:
        qid, _, book = str(r["id"]).rpartition("/")
        value = (r.get("scores") or {}).get(f"{metric}_{book}")
        if book in ("closed", "open") and value is not None:
            out.setdefault(qid, {})[book] = float(value)
    return out


def _icr_metric(runs: pd.DataFrame) -> str:
    """The ICR-QA headline metric's family ('exact_match', 'contains', 'em') of these runs."""
    prim = runs[(runs["task"] == "icr_qa") & runs["primary"].astype(bool)]["metric"]
    return prim.iloc[0].rsplit("_", 1)[0] if len(prim) else "exact_match"


def open_vs_closed(runs: pd.DataFrame, *, sparsity: float = 0.5, metric: str | None = None,
                   n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per pruning method at ``sparsity``: the fraction of dense each book keeps and open - closed, with CIs.

    Resampling is over questions: a question's closed and open answers, dense and compressed, stay together.
    ``metric``: the per-book metric family; default the runs' headline one (``exact_match``, or
    ``contains`` for chat prompts).
    """
    metric = metric or _icr_metric(runs)
    sel = runs[(runs["task"] == "icr_qa") & (runs["metric"] == f"{metric}_open")]
    dense_dir = _dense(sel)
    if dense_dir is None:
        return pd.DataFrame(columns=["method", "sparsity", "n", "closed", "closed_ci", "open", "open_ci",
                                     "difference", "difference_ci"])
    dense = _icr_books(load_examples(dense_dir), metric)
    rows = []
    at = sel[sel["method"].isin(PRUNING) & (sel["structure"] == "unstructured")
             & np.isclose(sel["sparsity"].astype(float), sparsity)]
    rng = np.random.default_rng(seed)
    for r in at.sort_values("method").itertuples():
        comp = _icr_books(load_examples(r.run_dir), metric)
        ids = [q for q in dense if len(dense[q]) == 2 and len(comp.get(q, {})) == 2]
        a = np.array([[dense[q]["closed"], dense[q]["open"], comp[q]["closed"], comp[q]["open"]] for q in ids])
        idx = rng.integers(0, len(ids), size=(n_bootstrap, len(ids)))

        def kept(sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            m = sample.mean(axis=-2)
            with np.errstate(divide="ignore", invalid="ignore"):
                return m[..., 2] / m[..., 0], m[..., 3] / m[..., 1]

        closed, opened = kept(a)
        bc, bo = kept(a[idx])
        rows.append({"method": r.method, "sparsity": sparsity, "n": len(ids),
                     "closed": float(closed), "closed_ci": _ci(bc[np.isfinite(bc)]) if np.isfinite(bc).any() else None,
                     "open": float(opened), "open_ci": _ci(bo),
                     "difference": float(opened - closed),
                     "difference_ci": _ci((bo - bc)[np.isfinite(bc)]) if np.isfinite(bc).any() else None})
    return pd.DataFrame(rows)


def _difference(a_run: str, b_run: str, task: str, metric: str, *, n_bootstrap: int, seed: int) -> dict[str, Any]:
    """b - a on the examples both runs scored (perplexity: the ratio a / b of perplexities), paired."""
    a, b = load_examples(a_run), load_examples(b_run)
    if task == "perplexity":
        res = perplexity_ratio(a, b, n_bootstrap=n_bootstrap, seed=seed)
        return {"n": res["n"], "difference": res["ratio"] - 1,
                "difference_ci": (res["ratio_ci"][0] - 1, res["ratio_ci"][1] - 1)}
    res = paired_analysis(a, b, metric, n_bootstrap=n_bootstrap, seed=seed)  # b plays the compressed run
    return {"n": res["n"], "a": res["dense"], "b": res["compressed"], "difference": res["difference"],
            "difference_ci": res["difference_ci"]}


def _targets(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(task, per-example metric) of every task's headline metric; ICR-QA's closed and open book both."""
    prim = runs[runs["primary"].astype(bool)][["task", "metric"]].drop_duplicates()
    out = []
    for task, metric in prim.itertuples(index=False):
        if task == "icr_qa":
            out += [(task, f"{metric.rsplit('_', 1)[0]}_{book}") for book in ("closed", "open")]
        elif task == "perplexity":
            out.append((task, "perplexity"))
        else:
            out.append((task, metric))
    return sorted(set(out))


def _target_runs(runs: pd.DataFrame):
    """(task, metric, variant, its runs) per headline target and variant (e.g. MMLU letter and cloze apart)."""
    for task, metric in _targets(runs):
        sel = _runs(runs, task, metric)
        variants = sel["variant"] if "variant" in sel else pd.Series("", index=sel.index)
        for variant in sorted(set(variants.fillna(""))):
            yield task, metric, variant, sel[variants.fillna("") == variant]


def _compare(runs: pd.DataFrame, pairs: Sequence[tuple[pd.Series, pd.Series]], task: str, metric: str,
             n_bootstrap: int, seed: int, variant: str = "") -> list[dict[str, Any]]:
    rows = []
    for a, b in pairs:
        res = _difference(a["run_dir"], b["run_dir"], task, metric, n_bootstrap=n_bootstrap, seed=seed)
        lo, hi = res["difference_ci"]
        rows.append({"task": task, "metric": f"{metric} ({variant})" if variant else metric, "a": a["slug"], "b": b["slug"], "n": res["n"],
                     "difference": res["difference"], "difference_ci": (lo, hi),
                     "verdict": "b worse" if hi < 0 else "b better" if lo > 0 else "no clear difference"})
    return rows


def nm_vs_unstructured(runs: pd.DataFrame, *, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per method and task: N:M (b) against 50 % unstructured (a), b - a paired (perplexity: ratio - 1)."""
    rows = []
    for task, metric, variant, sel in _target_runs(runs):
        for method in PRUNING:
            m = sel[sel["method"] == method]
            base = m[(m["structure"] == "unstructured") & np.isclose(m["sparsity"].astype(float), 0.5)]
            if base.empty:
                continue
            nm = m[m["structure"] != "unstructured"].sort_values("structure")
            rows += _compare(runs, [(base.iloc[0], r) for _, r in nm.iterrows()], task, metric, n_bootstrap, seed,
                             variant)
    return pd.DataFrame(rows, columns=["task", "metric", "a", "b", "n", "difference", "difference_ci", "verdict"])


def quant_vs_pruning(runs: pd.DataFrame, *, bits: Sequence[int] = (8, 4), n_bootstrap: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """Each quantised run at ``bits`` (b) against each pruning method at 50 % unstructured (a), paired."""
    rows = []
    for task, metric, variant, sel in _target_runs(runs):
        quant = sel[sel["bits"].notna() & sel["bits"].isin(list(bits)) & ~sel["method"].isin(PRUNING)]
        pruned = sel[sel["method"].isin(PRUNING) & (sel["structure"] == "unstructured")
                     & np.isclose(sel["sparsity"].astype(float), 0.5)]
        pairs = [(p, q) for _, q in quant.sort_values(["bits", "method"], ascending=[False, True]).iterrows()
                 for _, p in pruned.sort_values("method").iterrows()]
        rows += _compare(runs, pairs, task, metric, n_bootstrap, seed, variant)
    return pd.DataFrame(rows, columns=["task", "metric", "a", "b", "n", "difference", "difference_ci", "verdict"])


def _fmt_ci(ci: tuple[float, float] | None, pct: bool = False) -> str:
    if ci is None:
        return "[no CI]"
    return f"[{ci[0]:.0%}, {ci[1]:.0%}]" if pct else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def answers(runs: pd.DataFrame, *, n_bootstrap: int = 1000, seed: int = 0, tolerance: float = 0.05) -> list[str]:
    """The four answers as sentences (Markdown), whichever way they come out; a question whose runs are
    missing from ``runs`` says so."""
    out = []
    exits = band_exits(sparsity_table(runs, n_bootstrap=n_bootstrap, seed=seed, tolerance=tolerance),
                       tolerance=tolerance)
    if exits.empty:
        out.append("1. Band exits: no pruned factoid or perplexity runs with a dense twin.")
    else:
        parts = []
        for method in PRUNING:
            e = exits[exits["method"] == method]
            if e.empty:
                continue
            k = e[e["task"] == KNOWLEDGE[0]]
            p = e[e["task"] == "perplexity"]

            def say(x: pd.DataFrame) -> str:
                if x.empty:
                    return "not run"
                r = x.iloc[0]
                return f"{r['exit']:.0%}" if r["exit"] is not None else f"in or near the band up to {r['max_tested']:.0%}"

            parts.append(f"{method}: knowledge {say(k)}, perplexity {say(p)}")
        out.append("1. Lowest sparsity not matching dense (paired 95 % CI below the within-5 % band) — "
                   + "; ".join(parts) + ".")
    ovc = open_vs_closed(runs, n_bootstrap=n_bootstrap, seed=seed)
    if ovc.empty:
        out.append("2. Open vs closed book: no ICR-QA runs at 50 % with a dense twin.")
    else:
        parts = [f"{r.method}: closed keeps {r.closed:.0%} {_fmt_ci(r.closed_ci, True)}, open keeps {r.open:.0%} "
                 f"{_fmt_ci(r.open_ci, True)} (open - closed {r.difference:+.0%} {_fmt_ci(r.difference_ci, True)})"
                 for r in ovc.itertuples()]
        out.append(f"2. At 50 % sparsity, the fraction of dense ICR-QA {_icr_metric(runs)} each book keeps — " + "; ".join(parts) + ".")
    for label, table in (("3. N:M (b) vs 50 % unstructured (a)", nm_vs_unstructured(runs, n_bootstrap=n_bootstrap, seed=seed)),
                         ("4. Quantised (b) vs pruned at 50 % (a)", quant_vs_pruning(runs, n_bootstrap=n_bootstrap, seed=seed))):
        if table.empty:
            out.append(f"{label}: not run.")
            continue
        counts = table["verdict"].value_counts().to_dict()
        tally = ", ".join(f"{k} in {v}" for k, v in sorted(counts.items()))
        out.append(f"{label}, paired over examples, {len(table)} comparisons: {tally}.")
    return out


def model_notes(runs: pd.DataFrame) -> list[str]:
    """What the report must say about each model's dense baseline, from the records' provenance.

    A model converted from a quantised GGUF file is not a full-precision baseline: its weights were
    rounded in the file (e.g. Q4_1) before kick dequantised them.
    """
    from kick_core.results import read_record

    out, seen, resolved = [], set(), {}
    for run_dir in runs.drop_duplicates("run_id")["run_dir"]:
        rec = read_record(run_dir) or {}
        src = (rec.get("provenance") or {}).get("model_source") or {}
        model_cfg = (rec.get("config") or {}).get("model", {})
        model = model_cfg.get("model")
        if model_cfg.get("dtype") == BF16_IF_NATIVE:
            dtype = ((rec.get("compression") or {}).get("size") or {}).get("dtype")
            cpu = ((rec.get("provenance") or {}).get("hardware") or {}).get("cpu_capability")
            resolved.setdefault(model, {}).setdefault(dtype, set()).add(cpu or "unknown CPU")
        quant = src.get("quantisation")
        if not quant or model in seen or str(quant).upper() in ("F32", "F16", "BF16"):
            continue
        seen.add(model)
        out.append(f"**{model}: the dense baseline is a dequantised {quant} model.** {src.get('summary', '')}. "
                   f"Its weights were rounded to {quant} in the GGUF file, so 'dense' means that rounded model; "
                   "re-quantising it to the same bit width is not free unless kick's grid matches the file's "
                   "block layout, and the contrasts that measure compression are pruning, N:M and fewer bits.")
    for model, dtypes in resolved.items():
        said = "; ".join(f"{d} ({', '.join(sorted(c))})" for d, c in sorted(dtypes.items(), key=lambda kv: str(kv[0])))
        mixed = (" **The runs are in different dtypes, so their differences include the dtype's**: re-run the study "
                 "on one kind of machine, or set dtype explicitly.") if len(dtypes) > 1 else ""
        out.append(f"**{model}** ran with dtype {BF16_IF_NATIVE}, resolved per machine to: {said} "
                   f"(bfloat16 where the CPU has bf16 arithmetic, else float32).{mixed}")
    return out
