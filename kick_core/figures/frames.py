"""The tables behind the report figures, built from :func:`kick_core.results.load_runs` (no drawing).

* :func:`relative_frame`: every headline metric as a fraction of dense (perplexity inverted:
  dense / compressed, so "down" is worse for every metric), with the runs' own 95% CIs carried over.
* :func:`curves`: that frame as lines against sparsity or bits, dense at the start of every line.
* :func:`nm_frame`: N:M runs beside the unstructured run of the same method at the same sparsity.
* :func:`heatmap_frame`: the matching table as cells (difference vs dense, its CI, the verdict), with
  perplexity added by :func:`paired_perplexity` (the same paired test, over evaluation windows).
* :func:`copy_baselines`: the open-book copy-any-same-type-name baseline, from the dataset's splits.
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path

import pandas as pd

from kick_core.figures import labels as L
from kick_core.plots import primary

log = logging.getLogger(__name__)

KEYS = ["task", "variant", "metric", "protocol", "model", "seed"]
"""A compressed run's dense twin has the same task, metric, protocol, model and seed."""

CORPUS_TASKS = ("perplexity",)
"""Tasks without per-example right/wrong: the heat map pairs their windows (:func:`paired_perplexity`)."""

_KIND_ORDER = ("unstructured", "nm", "pruned+quantised", "quantised", "other")
_METHOD_ORDER = tuple(L.METHOD_NAMES)


def labelled(runs: pd.DataFrame) -> pd.DataFrame:
    """The headline rows of ``runs`` (:func:`kick_core.plots.primary`) with panel, compression and kind in words."""
    df = primary(runs).reset_index(drop=True)
    if "variant" not in df:
        df["variant"] = ""
    one_model = df["model"].nunique() <= 1
    variant = df["variant"] if "variant" in df else pd.Series("", index=df.index)
    df["panel"] = [L.panel_title(t, m, p, v) + ("" if one_model else f" [{mod}]")
                   for t, m, p, mod, v in zip(df["task"], df["metric"], df["protocol"], df["model"], variant)]
    df["panel_order"] = [L.panel_order(t, m) for t, m in zip(df["task"], df["metric"])]
    base = [L.panel_colour(t, m) for t, m in zip(df["task"], df["metric"])]
    shades: dict[tuple[str, str], int] = {}  # panels that share a colour get its shades, in name order
    for colour, panel in sorted(set(zip(base, df["panel"]))):
        shades[(colour, panel)] = sum(c == colour for c, _ in shades)
    df["colour"] = [L.shade(c, shades[(c, p)]) for c, p in zip(base, df["panel"])]
    df["compression"] = [L.compression_label(*r) for r in
                         zip(df["method"], df["structure"], df["sparsity"], df["bits"], df["group_size"], df["slug"])]
    df["kind"] = [L.compression_kind(m, s, b) for m, s, b in zip(df["method"], df["structure"], df["bits"])]
    return df


def relative_frame(runs: pd.DataFrame, *, tolerance: float = 0.05) -> pd.DataFrame:
    """Each headline metric of each run as a fraction of its dense twin's.

    ``ratio`` is compressed / dense for higher-is-better metrics and dense / compressed for
    lower-is-better ones (perplexity), so 1 is dense and less is worse for both. ``ratio_low`` /
    ``ratio_high`` carry the compressed run's own 95% CI through the same map (the dense value's
    uncertainty is not in them: :func:`heatmap_frame`'s paired test has both; dense rows have ratio 1
    and no CI). ``matching`` is the
    paper's point rule, ratio >= 1 - tolerance. Runs without a dense twin are left out.
    """
    df = labelled(runs)
    dense = df[df["method"] == "dense"].groupby(KEYS, dropna=False, as_index=False)["value"].first()
    out = df.merge(dense.rename(columns={"value": "dense_value"}), on=KEYS, how="inner")
    lower = out["higher_is_better"].eq(False).to_numpy()
    d = out["dense_value"].where(out["dense_value"] > 0)
    v, lo, hi = (out[c].astype(float) for c in ("value", "ci_low", "ci_high"))
    out["ratio"] = (v / d).where(~lower, d / v.where(v > 0))
    out["ratio_low"] = (lo / d).where(~lower, d / hi.where(hi > 0))
    out["ratio_high"] = (hi / d).where(~lower, d / lo.where(lo > 0))
    is_dense = (out["kind"] == "dense").to_numpy()
    out.loc[is_dense, ["ratio_low", "ratio_high"]] = float("nan")  # dense is the reference, not a measurement of it
    out["matching"] = out["ratio"] >= L.match_band(tolerance)[0]
    return out.sort_values(["panel_order", "panel", "kind", "method", "sparsity", "bits"],
                           na_position="first").reset_index(drop=True)


