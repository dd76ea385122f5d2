"""Generate the experiment and report notebooks (run: ``python notebooks/_build.py``).

The notebooks are committed as generated, without outputs. One builder keeps them consistent: the
``parameters`` cell is written from ``kick_core.config.flat_fields()`` with each field's attribute
docstring as its comment, so a notebook can never drift from the config.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from kick_core import config  # noqa: E402

SMOKE = dict(model="kick-world", method="magnitude", sparsity=0.5, n_examples=20, n_calib=16, calib_seqlen=128,
             calib_dataset="world", n_bootstrap=200, seqlen=256)
"""Defaults of every experiment notebook: the embedded world at a laptop-sized smoke configuration."""
EXTRA_COMMENTS = {"seed": "run seed (python, numpy, torch)", "study": "study name: results/<study>/<run_id>/",
                  "out_dir": "run folder; empty means results/<study>/<run_id> (the runner sets it)"}


def field_docs() -> dict[str, str]:
    """Attribute docstrings of the config dataclasses, keyed by field name."""
    tree = ast.parse(Path(config.__file__).read_text())
    docs: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            body = node.body
            for a, b in zip(body, body[1:]):
                if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
                    docs[a.target.id] = " ".join(str(b.value.value).split())
    return docs


def _type_name(hint: Any) -> str:
    """'int', or 'Optional[int]' for ``int | None`` (papermill's inspector does not parse '|')."""
    if isinstance(hint, type):
        return hint.__name__
    args = [a for a in hint.__args__ if a is not type(None)]
    return f"Optional[{args[0].__name__}]" if len(args) == 1 else str(hint)


def _comment(text: str) -> str:
    # papermill's inspector skips any parameter line holding a second '='
    return text.replace(" = ", ": ").replace("=", ":")


def parameters_source(overrides: dict[str, Any], *, out_dir: bool = True) -> str:
    """The ``parameters`` cell: ``name: type = default  # meaning`` for every flat field (+ out_dir)."""
    defaults = {**config.RunConfig().to_flat(), **overrides}
    docs = {**field_docs(), **EXTRA_COMMENTS}
    lines = []
    for name, hint in config.flat_fields().items():
        lines.append(f"{name}: {_type_name(hint)} = {defaults[name]!r}  # {_comment(docs.get(name, ''))}".rstrip())
    if out_dir:
        lines.append(f"out_dir: str = ''  # {_comment(EXTRA_COMMENTS['out_dir'])}")
    return "\n".join(lines)


def config_source() -> str:
    """``cfg = RunConfig.from_flat(name=name, ...)`` over every flat field."""
    args = ",\n    ".join(f"{n}={n}" for n in config.flat_fields())
    return f"cfg = RunConfig.from_flat(\n    {args},\n)\nrun_path = run_dir(cfg, out_dir)\nset_seed(cfg.seed)\ncfg"


def notebook(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating gives byte-identical files
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    return nb


def md(text: str):
    return new_markdown_cell(text.strip())


def code(text: str, *tags: str):
    cell = new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


IMPORTS = """\
from typing import Optional

from kick_core.compress.model_cache import load_or_compress
from kick_core.config import RunConfig
from kick_core.evaluate import evaluate
from kick_core.log import StageTimes, setup_logging, timed
from kick_core.plots import metrics_frame, plot_run_metrics
from kick_core.provenance import set_seed
from kick_core.results import run_dir, write_run

setup_logging()"""

PARAMS_MD = """\
## Parameters

Every name below is a field of `kick_core.config.RunConfig` (`kick ls` and `config.py` document them).
The defaults are a smoke configuration on the embedded world; the runner (`kick run params/<study>.yaml`)
injects one expanded point of a params file here, so the same notebook serves every run of a sweep."""


def experiment(task: str, title: str, feeds: str, params_file: str, prose: str, overrides: dict[str, Any]):
    """An experiment notebook: title, prose, parameters, config, load+compress, evaluate, record, table, plot."""
    return notebook([
        md(f"# {title}\n\n*Feeds {feeds}. Driven by `{params_file}` (smoke: `params/smoke/`).*\n\n{prose}"),
        code(IMPORTS),
        md(PARAMS_MD),
        code(parameters_source({**SMOKE, "task": task, **overrides}), "parameters"),
        md("## The typed config\n\n`RunConfig.from_flat` validates every value and combination (a typo fails "
           "here, not after a model has loaded). `run_path` is where this run's files go."),
        code(config_source()),
        md("## Load and compress\n\n`load_or_compress` loads the model and applies the compression; the "
           "compressed model is cached on disk by model fingerprint + compression spec, so every run of a "
           "study that shares this compression reuses it. The report holds the *realised* sparsity."),
        code("times = StageTimes()\nwith timed(\"load+compress\", times):\n"
             "    model, tokenizer, report = load_or_compress(cfg.model, cfg.compress, progress=True)\n"
             "report.as_dict()"),
        md("## Evaluate\n\n`evaluate` writes one line per example to `examples.jsonl` in the run folder as it "
           "goes (an interrupted run resumes there) and returns the metrics with bootstrap 95% CIs."),
        code("with timed(\"evaluate\", times):\n"
             "    result = evaluate(model, tokenizer, cfg, out_dir=run_path, progress=True)\n"
             "metrics_frame(result)"),
        md("## Record\n\n`record.json` holds the resolved config, provenance, metrics, compression report, "
           "timings and token counts; report notebooks read only these files."),
        code("write_run(run_path, cfg, result, report, times=times)"),
        md("## Metrics with confidence intervals"),
        code("plot_run_metrics(result);"),
    ])


TASKS: dict[str, dict[str, Any]] = {
    "factoid_qa": dict(
        title="Factoid-QA: does the compressed model still know the facts?",
        feeds="paper Fig. 2 and Table 3 (Factoid-QA rows)",
        overrides={},
        prose="""\
The model answers short factual questions with no context: *closed book*, so the answer can only come
from knowledge stored in its weights. Pruning removes weights, and the study's first finding is that
such knowledge disappears long before perplexity notices.

- **Prompt** (FreebaseQA, paper and legacy code): `Please give answer to this question: <Q>\\nThe answer is `,
  greedy decoding.
- **legacy protocol** reproduces the original scorer exactly, bugs included: an answer alias counts if it
  appears anywhere in *prompt + output* after lower-casing and deleting spaces, on the *train* split.
- **strict protocol** scores only the generated continuation (normalised exact match and word-boundary
  containment as separate metrics) on the eval split.

Both report bootstrap 95% CIs: with 1000 questions one standard error is ~1.5 points, about the size
of the paper's "matching" (<= 5% relative drop) threshold.""",
    ),
    "mcq": dict(
        title="MCR-QA: multiple-choice knowledge (MMLU layout)",
        feeds="paper Fig. 3 and Table 3 (MMLU rows)",
        overrides={"n_shots": 5, "formulation": "cloze"},
        prose="""\
Multiple-choice questions in the Hendrycks MMLU layout, 5-shot from the dev split.

- **legacy protocol**: the options are in the prompt and exactly one greedy token is generated; its last
  character is the prediction, so invalid outputs count as wrong and accuracy can fall *below chance*
  (Table 3: 5.0% at 50% magnitude).
- **strict protocol, `formulation="letter"`** (MMLU's): the prediction is the option letter with the highest
  next-token likelihood (lm-eval style); the generation score and the invalid-output rate are reported beside it.
- **strict protocol, `formulation="cloze"`** (the default here): the options are hidden and each option's
  text is scored as the answer, per character (lm-eval's `mmlu_continuation`, OLMES' CF). The small world
  model knows the facts but cannot bind options to letters, so it answers the letter formulation at chance;
  use `"letter"` for real LLMs, as the paper did.

Comparing legacy and strict shows how much of the "knowledge loss" is really format breakage.""",
    ),
    "icr_qa": dict(
        title="ICR-QA: answering from a given text (open vs closed book)",
        feeds="paper Fig. 4 (ICRA-QA, closed vs open book)",
        overrides={"book": "both"},
        prose="""\
TriviaQA-style questions asked twice: *closed book* (question only) and *open book* (the evidence text is
in the prompt). The study's finding: compressed models keep the ability to *read* an answer from context
far longer than the ability to *recall* it, so the open-book curve stays flat while closed-book falls.

- **Prompt**: `Based on these texts, answer these questions:\\n\\nQ: ...\\nA:` (closed book:
  `Answer these questions:\\n\\nQ: ...\\nA:`), greedy, first line of the output kept.
- **legacy protocol**: "EM" is normalised containment in *either* direction, so an empty prediction scores 1.
- **strict protocol**: strict normalised EM (empty = 0), containment and F1 as separate metrics; evidence
  truncated by tokens, never cutting the question.""",
    ),
    "summarisation": dict(
        title="In-context summarisation (CNN/DM stories)",
        feeds="paper Fig. 5 and Table 3 (summarisation, large stories)",
        overrides={"length": "small", "n_examples": 5, "max_new_tokens": 128},
        prose="""\
The model summarises a news story given in the prompt (Vicuna v1.1 chat template), in three length
buckets: small <= 470 words, mid 471-789, large >= 790. The paper scores summaries with a GPT-4 judge
against a GPT-3.5 reference on coherence, consistency, fluency and relevance (1-10).

- **Data**: `dataset: world` (the embedded world's `.story` files, the default), `llm-kick` (the study's
  90 prompts as shipped), a folder of CNN/DM `.story` files, or `abisee/cnn_dailymail` (3.0.0, test).
- **legacy protocol**: the original prompts, which leak the `@highlight` reference bullets and glue the
  paragraphs; the study sampled at T = 0.7 (`decoding: sample`); stories longer than the context get
  an empty answer, as they did in the study.
- **strict protocol**: highlights stripped, paragraphs separated, disjoint buckets, stories that do not
  fit the context excluded and counted (`meta["n_excluded_context"]`), ROUGE-1/2/L against the
  highlights and length compliance (<= 150 words) beside the judge.
- **Judge** (`judge`: auto | none | rubric | openai | hf): after generation `evaluate` has every summary
  judged and stores verdicts and raw replies per example. On the world the default is a deterministic
  rubric (offline); on real data set `judge: openai` (endpoint and model from `judge_base_url` /
  `judge_model` or `KICK_JUDGE_*`, the key only from the environment). With no judge the judge
  metrics are reported as *missing*, not 0.

Judge noise alone moves bucket means by ~0.05-0.09, a large share of the differences read as compression
effects: look at the CIs before reading a trend.""",
    ),
    "instruction": dict(
        title="Instruction following (Vicuna-80 and MT-Bench)",
        feeds="paper Fig. 6 and Table 3 (instruction following)",
        overrides={"n_examples": 5, "max_new_tokens": 128},
        prose="""\
Open-ended instructions answered in the chat template and scored by an LLM judge. The paper says
"multi-turn MT-Bench" but the study ran the single-turn **Vicuna-80** set (80 questions, 9 categories,
GPT-3.5 answers as reference); kick names it for what it is and also runs real **MT-Bench** (two
turns; turn 2 is asked after the model's own first answer).

- **Data**: `dataset: world` (two-turn questions with rule-checkable constraints, the default),
  `vicuna80` (shipped), or a FastChat `question.jsonl` (Vicuna-80 or MT-Bench rows).
- **legacy protocol**: first turn only, the FastChat pairwise judge prompt with the reference as
  Assistant 1, score parsed from the first line; unparseable items (all math, several coding) are
  dropped as in the paper (counted in `meta["judge"]`).
- **strict protocol**: every turn; structured judge verdicts in both orders (single-answer MT-Bench
  grading where there is no reference); parse failures recorded with the raw reply, never 0.
- **Repetition**: distinct-1/2, unique tokens and repeated 4-grams over the model's own tokens, the
  defined version of the paper's "unique tokens" claim. Judge scores are also given per category.""",
    ),
    "perplexity": dict(
        title="Perplexity: the metric the paper argues against",
        feeds="paper Fig. 1 (perplexity vs sparsity)",
        overrides={"n_examples": 8},
        prose="""\
Perplexity of held-out text, exp(mean negative log-likelihood) over consecutive windows of `seqlen`
tokens (the study: WikiText-2 test, 2048-token windows; here the world's validation corpus by default).

It is the usual yardstick of compression papers, and the study's point is that it *misleads*: perplexity
barely moves at sparsities where factual recall has already collapsed. The report notebook puts this
curve beside the task metrics so the gap is visible.""",
    ),
}


def compress_notebook():
    """Compression alone: the report and a per-layer sparsity plot (no task evaluation)."""
    return notebook([
        md("# Compression alone: what was removed, where\n\n*Feeds the sanity checks behind every figure; "
           "driven by any params file with `notebook: exp_compress`.*\n\n"
           "Loads the model, applies one compression config (magnitude, Wanda, SparseGPT, N:M, quantisation) "
           "and shows what it actually did: the realised sparsity overall and per weight matrix, timings and "
           "peak memory. The study prunes every linear of every decoder block at a **uniform per-matrix "
           "ratio** and leaves embeddings, norms and `lm_head` alone; the plot below makes that visible "
           "(every bar at the target, N:M exactly N/M). Like the original code's \"sparsity sanity check\", "
           "but recorded, not printed."),
        code("from typing import Optional\n\nfrom kick_core.compress.model_cache import load_or_compress\nfrom kick_core.config import RunConfig\n"
             "from kick_core.log import StageTimes, setup_logging, timed\n"
             "from kick_core.plots import layer_sparsity_frame, plot_layer_sparsity\n"
             "from kick_core.provenance import set_seed\nfrom kick_core.results import run_dir, write_run\n\n"
             "setup_logging()"),
        md(PARAMS_MD),
        code(parameters_source({**SMOKE, "method": "wanda"}), "parameters"),
        md("## The typed config"),
        code(config_source()),
        md("## Compress (cached)"),
        code("times = StageTimes()\nwith timed(\"load+compress\", times):\n"
             "    model, tokenizer, report = load_or_compress(cfg.model, cfg.compress, progress=True)\n"
             "write_run(run_path, cfg, None, report, times=times)\n"
             "layer_sparsity_frame(report)"),
        md("## Realised sparsity per weight matrix"),
        code("plot_layer_sparsity(report, target=cfg.compress.target_sparsity);"),
    ])


REPORT_PARAMS = "results_dir: str = 'results/demo'  # a study folder (or any folder of run records)"


FIGURES_PARAM = ("figures_dir: str = ''  # PNG + SVG copies of the figures; empty means <results_dir>/report/figures "
                 "(kick run and kick report set it)")


def report_figures():
    from kick_core.figures import CAPTIONS

    def figure(call: str, name: str) -> str:
        return f"fig = {call}\nfigures.save_figure(fig, figures_dir, {name!r});"

    return notebook([
        md("# Report: what compression costs, task by task\n\n*The study's figures from the run records of one "
           "results folder; executed by `kick run` at the end of a study and by `kick report <dir>`. "
           "Never loads a model. Each figure is also saved as PNG and SVG in `figures_dir`.*\n\n"
           "The study's point in one figure first: perplexity barely moves at compression levels where "
           "closed-book knowledge has already fallen. Then each metric in its own units (with chance and "
           "the open-book copy baseline), N:M against unstructured sparsity, and the paper's *matching* rule "
           "(within 5% of dense) as a heat map, with a paired test per example, so a verdict can also be "
           "*inconclusive*."),
        code("import os\n\nfrom IPython.display import Markdown, display\n\nfrom kick_core import figures\n"
             "from kick_core.explorer import matching_table\nfrom kick_core.findings import answers, model_notes\n"
             "from kick_core.plots import summary_table\nfrom kick_core.results import load_runs"),
        code(f"{REPORT_PARAMS}\n{FIGURES_PARAM}", "parameters"),
        code("runs = load_runs(results_dir)\n"
             "figures_dir = figures_dir or os.path.join(results_dir, 'report', 'figures')\n"
             "display(Markdown('\\n\\n'.join(model_notes(runs))))\nsummary_table(runs)"),
        md("## 1. Every task and perplexity as a fraction of dense\n\nOne line per task, one panel per method; "
           "shaded: within 5% of dense. Look at 50% sparsity: is the black perplexity line still in the band "
           "where the warm-coloured closed-book lines have left it?\n\n" + CAPTIONS["headline"]),
        code(figure("figures.plot_headline(runs)", "1_headline")),
        md("## 2. Each metric against unstructured sparsity\n\n" + CAPTIONS["sparsity"]),
        code("baselines = figures.copy_baselines(runs)  # open book: copying any same-type name from the page\n"
             + figure("figures.plot_vs_compression(runs, 'sparsity', baselines=baselines)", "2_vs_sparsity")),
        md("## 3. Each metric against weight bits (quantisation)\n\n" + CAPTIONS["bits"]),
        code(figure("figures.plot_vs_compression(runs, 'bits', baselines=baselines)", "3_vs_bits")),
        md("## 4. N:M against unstructured sparsity at the same level\n\n" + CAPTIONS["nm"]),
        code(figure("figures.plot_nm_vs_unstructured(runs)", "4_nm_vs_unstructured")),
        md("## 5. Matching regime (paired against the dense run of the same task and model)\n\n"
           + CAPTIONS["matching"]),
        code("matching = matching_table(runs)\n"
             + figure("figures.plot_matching_heatmap(matching, runs)", "5_matching")),
        md("The same table in full: flips (right to wrong, wrong to right), McNemar p, ratio and its CI per run."),
        code("matching"),
        md("## 6. The paper's questions, answered from these runs\n\nWhere closed-book knowledge and perplexity "
           "leave the band, open vs closed book at 50 %, N:M vs unstructured, quantisation vs pruning; paired "
           "bootstrap CIs over examples (perplexity: over windows). `kick_core.findings` has the tables."),
        code("display(Markdown('\\n'.join(answers(runs))))"),
    ])


def report_explorer():
    return notebook([
        md("# Explorer: dense vs compressed, example by example\n\n*Pick a task, a method and a level to "
           "see what the compressed model answered where the dense one did, flips (answers that changed "
           "from right to wrong or back) first. Reads the runs' `examples.jsonl`; never loads a model.*"),
        code("from kick_core.explorer import explorer, flips_overview\nfrom kick_core.results import load_runs"),
        code(REPORT_PARAMS, "parameters"),
        code("runs = load_runs(results_dir)\nflips_overview(runs)"),
        md("## Browse"),
        code("explorer(runs)"),
    ])


def main() -> None:
    out = {f"exp_{t}": experiment(t, params_file=f"params/demo.yaml", **spec) for t, spec in TASKS.items()}
    out["exp_compress"] = compress_notebook()
    out["report_figures"] = report_figures()
    out["report_explorer"] = report_explorer()
    for name, nb in out.items():
        nbformat.validate(nb)
        nbformat.write(nb, str(HERE / f"{name}.ipynb"))
    print(f"wrote {len(out)} notebooks to {HERE}")  # noqa: T201 - a build script, not library code


if __name__ == "__main__":
    main()
