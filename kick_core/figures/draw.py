"""The report figures drawn (matplotlib) from :mod:`kick_core.figures.frames`, and saved as PNG + SVG.

Every function takes the runs table of :func:`kick_core.results.load_runs` (the heat map also the
matching table of :func:`kick_core.explorer.matching_table`) and returns a Figure with its caption
under it, so a saved PNG explains itself. Nothing here recomputes a CI.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from kick_core.figures import labels as L
from kick_core.figures.frames import curves, heatmap_frame, labelled, nm_frame, relative_frame
from kick_core.results import atomic_write_bytes

CI_NOTE = ("Bars: the run's bootstrap 95% CI (resampling examples; perplexity: its evaluation windows), "
           "as recorded by the run.")

CAPTIONS = {
    "headline": (
        "Every task's headline metric as a fraction of the dense model's, and perplexity as dense \u00f7 "
        "compressed, so 1 is dense and down is worse for every line. Shaded: the paper's \"matching\" "
        "region, at least 95% of dense (within 5%). Top row zoomed on that region; bottom row the full range. "
        "Bars: the compressed run's bootstrap 95% CI divided by the dense value (the dense value's own "
        "uncertainty is in the matching heat map's paired test, not here)."),
    "sparsity": ("Each task's headline metric against unstructured sparsity, one line per pruning method "
                 "(dense at 0%, and dashed). Dotted: chance (MCQ, four options); dash-dotted: copying any "
                 "same-type name from the page (open book). " + CI_NOTE),
    "bits": ("Each task's headline metric against weight bits, one line per quantisation method and group size "
             "(dense at the left, and dashed). Dotted: chance (MCQ); dash-dotted: the open-book copy baseline. "
             + CI_NOTE),
    "nm": ("N:M against unstructured pruning at the same sparsity (50%: 2:4 and 4:8), per method and task, as a "
           "fraction of dense (perplexity: dense \u00f7 compressed). Shaded: within 5% of dense. Bars: the "
           "compressed run's bootstrap 95% CI divided by the dense value."),
    "matching": (
        "Cell: difference compressed \u2212 dense in the metric's units, with its 95% CI. Task metrics: paired "
        "bootstrap over the same examples; verdict from the CI of compressed / dense: matching if it lies at or "
        "above 0.95 (within 5% of dense), not matching if below, inconclusive if it straddles 0.95. Perplexity: "
        "the same test over its evaluation windows, on dense / compressed; its difference is in perplexity, "
        "so there up is worse."),
}

_FULL = "#f0f9e8"
_BAND = "#c7e9c0"


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _empty(message: str):
    fig, ax = _plt().subplots(figsize=(6, 1))
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_axis_off()
    return fig


def _caption(fig, text: str) -> None:
    """The caption under the panels, wrapped to the figure's width (laid out by constrained layout)."""
    width = max(60, int(fig.get_figwidth() * 15))
    fig.supxlabel(textwrap.fill(text, width), fontsize=8, ha="left", x=0.01, color="#333333")


def _shade(ax, tolerance: float) -> None:
    low, high = L.match_band(tolerance)
    ax.axhspan(low, max(ax.get_ylim()[1], high), color=_BAND, zorder=0, lw=0)
    ax.axhline(1.0, color="#555555", lw=0.8, zorder=1)


def _yerr(df: pd.DataFrame, y: str, low: str, high: str):
    if df[low].isna().all() or df[high].isna().all():
        return None
    return [(df[y] - df[low]).clip(lower=0).fillna(0).to_numpy(), (df[high] - df[y]).clip(lower=0).fillna(0).to_numpy()]


