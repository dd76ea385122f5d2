"""Bench the embedded world: generation time, training time, and the dense / pruned / 8-bit figures.

Usage::

    OMP_NUM_THREADS=2 python bench/bench_world.py --seed 0

Prints one table and writes ``bench/out/world_s<seed>.json``. Targets (issues 3 and 22): generation
< 30 s, training <= 8 min on 2 cores at the same steps/s in its first and last 200 steps (the table
also prints CPU seconds per step, which tell a slower machine from slower work, and this CPU's cost of
a subnormal operand in a matmul with and without the flushing that training uses); dense closed-book factoid >= 80 %, open-book ICR >= 90 %, MCQ >= 80 %;
at 50 % magnitude sparsity the closed-book drop is >= 2x the open-book drop; 8-bit RTN within 2
points of dense everywhere. The pruning and quantisation helpers below are private to this bench.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
import time
from pathlib import Path

import torch

from kick_core.world import TrainConfig, ensure_world
from kick_core.world.denormals import flush_denormals
from kick_core.world.evaluate import evaluate_world, generate
from kick_core.world.export import write_datasets
from kick_core.world.generate import generate_world
from kick_core.world.prompts import chat_prompt
from kick_core.world.rubric import rubric_score

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _decoder_linears(model):
    for layer in model.model.layers:
        for name, mod in layer.named_modules():
            if name.split(".")[-1] in LINEARS:
                yield mod


def magnitude_prune(model, sparsity: float):
    """A copy of `model` with the smallest-|w| `sparsity` fraction of each decoder linear zeroed (per matrix)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for lin in _decoder_linears(model):
            W = lin.weight  # (out, in)
            k = int(W.numel() * sparsity)
            if k:
                thresh = W.abs().flatten().kthvalue(k).values
                W[W.abs() <= thresh] = 0.0
    return model


def rtn_quantize(model, bits: int = 8):
    """A copy of `model` whose decoder linears are round-to-nearest quantised, symmetric, per output channel."""
    model = copy.deepcopy(model)
    qmax = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for lin in _decoder_linears(model):
            W = lin.weight  # (out, in)
            scale = W.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / qmax
            W.copy_((W / scale).round().clamp(-qmax - 1, qmax) * scale)
    return model


def instruction_score(model, tokenizer, data_dir: Path) -> float:
    """Mean rubric score (1-10) of two-turn answers to the world's instruction questions."""
    qs = [json.loads(line) for line in (data_dir / "instruction/question.jsonl").read_text().splitlines()]
    first = _chat(model, tokenizer, [chat_prompt(q["turns"][:1], []) for q in qs])
    second = _chat(model, tokenizer, [chat_prompt(q["turns"], [a]) for q, a in zip(qs, first)])
    return sum(rubric_score(q, [a, b])["score"] for q, a, b in zip(qs, first, second)) / len(qs)


def _chat(model, tokenizer, texts):
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=60, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return [tokenizer.decode(g, skip_special_tokens=True).strip() for g in gen[:, enc["input_ids"].shape[1]:]]