def curves(rel: pd.DataFrame, axis: str = "sparsity") -> pd.DataFrame:
    """Lines of :func:`relative_frame` (or any frame with its columns) against ``axis``.

    ``axis='sparsity'``: unstructured pruning, ``facet`` = the method ('Wanda'), x = sparsity in %.
    ``axis='bits'``: quantisation, ``facet`` = the method and group ('RTN, group 32'),
    x = :func:`~kick_core.figures.labels.bits_position` (dense 0, 8-bit 1, 4-bit 2).
    Every facet starts at the dense run (x = 0), so each line begins at dense.
    """
    if axis == "sparsity":
        sel = rel[rel["kind"] == "unstructured"].copy()
        sel["facet"] = sel["method"].map(lambda m: L.METHOD_NAMES.get(m, m))
        sel["x"] = 100 * sel["sparsity"].astype(float)
    elif axis == "bits":
        sel = rel[rel["kind"] == "quantised"].copy()
        sel["facet"] = [L.quant_family(m, g) for m, g in zip(sel["method"], sel["group_size"])]
        sel["x"] = sel["bits"].map(L.bits_position)
    else:
        raise ValueError(f"axis={axis!r}: use 'sparsity' or 'bits'.")
    dense = rel[rel["kind"] == "dense"]
    facets = list(dict.fromkeys(sel.sort_values(["method", "group_size"])["facet"]))
    out = pd.concat([sel] + [dense.assign(facet=f, x=0.0) for f in facets], ignore_index=True)
    out["facet_order"] = out["facet"].map({f: i for i, f in enumerate(_ordered_facets(sel))})
    return out.sort_values(["facet_order", "panel_order", "panel", "x"]).reset_index(drop=True)


def _ordered_facets(sel: pd.DataFrame) -> list[str]:
    order = sel.assign(_m=sel["method"].map(lambda m: _METHOD_ORDER.index(m) if m in _METHOD_ORDER else 99))
    return list(dict.fromkeys(order.sort_values(["_m", "group_size"])["facet"]))


def nm_frame(rel: pd.DataFrame) -> pd.DataFrame:
    """N:M runs next to the unstructured run of the same method, sparsity, task, model and seed.

    ``pattern`` is 'unstructured 50%', '2:4' or '4:8'; ``group`` is the method ('Wanda'). Only
    methods with at least one N:M run appear, and only the unstructured runs at an N:M sparsity.
    """
    nm = rel[rel["kind"] == "nm"]
    pair = ["method", "sparsity", *KEYS]
    levels = nm[pair].drop_duplicates()
    unstructured = rel[rel["kind"] == "unstructured"].merge(levels, on=pair, how="inner")
    out = pd.concat([unstructured, nm], ignore_index=True)
    out["pattern"] = [f"unstructured {round(100 * float(s))}%" if k == "unstructured" else st
                      for k, s, st in zip(out["kind"], out["sparsity"], out["structure"])]
    out["group"] = out["method"].map(lambda m: L.METHOD_NAMES.get(m, m))
    out["pattern_order"] = [0 if k == "unstructured" else int(st.split(":")[1])  # 2:4 before 4:8
                            for k, st in zip(out["kind"], out["structure"])]
    out["method_order"] = out["method"].map(lambda m: _METHOD_ORDER.index(m) if m in _METHOD_ORDER else 99)
    return out.sort_values(["panel_order", "panel", "method_order", "sparsity", "pattern_order"]).reset_index(drop=True)


def _verdict(low: float, high: float, threshold: float) -> str:
    if pd.isna(low) or pd.isna(high):
        return "inconclusive"
    return "matching" if low >= threshold else "not matching" if high < threshold else "inconclusive"


def _fmt(x: float) -> str:
    if pd.isna(x):
        return ""
    return f"{0.0 if abs(x) < 0.005 else x:+.2f}".replace("-", "\u2212")  # no "-0.00"