def _mean_by_x(d: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    return d.groupby("x", as_index=False)[list(cols)].mean().sort_values("x")


def _xticks(ax, xs: Sequence[float], axis: str) -> None:
    xs = sorted(set(xs))
    ax.set_xticks(xs)
    if axis == "sparsity":
        ax.set_xticklabels(["0" if x == 0 and len(xs) > 5 else "dense" if x == 0 else f"{x:g}%" for x in xs],
                           fontsize=8 if len(xs) > 5 else None)
    else:
        ax.set_xticklabels(["dense" if x == 0 else f"{L.DENSE_BITS / 2 ** x:.0f}-bit" for x in xs],
                           fontsize=8 if len(xs) > 3 else None)


# -- 1. the headline figure -------------------------------------------------------------------------
def plot_headline(runs: pd.DataFrame, *, tolerance: float = 0.05, zoom: tuple[float, float] = (0.7, 1.04)):
    """Every task and perplexity as a fraction of dense on one y axis: a panel per pruning method
    (against sparsity), then one per quantisation method (against bits), the matching band shaded."""
    plt = _plt()
    rel = relative_frame(runs, tolerance=tolerance)
    sets = [(axis, c) for axis in ("sparsity", "bits") for c in [curves(rel, axis)] if (c["kind"] != "dense").any()]
    facets = [(axis, f, c[c["facet"] == f]) for axis, c in sets for f in dict.fromkeys(c["facet"])]
    if not facets:
        return _empty("needs a dense run and pruned or quantised runs of the same tasks")
    widths = [1.0 if axis == "sparsity" else 0.75 for axis, _, _ in facets]
    fig = plt.figure(figsize=(2.9 * sum(widths) + 3.2, 6.4), layout="constrained")
    grid = fig.add_gridspec(2, len(facets), height_ratios=(2.3, 1), width_ratios=widths)
    top = max(1.05, float(rel["ratio_high"].max(skipna=True) if rel["ratio_high"].notna().any() else 1) + 0.03)
    handles: dict[str, object] = {}
    first_top = first_bottom = None
    for j, (axis, name, d) in enumerate(facets):
        for i, ylim in enumerate((zoom, (0.0, top))):
            share = first_top if i == 0 else first_bottom
            ax = fig.add_subplot(grid[i, j], sharey=share)
            if share is None:
                first_top, first_bottom = (ax, first_bottom) if i == 0 else (first_top, ax)
            ax.set_ylim(*ylim)
            _shade(ax, tolerance)
            groups = list(d.groupby("panel", sort=False))
            step = 0.6 if axis == "sparsity" else 0.025  # spread the lines' points a little so CIs do not overlap
            for k, (panel, g) in enumerate(groups):
                colour, ppl = g["colour"].iloc[0], g["task"].iloc[0] == "perplexity"
                p = _mean_by_x(g, ["ratio", "ratio_low", "ratio_high"])
                x = p["x"] + (k - (len(groups) - 1) / 2) * step * (p["x"] > 0)
                h = ax.errorbar(x, p["ratio"], yerr=_yerr(p, "ratio", "ratio_low", "ratio_high"), color=colour,
                                marker="o", ms=5 if ppl else 4, lw=2.6 if ppl else 1.5, capsize=0, elinewidth=1,
                                zorder=4 if ppl else 3, label=panel)
                for bars in h[2]:
                    bars.set_alpha(0.45)
                handles.setdefault(panel, h)
            _xticks(ax, d["x"], axis)
            ax.grid(axis="y", color="#dddddd", lw=0.5)
            if i == 0:
                ax.set_title(name, fontsize=11)
                ax.tick_params(labelbottom=False)
            else:
                ax.set_xlabel("sparsity (unstructured)" if axis == "sparsity" else "weight bits")
            if j == 0:
                ax.set_ylabel("fraction of dense kept\n(zoomed)" if i == 0 else "full range")
            else:
                ax.tick_params(labelleft=False)
    from matplotlib.patches import Patch

    band = Patch(color=_BAND, label=f"matching dense: \u2265 {L.match_band(tolerance)[0]:.2f} of dense")
    fig.legend(handles=[*handles.values(), band], labels=[*handles, band.get_label()], loc="outside right upper",
               fontsize=9, frameon=False, title="task \u2014 metric", title_fontsize=9, alignment="left")
    fig.suptitle("Fraction of dense kept, every task and perplexity (dense \u00f7 compressed)", fontsize=12,
                 x=0.01, ha="left")
    _caption(fig, CAPTIONS["headline"])
    return fig


# -- 2. metric vs sparsity / bits, absolute ----------------------------------------------------------
def plot_vs_compression(runs: pd.DataFrame, axis: str = "sparsity", *, baselines: pd.DataFrame | None = None):
    """Each task's headline metric (its own units) against sparsity or bits, a line per method, with
    dense dashed, chance (MCQ) dotted and the open-book copy baseline dash-dotted."""
    plt = _plt()
    c = curves(labelled(runs), axis)
    if not (c["kind"] != "dense").any():
        return _empty(f"no {'unstructured pruning' if axis == 'sparsity' else 'quantisation'} runs in these results")
    panels = list(dict.fromkeys(c.sort_values(["panel_order", "panel"])["panel"]))
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols + 2.4, 3.0 * nrows + 0.9), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    colours = {f: L.METHOD_COLOURS.get(m, "#333333") for f, m in zip(c["facet"], c["method"]) if m != "dense"}
    handles: dict[str, object] = {}
    for ax, panel in zip(axes.flat, panels):
        d = c[c["panel"] == panel]
        row = d.iloc[0]
        for facet, f in d.groupby("facet", sort=False):
            f = _mean_by_x(f, ["value", "ci_low", "ci_high"])
            h = ax.errorbar(f["x"], f["value"], yerr=_yerr(f, "value", "ci_low", "ci_high"), marker="o", ms=4,
                            capsize=2, elinewidth=0.8, color=colours.get(facet), label=facet)
            handles.setdefault(facet, h)
        dense = d.loc[d["kind"] == "dense", "value"]
        if len(dense):
            handles.setdefault("dense", ax.axhline(dense.mean(), ls="--", color="k", lw=1, label="dense"))
        _references(ax, row, baselines, handles)
        # from the metric's floor (0; perplexity 1): a zoomed axis would make a 1-point change look like a collapse
        ax.set_ylim(bottom=1.0 if row["metric"] == "perplexity" else min(0.0, ax.get_ylim()[0]))
        _xticks(ax, d["x"], axis)
        ax.set_title(textwrap.fill(panel, 38), fontsize=9.5)
        ax.set_ylabel(textwrap.fill(L.axis_label(row["metric"], row["higher_is_better"]), 34), fontsize=8.5)
        ax.set_xlabel("sparsity (unstructured)" if axis == "sparsity" else "weight bits", fontsize=8.5)
        ax.grid(axis="y", color="#eeeeee", lw=0.5)
    fig.legend(handles=list(handles.values()), labels=list(handles), loc="outside right upper", fontsize=8.5,
               frameon=False)
    _caption(fig, CAPTIONS[axis])
    return fig