def subnormal_penalty(n: int = 512, reps: int = 5) -> dict[str, float]:
    """How much slower a matmul with a subnormal operand runs than with a normal one, with IEEE
    behaviour and inside :func:`flush_denormals` (training's mode): this CPU's cost of denormals."""
    a, normal, sub = torch.randn(n, n), torch.randn(n, n), torch.full((n, n), 1e-39)

    def seconds(b) -> float:
        a @ b
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        return (time.perf_counter() - t) / reps

    ieee = seconds(sub) / seconds(normal)
    with flush_denormals():
        flushed = seconds(sub) / seconds(normal)
    return {"ieee": round(ieee, 2), "flushed": round(flushed, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="world seed")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (training is deterministic per count)")
    ap.add_argument("--sparsity", type=float, default=0.5, help="magnitude-pruning sparsity to compare")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the shipped TrainConfig's)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    world = generate_world(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        write_datasets(world, tmp)
    gen_s = time.perf_counter() - start

    cfg = TrainConfig() if args.steps is None else TrainConfig(steps=args.steps)
    paths = ensure_world(args.seed, cfg)
    record = json.loads((paths.root / "world.json").read_text())
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(paths.model_dir)
    dense = AutoModelForCausalLM.from_pretrained(paths.model_dir, dtype=torch.float32).eval()
    variants = {"dense": dense, f"magnitude{args.sparsity:.0%}": magnitude_prune(dense, args.sparsity),
                "rtn8": rtn_quantize(dense, 8)}
    results = {}
    for name, model in variants.items():
        t = time.perf_counter()
        results[name] = evaluate_world(model, tok, paths.data_dir)
        results[name]["instruction_rubric"] = instruction_score(model, tok, paths.data_dir)
        logging.info("%s evaluated in %.0f s", name, time.perf_counter() - t)

    d, p, q = (results[k] for k in variants)
    closed_drop = d["factoid_strict"]["all"] - p["factoid_strict"]["all"]
    open_drop = d["icr_open"]["all"] - p["icr_open"]["all"]
    sub = subnormal_penalty()
    summary = {"seed": args.seed, "throughput": record.get("throughput"), "subnormal_penalty": sub, "generation_s": round(gen_s, 2), "train_s": record["train_seconds"],
               "n_params": record["n_params"], "results": results,
               "closed_drop": closed_drop, "open_drop": open_drop,
               "phenomenon": closed_drop >= 2 * max(open_drop, 0.0),
               "rtn8_max_abs_diff": max(abs(d[t]["all"] - q[t]["all"]) for t in ("factoid", "factoid_strict", "icr_open", "icr_closed", "mcq", "mcq_cloze"))}
    suffix = "" if args.steps is None else f"_steps{args.steps}"
    out = Path(__file__).parent / "out" / f"world_s{args.seed}{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    rows = [("generation (s)", f"{gen_s:.2f}"), ("training (s)", f"{record['train_seconds']:.0f}"),
            ("parameters", f"{record['n_params'] / 1e6:.2f}M")]
    tp = record.get("throughput")
    if tp:  # recorded by the build since the step clock exists
        rows += [(f"training steps/s, first / last {tp['window_steps']} steps (last/first)",
                  f"{tp['first_steps_per_s']:.2f} / {tp['last_steps_per_s']:.2f} ({tp['last_over_first']:.2f})"),
                 ("training per step, first / last window: CPU s; preemptions; steal s",
                  f"{tp['first_cpu_s_per_step']:.3f} / {tp['last_cpu_s_per_step']:.3f}; "
                  f"{tp.get('first_preempted_per_step', float('nan')):.1f} / {tp.get('last_preempted_per_step', float('nan')):.1f}; "
                  f"{tp.get('first_steal_s_per_step', float('nan')):.3f} / {tp.get('last_steal_s_per_step', float('nan')):.3f}")]
    else:
        rows += [("training steps/s", "not recorded (model built before the step clock; clear the cache)")]
    rows += [("subnormal matmul, 512x512, 2 threads: slowdown IEEE / flushed",
              f"{sub['ieee']:.1f}x / {sub['flushed']:.1f}x")]
    for name, r in results.items():
        rows += [(f"{name} factoid closed-book EM, legacy prompt (all / prose / qa)",
                  f"{r['factoid']['all']:.1f} / {r['factoid']['prose']:.1f} / {r['factoid']['qa']:.1f}"),
                 (f"{name} factoid closed-book EM, strict prompt (all / prose / qa)",
                  f"{r['factoid_strict']['all']:.1f} / {r['factoid_strict']['prose']:.1f} / {r['factoid_strict']['qa']:.1f}"),
                 (f"{name} ICR open-book EM (all / seen / unseen; copy baseline)",
                  f"{r['icr_open']['all']:.1f} / {r['icr_open']['seen']:.1f} / {r['icr_open']['unseen']:.1f}; "
                  f"{r['icr_open']['copy_baseline']:.1f}"),
                 (f"{name} ICR closed-book EM (seen / unseen)", f"{r['icr_closed']['seen']:.1f} / {r['icr_closed']['unseen']:.1f}"),
                 (f"{name} MCQ 5-shot accuracy (cloze / letter formulation)",
                  f"{r['mcq_cloze']['all']:.1f} / {r['mcq']['all']:.1f}"),
                 (f"{name} instruction rubric (1-10)", f"{r['instruction_rubric']:.1f}")]
    rows += [("closed-book drop at sparsity", f"{closed_drop:.1f}"), ("open-book drop at sparsity", f"{open_drop:.1f}"),
             ("closed drop >= 2x open drop", str(summary["phenomenon"])),
             ("RTN-8 max |diff| vs dense (points)", f"{summary['rtn8_max_abs_diff']:.2f}")]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))  # noqa: T201 - a bench script reports on stdout


if __name__ == "__main__":
    main()
