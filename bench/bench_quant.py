"""Benchmark: wall time and peak memory of GPTQ and AWQ next to RTN, on the pruning benchmark's model.

Builds the same Llama-architecture model as ``bench/bench_prune.py`` (hidden 512, intermediate
1408, fp32, random weights; no download), quantises it to 4 bits, group 128, asymmetric (the
study's GPTQ setting) with each method on the same random calibration ids, and prints one row
per method with its time and extra memory as ratios to RTN measured in the same run. Each row
runs in its own subprocess, so its peak RSS is its own.

``extra MiB`` is peak RSS minus the RSS after building the model and the calibration ids: the
memory quantisation itself adds. ``rel. error`` is the mean over decoder linears of
‖WX − ŴX‖²/‖WX‖² on the calibration inputs; RTN's is measured after its timing, with the
driver's Hessians attached (RTN itself reads no data).

Usage::

    python bench/bench_quant.py            # 16 x 512-token samples, 4 layers, a few minutes on 2 CPU cores
    python bench/bench_quant.py --quick    # 4 x 64 tokens, hidden 128, in one process: seconds
                                           # (checks it runs; its peak RSS is cumulative, not per row)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

METHODS = ("rtn", "gptq", "gptq-ts", "awq")
"""gptq-ts: GPTQ with true_sequential (one extra calibration pass per group of linears)."""


def _config(method: str):
    from kick_core.config import CompressConfig

    name, _, variant = method.partition("-")
    return CompressConfig(method=name, bits=4, group_size=128, true_sequential=variant == "ts")


def worker(method: str, layers: int, n: int, seqlen: int, hidden: int, intermediate: int) -> dict:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from bench_prune import VOCAB, _build, _peak_rss_mb, _rss_now_mb

    from kick_core.compress import compress, rtn
    from kick_core.compress.layerwise import Compressor, run_layerwise
    from kick_core.data import from_ids

    model = _build(layers, hidden, intermediate)
    ids = torch.randint(0, VOCAB, (n, seqlen), generator=torch.Generator().manual_seed(0))
    cfg = _config(method)
    base = _rss_now_mb()
    start = time.perf_counter()
    report = compress(model, None, cfg, calib=from_ids(ids), progress=False)
    seconds = time.perf_counter() - start
    peak = _peak_rss_mb()
    rel = report.rel_error
    if rel is None:  # RTN: measure its output error on the same inputs, outside the timing
        outcomes = run_layerwise(_build(layers, hidden, intermediate), Compressor("rtn", rtn.solve, ("hessian",)),
                                 cfg, ids, progress=False)
        rel = sum(o.rel_error for o in outcomes.values()) / len(outcomes)
    return {"method": method, "layers": layers, "seconds": round(seconds, 2), "base_rss_mb": round(base, 1),
            "peak_rss_mb": round(peak, 1), "extra_mb": round(peak - base, 1), "rel_error": rel,
            "bits_per_weight": report.size["decoder_linears"]["bits_per_weight"]}


def _ratio(a: float, b: float, floor: float = 1.0) -> str:
    """'a/b x', or '-' when b is below `floor` (noise)."""
    return f"{a / b:.2f}x" if b >= floor else "-"


def _spawn(args: argparse.Namespace, method: str, layers: int) -> dict:
    if args.quick:  # in-process: seconds instead of one interpreter start per row, but RSS is cumulative
        return worker(method, layers, args.n, args.seqlen, args.hidden, args.intermediate)
    cmd = [sys.executable, __file__, "--worker", method, str(layers), "--n", str(args.n), "--seqlen", str(args.seqlen),
           "--hidden", str(args.hidden), "--intermediate", str(args.intermediate)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_prune's model builder
    from bench_prune import add_model_args

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(p)
    p.add_argument("--layers", type=int, default=4, help="decoder blocks")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--worker", nargs=2, metavar=("METHOD", "LAYERS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        method, layers = args.worker
        print(json.dumps(worker(method, int(layers), args.n, args.seqlen, args.hidden, args.intermediate)))
        return
    if args.quick:
        args.n, args.seqlen, args.hidden, args.intermediate = 4, 64, 128, 352
        print("--quick: one process, so peak RSS below is cumulative; run without --quick for memory figures")
    methods = ["rtn"] + [m for m in args.methods if m != "rtn"]
    threads = os.environ.get("OMP_NUM_THREADS", "-")
    print(f"Llama-arch hidden {args.hidden}, intermediate {args.intermediate}, {args.layers} layers, fp32, calibration "
          f"{args.n} x {args.seqlen} tokens, w4 g128 asymmetric, OMP_NUM_THREADS={threads}")
    rows = []
    for method in methods:
        rows.append(_spawn(args, method, args.layers))
        print(f"  done {method}: {rows[-1]['seconds']} s", file=sys.stderr)
    ref = rows[0]
    print(f"\n{'method':>8} {'wall s':>7} {'x RTN':>7} {'base MiB':>9} {'peak MiB':>9} {'extra MiB':>9} {'x RTN':>7} "
          f"{'rel. error':>10} {'bits/w':>7}")
    for r in rows:
        print(f"{r['method']:>8} {r['seconds']:>7.2f} {_ratio(r['seconds'], ref['seconds'], 0.01):>7} "
              f"{r['base_rss_mb']:>9.0f} {r['peak_rss_mb']:>9.0f} {r['extra_mb']:>9.1f} "
              f"{_ratio(r['extra_mb'], ref['extra_mb']):>7} {r['rel_error']:>10.5f} {r['bits_per_weight']:>7.4f}")


if __name__ == "__main__":
    main()
