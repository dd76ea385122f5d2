"""Words for the report figures: method, compression, panel and axis names, panel order, colours, reference lines.

Names follow the README ("Wanda", "SparseGPT", "RTN 4-bit, group 32"); a panel is one task metric,
named in words ("Closed-book factoid QA — answer contained"). Everything here is a pure function of
a run's fields, so every figure and table names things the same way.
"""

from __future__ import annotations

import math
import re

from kick_core import methods

METHOD_NAMES = {"dense": "Dense", "magnitude": "Magnitude", "wanda": "Wanda", "sparsegpt": "SparseGPT",
                "rtn": "RTN", "gptq": "GPTQ", "awq": "AWQ", "bnb_int8": "LLM.int8()", "bnb_nf4": "NF4",
                "bnb_fp4": "FP4"}
"""Method names as the README writes them."""

TASK_NAMES = {"factoid_qa": "Closed-book factoid QA", "mcq": "Multiple-choice QA (MMLU)",
              "icr_qa": "In-context retrieval", "summarisation": "Summarisation",
              "instruction": "Instruction following", "perplexity": "Perplexity"}

METRIC_NAMES = {"contains": "answer contained", "exact_match": "exact match", "accuracy": "accuracy",
                "em": "lenient exact match", "f1": "token F1",
                "generation_accuracy": "accuracy of the generated letter",
                "accuracy_macro": "accuracy, mean over subjects", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2",
                "rougeL": "ROUGE-L", "judge_score": "rubric judge score, 1-10", "judge_coherence": "judged coherence",
                "perplexity": "perplexity", "nll": "negative log-likelihood"}

_BOOK = re.compile(r"^(?P<base>.+)_(?P<book>open|closed)$")

PANEL_ORDER = (("factoid_qa", None), ("icr_qa", "closed"), ("mcq", None), ("icr_qa", "open"),
               ("summarisation", None), ("instruction", None), ("perplexity", None))
"""Knowledge first (closed book), then reading (open book), generation, and perplexity last."""

PANEL_COLOURS = {("factoid_qa", None): "#d62728", ("icr_qa", "closed"): "#ff7f0e", ("mcq", None): "#9467bd",
                 ("icr_qa", "open"): "#1f77b4", ("summarisation", None): "#2ca02c",
                 ("instruction", None): "#17becf", ("perplexity", None): "#000000"}
"""Warm colours for closed-book knowledge, cool for reading and generation, black for perplexity."""

METHOD_COLOURS = {"magnitude": "#1b9e77", "wanda": "#d95f02", "sparsegpt": "#7570b3", "rtn": "#e7298a",
                  "gptq": "#66a61e", "awq": "#e6ab02", "bnb_int8": "#a6761d", "bnb_nf4": "#a6761d",
                  "bnb_fp4": "#a6761d", "dense": "#000000"}

VERDICT_COLOURS = {"matching": "#a6d96a", "not matching": "#f46d43", "inconclusive": "#fee08b"}
"""The matching heat map: green within 5% of dense, red below it, amber where the CI straddles the line."""

CHANCE = {"mcq": 0.25}
"""Accuracy of guessing among the four options of an MMLU question."""

DENSE_BITS = 16
"""Where the dense model sits on a bits axis (the study's fp16; the demo's world model is fp32)."""


def match_band(tolerance: float = 0.05) -> tuple[float, float]:
    """The paper's "matching dense" band on a fraction-of-dense axis: (1 - tolerance, 1)."""
    return (1.0 - tolerance, 1.0)


def split_book(metric: str) -> tuple[str, str | None]:
    """'exact_match_open' -> ('exact_match', 'open'); metrics without a book -> (metric, None)."""
    m = _BOOK.match(metric)
    return (m["base"], m["book"]) if m else (metric, None)


def panel_key(task: str, metric: str) -> tuple[str, str | None]:
    """(task, book): what decides a panel's place and colour."""
    return task, split_book(metric)[1] if task == "icr_qa" else None


def panel_order(task: str, metric: str) -> int:
    key = panel_key(task, metric)
    return PANEL_ORDER.index(key) if key in PANEL_ORDER else len(PANEL_ORDER)


def panel_colour(task: str, metric: str) -> str:
    return PANEL_COLOURS.get(panel_key(task, metric), "#7f7f7f")