def _references(ax, row, baselines: pd.DataFrame | None, handles: dict) -> None:
    chance = L.CHANCE.get(row["task"])
    if chance is not None and "accuracy" in row["metric"]:
        handles.setdefault("chance (4 options: 0.25)",
                           ax.axhline(chance, ls=":", color="#555555", lw=1.2, label="chance"))
    if baselines is not None and len(baselines):
        b = baselines[(baselines["task"] == row["task"]) & (baselines["metric"] == row["metric"])
                      & (baselines["protocol"] == row["protocol"])]
        if len(b):
            value = float(b["baseline"].mean())
            handles.setdefault(f"copy any same-type name from the page ({value:.2f})",
                               ax.axhline(value, ls="-.", color="#1f77b4", lw=1.2))


# -- 3. N:M vs unstructured ---------------------------------------------------------------------------
_PATTERN_COLOURS = ("#4d4d4d", "#e08214", "#8073ac", "#1b7837")


def plot_nm_vs_unstructured(runs: pd.DataFrame, *, tolerance: float = 0.05):
    """Per task, per method: unstructured pruning beside 2:4 and 4:8 at the same sparsity, as fraction of dense."""
    plt = _plt()
    nm = nm_frame(relative_frame(runs, tolerance=tolerance))
    if not (nm["kind"] == "nm").any():
        return _empty("no N:M runs in these results")
    panels = list(dict.fromkeys(nm["panel"]))
    patterns = list(dict.fromkeys(nm.sort_values("pattern_order")["pattern"]))
    groups = list(dict.fromkeys(nm.sort_values("method_order")["group"]))
    ncols = len(panels) if len(panels) <= 5 else 4
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols + 2.2, 2.9 * nrows + 0.9), squeeze=False,
                             sharey=True, layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    low = min(0.0, float(nm["ratio_low"].min(skipna=True))) if nm["ratio_low"].notna().any() else 0.0
    top = max(1.05, float(nm["ratio_high"].max(skipna=True)) + 0.03) if nm["ratio_high"].notna().any() else 1.05
    width = 0.8 / len(patterns)
    handles: dict[str, object] = {}
    for ax, panel in zip(axes.flat, panels):
        ax.set_ylim(low, top)
        _shade(ax, tolerance)
        d = nm[nm["panel"] == panel]
        for k, pattern in enumerate(patterns):
            p = d[d["pattern"] == pattern].groupby("group", as_index=False)[["ratio", "ratio_low", "ratio_high"]].mean()
            x = [groups.index(g) - 0.4 + width * (k + 0.5) for g in p["group"]]
            h = ax.errorbar(x, p["ratio"], yerr=_yerr(p, "ratio", "ratio_low", "ratio_high"), fmt="o", ms=5, capsize=2,
                            color=_PATTERN_COLOURS[k % len(_PATTERN_COLOURS)], label=pattern)
            handles.setdefault(pattern, h)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(textwrap.fill(panel, 38), fontsize=9.5)
        ax.grid(axis="y", color="#dddddd", lw=0.5)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of dense kept")
    from matplotlib.patches import Patch

    band = Patch(color=_BAND, label="within 5% of dense")
    fig.legend(handles=[*handles.values(), band], labels=[*handles, band.get_label()], loc="outside right upper",
               fontsize=9, frameon=False, title="sparsity pattern", title_fontsize=9, alignment="left")
    _caption(fig, CAPTIONS["nm"])
    return fig


