"""MCR-QA on MMLU: 4-way multiple choice over 57 subjects, k-shot from the dev split.

Data: the Hendrycks CSV layout (a folder with ``dev/<subject>_dev.csv`` and ``test/<subject>_test.csv``,
no header, columns question, A, B, C, D, answer letter), ``dataset: mmlu`` (that folder as shipped inside
kick: the full Hendrycks MMLU, 57 subjects, 14,042 test questions, 5 dev shots each; offline), the HF
dataset ``cais/mmlu`` (config ``all``), or ``dataset: world``.

``n_examples`` (None = every question) takes the first n in file order (legacy) or a seeded sample of n
kept in file order (strict, :func:`~kick_core.tasks.base.take`). :func:`stratified_take` is the
subject-stratified alternative (every subject covered, the rest proportional to subject size,
deterministic from the seed and the question ids alone), e.g. ``stratified_take(questions, 570, seed=0,
min_per_subject=10)`` gives 10 questions of each of the 57 subjects; a task config selects it with
``min_per_subject`` (``n_examples: 570, min_per_subject: 10``).

One forward pass per question yields both scores (see ``engine.scoring``): the log-likelihood of
" A"/" B"/" C"/" D" after ``Answer:`` (``accuracy``) and the argmax next token, i.e. the one greedy
token the original code generated (``generation_accuracy``: last character of decode(prompt +
token) equals the gold letter; ``invalid_rate``: that character is not A-D). Each subject's
header + few-shot block is a shared KV prefix.

Legacy (docs/PROTOCOL.md §5.2): the header keeps the double space (``about  abstract algebra.``), CSVs
are read with pandas' default NA handling (an option "None" becomes "nan", as in the original), k
is reduced while the prompt exceeds ``seqlen`` (2048) tokens; primary ``generation_accuracy``.
Strict: single-space header, options verbatim, k reduced (deterministically, last shots first)
only if the prompt does not fit the model's context; primary ``accuracy``. Both report micro and
macro accuracy and per-category micro accuracy; per-subject figures go to ``meta``.

Formulations (``formulation``; the names follow OLMES, Gu et al. 2024): ``letter`` is MMLU's, above.
``cloze`` (strict only) hides the options and scores each option's text as the continuation of
``Question: ...\nAnswer:``, normalised per character; shots end in the gold option's text. This is
lm-evaluation-harness' ``mmlu_continuation`` and OLMES' CF: models too small to bind options to
letters answer the letter formulation at chance while knowing the facts (measured on the world
model, 5-shot: letter 20-32 %, cloze 99 %; Robinson et al., ICLR 2023, "multiple choice symbol binding").
Its records keep the raw summed log-likelihoods (``choice_scores``) and option lengths in
characters (``choice_chars``), so the unnormalised accuracy can be recomputed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kick_core.config import RunConfig, TaskConfig
from kick_core.errors import ConfigError
from kick_core.metrics import legacy_mmlu_prediction
from kick_core.stats import bootstrap_ci, summarize
from kick_core.tasks.base import Example, Prompt, TaskBase, load_hub, record_fields, resolve_source, take
from kick_core.tasks.mmlu_categories import CATEGORIES, subject_category

LETTERS = ("A", "B", "C", "D")
CONTINUATIONS = tuple(f" {x}" for x in LETTERS)


def format_subject(subject: str, *, legacy: bool) -> str:
    """'abstract_algebra' -> ' abstract algebra' (legacy: a space before every word) or 'abstract algebra'."""
    words = subject.split("_")
    return "".join(" " + w for w in words) if legacy else " ".join(words)


def header(subject: str, *, legacy: bool) -> str:
    """The prompt header; legacy keeps the Hendrycks double space ('about  abstract algebra.')."""
    return f"The following are multiple choice questions (with answers) about {format_subject(subject, legacy=legacy)}.\n\n"


def format_question(example: Example, *, answer: bool) -> str:
    """'{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:' plus ' {letter}\\n\\n' for a shot."""
    text = example.input + "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, example.choices))
    text += "\nAnswer:"
    return text + (f" {example.answers[0]}\n\n" if answer else "")


def cloze_header(subject: str) -> str:
    """The cloze formulation's header (lm-evaluation-harness' mmlu_continuation)."""
    return f"The following are questions (with answers) about {format_subject(subject, legacy=False)}.\n\n"


def cloze_question(question: str) -> str:
    """'Question: {question}\\nAnswer:'; an option's text follows as ' {option}'."""
    return f"Question: {question.strip()}\nAnswer:"


