"""Bench how much one compression run's score is a draw: the real study's ICR-QA at 50 % over calibration samples.

Usage::

    python bench/bench_calib_spread.py                  # Wanda and SparseGPT 50 %, seeds 0-2, 16 and 32 sequences
    python bench/bench_calib_spread.py --quick          # Wanda only, 16 sequences, seeds 0-1 (minutes)
    python bench/bench_calib_spread.py --methods wanda --n-calib 16 --seeds 0 1 2 3 4

Each point compresses SmolLM2 with ``params/real.yaml``'s base settings (model, dtype, calibration text
and length) and one calibration seed and size, then runs the study's ICR-QA (reading split, chat, the
same 100 items, closed and open book). Compressed models come from kick's cache, so the study's own
(seed 0) models and any earlier point cost only the evaluation. Prints each point with its item CI,
then per method and size the spread over seeds (max - min) against the mean CI width: when the spread
is as wide as the CI, one run of the study is one draw and its paired CIs (over items, one calibration
sample) understate the uncertainty. No target; writes ``bench/out/calib_spread.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PARAMS = REPO / "params" / "real.yaml"
METRICS = ("contains_open", "contains_closed")


def study_icr() -> tuple[dict, dict]:
    """``params/real.yaml``'s base settings and the task settings of its dense ICR-QA block (one value each)."""
    from kick_core.paramsfile import read_params_file

    study = read_params_file(PARAMS)
    block = next(b for b in study["sweep"] if b["task"] == ["icr_qa"] and b["method"] == ["dense"])
    return dict(study["base"]), {k: v[0] for k, v in block.items() if k != "method"}


def icr_config(base: dict, icr: dict, method: str, sparsity: float, n_calib: int, seed: int, n_examples: int):
    """The study's ICR-QA run config for one compression and calibration draw."""
    from kick_core.config import RunConfig

    comp = dict(method="dense", sparsity=None) if method == "dense" else dict(method=method, sparsity=sparsity)
    return RunConfig.from_flat(**{**base, **icr, "n_examples": n_examples, **comp, "n_calib": n_calib,
                                  "calib_seed": seed})


def point(cfg) -> dict:
    from kick_core.compress.model_cache import load_or_compress
    from kick_core.evaluate import evaluate

    t = time.perf_counter()
    model, tokenizer, report = load_or_compress(cfg.model, cfg.compress, progress=False)
    compress_s = time.perf_counter() - t
    t = time.perf_counter()
    result = evaluate(model, tokenizer, cfg, progress=False)
    c = cfg.compress
    row = {"method": c.method, "sparsity": c.target_sparsity, "n_calib": c.n_calib, "seed": c.calib_seed,
           "cached": report.cached, "compress_s": compress_s, "evaluate_s": time.perf_counter() - t}
    for m in METRICS:
        v = result.metrics[m]
        row[m] = (v["value"], v["ci_low"], v["ci_high"], v["n"])
    return row


def spread(rows: list[dict], metric: str) -> list[dict]:
    """Per (method, n_calib): mean, min, max over seeds and the mean item-CI width."""
    out = []
    for key in sorted({(r["method"], r["n_calib"]) for r in rows if r["method"] != "dense"}):
        sel = [r[metric] for r in rows if (r["method"], r["n_calib"]) == key]
        values = [v for v, *_ in sel]
        out.append({"method": key[0], "n_calib": key[1], "seeds": len(values), "mean": statistics.fmean(values),
                    "min": min(values), "max": max(values),
                    "mean_ci_width": statistics.fmean(hi - lo for _, lo, hi, _ in sel)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", default=["wanda", "sparsegpt"], choices=["magnitude", "wanda", "sparsegpt"])
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--n-calib", nargs="+", type=int, default=[16, 32])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n-examples", type=int, default=None, help="ICR-QA items (default: the study's)")
    p.add_argument("--quick", action="store_true", help="Wanda, 16 sequences, seeds 0-1")
    args = p.parse_args(argv)
    if args.quick:
        args.methods, args.n_calib, args.seeds = ["wanda"], [16], [0, 1]

    base, icr = study_icr()
    n_examples = args.n_examples or icr["n_examples"]
    rows = [point(icr_config(base, icr, "dense", 0.0, args.n_calib[0], 0, n_examples))]
    for method in args.methods:
        for n in args.n_calib:
            for seed in args.seeds:
                rows.append(point(icr_config(base, icr, method, args.sparsity, n, seed, n_examples)))
                r = rows[-1]
                print(f"  {method:9s} n_calib {n:3d} seed {seed}: open {r['contains_open'][0]:.2f}, closed "
                      f"{r['contains_closed'][0]:.2f}  ({'cached' if r['cached'] else 'compressed'} "
                      f"{r['compress_s']:.0f} s, evaluated {r['evaluate_s']:.0f} s)", flush=True)

    dense = rows[0]
    print(f"\nICR-QA at {args.sparsity:.0%} sparsity, reading split, {n_examples} items "
          f"(dense: open {dense['contains_open'][0]:.2f}, closed {dense['contains_closed'][0]:.2f})")
    report = {"points": rows}
    for metric in METRICS:
        report[metric] = table = spread(rows, metric)
        print(f"  {metric}: spread over calibration seeds against the item CI of one run")
        for t in table:
            ratio = (t["max"] - t["min"]) / t["mean_ci_width"] if t["mean_ci_width"] else float("nan")
            print(f"    {t['method']:9s} n_calib {t['n_calib']:3d}: mean {t['mean']:.3f}, min {t['min']:.2f}, max "
                  f"{t['max']:.2f} over {t['seeds']} seeds; spread / mean 95 % CI width {ratio:.2f}")
    out = HERE / "out" / "calib_spread.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"  wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