def shade(colour: str, k: int) -> str:
    """The k-th shade of a ``#rrggbb`` panel colour, for panels that would share it (MMLU letter and
    cloze, or one task on two models): 0 is the colour itself, then alternately darker and lighter by
    40 % and 80 %; a near-black colour (perplexity) goes lighter only, by 30 % a step (greys)."""
    if k == 0:
        return colour
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    if sum(rgb) < 0.2 * 3 * 255:
        lighter, t = True, min(0.9, 0.3 * k)
    else:
        lighter, t = k % 2 == 0, min(0.8, 0.4 * ((k + 1) // 2))
    mixed = [round(c + (255 - c) * t) if lighter else round(c * (1 - t)) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in mixed)


def metric_name(metric: str) -> str:
    base, _ = split_book(metric)
    return METRIC_NAMES.get(metric) or METRIC_NAMES.get(base) or base.replace("_", " ")


def panel_title(task: str, metric: str, protocol: str | None = None, variant: str = "") -> str:
    """'Closed-book factoid QA — answer contained', 'In-context retrieval, open book — exact match',
    'Multiple-choice QA (MMLU), cloze — accuracy' (``variant``: what tells runs of one task apart)."""
    base, book = split_book(metric)
    name = TASK_NAMES.get(task, task.replace("_", " "))
    if task == "icr_qa" and book:
        name = f"{name}, {book} book"
    if variant and isinstance(variant, str):
        name = f"{name}, {variant}"
    title = name if metric == task else f"{name} — {metric_name(metric)}"
    return f"{title} (legacy protocol)" if protocol == "legacy" else title


def axis_label(metric: str, higher_is_better: bool | None) -> str:
    """The metric and its direction: 'answer contained (higher is better)'."""
    lower = higher_is_better is not None and not _missing(higher_is_better) and not bool(higher_is_better)
    direction = "lower is better" if lower else "higher is better"
    return f"{metric_name(metric)} ({direction})"


def _missing(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _present(x) -> bool:
    return x is not None and not _missing(x)


def quant_label(method: str, bits=None, group_size=None) -> str:
    """'RTN 4-bit, group 32', 'GPTQ 4-bit', 'LLM.int8()', 'NF4 (4-bit)'."""
    name = METHOD_NAMES.get(method, method)
    if method == "bnb_int8":
        return name
    if method.startswith("bnb_"):
        return f"{name} ({int(bits)}-bit)" if _present(bits) else name
    label = f"{name} {int(bits)}-bit" if _present(bits) else name
    return f"{label}, group {int(group_size)}" if _present(group_size) else label


def quant_family(method: str, group_size=None) -> str:
    """A bits axis' line: 'RTN, group 32'; bitsandbytes' fixed formats share one 'bitsandbytes' line."""
    if method.startswith("bnb_"):
        return "bitsandbytes"
    name = METHOD_NAMES.get(method, method)
    return f"{name}, group {int(group_size)}" if _present(group_size) else name


_PLUS = re.compile(r"\+(?P<method>[a-z_0-9]+)-w(?P<bits>\d+)(?:g(?P<group>\d+))?")


def compression_label(method: str, structure: str = "unstructured", sparsity=None, bits=None, group_size=None,
                      slug: str = "") -> str:
    """A run's compression in words: 'Dense', 'Wanda 50%', 'SparseGPT 2:4', 'RTN 4-bit, group 32',
    'Wanda 50% + GPTQ 4-bit, group 128' (pruned, then quantised: read from the slug)."""
    if method == "dense":
        return METHOD_NAMES["dense"]
    if methods.family(method) == "prune":
        name = METHOD_NAMES[method]
        label = f"{name} {structure}" if structure and structure != "unstructured" else \
            f"{name} {round(100 * float(sparsity or 0))}%"
        plus = _PLUS.search(slug or "")
        if plus:
            label += " + " + quant_label(plus["method"], int(plus["bits"]), plus["group"] and int(plus["group"]))
        return label
    if methods.quantises(method):
        return quant_label(method, bits, group_size)
    return METHOD_NAMES.get(method, slug or method)


def compression_kind(method: str, structure: str = "unstructured", bits=None) -> str:
    """'dense', 'unstructured', 'nm' (N:M), 'quantised', or 'pruned+quantised'."""
    if method == "dense":
        return "dense"
    if methods.family(method) == "prune":
        if _present(bits):
            return "pruned+quantised"
        return "unstructured" if structure in (None, "", "unstructured") else "nm"
    return "quantised" if methods.quantises(method) else "other"


def bits_position(bits) -> float:
    """x of a bits axis, growing with compression: dense 0, 8-bit 1, 4-bit 2, 3-bit 2.4, 2-bit 3 (log2 of 16/bits)."""
    return math.log2(DENSE_BITS / float(bits)) if _present(bits) else 0.0