def gold_choice(example: Example) -> str:
    """The text of the gold option."""
    return example.choices[LETTERS.index(example.answers[0])]


def _read_csv(path: Path, subject: str, split: str, *, legacy: bool) -> list[Example]:
    import pandas as pd

    # The original reads with pandas defaults: an option 'None'/'NA' becomes NaN and prints as 'nan'.
    df = pd.read_csv(path, header=None, keep_default_na=legacy, dtype=str if not legacy else None)
    if df.shape[1] != 6:
        raise ConfigError(f"{path} has {df.shape[1]} columns; MMLU CSVs have 6 (question, A, B, C, D, answer).")
    return [Example(id=f"{subject}/{split}/{i}", input=str(row[0]), choices=tuple(str(x) for x in row[1:5]),
                    answers=(str(row[5]).strip(),), meta={"subject": subject})
            for i, row in enumerate(df.itertuples(index=False, name=None))]


def read_mmlu_dir(root: Path, split: str, *, legacy: bool) -> tuple[list[Example], dict[str, list[Example]]]:
    """(questions of ``split`` in sorted-subject order, dev shots per subject) from a Hendrycks folder."""
    files = sorted((root / split).glob(f"*_{split}.csv"))
    if not files:
        raise ConfigError(f"no {split}/<subject>_{split}.csv files under {root}; expected the Hendrycks MMLU layout.")
    questions, shots = [], {}
    for f in files:
        subject = f.name[: -len(f"_{split}.csv")]
        questions.extend(_read_csv(f, subject, split, legacy=legacy))
        dev = root / "dev" / f"{subject}_dev.csv"
        shots[subject] = _read_csv(dev, subject, "dev", legacy=legacy) if dev.is_file() else []
    return questions, shots


def stratified_take(examples: Sequence[Example], n: int | None, *, seed: int, min_per_subject: int = 1,
                    key: str = "subject") -> list[Example]:
    """``n`` examples stratified over ``meta[key]`` (the subject), kept in input order; n None or >= len: all.

    Allocation: every subject gets ``min(min_per_subject, its size)``; the remaining ``n - sum`` are
    shared in proportion to what each subject has left (largest remainders, ties by subject name), so
    ``min_per_subject=1`` is about proportional and covers every subject, and ``n = k * n_subjects`` with
    ``min_per_subject=k`` is exactly k per subject. Within a subject the questions with the smallest
    ``sha256(f"{seed}:{id}")`` are taken: the subset depends only on the seed and the example ids, the
    same on every Python, NumPy and platform.

    Raises:
        ConfigError: ``n`` below ``min_per_subject`` times the number of subjects.
    """
    if n is None or n >= len(examples):
        return list(examples)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        groups[str(e.meta[key])].append(i)
    names = sorted(groups)
    alloc = {s: min(min_per_subject, len(groups[s])) for s in names}
    if sum(alloc.values()) > n:
        raise ConfigError(f"n_examples={n} is too few for {min_per_subject} per subject over {len(names)} subjects "
                          f"(needs {sum(alloc.values())}); raise n_examples or lower min_per_subject.")
    left = {s: len(groups[s]) - alloc[s] for s in names}
    rest, total_left = n - sum(alloc.values()), sum(left.values())
    # Exact integer arithmetic: quota_s = rest * left_s / total_left; floor, then the largest remainders.
    for s in names:
        alloc[s] += rest * left[s] // total_left
    short = n - sum(alloc.values())
    by_remainder = sorted(names, key=lambda s: (-(rest * left[s] % total_left), s))
    for s in by_remainder[:short]:
        alloc[s] += 1
    chosen: list[int] = []
    for s in names:
        ranked = sorted(groups[s], key=lambda i: hashlib.sha256(f"{seed}:{examples[i].id}".encode()).hexdigest())
        chosen.extend(ranked[: alloc[s]])
    return [examples[i] for i in sorted(chosen)]


