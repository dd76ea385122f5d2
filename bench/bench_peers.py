"""kick side by side with lm-evaluation-harness and llm-compressor on the real model (issue 20).

Usage::

    .venv/bin/pip install -e ".[bench]"          # lm-eval (and psutil) next to kick
    .venv/bin/python bench/bench_peers.py        # everything, ~50 min on 2 cores (1 thread)
    .venv/bin/python bench/bench_peers.py --quick --parts mmlu gen    # a smoke run, small sizes

The model is SmolLM2-135M-Instruct as kick loads it (``load_model("smollm2-135m-instruct")``, bfloat16),
the same in-memory model for both tools, with the same torch threads (``--threads``). Prints one table
and writes ``bench/out/peers.json`` with every figure and the versions of both peers.

1. **MMLU 5-shot, letter formulation**: kick's real task path (``evaluate`` with ``task: mcq,
   dataset: mmlu`` -- the shipped Hendrycks CSVs -- ``n_examples: 1140, min_per_subject: 20``, strict)
   against lm-eval's own pipeline (``simple_evaluate`` on ``HFLM(pretrained=model)``) running task
   YAMLs this bench writes: one per subject, ``dataset_path: json`` over the very questions kick chose
   and that subject's dev shots, ``first_n`` few-shot sampler. The YAML is lm-eval's ``mmlu`` default
   template with one change: ``{{question}}`` instead of ``{{question.strip()}}``, because kick's strict
   protocol keeps questions verbatim (963 of the 14,042 test questions start or end with whitespace);
   the bench checks that every context lm-eval builds equals kick's prompt, character for character.
   Reported: examples/s end to end (data, prompts, model, scoring) and of the model calls alone, their
   ratios, whether every prediction agrees, the largest log-likelihood difference, and the tokens each
   tool runs through the model against the minimum (each distinct few-shot prefix once plus each
   question's own tokens).
2. **MMLU cloze** (lm-eval's ``mmlu_continuation`` template, kick's ``formulation: cloze``): the same,
   scored by length-normalised log-likelihood (lm-eval's ``acc_norm``, kick's cloze ``accuracy``).
3. **Greedy generation**: the factoid task as the real-model study runs it (geofacts, chat prompts,
   32 new tokens at most, stop at a newline after some text): kick's batched engine against
   ``model.generate`` one prompt at a time and on left-padded batches, with a stopping criterion that
   applies kick's stop rule, so every side produces the same tokens when the numerics agree.
4. **Compression**: Wanda and SparseGPT at 50 % and GPTQ 4-bit (symmetric, group 64: llm-compressor
   refuses group 128 on SmolLM2's 576-wide inputs) through ``kick_core.compress.compress`` and
   llm-compressor's ``oneshot`` (``WandaPruningModifier``, ``SparseGPTModifier``, ``GPTQModifier``;
   sequential pipeline), each in its own process (wall time of the compress call, peak RSS), on the
   *same* calibration token ids (kick's ``mmlu_val`` sampler, saved to a file). kick runs as the study
   runs it (the per-layer output-error report where the method's own Hessian gives it for free:
   SparseGPT and GPTQ; none for Wanda), and again: SparseGPT and GPTQ like for like (no report, as
   llm-compressor), Wanda with the opt-in report (``measure_error=True``, which collects a Hessian
   per linear input only for it). Compared: realised sparsity, agreement of the
   zero positions, relative difference of the weights both keep, the relative output error
   ‖(W−Ŵ)X‖²/‖WX‖² of every linear on the *dense* model's calibration inputs, and the NLL on held-out
   CNN/DM windows.

llm-compressor 0.14 pins transformers <= 5.17 (kick has 5.24), so it cannot live in kick's
environment: the bench creates ``bench/out/peer-env`` (``python -m venv``, the same torch version
as kick's, then ``llmcompressor``) on first use and runs ``bench/peer_llmcompressor.py`` there.

Ratios are measured in one process, back to back; they are not timed tests. With one torch thread
(the default) the CPU seconds of each side are reported too: another job on a 2-core machine
inflates wall time far more than CPU time.

Measured 2026-12-03 (2-core Xeon Sapphire Rapids, AVX-512/AMX, no GPU; 1 thread), SmolLM2-135M-Instruct
bf16; the README has the table:

* letter, 1,140 questions (20 per subject; machine otherwise idle): kick 7.12 ex/s, lm-eval 1.37
  ex/s: 5.18x wall, 5.06x CPU. Prompts identical; 67/1,140 predictions differ, max |Δ log p| 0.22
  (bf16). Tokens: kick 136,872 = the minimum (145,928 with batch padding), lm-eval 717,037 (5.24x):
  kick's tokens are the expensive ones (every question attends to its ~500-token prefix). Before
  ``engine.batching.cpu_masked_gqa`` (grouped KV heads not repeated under a mask on a CPU) the same
  run gave 4.71x with bit-identical log-probs; at 570 questions (10 per subject) 3.95x, cap 4.28x.
  float32, the same 1,140 questions (``--parts mmlu-fp32 --fp32-per-subject 20 --lm-eval-batch 4``;
  lm-eval's batch 16 was killed for memory at 24 GiB; 2026-12-04, idle): kick 3.47 ex/s, lm-eval
  0.67 ex/s, 5.17x wall, 5.12x CPU, 1,140/1,140 predictions identical, max |Δ log p| 1.6e-5. 570
  questions (10 per subject): 570/570, 4.33x (token cap 4.28x); 114 questions (2 per subject, batch
  16): 114/114, 4.00x on a 1.73x token ratio.
* cloze, 171 questions (3 per subject; lm-eval takes 9 minutes on them; 2026-12-04, a 2-core AMD EPYC
  with AVX-512, otherwise idle; ``--parts cloze gen cloze-fp32 gen-fp32 --per-subject 3
  --fp32-per-subject 1``): kick 2.09 ex/s, lm-eval 0.31 ex/s, 6.64x wall, 6.57x CPU; bf16 167/171
  equal, accuracy 0.3275 on both; fp32, 57 questions: 57/57 identical at 6.77x, max |Δ log p| < 1e-4.
  (On the Xeon, with another job on the other core: 4.43x.)
* generation, 200 factoid prompts (the same EPYC run): kick 8.4 s, generate one at a time 112.6 s
  (13.3x), left-padded batches of 16 28.0 s (3.3x); bf16 identical tokens 156/200 and 153/200 (the two
  generate modes agree with each other on 153/200: bf16 batch-shape rounding flips greedy choices);
  fp32, 50 prompts: 50/50 identical to both (6.6x / 2.6x). (On the Xeon, shared: 21.0x / 3.2x.)
* compression (32 x 256 calibration tokens; 2026-12-05, the 2-core AMD EPYC, otherwise idle;
  ``bench/out/peers_compress.json``): kick / llm-compressor wall s, peak RSS MiB: Wanda 29.5 (53.5
  with the opt-in error report) / 34.5, 716 / 800 (1.17x); SparseGPT 65.2 / 75.9, 767 / 805 (1.16x);
  GPTQ 67.0 / 71.0, 763 / 818 (1.06x). Zero positions agree 99.76 % (Wanda) and 97.67 % (SparseGPT);
  identical per-linear output errors (0.0316, 0.0185, 0.0042). (Earlier, on the Xeon, with the
  error report then on by default for Wanda: Wanda 36.6 / 23.5, 0.64x; SparseGPT 1.11x; GPTQ 1.18x.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
PEER_ENV = OUT / "peer-env"
PEER_SCRIPT = HERE / "peer_llmcompressor.py"
LLMCOMPRESSOR = "llmcompressor==0.14.0.1"
MODEL = "smollm2-135m-instruct"
LETTERS = ("A", "B", "C", "D")


# -- pure helpers (tested in tests/test_bench_peers.py) ------------------------------------------------
def lmeval_task_config(subject: str, formulation: str, test_file: Path, dev_file: Path, n_shots: int = 5) -> dict:
    """One subject's lm-eval task config, reproducing kick's strict prompt (see the module docstring)."""
    from kick_core.tasks.mcq import cloze_header, header

    base = {
        "task": f"kick_mmlu_{formulation}_{subject}",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(test_file), "dev": str(dev_file)}},
        "test_split": "test",
        "fewshot_split": "dev",
        "fewshot_config": {"sampler": "first_n"},
        "num_fewshot": n_shots,
        "output_type": "multiple_choice",
        "metadata": {"version": 1.0},
    }
    if formulation == "letter":  # lm-eval's tasks/mmlu/default/_default_template_yaml, question not stripped
        base.update(description=header(subject, legacy=False),
                    doc_to_text="{{question}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\n"
                                "D. {{choices[3]}}\nAnswer:",
                    doc_to_choice=list(LETTERS), doc_to_target="answer",
                    metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True}])
    elif formulation == "cloze":  # lm-eval's tasks/mmlu/continuation/_continuation_template_yaml, unchanged
        base.update(description=cloze_header(subject), doc_to_text="Question: {{question.strip()}}\nAnswer:",
                    doc_to_choice="{{choices}}", doc_to_target="{{answer}}",
                    metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                                 {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}])
    else:
        raise ValueError(f"formulation {formulation!r}: letter or cloze")
    return base


def _doc(e) -> dict:
    return {"id": e.id, "question": e.input, "choices": list(e.choices), "answer": LETTERS.index(e.answers[0])}


def write_lmeval_tasks(examples: Sequence, root: Path, formulation: str, n_shots: int = 5) -> list[str]:
    """Write one lm-eval task per subject of ``examples`` (kick Examples, shots in ``meta``); return task names.

    Each task's test split holds exactly the subject's questions of ``examples`` in their order, its dev
    split the shots kick uses, so lm-eval and kick see the same documents.
    """
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    by_subject: dict[str, list] = defaultdict(list)
    for e in examples:
        by_subject[e.meta["subject"]].append(e)
    names = []
    for subject, items in sorted(by_subject.items()):
        test, dev = root / f"{subject}_test.jsonl", root / f"{subject}_dev.jsonl"
        test.write_text("".join(json.dumps(_doc(e), ensure_ascii=False) + "\n" for e in items), encoding="utf-8")
        dev.write_text("".join(json.dumps(_doc(s), ensure_ascii=False) + "\n" for s in items[0].meta["shots"]),
                       encoding="utf-8")
        cfg = lmeval_task_config(subject, formulation, test, dev, n_shots)
        (root / f"{cfg['task']}.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False),
                                                  encoding="utf-8")
        names.append(cfg["task"])
    return names


def _distinct_positions(seqs: Sequence[Sequence[int]]) -> int:
    """Number of distinct prefixes (token positions of a trie) over ``seqs``."""
    ordered = sorted({tuple(s) for s in seqs if s})
    total, prev = 0, ()
    for s in ordered:
        common = 0
        for a, b in zip(prev, s):
            if a != b:
                break
            common += 1
        total += len(s) - common
        prev = s
    return total


def token_counts(tokenizer, requests: Sequence, batch_tokens: int = 16384, row_pad: float | None = None) -> dict[str, int]:
    """Tokens through the model for ``requests`` (engine ScoreRequests): kick, lm-eval and the minimum.

    * ``kick``: each group's shared prefix once plus each unique row after it (as ``engine.scoring``);
      ``kick_padded`` adds the left padding of its batches (``row_pad``: the engine's ``ROW_PAD``).
    * ``lm_eval``: every distinct input ``context + continuation[:-1]`` in full (its logits cache
      merges choices whose inputs coincide, as single-token letters do), before its own padding.
    * ``minimum``: each distinct prefix once plus every distinct token position after it.
    """
    from kick_core.engine.batching import token_batches
    from kick_core.engine.scoring import ROW_PAD, _lcp, encode_requests

    wholes, n_ctx, _ = encode_requests(tokenizer, requests)
    groups: dict[object, list[int]] = defaultdict(list)
    for i, r in enumerate(requests):
        groups[("g", r.group) if r.group is not None else ("r", i)].append(i)
    kick = padded = minimum = 0
    for members in groups.values():
        inputs = [w[:-1] for i in members for w in wholes[i]]
        cap = min(n for i in members for n in n_ctx[i]) - 1
        P = min(_lcp(inputs), cap)
        rows: list[list[int]] = []
        for i in members:
            own: list[list[int]] = []
            for w in sorted(wholes[i], key=len, reverse=True):
                suffix = w[P:-1]
                if not any(r[: len(suffix)] == suffix for r in own):
                    own.append(suffix)
            rows += own
            minimum += _distinct_positions([w[P:-1] for w in wholes[i]])
        kick += P + sum(len(r) for r in rows)
        padded += P + sum(len(b) * max(len(rows[j]) for j in b)
                          for b in token_batches([len(r) for r in rows], batch_tokens, extra=[P] * len(rows),
                                                 max_pad=row_pad if row_pad is not None else ROW_PAD))
        minimum += P
    lm_eval = sum(len(x) for x in {tuple(w[:-1]) for row in wholes for w in row})
    return {"kick": kick, "kick_padded": padded, "lm_eval": lm_eval, "minimum": minimum}


def compare_weights(ours: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, float]:
    """Zero-position agreement and kept-weight difference of two pruned/quantised weight sets (name -> tensor).

    ``zero_agreement``: of the reference's zero positions, the fraction that are zero in ours too;
    ``zero_iou``: |Z_ours ∩ Z_ref| / |Z_ours ∪ Z_ref|; ``kept_rel_diff``: ‖ours − ref‖ / ‖ref‖ over the
    positions both keep; ``identical``: fraction of positions with bit-equal values; ``min_layer_agreement``
    and the layer it belongs to.
    """
    inter = union = zref = zours = n = same = 0
    num = den = 0.0
    worst, worst_name = 1.0, ""
    for name, b in ref.items():
        a = ours[name].float()
        b = b.float()
        za, zb = a == 0, b == 0
        i, u = int((za & zb).sum()), int((za | zb).sum())
        inter, union, zref, zours, n = inter + i, union + u, zref + int(zb.sum()), zours + int(za.sum()), n + b.numel()
        same += int((a == b).sum())
        kept = ~(za | zb)
        num += float(((a - b)[kept] ** 2).sum())
        den += float((b[kept] ** 2).sum())
        layer = i / int(zb.sum()) if int(zb.sum()) else 1.0
        if layer < worst:
            worst, worst_name = layer, name
    return {"sparsity_ours": zours / n, "sparsity_ref": zref / n, "zero_agreement": inter / zref if zref else 1.0,
            "zero_iou": inter / union if union else 1.0, "kept_rel_diff": (num / den) ** 0.5 if den else 0.0,
            "identical": same / n, "min_layer_agreement": worst, "min_layer": worst_name}


def kick_stop_end(tokens: Sequence[int], tokenizer, eos: set[int], stop_ids: set[int], stops: Sequence[str]) -> int | None:
    """Where kick's engine would have ended ``tokens``: the index after the stopping token (EOS, or a stop
    string after some non-whitespace text), None when nothing in ``tokens`` stops it."""
    from kick_core.engine.generation import _cut

    for k, t in enumerate(tokens):
        if t in eos:
            return k + 1
        if t in stop_ids and _cut(tokenizer.decode(list(tokens[: k + 1]), skip_special_tokens=True), stops)[1]:
            return k + 1
    return None


# -- measurement helpers ---------------------------------------------------------------------------------
def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


class Clock:
    """Wall and CPU seconds spent inside a wrapped callable (CPU time is what another job on the machine
    cannot inflate as much: with one torch thread it is this process's own work)."""

    def __init__(self, fn):
        self.fn, self.wall, self.cpu = fn, 0.0, 0.0

    def __call__(self, *args, **kwargs):
        w, c = time.perf_counter(), time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.wall += time.perf_counter() - w
            self.cpu += time.process_time() - c


def peak_rss_mib() -> float:
    """Peak resident set size in MiB: VmHWM, reset by exec (ru_maxrss keeps the forking parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("kick", "torch", "transformers", "lm_eval", "datasets", "accelerate"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.machine()}"


# -- 1 and 2: MMLU ---------------------------------------------------------------------------------------
def mcq_config(formulation: str, per_subject: int, batch_tokens: int, model: str, dataset: str = "mmlu"):
    """kick's run config: ``per_subject`` questions of every subject of ``dataset`` (shipped MMLU: 57)."""
    from kick_core.config import RunConfig
    from kick_core.tasks.base import shipped_path

    root = shipped_path("mmlu") if dataset == "mmlu" else Path(dataset)
    n_subjects = len(list((root / "test").glob("*_test.csv")))
    return RunConfig.from_flat(model=model, dtype="bfloat16", task="mcq", protocol="strict", dataset=dataset,
                               n_shots=5, n_examples=n_subjects * per_subject, min_per_subject=per_subject,
                               formulation=formulation, batch_tokens=batch_tokens)


def bench_mcq(model, tok, formulation: str, per_subject: int, batch_tokens: int, lm_batch: int, model_name: str,
              dataset: str = "mmlu") -> dict:
    import numpy as np
    import torch

    from kick_core.engine import ScoreRequest
    from kick_core.evaluate import context_length, evaluate
    from kick_core.tasks import get_task

    import kick_core.evaluate as kick_evaluate

    cfg = mcq_config(formulation, per_subject, batch_tokens, model_name, dataset)
    task = get_task("mcq")
    engine = kick_evaluate.loglikelihood
    kick_model = kick_evaluate.loglikelihood = Clock(engine)  # the engine call inside kick's evaluate loop
    kick_total = Clock(lambda: evaluate(model, tok, cfg, progress=False))
    try:
        with torch.no_grad():
            result = kick_total()
    finally:
        kick_evaluate.loglikelihood = engine
    t_kick, t_kick_model = kick_total.wall, kick_model.wall
    records = {r["id"]: r for r in result.examples}
    examples = task.load(cfg.task, cfg.seed)
    prompts = task.prompts(examples, cfg, tok, context_length(model))
    n = len(prompts)
    out: dict[str, Any] = {"questions": n, "subjects": len({e.meta["subject"] for e in examples}),
                           "n_shots": sorted({p.meta["n_shots"] for p in prompts}),
                           "kick_s": t_kick, "kick_model_s": t_kick_model, "kick_ex_per_s": n / t_kick,
                           "kick_model_ex_per_s": n / t_kick_model, "kick_cpu_s": kick_total.cpu,
                           "kick_model_cpu_s": kick_model.cpu,
                           "kick_accuracy": result.metrics["accuracy"]["value"]}
    requests = [ScoreRequest(p.text, p.continuations, p.group) for p in prompts]
    out["tokens"] = token_counts(tok, requests, batch_tokens)
    if formulation == "letter":  # what lm-eval's stock template ({{question.strip()}}) would have changed
        subjects = {e.meta["subject"]: e for e in examples}
        out["stock_template_changes"] = {
            "questions": sum(e.input != e.input.strip() for e in examples),
            "subjects_with_changed_shots": sum(any(s.input != s.input.strip() for s in e.meta["shots"])
                                               for e in subjects.values())}
    try:
        import lm_eval
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        out["lm_eval"] = f"skipped: lm_eval not importable ({err}); pip install -e '.[bench]'"
        return out
    out["lm_eval_version"] = lm_eval.__version__ if hasattr(lm_eval, "__version__") else _versions()["lm_eval"]
    with tempfile.TemporaryDirectory(prefix="kick-lmeval-") as tmp:
        def run_lm_eval():
            names = write_lmeval_tasks(examples, Path(tmp), formulation)
            lm = HFLM(pretrained=model, tokenizer=tok, batch_size=lm_batch, device="cpu")
            lm.loglikelihood = lm_model = Clock(lm.loglikelihood)  # its model calls, as kick's engine call
            res = simple_evaluate(model=lm, tasks=names, num_fewshot=5, log_samples=True,
                                  task_manager=TaskManager(include_path=tmp, include_defaults=False),
                                  verbosity=None)
            return res, lm_model

        lm_total = Clock(run_lm_eval)
        with torch.no_grad():
            res, lm_model = lm_total()
        t_lm, t_lm_model = lm_total.wall, lm_model.wall
    samples = [s for name in sorted(res["samples"]) for s in res["samples"][name]]
    ours, theirs, pred_ours, pred_theirs, mismatched = [], [], [], [], []
    by_id = {p.id: p for p in prompts}
    for s in samples:
        doc_id = s["doc"]["id"]
        rec, prompt = records[doc_id], by_id[doc_id]
        args = [tuple(a) for a in s["arguments"]]
        if args[0][0] != prompt.text or tuple(a[1] for a in args) != tuple(prompt.continuations):
            mismatched.append(doc_id)
        lls = np.array([float(r[0]) for r in s["filtered_resps"]])
        mine = np.array(rec["choice_scores"], dtype=float)
        ours.append(mine)
        theirs.append(lls)
        if formulation == "cloze":
            chars = np.array([float(len(c)) for c in s["doc"]["choices"]])
            pred_theirs.append(int(np.argmax(lls / chars)))
        else:
            pred_theirs.append(int(np.argmax(lls)))
        pred_ours.append(LETTERS.index(rec["prediction"]))
    diff = np.abs(np.stack(ours) - np.stack(theirs))
    agree = [a == b for a, b in zip(pred_ours, pred_theirs)]
    lm_acc = float(np.mean([s["acc_norm" if formulation == "cloze" else "acc"] for s in samples]))
    out.update(lm_eval_s=t_lm, lm_eval_model_s=t_lm_model, lm_eval_ex_per_s=n / t_lm,
               lm_eval_model_ex_per_s=n / t_lm_model, speedup=t_lm / t_kick, speedup_model=t_lm_model / t_kick_model,
               lm_eval_cpu_s=lm_total.cpu, lm_eval_model_cpu_s=lm_model.cpu, speedup_cpu=lm_total.cpu / kick_total.cpu,
               speedup_model_cpu=lm_model.cpu / kick_model.cpu,
               lm_eval_accuracy=lm_acc, lm_eval_batch_size=lm_batch, lm_eval_questions=len(samples),
               prompts_identical=not mismatched and len(samples) == n, prompt_mismatches=mismatched[:5],
               predictions_identical=all(agree) and len(samples) == n, prediction_disagreements=agree.count(False),
               max_abs_logprob_diff=float(diff.max()), mean_abs_logprob_diff=float(diff.mean()))
    return out


# -- 3: generation ---------------------------------------------------------------------------------------
def bench_generation(model, tok, n_prompts: int, batch_tokens: int, hf_batch: int, model_name: str) -> dict:
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    from kick_core.config import RunConfig
    from kick_core.engine import generate
    from kick_core.engine.generation import _eos_ids, _stop_token_ids
    from kick_core.evaluate import context_length
    from kick_core.tasks import get_task

    cfg = RunConfig.from_flat(model=model_name, dtype="bfloat16", task="factoid_qa", protocol="strict",
                              dataset="geofacts", n_examples=n_prompts, prompt_format="chat", batch_tokens=batch_tokens)
    task = get_task("factoid_qa")
    prompts = task.prompts(task.load(cfg.task, cfg.seed), cfg, tok, context_length(model))
    texts = [p.text for p in prompts]
    budget, stops = prompts[0].max_new_tokens or 32, tuple(prompts[0].stop)
    eos, stop_ids = _eos_ids(model, tok), set(_stop_token_ids(tok, stops))

    class KickStop(StoppingCriteria):
        """kick's stop rule: a stop-string token once some non-whitespace text precedes it (EOS: generate's own)."""

        def __init__(self, start: int):
            self.start = start

        def __call__(self, input_ids, scores, **kwargs):
            done = []
            for row in input_ids[:, self.start:].tolist():
                done.append(bool(row) and row[-1] in stop_ids and kick_stop_end(row, tok, set(), stop_ids, stops) == len(row))
            # (an earlier stop would already have finished the row, so only the last token needs the check)
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def hf(batch: list[str]) -> list[list[int]]:
        enc = tok(batch, return_tensors="pt", padding=True)
        start = enc["input_ids"].shape[1]
        out = model.generate(**enc, max_new_tokens=budget, do_sample=False, pad_token_id=tok.pad_token_id,
                             eos_token_id=sorted(eos), stopping_criteria=StoppingCriteriaList([KickStop(start)]))
        rows = out[:, start:].tolist()
        return [row[: kick_stop_end(row, tok, eos, stop_ids, stops) or len(row)] for row in rows]

    side = tok.padding_side
    with torch.no_grad():
        c_kick = Clock(lambda: generate(model, tok, texts, max_new_tokens=budget, stop=stops, batch_tokens=batch_tokens,
                                        progress=False))
        kick, t_kick = c_kick(), c_kick.wall
        c_single = Clock(lambda: [hf([t])[0] for t in texts])
        singles, t_single = c_single(), c_single.wall
        order = sorted(range(len(texts)), key=lambda i: len(kick[i].prompt_ids))
        tok.padding_side = "left"
        try:
            def batched():
                got: dict[int, list[int]] = {}
                for s in range(0, len(order), hf_batch):
                    idx = order[s: s + hf_batch]
                    for i, row in zip(idx, hf([texts[i] for i in idx])):
                        got[i] = row
                return [got[i] for i in range(len(texts))]

            c_batch = Clock(batched)
            batches, t_batch = c_batch(), c_batch.wall
        finally:
            tok.padding_side = side
    ours = [list(g.token_ids) for g in kick]
    return {"prompts": len(texts), "max_new_tokens": budget, "stop": list(stops),
            "new_tokens": sum(len(x) for x in ours), "kick_s": t_kick, "hf_single_s": t_single,
            "hf_batched_s": t_batch, "hf_batch_size": hf_batch,
            "cpu_s": {"kick": c_kick.cpu, "hf_single": c_single.cpu, "hf_batched": c_batch.cpu},
            "speedup_vs_single": t_single / t_kick, "speedup_vs_batched": t_batch / t_kick,
            "identical_vs_single": sum(a == b for a, b in zip(ours, singles)),
            "identical_vs_batched": sum(a == b for a, b in zip(ours, batches)),
            "single_vs_batched_identical": sum(a == b for a, b in zip(singles, batches))}


# -- 4: compression --------------------------------------------------------------------------------------
def compress_config(method: str, n_calib: int, seqlen: int, group_size: int):
    from kick_core.config import CompressConfig

    common = dict(n_calib=n_calib, calib_dataset="mmlu_val", calib_seqlen=seqlen)
    if method == "gptq":
        return CompressConfig(method="gptq", bits=4, group_size=group_size, symmetric=True, **common)
    return CompressConfig(method=method, sparsity=0.5, **common)


MEASURE_ERROR = {"default": None, "on": True, "off": False}
"""--measure-error of a kick worker -> compress(measure_error=...): None reports where the Hessian is free."""


def kick_worker(args) -> int:
    """One kick compression in this process (run by the bench as a subprocess): prints a JSON line."""
    t_process = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    from kick_core.compress import compress
    from kick_core.models import decoder_blocks, decoder_blocks_path, linear_layers, load_model

    model, tok = load_model(args.model, dtype="bfloat16")
    ids = torch.load(args.calib, weights_only=True)
    cfg = compress_config(args.kick_worker, int(ids.shape[0]), int(ids.shape[1]), args.group_size)
    loaded = rss_mib()
    report, wall = timed(lambda: compress(model, tok, cfg, calib=ids, progress=False, measure_error=MEASURE_ERROR[args.measure_error]))
    peak = peak_rss_mib()
    prefix = decoder_blocks_path(model)
    weights = {f"{prefix}.{i}.{name}": layer.weight.detach().clone()
               for i, block in enumerate(decoder_blocks(model)) for name, layer in linear_layers(block).items()}
    torch.save(weights, args.out)
    print(json.dumps({"tool": "kick", "method": args.kick_worker, "measure_error": args.measure_error,
                      "compress_s": wall, "peak_rss_mib": peak, "rss_after_load_mib": loaded,
                      "process_s": time.perf_counter() - t_process, "threads": torch.get_num_threads(),
                      "calibration_sha256": report.calibration["sha256"] if report.calibration else None}))
    return 0


def ensure_peer_env() -> tuple[Path | None, str]:
    """The llm-compressor environment's python (created on first use), and how it was obtained."""
    import torch

    python = PEER_ENV / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import llmcompressor"], capture_output=True).returncode == 0:
        return python, f"reused {PEER_ENV.relative_to(REPO)}"
    torch_pin = f"torch=={torch.__version__.split('+')[0]}"
    steps = [[sys.executable, "-m", "venv", str(PEER_ENV)],
             [str(python), "-m", "pip", "install", "-q", torch_pin],  # kick's torch build first: no second download
             [str(python), "-m", "pip", "install", "-q", LLMCOMPRESSOR]]
    for cmd in steps:
        print("  peer env:", " ".join(cmd[-3:]), flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"could not create the llm-compressor env ({' '.join(cmd)}): {done.stderr.strip()[-400:]}"
    return python, f"created {PEER_ENV.relative_to(REPO)} ({torch_pin}, {LLMCOMPRESSOR})"


def _run_json(cmd: list[str], cwd: Path) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    return json.loads(lines[-1])


def dense_hessians(model, ids) -> dict[str, Any]:
    """H = (2/n) Σ XᵀX of every decoder linear's input on the *dense* model (for reconstruction errors)."""
    import torch

    from kick_core.compress.calib_stats import HessianStats
    from kick_core.models import decoder_blocks, decoder_blocks_path, linear_layers, weight_view

    prefix = decoder_blocks_path(model)
    stats, handles = {}, []
    for i, block in enumerate(decoder_blocks(model)):
        for name, layer in linear_layers(block).items():
            s = stats[f"{prefix}.{i}.{name}"] = HessianStats(weight_view(layer).shape[1])
            handles.append(layer.register_forward_hook(lambda m, a, o, s=s: s.add_batch(a[0].detach())))
    try:
        with torch.no_grad():
            for row in ids:
                model(row[None], use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {k: v.H for k, v in stats.items()}


def heldout_nll(model, weights: Mapping[str, Any] | None, eval_ids) -> float:
    """Mean token NLL on ``eval_ids`` with ``weights`` swapped into the model's linears (then restored)."""
    import torch

    saved = {}
    params = dict(model.named_parameters())
    with torch.no_grad():
        if weights:
            for name, w in weights.items():
                p = params[f"{name}.weight"]
                saved[name] = p.detach().clone()
                p.copy_(w)
        try:
            return float(model(eval_ids, labels=eval_ids, use_cache=False).loss)
        finally:
            for name, w in saved.items():
                params[f"{name}.weight"].copy_(w)


def bench_compression(model, tok, model_name: str, methods: Sequence[str], n_calib: int, seqlen: int,
                      group_size: int, threads: int) -> dict:
    import torch

    from kick_core.compress.calib_stats import relative_output_error
    from kick_core.data.calibration import calibration_batches
    from kick_core.config import ModelConfig
    from kick_core.models import resolve_model_path

    work = OUT / "peers"
    work.mkdir(parents=True, exist_ok=True)
    calib = calibration_batches(tok, "mmlu_val", n_calib, seqlen, 0)
    torch.save(calib.input_ids, work / "calib.pt")
    heldout = calibration_batches(tok, "cnn_dm", 8, 256, 1).input_ids  # not calibration text, 2,048 tokens
    model_dir = resolve_model_path(ModelConfig(model=model_name, dtype="bfloat16"))
    out: dict[str, Any] = {"calibration": calib.info(), "model_dir": model_dir, "heldout": "cnn_dm 8 x 256 tokens, seed 1"}
    python, how = ensure_peer_env()
    out["peer_env"] = how
    dense = {n: p.detach().clone() for n, p in model.named_parameters()
             if n.startswith("model.layers.") and n.endswith("proj.weight")}
    dense = {n[: -len(".weight")]: w for n, w in dense.items()}
    H = dense_hessians(model, calib.input_ids)
    out["dense_nll"] = heldout_nll(model, None, heldout)

    def quality(weights: Mapping[str, Any]) -> dict[str, float]:
        errs = [relative_output_error(dense[n], weights[n], H[n]) for n in dense]
        return {"rel_output_error_mean": sum(errs) / len(errs), "rel_output_error_max": max(errs),
                "heldout_nll": heldout_nll(model, weights, heldout)}

    for method in methods:
        row: dict[str, Any] = {}
        # as the study runs it (the error report where it is free), without any report, and Wanda with it
        variants = {"kick": "default", "kick_like_for_like": "off"} if method != "wanda" else \
            {"kick": "default", "kick_error_report": "on"}
        for label, measure in variants.items():
            path = work / f"{label}_{method}.pt"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--kick-worker", method, "--model", model_name,
                   "--calib", str(work / "calib.pt"), "--out", str(path), "--threads", str(threads),
                   "--group-size", str(group_size), "--measure-error", measure]
            row[label] = _run_json(cmd, REPO)
            print(f"  {method:9s} {label:18s} {row[label]['compress_s']:7.1f} s  peak RSS {row[label]['peak_rss_mib']:6.0f} MiB",
                  flush=True)
        row.setdefault("kick_like_for_like", row["kick"])  # Wanda's default collects no extra statistic
        kick_w = torch.load(work / f"kick_{method}.pt", weights_only=True)
        row["kick"].update(quality(kick_w))
        if python is None:
            row["llm_compressor"] = f"skipped: {how}"
        else:
            path = work / f"llmc_{method}.pt"
            cmd = [str(python), str(PEER_SCRIPT), "--model", model_dir, "--calib", str(work / "calib.pt"),
                   "--method", method, "--out", str(path), "--threads", str(threads), "--group-size", str(group_size)]
            with tempfile.TemporaryDirectory(prefix="kick-llmc-") as cwd:  # llm-compressor writes logs in its cwd
                row["llm_compressor"] = _run_json(cmd, Path(cwd))
            print(f"  {method:9s} {'llm-compressor':18s} {row['llm_compressor']['compress_s']:7.1f} s  peak RSS "
                  f"{row['llm_compressor']['peak_rss_mib']:6.0f} MiB", flush=True)
            ref = torch.load(path, weights_only=True)
            row["llm_compressor"].update(quality(ref))
            row["agreement"] = compare_weights(kick_w, ref)
            row["speed_ratio"] = row["llm_compressor"]["compress_s"] / row["kick"]["compress_s"]
            row["speed_ratio_like_for_like"] = row["llm_compressor"]["compress_s"] / row["kick_like_for_like"]["compress_s"]
        out[method] = row
    return out


# -- report ------------------------------------------------------------------------------------------------
def print_table(report: dict) -> None:
    print(f"\nkick vs lm-evaluation-harness / llm-compressor -- {report['model']}, bf16, {report['threads']} threads, "
          f"{report['machine']}")
    for key, title in (("mmlu_letter", "MMLU 5-shot letter"), ("mmlu_cloze", "MMLU 5-shot cloze"),
                       ("mmlu_letter_fp32", "MMLU 5-shot letter, float32"), ("mmlu_cloze_fp32", "MMLU 5-shot cloze, float32")):
        r = report.get(key)
        if not r:
            continue
        print(f"\n{title}: {r['questions']} questions, {r['subjects']} subjects")
        if "lm_eval_s" not in r:
            print(f"  kick {r['kick_ex_per_s']:.2f} ex/s; lm-eval {r.get('lm_eval')}")
            continue
        print(f"  end to end   kick {r['kick_ex_per_s']:7.2f} ex/s  lm-eval {r['lm_eval_ex_per_s']:7.2f} ex/s  "
              f"ratio {r['speedup']:.2f}x")
        print(f"  model calls  kick {r['kick_model_ex_per_s']:7.2f} ex/s  lm-eval {r['lm_eval_model_ex_per_s']:7.2f} ex/s  "
              f"ratio {r['speedup_model']:.2f}x")
        print(f"  CPU seconds  kick {r['kick_cpu_s']:.1f} (model {r['kick_model_cpu_s']:.1f})  lm-eval {r['lm_eval_cpu_s']:.1f} "
              f"(model {r['lm_eval_model_cpu_s']:.1f})  ratio {r['speedup_cpu']:.2f}x (model {r['speedup_model_cpu']:.2f}x)")
        print(f"  prompts identical {r['prompts_identical']}; predictions identical {r['predictions_identical']} "
              f"({r['prediction_disagreements']} differ); max |dlogp| {r['max_abs_logprob_diff']:.4f} "
              f"(mean {r['mean_abs_logprob_diff']:.5f}); accuracy kick {r['kick_accuracy']:.4f} lm-eval {r['lm_eval_accuracy']:.4f}")
        t = r["tokens"]
        print(f"  tokens through the model: kick {t['kick']:,} (padded {t['kick_padded']:,}), lm-eval {t['lm_eval']:,}, "
              f"minimum {t['minimum']:,}")
    for key, dtype in (("generation", "bf16"), ("generation_fp32", "float32")):
        g = report.get(key)
        if not g:
            continue
        print(f"\nGreedy generation, {dtype} (factoid, geofacts chat, {g['prompts']} prompts, <= {g['max_new_tokens']} tokens, "
              f"{g['new_tokens']} generated)")
        print(f"  kick {g['kick_s']:.1f} s | generate one at a time {g['hf_single_s']:.1f} s ({g['speedup_vs_single']:.2f}x) | "
              f"generate left-padded x{g['hf_batch_size']} {g['hf_batched_s']:.1f} s ({g['speedup_vs_batched']:.2f}x)")
        print(f"  identical outputs: vs one at a time {g['identical_vs_single']}/{g['prompts']}, vs batched "
              f"{g['identical_vs_batched']}/{g['prompts']} (one at a time vs batched {g['single_vs_batched_identical']})")
    c = report.get("compression")
    if c:
        print(f"\nCompression ({c['calibration']['n']} x {c['calibration']['seqlen']} calibration tokens, mmlu_val; "
              f"{c['peer_env']}); dense held-out NLL {c['dense_nll']:.4f}")
        for method in ("wanda", "sparsegpt", "gptq"):
            row = c.get(method)
            if not row:
                continue
            for label in ("kick", "kick_like_for_like", "kick_error_report", "llm_compressor"):
                if label not in row or (label == "kick_like_for_like" and row[label] is row["kick"]):
                    continue
                x = row[label]
                if not isinstance(x, dict):
                    print(f"  {method:9s} {label:18s} {x}")
                    continue
                extra = ""
                if "rel_output_error_mean" in x:
                    extra = f"  rel. output error {x['rel_output_error_mean']:.4f}  held-out NLL {x['heldout_nll']:.4f}"
                print(f"  {method:9s} {label:18s} {x['compress_s']:7.1f} s  peak RSS {x['peak_rss_mib']:6.0f} MiB{extra}")
            a = row.get("agreement")
            if a and method == "gptq":
                print(f"  {method:9s} quantised weights bit-identical {a['identical']:.4%}; rel. diff {a['kept_rel_diff']:.2e}")
                print(f"  {method:9s} llm-compressor time / kick time: {row['speed_ratio']:.2f}x (like for like "
                      f"{row['speed_ratio_like_for_like']:.2f}x)")
            elif a:
                print(f"  {method:9s} sparsity kick {a['sparsity_ours']:.4f} llmc {a['sparsity_ref']:.4f}; zeros agree "
                      f"{a['zero_agreement']:.4%} (IoU {a['zero_iou']:.4%}, worst layer {a['min_layer_agreement']:.4%} "
                      f"{a['min_layer']}); kept weights rel. diff {a['kept_rel_diff']:.2e}; bit-identical {a['identical']:.4%}")
                print(f"  {method:9s} llm-compressor time / kick time: {row['speed_ratio']:.2f}x (like for like "
                      f"{row['speed_ratio_like_for_like']:.2f}x)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", default=["mmlu", "cloze", "mmlu-fp32", "gen", "compress"],
                   choices=["mmlu", "cloze", "mmlu-fp32", "cloze-fp32", "gen", "gen-fp32", "compress"],
                   help="mmlu/cloze/gen: the bf16 comparisons; *-fp32: the same in float32 on --fp32-per-subject "
                        "questions (--fp32-prompts prompts)")
    p.add_argument("--quick", action="store_true", help="small sizes (2 questions per subject, 16 prompts, 8 x 128 calib)")
    p.add_argument("--per-subject", type=int, default=20,
                   help="MMLU test questions per subject (57 subjects; 20: the 1,140 questions of the README)")
    p.add_argument("--prompts", type=int, default=200, help="factoid generation prompts")
    p.add_argument("--n-calib", type=int, default=32, help="calibration sequences (the real study: 32)")
    p.add_argument("--calib-seqlen", type=int, default=256, help="tokens per calibration sequence (the real study: 256)")
    p.add_argument("--group-size", type=int, default=64, help="GPTQ group size (llm-compressor needs it to divide 576)")
    p.add_argument("--methods", nargs="+", default=["wanda", "sparsegpt", "gptq"])
    p.add_argument("--threads", type=int, default=1, help="torch threads, the same for every tool (1: least disturbed by other jobs)")
    p.add_argument("--batch-tokens", type=int, default=16384, help="kick's token budget per forward")
    p.add_argument("--fp32-per-subject", type=int, default=1, help="questions per subject of the float32 check")
    p.add_argument("--fp32-prompts", type=int, default=50, help="factoid prompts of the float32 generation check")
    p.add_argument("--lm-eval-batch", type=int, default=16, help="HFLM batch_size")
    p.add_argument("--hf-batch", type=int, default=16, help="rows per left-padded model.generate batch")
    p.add_argument("--model", default=MODEL, help="kick model name or HF directory")
    p.add_argument("--mmlu", default="mmlu", help="MMLU folder (default: the full Hendrycks CSVs shipped in kick)")
    p.add_argument("--out", type=Path, default=OUT / "peers.json")
    # internal: one kick compression in a subprocess
    p.add_argument("--kick-worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--calib", default=None, help=argparse.SUPPRESS)
    p.add_argument("--measure-error", choices=list(MEASURE_ERROR), default="default", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.kick_worker:
        return kick_worker(args)
    if args.quick:
        args.per_subject, args.prompts, args.n_calib, args.calib_seqlen = 2, 16, 8, 128
        args.fp32_prompts = min(args.fp32_prompts, 8)

    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's and datasets' progress bars
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    for name in ("lm-eval", "lm_eval", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from kick_core.models import load_model

    model, tok = load_model(args.model, dtype="bfloat16")
    report: dict[str, Any] = {"model": args.model, "dtype": "bfloat16", "threads": torch.get_num_threads(),
                              "machine": machine(), "versions": _versions(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()

    def save() -> None:  # after every part, so a late failure keeps the figures measured so far
        args.out.write_text(json.dumps(report, indent=1, default=str))
        print(f"  [{time.perf_counter() - started:6.0f} s] {list(report)[-1]} done", flush=True)

    for part, formulation in (("mmlu", "letter"), ("cloze", "cloze")):
        if part in args.parts:
            report[f"mmlu_{formulation}"] = bench_mcq(model, tok, formulation, args.per_subject, args.batch_tokens,
                                                      args.lm_eval_batch, args.model, args.mmlu)
            save()
    fp32 = [f for part, f in (("mmlu-fp32", "letter"), ("cloze-fp32", "cloze")) if part in args.parts]
    if fp32 or "gen-fp32" in args.parts:  # are bf16 disagreements rounding? The same comparisons in float32, smaller
        import copy

        model32 = copy.deepcopy(model).float()
        for formulation in fp32:
            report[f"mmlu_{formulation}_fp32"] = bench_mcq(model32, tok, formulation, args.fp32_per_subject,
                                                           args.batch_tokens, args.lm_eval_batch, args.model, args.mmlu)
            save()
        if "gen-fp32" in args.parts:
            report["generation_fp32"] = bench_generation(model32, tok, args.fp32_prompts, args.batch_tokens,
                                                         args.hf_batch, args.model)
            save()
        del model32
    if "gen" in args.parts:
        report["generation"] = bench_generation(model, tok, args.prompts, args.batch_tokens, args.hf_batch, args.model)
        save()
    if "compress" in args.parts:
        report["compression"] = bench_compression(model, tok, args.model, args.methods, args.n_calib, args.calib_seqlen,
                                                  args.group_size, args.threads)
        peer = report["compression"].get("wanda", {}).get("llm_compressor")
        if isinstance(peer, dict):
            report["versions"]["llm_compressor_env"] = peer.get("versions")
        save()
    print_table(report)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