def paired_perplexity(dense: list[dict], compressed: list[dict], *, legacy: bool = False, n_bootstrap: int = 1000,
                      seed: int = 0, tolerance: float = 0.05) -> dict:
    """Perplexity of a compressed run against its dense twin, resampling the same windows in both.

    Windows are joined on ``id`` (each record has ``nll`` and ``n_tokens``); perplexity is
    exp(token-weighted mean nll), or exp(mean nll) in the legacy protocol, as the task computes it.
    Returns ``difference`` (compressed - dense) and ``ratio`` (dense / compressed, 1 = no change) with
    percentile 95% CIs, and ``verdict``: matching if the ratio's CI lies at or above 1 - tolerance,
    not matching if below it, inconclusive if it straddles it (as :func:`kick_core.stats.paired_analysis`).
    """
    import numpy as np

    by_id = {str(r.get("id")): r for r in dense}
    rows = [(by_id[str(c.get("id"))], c) for c in compressed if str(c.get("id")) in by_id]
    rows = [(d, c) for d, c in rows if d.get("nll") is not None and c.get("nll") is not None]
    if not rows:
        return {"n": 0, "verdict": "inconclusive"}
    arr = np.array([[d["nll"], d.get("n_tokens") or 1, c["nll"], c.get("n_tokens") or 1] for d, c in rows], float)

    def ppl(sample: np.ndarray, col: int) -> np.ndarray:  # (..., n, 4) -> (...)
        if legacy:
            return np.exp(sample[..., col].mean(axis=-1))
        w = sample[..., col + 1]
        return np.exp((sample[..., col] * w).sum(axis=-1) / w.sum(axis=-1))

    idx = np.random.default_rng(seed).integers(0, len(arr), size=(n_bootstrap, len(arr)))
    boots = arr[idx]
    pd_, pc = ppl(arr, 0), ppl(arr, 2)
    bd, bc = ppl(boots, 0), ppl(boots, 2)
    diff_ci = tuple(float(x) for x in np.quantile(bc - bd, [0.025, 0.975]))
    ratio_ci = tuple(float(x) for x in np.quantile(bd / bc, [0.025, 0.975]))
    return {"n": len(arr), "dense": float(pd_), "compressed": float(pc), "difference": float(pc - pd_),
            "difference_ci": diff_ci, "ratio": float(pd_ / pc), "ratio_ci": ratio_ci,
            "verdict": _verdict(*ratio_ci, 1 - tolerance)}


def perplexity_matching(runs: pd.DataFrame, *, tolerance: float = 0.05, n_bootstrap: int = 1000,
                        seed: int = 0) -> pd.DataFrame:
    """The matching table's rows for perplexity (which :func:`kick_core.explorer.matching_table` leaves
    out: it has no per-example right/wrong), from :func:`paired_perplexity` on each run's windows."""
    from kick_core.results import load_examples

    rel = relative_frame(runs, tolerance=tolerance)
    sel = rel[rel["task"].isin(CORPUS_TASKS) & (rel["kind"] != "dense")]
    dense = rel[rel["kind"] == "dense"].set_index(KEYS)["run_dir"]
    rows = []
    for r in sel.itertuples():
        key = tuple(getattr(r, k) for k in KEYS)
        res = paired_perplexity(load_examples(dense.loc[key]), load_examples(r.run_dir), legacy=r.protocol == "legacy",
                                n_bootstrap=n_bootstrap, seed=seed, tolerance=tolerance)
        if res["n"]:
            rows.append({"task": r.task, "variant": r.variant, "protocol": r.protocol, "compression": r.slug,
                         "sparsity": r.sparsity, "metric": r.metric, **res})
    return pd.DataFrame(rows)


def heatmap_frame(matching: pd.DataFrame, runs: pd.DataFrame, *, tolerance: float = 0.05,
                  perplexity: pd.DataFrame | None = None) -> pd.DataFrame:
    """One cell per (panel, compression): difference compressed - dense, its 95% CI and the verdict.

    ``matching`` is :func:`kick_core.explorer.matching_table` (a paired bootstrap over examples,
    verdict from the CI of compressed / dense against 1 - tolerance); perplexity rows come from
    ``perplexity`` (default: :func:`perplexity_matching` on ``runs``, the same test over windows).
    ``text`` is what the cell prints: the difference and its CI, in the metric's units.
    """
    cols = ["panel", "panel_order", "compression", "column_order", "difference", "ci_low", "ci_high", "verdict",
            "text"]
    if perplexity is None:
        perplexity = perplexity_matching(runs, tolerance=tolerance)
    both = pd.concat([t for t in (matching, perplexity) if t is not None and len(t)], ignore_index=True) \
        if any(t is not None and len(t) for t in (matching, perplexity)) else pd.DataFrame()
    meta = labelled(runs).drop_duplicates("slug").set_index("slug")
    if both.empty:
        return pd.DataFrame(columns=cols)
    df = both[both["compression"].isin(meta.index)].copy()
    ci = [c if isinstance(c, (tuple, list)) and len(c) == 2 else (float("nan"), float("nan"))
          for c in df.get("difference_ci", pd.Series([None] * len(df), index=df.index))]
    df["ci_low"], df["ci_high"] = [c[0] for c in ci], [c[1] for c in ci]
    variant = df["variant"].fillna("") if "variant" in df else pd.Series("", index=df.index)
    df["panel"] = [L.panel_title(t, m, p, v) for t, m, p, v in zip(df["task"], df["metric"], df["protocol"], variant)]
    df["panel_order"] = [L.panel_order(t, m) for t, m in zip(df["task"], df["metric"])]
    df["column_order"] = df["compression"].map(_column_order(meta))
    df["compression"] = df["compression"].map(meta["compression"])
    df["text"] = [f"{_fmt(d)}\n[{_fmt(lo)}, {_fmt(hi)}]" if pd.notna(lo) else _fmt(d)
                  for d, lo, hi in zip(df["difference"], df["ci_low"], df["ci_high"])]
    return df.sort_values(["panel_order", "panel", "column_order"]).reset_index(drop=True)[cols]