def select_questions(questions: list[Example], task_cfg: TaskConfig, seed: int) -> list[Example]:
    """The questions a run evaluates: ``n_examples`` of them, stratified when the config sets ``min_per_subject``.

    Without it: the first n (legacy) or a seeded sample of n in file order (strict).
    """
    legacy = task_cfg.protocol == "legacy"
    if task_cfg.min_per_subject is not None and task_cfg.n_examples is not None:
        return stratified_take(questions, task_cfg.n_examples, seed=seed, min_per_subject=task_cfg.min_per_subject)
    return take(questions, task_cfg.n_examples, seed=None if legacy else seed)


def _from_hub(rows, split: str) -> list[Example]:
    return [Example(id=f"{r['subject']}/{split}/{i}", input=r["question"], choices=tuple(r["choices"]),
                    answers=(LETTERS[int(r["answer"])],), meta={"subject": r["subject"]}) for i, r in enumerate(rows)]


class MCQ(TaskBase):
    """MMLU-style multiple choice (see the module docstring)."""

    name = "mcq"
    version = "1"
    METRICS = {"accuracy": True, "generation_accuracy": True, "invalid_rate": False, "accuracy_macro": True,
               **{f"accuracy_{c}": True for c in CATEGORIES}, **{f"generation_accuracy_{c}": True for c in CATEGORIES}}

    def primary_metric(self, cfg: TaskConfig) -> str:
        return "generation_accuracy" if cfg.protocol == "legacy" else "accuracy"

    def load(self, task_cfg: TaskConfig, seed: int, *, world_seed: int = 0) -> list[Example]:
        legacy = task_cfg.protocol == "legacy"
        split = task_cfg.split or "test"
        src = resolve_source(task_cfg, "mmlu", world_seed=world_seed)
        if src.kind == "hub":
            config = task_cfg.dataset_config or "all"
            questions = _from_hub(load_hub(src.location, config, split), split)
            shots: dict[str, list[Example]] = {}
            for e in _from_hub(load_hub(src.location, config, "dev"), "dev"):
                shots.setdefault(e.meta["subject"], []).append(e)
        else:
            questions, shots = read_mmlu_dir(src.path, split, legacy=legacy)
        questions = [Example(e.id, e.input, e.answers, e.choices, meta={**e.meta, "shots": tuple(shots.get(e.meta["subject"], ()))})
                     for e in questions]
        return select_questions(questions, task_cfg, seed)

    def prompts(self, examples: Sequence[Example], cfg: RunConfig, tokenizer: Any, context_len: int) -> list[Prompt]:
        legacy = cfg.task.protocol == "legacy"
        limit = cfg.eval.seqlen if legacy else context_len - 1  # legacy: 'while prompt > 2048 tokens'
        k_max = cfg.task.n_shots

        cloze = cfg.task.formulation == "cloze"

        def build(e: Example, k: int) -> str:
            shots = e.meta["shots"][:k]
            if cloze:
                return cloze_header(e.meta["subject"]) + "".join(f"{cloze_question(s.input)} {gold_choice(s)}\n\n"
                                                                 for s in shots) + cloze_question(e.input)
            return header(e.meta["subject"], legacy=legacy) + "".join(format_question(s, answer=True) for s in shots) \
                + format_question(e, answer=False)

        texts = [build(e, k_max) for e in examples]
        lengths = [len(x) for x in tokenizer(texts, add_special_tokens=True)["input_ids"]]
        out = []
        for e, text, n in zip(examples, texts, lengths):
            k = min(k_max, len(e.meta["shots"]))
            while n > limit and k > 0:
                k -= 1
                text = build(e, k)
                n = len(tokenizer(text, add_special_tokens=True)["input_ids"])
            continuations = tuple(f" {c}" for c in e.choices) if cloze else CONTINUATIONS
            out.append(Prompt(id=e.id, example=e, kind="loglikelihood", text=text, continuations=continuations,
                              group=f"{e.meta['subject']}|k={k}", meta={"n_shots": k, "prompt_tokens": n}))
        return out

    def score(self, prompt: Prompt, output: Any, cfg: RunConfig, tokenizer: Any) -> dict[str, Any]:
        gold = prompt.example.answers[0]
        extra: dict[str, Any] = {}
        if cfg.task.formulation == "cloze":
            chars = [max(1, len(c)) for c in prompt.example.choices]
            pred = LETTERS[int(np.argmax(np.asarray(output.logprobs) / chars))]
            extra["choice_chars"] = chars
        else:
            pred = LETTERS[int(np.argmax(output.logprobs))]
        scores: dict[str, float | None] = {"accuracy": float(pred == gold)}
        legacy_pred = None
        if output.greedy_next is not None and cfg.task.formulation == "letter":
            ids = list(tokenizer(prompt.text, add_special_tokens=True)["input_ids"]) + [output.greedy_next]
            legacy_pred = legacy_mmlu_prediction(tokenizer.decode(ids, skip_special_tokens=True))
            scores.update(generation_accuracy=float(legacy_pred == gold), invalid_rate=float(legacy_pred not in LETTERS))
        else:
            scores.update(generation_accuracy=None, invalid_rate=None)
        subject = prompt.example.meta["subject"]
        return record_fields(prompt, legacy_pred or "", gold, scores, choice_scores=output.logprobs,
                             prediction=pred, flags={"n_shots": prompt.meta["n_shots"]},
                             subject=subject, category=subject_category(subject), **extra)

    def aggregate(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> tuple[dict[str, dict], dict[str, Any]]:
        boot = dict(n_bootstrap=cfg.eval.n_bootstrap, seed=cfg.seed)
        metrics: dict[str, dict] = {}
        for name in ("accuracy", "generation_accuracy", "invalid_rate"):
            metrics[name] = summarize([r["scores"].get(name) for r in records], higher_is_better=self.METRICS[name], **boot)
        subjects = sorted({r["subject"] for r in records})
        metrics["accuracy_macro"] = _macro(records, subjects, boot)
        for cat in CATEGORIES:
            sel = [r for r in records if r["category"] == cat]
            if sel:
                for name in ("accuracy", "generation_accuracy"):
                    metrics[f"{name}_{cat}"] = summarize([r["scores"].get(name) for r in sel], **boot)
        per_subject = {}
        for s in subjects:
            sel = [r for r in records if r["subject"] == s]
            per_subject[s] = {"n": len(sel), **{name: _mean([r["scores"].get(name) for r in sel])
                                                for name in ("accuracy", "generation_accuracy", "invalid_rate")}}
        meta = {"per_subject": per_subject, "n_legacy_unavailable": sum(r["scores"].get("generation_accuracy") is None
                                                                        for r in records),
                "n_shots_reduced": sum(r["flags"]["n_shots"] < cfg.task.n_shots for r in records)}
        return metrics, meta


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _macro(records: Sequence[Mapping[str, Any]], subjects: list[str], boot: dict) -> dict[str, Any]:
    """Mean of per-subject accuracies, with a bootstrap over examples (subjects re-weighted per resample)."""
    index = {s: i for i, s in enumerate(subjects)}
    arr = np.array([[r["scores"]["accuracy"], index[r["subject"]]] for r in records], dtype=float)
    k = len(subjects)

    def stat(sample: np.ndarray) -> np.ndarray:  # (B, n, 2) -> (B,)
        out = np.empty(len(sample))
        for b, s in enumerate(sample):
            sub = s[:, 1].astype(int)
            hits, counts = np.bincount(sub, weights=s[:, 0], minlength=k), np.bincount(sub, minlength=k)
            seen = counts > 0
            out[b] = (hits[seen] / counts[seen]).mean()
        return out

    value = float(stat(arr[None])[0]) if len(arr) else None
    lo, hi = bootstrap_ci(arr, statistic=stat, **boot) if len(arr) > 1 else (None, None)
    return {"value": value, "ci_low": lo, "ci_high": hi, "n": len(arr), "higher_is_better": True}


TASK = MCQ()
