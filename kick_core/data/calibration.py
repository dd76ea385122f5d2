"""Calibration token windows for Wanda, SparseGPT and (later) GPTQ/AWQ.

``calibration_batches(tokenizer, dataset, n, seqlen, seed)`` returns n windows of seqlen token ids,
sampled as the study's ``lib/data.py`` (pruning) and GPTQ's ``datautils.py`` do, with a python
``random.Random(seed)`` (the same draws as their ``random.seed(seed)``, without touching the global
generator):

* documents (``c4``: shard 0 of ``allenai/c4``; a local ``.jsonl`` with a ``text`` field): draw
  random documents until one tokenises to more than seqlen tokens, then take a random window of it
  (the study required >= seqlen, which crashes on exactly seqlen tokens; > fixes that);
* one long text (``wikitext2``: the train split joined with "\\n\\n"; ``world``: the embedded world's
  ``corpus/train.txt``; ``mmlu_val``, ``cnn_dm``: real text shipped inside kick, below; a local ``.txt``):
  tokenise it once, take random windows.

Real text that needs no network (C4 and WikiText-2 come from the hub):

* ``mmlu_val`` -- the MMLU *val* split shipped with kick (1,531 questions; ``kick_core/data/mmlu/val``),
  every row rendered ``question\\nA. ...\\nB. ...\\nC. ...\\nD. ...\\nAnswer: X``, the rows joined with
  "\\n\\n" in sorted subject order (file order within a subject). No task evaluates the val split (mcq
  reads test questions and dev shots; only a config setting mcq ``split: val`` would), so it is disjoint
  from everything kick evaluates.
* ``cnn_dm`` -- the 72 distinct articles of the study's 90 shipped CNN/DM stories (highlights excluded,
  sorted path order) joined with "\\n\\n". Not held out: summarisation and perplexity on ``cnn_dm``
  read the same articles, so a model calibrated on it is compressed on the text it is then scored on.

The window usually does not start with BOS, as in the study. The exact sample set is identified
by the sha256 of its token ids, recorded in every compression report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kick_core.errors import ConfigError, KickError, lookup

log = logging.getLogger(__name__)

C4_SHARD = "en/c4-train.00000-of-01024.json.gz"


@dataclass(frozen=True)
class CalibrationSet:
    """n calibration windows of seqlen tokens, and where they came from."""

    input_ids: torch.Tensor  # (n, seqlen) int64
    dataset: str
    seed: int | None
    sha256: str

    @property
    def n(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def seqlen(self) -> int:
        return int(self.input_ids.shape[1])

    def info(self) -> dict[str, Any]:
        """What the compression report records."""
        return {"dataset": self.dataset, "n": self.n, "seqlen": self.seqlen, "seed": self.seed, "sha256": self.sha256}


def hash_ids(input_ids: torch.Tensor) -> str:
    """sha256 of the token ids (as little-endian int64, row-major) and their shape."""
    ids = input_ids.detach().to("cpu", torch.int64).contiguous()
    h = hashlib.sha256(repr(tuple(ids.shape)).encode())
    h.update(ids.numpy().astype("<i8").tobytes())
    return h.hexdigest()


def from_ids(input_ids: torch.Tensor, dataset: str = "custom", seed: int | None = None) -> CalibrationSet:
    """Wrap your own (n, seqlen) token ids as a CalibrationSet."""
    if input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ConfigError(f"calibration ids must be a non-empty (n, seqlen) tensor, got shape {tuple(input_ids.shape)}.")
    ids = input_ids.to(torch.int64)
    return CalibrationSet(ids, dataset, seed, hash_ids(ids))


# -- sources ----------------------------------------------------------------------------------------
def _load_hub(*args: Any, **kwargs: Any):
    from datasets import load_dataset

    try:
        return load_dataset(*args, **kwargs)
    except (OSError, ConnectionError) as err:
        raise KickError(
            f"Could not load calibration data {args[0]!r} from the Hugging Face hub ({err}). It needs network "
            "access once (then the datasets cache). Fix: connect, or set calib_dataset to a local .txt/.jsonl file, "
            "'world', or the shipped real text 'mmlu_val' (or 'cnn_dm')."
        ) from None


class _HubTexts(Sequence[str]):
    """The 'text' column of a datasets.Dataset, read row by row (no 800 MB list of strings)."""

    def __init__(self, ds: Any):
        self._ds = ds

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        return self._ds[i]["text"]


def _c4(world_seed: int) -> Sequence[str]:
    return _HubTexts(_load_hub("allenai/c4", data_files={"train": C4_SHARD}, split="train"))


def _wikitext2(world_seed: int) -> str:
    # "Salesforce/wikitext" is where the hub's canonical "wikitext" dataset lives now.
    return "\n\n".join(_load_hub("Salesforce/wikitext", "wikitext-2-raw-v1", split="train")["text"])


def _world(world_seed: int) -> str:
    from kick_core.world import ensure_world_data

    return (ensure_world_data(seed=world_seed) / "corpus" / "train.txt").read_text(encoding="utf-8")


def _mmlu_val(world_seed: int) -> str:
    from kick_core.tasks.base import shipped_path
    from kick_core.tasks.mcq import format_question, read_mmlu_dir

    questions, _ = read_mmlu_dir(shipped_path("mmlu"), "val", legacy=False)
    return "\n\n".join(f"{format_question(q, answer=False)} {q.answers[0]}" for q in questions)


def _cnn_dm(world_seed: int) -> str:
    from kick_core.tasks.base import shipped_path
    from kick_core.tasks.summarisation import read_story_articles

    return "\n\n".join(read_story_articles(shipped_path("cnn_dm"))[0])


SOURCES: dict[str, Callable[[int], Sequence[str] | str]] = {"c4": _c4, "wikitext2": _wikitext2, "world": _world,
                                                           "mmlu_val": _mmlu_val, "cnn_dm": _cnn_dm}
"""Named calibration sources: documents (a sequence of texts) or one long text."""


def _read_jsonl(path: Path) -> list[str]:
    texts = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{lineno} is not valid JSON ({err}); each line must be an object with 'text'.") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ConfigError(f"{path}:{lineno} has no string field 'text'; calibration .jsonl rows look like "
                              '{"text": "..."}.')
        texts.append(row["text"])
    if not texts:
        raise ConfigError(f"calibration file {path} holds no rows.")
    return texts


def _source(dataset: str, world_seed: int) -> Sequence[str] | str:
    if dataset in SOURCES:
        return SOURCES[dataset](world_seed)
    path = Path(dataset).expanduser()
    if path.suffix in (".txt", ".jsonl"):
        if not path.is_file():
            raise ConfigError(f"calib_dataset={dataset!r} looks like a local file but does not exist.")
        return path.read_text(encoding="utf-8") if path.suffix == ".txt" else _read_jsonl(path)
    if path.exists():
        raise ConfigError(f"calib_dataset={dataset!r} must be a .txt file (one text) or a .jsonl file "
                          "(rows with a 'text' field).")
    return lookup(SOURCES, dataset, "calibration dataset")(world_seed)


# -- samplers ---------------------------------------------------------------------------------------
def _encode(tokenizer: Any, text: str) -> torch.Tensor:
    return tokenizer(text, return_tensors="pt").input_ids[0]


def sample_windows(ids: torch.Tensor, n: int, seqlen: int, rng: random.Random, name: str = "text") -> torch.Tensor:
    """n random seqlen windows of one token sequence (GPTQ's wikitext2 sampler)."""
    if ids.numel() <= seqlen:
        raise ConfigError(
            f"calibration {name} has {ids.numel()} tokens, but calib_seqlen={seqlen} needs more than {seqlen}. "
            f"Fix: lower calib_seqlen (below {ids.numel()}), or use a larger calibration dataset."
        )
    starts = [rng.randint(0, ids.numel() - seqlen - 1) for _ in range(n)]
    return torch.stack([ids[i:i + seqlen] for i in starts])


def sample_documents(tokenizer: Any, docs: Sequence[str], n: int, seqlen: int, rng: random.Random,
                     name: str = "documents") -> torch.Tensor:
    """n windows, each from a random document longer than seqlen tokens (the study's C4 sampler)."""
    short: set[int] = set()
    longest = 0
    out = []
    for _ in range(n):
        while True:
            i = rng.randint(0, len(docs) - 1)
            ids = _encode(tokenizer, docs[i])
            if ids.numel() > seqlen:
                break
            short.add(i)
            longest = max(longest, ids.numel())
            if len(short) == len(docs):
                raise ConfigError(
                    f"no document of calibration {name} is longer than calib_seqlen={seqlen} tokens (the longest "
                    f"has {longest}). Fix: lower calib_seqlen (below {longest}), or use longer documents."
                )
        start = rng.randint(0, ids.numel() - seqlen - 1)
        out.append(ids[start:start + seqlen])
    return torch.stack(out)


def calibration_batches(tokenizer: Any, dataset: str = "c4", n: int = 128, seqlen: int = 2048, seed: int = 0, *,
                        world_seed: int = 0) -> CalibrationSet:
    """n × seqlen calibration token ids from `dataset`, seeded.

    Args:
        dataset: 'c4' | 'wikitext2' | 'world' | 'mmlu_val' | 'cnn_dm' (shipped, offline) | a local .txt (one
            text) or .jsonl (rows with 'text') file.
        world_seed: which embedded world, for dataset='world'.

    Raises:
        ConfigError: unknown dataset (with close names), missing file, or text too short for seqlen.
    """
    if n < 1 or seqlen < 1:
        raise ConfigError(f"calibration needs n >= 1 and seqlen >= 1, got n={n}, seqlen={seqlen}.")
    source = _source(dataset, world_seed)
    rng = random.Random(seed)
    if isinstance(source, str):
        ids = sample_windows(_encode(tokenizer, source), n, seqlen, rng, name=repr(dataset))
    else:
        ids = sample_documents(tokenizer, source, n, seqlen, rng, name=repr(dataset))
    calib = from_ids(ids, dataset, seed)
    log.info("calibration: %d x %d tokens from %s (seed %d, sha256 %s)", n, seqlen, dataset, seed, calib.sha256[:12])
    return calib