# -- 4. the matching heat map -------------------------------------------------------------------------
def plot_matching_heatmap(matching: pd.DataFrame, runs: pd.DataFrame, *, tolerance: float = 0.05,
                          perplexity: pd.DataFrame | None = None):
    """Task x compression: each cell the difference vs dense with its CI, coloured by the matching verdict
    (``matching`` from :func:`kick_core.explorer.matching_table`; perplexity: see :func:`heatmap_frame`)."""
    import numpy as np
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    plt = _plt()
    hf = heatmap_frame(matching, runs, tolerance=tolerance, perplexity=perplexity)
    if hf.empty:
        return _empty("no compressed run with a dense twin in these results")
    rows = list(dict.fromkeys(hf.sort_values(["panel_order", "panel"])["panel"]))
    cols = list(dict.fromkeys(hf.sort_values("column_order")["compression"]))
    rgb = np.ones((len(rows), len(cols), 3))
    fig, ax = plt.subplots(figsize=(0.95 * len(cols) + 4.2, 0.62 * len(rows) + 2.6), layout="constrained")
    for r in hf.itertuples():
        i, j = rows.index(r.panel), cols.index(r.compression)
        rgb[i, j] = to_rgb(L.VERDICT_COLOURS.get(r.verdict, "#ffffff"))
        ax.text(j, i, r.text, ha="center", va="center", fontsize=6.5, linespacing=1.15)
    ax.imshow(rgb, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=40, ha="right", fontsize=8.5)
    ax.set_yticks(range(len(rows)), [textwrap.fill(r, 44) for r in rows], fontsize=8.5)
    ax.set_xticks(np.arange(len(cols) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(rows) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="minor", length=0)
    verdicts = [Patch(color=c, label=v) for v, c in L.VERDICT_COLOURS.items()]
    not_run = Patch(facecolor="white", edgecolor="#bbbbbb", label="not run")
    fig.legend(handles=[*verdicts, not_run], loc="outside right upper",
               frameon=False, fontsize=9, title="vs dense (within 5%)", title_fontsize=9)
    ax.set_title("Does the compressed model match dense? (difference compressed \u2212 dense, 95% CI)", fontsize=11)
    _caption(fig, CAPTIONS["matching"])
    return fig


# -- saving ---------------------------------------------------------------------------------------------
def save_figure(fig, folder: str | Path, name: str, *, formats: Sequence[str] = ("png", "svg"),
                dpi: int = 130) -> list[Path]:
    """Write ``fig`` as ``<folder>/<name>.png`` and ``.svg`` (atomically, mode 0666 minus the umask)."""
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        meta = {"Date": None} if fmt == "svg" else {}  # no timestamp: the same figure gives the same file
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata=meta)
        paths.append(atomic_write_bytes(Path(folder) / f"{name}.{fmt}", buf.getvalue()))
    return paths
