"""What every task provides, and the shared plumbing: examples, prompts, data sources and record fields.

A task turns a :class:`~kick_core.config.TaskConfig` into :class:`Example` s (``load``), each example
into one or more :class:`Prompt` s (``prompts``: one per per-example record, e.g. ICR-QA's closed and
open book), an engine output into a record's ``output``/``scores``/``flags`` (``score``), and the
records into metrics (``aggregate``). ``evaluate`` is the only orchestrator; tasks never touch the
model. A prompt is one of three request kinds:

* ``generate``       -- text to continue (``max_new_tokens``, ``stop``);
* ``loglikelihood``  -- a context with ``continuations`` to score (``group`` shares a KV prefix);
* ``perplexity``     -- a token window (``tokens``, scored from ``score_from``).

The judged tasks (summarisation, instruction following) are ``generate`` prompts whose record
carries a ``judge`` field filled by the judge step: they set ``judge_task`` and give ``judge_inputs``
and ``rubric``. A multi-turn task (instruction) gives ``followups``, the next turn built from the
model's answers; its prompts are built with ``models.format_chat`` before they reach the engine.
Tasks subclass :class:`TaskBase`, whose defaults make these members one round and no judge.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from kick_core.config import RunConfig, TaskConfig
from kick_core.errors import ConfigError, KickError, UnknownNameError, did_you_mean, lookup

log = logging.getLogger(__name__)

RequestType = Literal["generate", "loglikelihood", "perplexity"]


@dataclass(frozen=True)
class Example:
    """One dataset item, as loaded (no prompt formatting yet)."""

    id: str
    """Stable id from the dataset (e.g. FreebaseQA 'Question-ID', TriviaQA 'question_id')."""
    input: str
    """The question (or text) the model answers."""
    answers: tuple[str, ...] = ()
    """Reference answers / aliases (for MCQ: the gold letter)."""
    choices: tuple[str, ...] = ()
    """Answer options for multiple choice."""
    context: tuple[str, ...] = ()
    """Evidence documents for in-context tasks."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Anything else a task needs (subject, legacy aliases, ...)."""