def _column_order(meta: pd.DataFrame) -> dict[str, int]:
    m = meta[meta["kind"] != "dense"].reset_index()
    m["_k"] = m["kind"].map(lambda k: _KIND_ORDER.index(k) if k in _KIND_ORDER else 99)
    m["_m"] = m["method"].map(lambda x: _METHOD_ORDER.index(x) if x in _METHOD_ORDER else 99)
    m["_b"] = -m["bits"].astype(float).fillna(0)
    m = m.sort_values(["_k", "_m", "sparsity", "structure", "_b", "group_size"])
    return {slug: i for i, slug in enumerate(m["slug"])}


# -- the open-book copy baseline --------------------------------------------------------------------
def _question_ids(run_dir: str | Path) -> list[str]:
    from kick_core.results import load_examples

    return list(dict.fromkeys(str(e["id"]).rsplit("/", 1)[0] for e in load_examples(run_dir) if e.get("id")))


def _splits_file(config: dict) -> Path | None:
    """The ``triviaqa/splits.json`` beside a run's ICR-QA data (the embedded world, geofacts or a local folder)."""
    from kick_core.config import TaskConfig
    from kick_core.tasks.base import resolve_source

    known = {f.name for f in fields(TaskConfig)}
    task_cfg = TaskConfig(**{k: v for k, v in (config.get("task") or {}).items() if k in known})
    src = resolve_source(task_cfg, "triviaqa", world_seed=(config.get("model") or {}).get("world_seed") or 0)
    if src.kind != "local":
        return None  # the hub's TriviaQA has no copy baseline
    folder = Path(src.location)
    folder = folder if folder.is_dir() else folder.parent
    path = folder / "splits.json"
    return path if path.is_file() else None


def copy_baseline(record: dict, run_dir: str | Path) -> float | None:
    """Mean over a run's questions of the accuracy of copying a random same-type name from the page.

    Read from the dataset's ``splits.json`` (``copy_baseline``: question id -> 1 / distinct same-type
    names on the page), which the embedded world and geofacts write; None where the data have none.
    """
    try:
        path = _splits_file(record.get("config") or {})
        if path is None:
            return None
        table = json.loads(path.read_text()).get("copy_baseline") or {}
        ids = [q for q in _question_ids(run_dir) if q in table]
        return sum(table[q] for q in ids) / len(ids) if ids else None
    except Exception as err:  # noqa: BLE001 - a missing baseline must never break a report
        log.warning("no copy baseline for %s: %s", run_dir, err)
        return None


def copy_baselines(runs: pd.DataFrame) -> pd.DataFrame:
    """The copy baseline of every open-book ICR-QA headline metric (task, metric, protocol, model, baseline).

    Computed on each (task, protocol, model) group's dense run, or its first run when there is no dense one.
    """
    from kick_core.results import read_record

    df = labelled(runs)
    df = df[(df["task"] == "icr_qa") & df["metric"].map(lambda m: L.split_book(m)[1] == "open")]
    rows = []
    for (task, metric, protocol, model), g in df.groupby(["task", "metric", "protocol", "model"], sort=False):
        g = g.sort_values("method", key=lambda s: s != "dense")
        rec = read_record(g["run_dir"].iloc[0])
        value = copy_baseline(rec, g["run_dir"].iloc[0]) if rec else None
        if value is not None:
            rows.append({"task": task, "metric": metric, "protocol": protocol, "model": model, "baseline": value})
    return pd.DataFrame(rows, columns=["task", "metric", "protocol", "model", "baseline"])
