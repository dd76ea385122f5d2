"""Perplexity on WikiText-2, C4 or local text: the baseline metric the paper argues is not enough.

Data: HF ``wikitext`` (config ``wikitext-2-raw-v1``, split test; its ``text`` lines), ``allenai/c4``
(validation shard ``en/c4-validation.00000-of-00008.json.gz``, the first ``n_examples`` documents,
default 1100), a local ``.txt`` file (or a folder with ``<split>.txt``), a local ``.json(l)[.gz]``
file with a ``text`` field per row, a folder of CNN/DM ``.story`` files (searched recursively; the
articles' paragraphs, highlights excluded, one text per distinct article in sorted path order:
:func:`~kick_core.tasks.summarisation.read_story_articles`), ``dataset: cnn_dm`` (the study's 90 stories
shipped inside kick, 72 distinct articles; the same articles summarisation reads, so not held out from
it), or ``dataset: world`` (``corpus/valid.txt``).

The texts are joined with "\\n\\n" and tokenised once (the tokenizer's BOS, if any, starts the
stream). Legacy: the study's rolling protocol, consecutive non-overlapping ``seqlen`` windows,
``perplexity = exp(mean window NLL)``. Strict: strided windows (``seqlen`` tokens, stride
``seqlen // 2``) so every token after the first is scored once with at least half a window of
context; ``perplexity = exp(total NLL / tokens)``. Each window is one record (``nll``, ``n_tokens``);
the CI bootstraps windows. ``n_examples`` (strict only) limits the number of windows.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kick_core.config import RunConfig, TaskConfig
from kick_core.engine.perplexity import rolling_windows, strided_windows
from kick_core.errors import ConfigError
from kick_core.stats import bootstrap_ci
from kick_core.tasks.base import Example, Prompt, TaskBase, load_hub, record_fields, resolve_source

C4_SHARD = "en/c4-validation.00000-of-00008.json.gz"
C4_DOCS = 1100


def _read_text_file(path: Path, n_docs: int | None) -> list[str]:
    name = path.name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
            rows = [json.loads(line) for line in f if line.strip()]
            return [r["text"] for r in rows[:n_docs]]
        return [f.read()]


class Perplexity(TaskBase):
    """Corpus perplexity (see the module docstring)."""

    name = "perplexity"
    version = "1"
    METRICS = {"perplexity": False, "nll": False}

    def primary_metric(self, cfg: TaskConfig) -> str:
        return "perplexity"

    def load(self, task_cfg: TaskConfig, seed: int, *, world_seed: int = 0) -> list[Example]:
        split = task_cfg.split
        src = resolve_source(task_cfg, "corpus", world_seed=world_seed)
        if src.kind == "hub":
            if "c4" in src.location:
                rows = load_hub(src.location, None, split or "validation", data_files={split or "validation": C4_SHARD})
                texts = [r["text"] for r in rows.select(range(min(C4_DOCS, len(rows))))]
                return [Example(id="corpus", input="\n\n".join(texts), meta={"n_docs": len(texts)})]
            rows = load_hub(src.location, task_cfg.dataset_config or "wikitext-2-raw-v1", split or "test")
            # Hugging Face wikitext lines end with "\n"; the study joins them with "\n\n" as is.
            return [Example(id="corpus", input="\n\n".join(rows["text"]), meta={"n_docs": len(rows)})]
        path = src.path
        if path.is_dir():
            folder = path
            path = folder / f"{split or ('valid' if task_cfg.dataset == 'world' else 'test')}.txt"
            if not path.is_file() and split is None and next(folder.rglob("*.story"), None) is not None:
                from kick_core.tasks.summarisation import read_story_articles

                texts, dropped = read_story_articles(folder)
                return [Example(id="corpus", input="\n\n".join(texts),
                                meta={"n_docs": len(texts), "n_dropped": dropped, "path": str(folder)})]
            if not path.is_file():
                raise ConfigError(f"no {path.name} in {src.location}; text folders hold <split>.txt (or .story "
                                  "files, read whole: leave split out).")
        texts = _read_text_file(path, C4_DOCS if "c4" in path.name else None)
        return [Example(id="corpus", input="\n\n".join(texts), meta={"n_docs": len(texts), "path": str(path)})]

    def prompts(self, examples: Sequence[Example], cfg: RunConfig, tokenizer: Any, context_len: int) -> list[Prompt]:
        (corpus,) = examples
        tokens = tokenizer(corpus.input, add_special_tokens=True)["input_ids"]
        seqlen = min(cfg.eval.seqlen, context_len)
        legacy = cfg.task.protocol == "legacy"
        windows = rolling_windows(len(tokens), seqlen) if legacy else strided_windows(len(tokens), seqlen, seqlen // 2)
        if not windows:
            raise ConfigError(f"the text has {len(tokens)} tokens, fewer than one window of seqlen={seqlen}; "
                              "use more text or a smaller seqlen.")
        if not legacy and cfg.task.n_examples:
            windows = windows[: cfg.task.n_examples]
        return [Prompt(id=f"w{k}", example=corpus, kind="perplexity", tokens=tuple(tokens[w.start: w.end]),
                       score_from=w.score_from - w.start, meta={"start": w.start})
                for k, w in enumerate(windows)]

    def score(self, prompt: Prompt, output: Any, cfg: RunConfig, tokenizer: Any) -> dict[str, Any]:
        nll, n_tokens = output
        rec = record_fields(prompt, "", None, {"nll": nll}, start=prompt.meta["start"], n_tokens=n_tokens)
        rec["nll"] = nll  # top-level too, as the report notebooks read it
        return rec

    def aggregate(self, records: Sequence[Mapping[str, Any]], cfg: RunConfig) -> tuple[dict[str, dict], dict[str, Any]]:
        arr = np.array([[r["nll"], r["n_tokens"]] for r in records], dtype=float)
        legacy = cfg.task.protocol == "legacy"

        def ppl(sample: np.ndarray) -> np.ndarray:  # (B, n, 2) -> (B,)
            if legacy:
                return np.exp(sample[..., 0].mean(axis=-1))
            return np.exp((sample[..., 0] * sample[..., 1]).sum(axis=-1) / sample[..., 1].sum(axis=-1))

        value = float(ppl(arr[None])[0])
        lo, hi = bootstrap_ci(arr, statistic=ppl, n_bootstrap=cfg.eval.n_bootstrap, seed=cfg.seed)
        nan_none = lambda x: None if math.isnan(x) else x  # noqa: E731
        metrics = {"perplexity": {"value": value, "ci_low": nan_none(lo), "ci_high": nan_none(hi), "n": len(arr),
                                  "higher_is_better": False},
                   "nll": {"value": float(math.log(value)), "ci_low": None, "ci_high": None, "n": len(arr),
                           "higher_is_better": False}}
        return metrics, {"scored_tokens": int(arr[:, 1].sum()), "n_windows": len(arr),
                         "windows": "rolling" if legacy else "strided"}


TASK = Perplexity()