@dataclass(frozen=True)
class Prompt:
    """One engine request; each becomes exactly one per-example record."""

    id: str
    example: Example
    kind: RequestType
    text: str = ""
    continuations: tuple[str, ...] = ()
    group: str | None = None
    max_new_tokens: int | None = None
    stop: tuple[str, ...] = ()
    tokens: tuple[int, ...] = ()
    score_from: int = 1
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """Hash of everything the model sees; a resumed run refuses records whose hash differs."""
        payload = repr((self.kind, self.text, self.continuations, self.max_new_tokens, self.stop,
                        self.tokens, self.score_from))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class Task(Protocol):
    """The task contract (plain objects registered in ``kick_core.tasks.TASKS``).

    Every member is there on every task: :class:`TaskBase` gives the optional ones (``judge_task``,
    ``followups``, ``judge_inputs``, ``rubric``) their single-turn, unjudged defaults, so ``evaluate``
    and the judge step just call them.
    """

    name: str
    version: str
    METRICS: Mapping[str, bool]
    """metric name -> higher_is_better."""
    judge_task: str | None
    """The judge's task (``"summarisation"`` | ``"instruction"``) when the outputs are judged; None otherwise."""

    def primary_metric(self, cfg: TaskConfig) -> str: ...

    def load(self, task_cfg: TaskConfig, seed: int, *, world_seed: int = 0) -> list[Example]: ...

    def prompts(self, examples: Sequence[Example], cfg: RunConfig, tokenizer: Any, context_len: int) -> list[Prompt]: ...

    def followups(self, prompts: Sequence[Prompt], done: Mapping[str, Mapping[str, Any]], cfg: RunConfig,
                  tokenizer: Any, context_len: int) -> list[Prompt]:
        """The next turn's prompts, built from the records ``done`` of the round of ``prompts``; [] ends the run."""
        ...

    def score(self, prompt: Prompt, output: Any, cfg: RunConfig, tokenizer: Any) -> dict[str, Any]: ...

    def judge_inputs(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> list[dict[str, Any]]:
        """One judge-stage record per example record (question, candidate, reference, category)."""
        ...

    def rubric(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> Any:
        """The deterministic rubric judge for ``records`` (judge: rubric), or None where the data has no rules."""
        ...

    def aggregate(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> tuple[dict[str, dict], dict[str, Any]]: ...


class TaskBase(Task):
    """What tasks subclass: the defaults of :class:`Task`'s optional members (one round, not judged)."""

    judge_task: str | None = None

    def followups(self, prompts: Sequence[Prompt], done: Mapping[str, Mapping[str, Any]], cfg: RunConfig,
                  tokenizer: Any, context_len: int) -> list[Prompt]:
        """Single-turn: no follow-up round."""
        return []

    def judge_inputs(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> list[dict[str, Any]]:
        """Only judged tasks (``judge_task`` set) have judge inputs."""
        raise KickError(f"task {self.name!r} is not judged (judge_task is None), so it has no judge inputs.")

    def rubric(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> Any:
        """No rubric judge."""
        return None


# -- data sources ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """Where a task's data comes from: a local file/directory (real format) or a hub dataset id."""

    kind: Literal["local", "hub"]
    location: str

    @property
    def path(self) -> Path:
        return Path(self.location)


SHIPPED_DATASETS: dict[str, str] = {"mmlu": "mmlu", "cnn_dm": "cnn_dm"}
"""Real data shipped inside the package, by name -> its folder under ``kick_core/data/`` (read offline):

* ``mmlu``   -- the Hendrycks MMLU CSVs (``dev``/``val``/``test``, 57 subjects, 14,042 test questions; MIT);
* ``cnn_dm`` -- the study's 90 CNN/DailyMail ``.story`` files, 30 in each of ``small``/``mid``/``large``.
"""
SHIPPED_TASKS: dict[str, tuple[str, ...]] = {"mmlu": ("mcq",), "cnn_dm": ("summarisation", "perplexity")}
"""The tasks that read each shipped dataset."""
BUILTIN_DATASETS = ("world", "geofacts", *SHIPPED_DATASETS)
"""Every dataset name :func:`resolve_source` resolves itself (the rest are local paths or hub ids)."""


def shipped_path(name: str) -> Path:
    """The folder of the shipped dataset ``name`` (UnknownNameError with close names otherwise)."""
    return Path(__file__).resolve().parent.parent / "data" / lookup(SHIPPED_DATASETS, name, "shipped dataset")


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def resolve_source(task_cfg: TaskConfig, world_subdir: str, *, world_seed: int = 0) -> Source:
    """Where ``task_cfg.dataset`` is, in this order:

    * 'world' -> the embedded world's files; 'geofacts' -> the GeoNames fact files
      (:mod:`kick_core.data.geofacts`);
    * a shipped name (:data:`SHIPPED_DATASETS`: 'mmlu', 'cnn_dm') -> its folder inside the package. A name
      means one thing: it wins over a local file or folder of the same name in the working directory (a
      warning says so; write ``./mmlu`` for the local one). Hub ids have a slash ('cais/mmlu'), so never clash;
    * an existing path -> local; otherwise a hub id. A name that differs from a built-in one only in case or
      punctuation ('MMLU', 'cnn-dm') is an error with the close name, not a hub id.
    """
    dataset = task_cfg.dataset
    if dataset == "geofacts":
        from kick_core.data.geofacts import ensure_geofacts

        data_dir = ensure_geofacts() / world_subdir
        if not data_dir.is_dir():
            raise ConfigError(f"dataset='geofacts' has no {world_subdir}/ data (it holds factoid/ and triviaqa/); "
                              "use it with task factoid_qa or icr_qa.")
        return Source("local", str(data_dir))
    if dataset == "world":
        from kick_core.world import ensure_world_data

        return Source("local", str(ensure_world_data(seed=world_seed) / world_subdir))
    if dataset in SHIPPED_DATASETS:
        tasks = SHIPPED_TASKS[dataset]
        if task_cfg.task not in tasks:
            raise ConfigError(f"dataset={dataset!r} (shipped with kick) is data for task {' or '.join(tasks)}, not "
                              f"{task_cfg.task!r}; use it with {' or '.join(tasks)}, or pick another dataset.")
        if Path(dataset).exists():
            log.warning("dataset=%r is kick's shipped %s data, not the local %r in %s; write './%s' to use the "
                        "local one.", dataset, dataset, dataset, Path.cwd(), dataset)
        return Source("local", str(shipped_path(dataset)))
    path = Path(dataset).expanduser()
    if path.exists():
        return Source("local", str(path))
    if dataset.startswith((".", "/", "~")) or dataset.endswith((".json", ".jsonl", ".csv", ".txt", ".gz")):
        raise ConfigError(f"dataset={dataset!r} looks like a local path but does not exist; fix the path.")
    near = [name for name in BUILTIN_DATASETS if _squash(name) == _squash(dataset)]
    if near:
        raise UnknownNameError(f"Unknown dataset {dataset!r}. Did you mean: {', '.join(near)}? (Built-in datasets: "
                               f"{', '.join(BUILTIN_DATASETS)}; hub ids look like 'owner/name'.)")
    return Source("hub", dataset)


def load_hub(dataset: str, config: str | None, split: str, **kwargs: Any):
    """``datasets.load_dataset`` with a message naming the dataset, config and split on failure."""
    import datasets

    try:
        return datasets.load_dataset(dataset, config, split=split, **kwargs)
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        hint = did_you_mean(dataset, BUILTIN_DATASETS).replace("Did you mean:", "Did you mean the built-in dataset")
        raise ConfigError(
            f"could not load hub dataset {dataset!r} (config={config!r}, split={split!r}): {err}.{hint} "
            "Fix: check the id/config/split, or point dataset at local files in the real format."
        ) from err


def take(examples: list[Example], n: int | None, *, seed: int | None = None) -> list[Example]:
    """The first ``n`` examples (seed None), or a seeded sample of ``n`` kept in file order."""
    if n is None or n >= len(examples):
        return examples
    if seed is None:
        return examples[:n]
    import numpy as np

    idx = np.sort(np.random.default_rng(seed).choice(len(examples), size=n, replace=False))
    return [examples[i] for i in idx]


def record_fields(prompt: Prompt, output: str, reference: Any, scores: Mapping[str, float | None], *,
                  flags: Mapping[str, Any] | None = None, choice_scores: Sequence[float] | None = None,
                  **extra: Any) -> dict[str, Any]:
    """A per-example record in the ``examples.jsonl`` schema shared by all tasks."""
    return {"id": prompt.id, "prompt_hash": prompt.hash, "prompt": prompt.text, "output": output,
            "choice_scores": list(choice_scores) if choice_scores is not None else None,
            "reference": reference, "scores": dict(scores), "flags": dict(flags or {}), **extra}


def summarize_metrics(records: Sequence[Mapping[str, Any]], metrics: Mapping[str, bool], cfg: RunConfig,
                      *, names: Sequence[str] | None = None, scale: Mapping[str, float] | None = None) -> dict[str, dict]:
    """Mean and bootstrap CI of each per-example score in ``names`` (default: all task metrics present)."""
    from kick_core.stats import summarize

    out = {}
    for name in names or metrics:
        values = [r["scores"].get(name) for r in records]
        if all(v is None for v in values):
            continue
        out[name] = summarize(values, higher_is_better=metrics.get(name, True), n_bootstrap=cfg.eval.n_bootstrap,
                              seed=cfg.seed, scale=(scale or {}).get(name, 1.0))
    return out
