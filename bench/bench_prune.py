"""Benchmark: wall time and peak memory of each pruning method on the layer-sequential driver.

Builds a Llama-architecture model from a config (hidden 512, 4 and 8 layers, fp32, random
weights; no download), prunes it to 50% with each method on random calibration ids, and prints one
row per (layers, method, variant). Each row runs in its own subprocess, so its peak RSS is its own.

* ``driver``: :func:`kick_core.compress.compress`, i.e. one block's calibration activations at a time.
* ``naive``: the memory-hungry alternative: one full forward per sample keeps the inputs of *every*
  block at once, then each block is solved from its stored (dense) inputs.

``extra MiB`` is peak RSS minus the RSS after building the model and the calibration ids: the
memory compression itself adds. The target is that the driver's extra memory does not grow with
depth (4 vs 8 layers), while the naive variant's does.

Usage::

    python bench/bench_prune.py            # 16 x 512-token samples, a few minutes on 2 CPU cores
    python bench/bench_prune.py --quick    # 4 x 64 tokens, hidden 128, in one process: seconds
                                           # (checks it runs; its peak RSS is cumulative, not per row)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from functools import partial

HIDDEN, INTERMEDIATE, VOCAB = 512, 1408, 2048
METHODS = ("magnitude", "wanda", "sparsegpt")


def _peak_rss_mb() -> float:
    from kick_core.log import peak_rss_mb

    return peak_rss_mb()


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _build(layers: int, hidden: int, intermediate: int):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                      num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                      max_position_embeddings=2048)
    return AutoModelForCausalLM.from_config(cfg).eval()


def _naive(model, compressor, cfg, input_ids) -> None:
    """Keep every block's calibration inputs at once (one full forward per sample), then solve each block."""
    import torch

    from kick_core.compress import layerwise
    from kick_core.compress.calib_stats import STATS
    from kick_core.models import decoder_blocks, linear_layers, set_weight, weight_view

    blocks = decoder_blocks(model)
    stored: list[list[tuple]] = [[] for _ in blocks]

    def keep(i, module, args, kwargs):
        stored[i].append((args[0], tuple(args[1:]), dict(kwargs)))

    handles = [b.register_forward_pre_hook(partial(keep, i), with_kwargs=True) for i, b in enumerate(blocks)]
    with torch.no_grad():
        for row in input_ids:
            model(row.unsqueeze(0), use_cache=False)
    for h in handles:
        h.remove()
    kinds = tuple(compressor.stats) + (("hessian",) if "hessian" not in compressor.stats else ())
    for i, block in enumerate(blocks):
        layers = linear_layers(block)
        collectors = {n: {k: STATS[k](weight_view(lyr).shape[1]) for k in kinds} for n, lyr in layers.items()}
        hooks = [lyr.register_forward_hook(partial(layerwise._feed, collectors[n])) for n, lyr in layers.items()]
        with torch.no_grad():
            for hidden, rest, kwargs in stored[i]:
                block(hidden, *rest, **kwargs)
        for h in hooks:
            h.remove()
        for name, layer in layers.items():
            set_weight(layer, compressor.solve(weight_view(layer).detach().float().clone(), collectors[name], cfg).weight)


def worker(method: str, layers: int, variant: str, n: int, seqlen: int, hidden: int, intermediate: int) -> dict:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from kick_core.compress import compress, get_compressor
    from kick_core.config import CompressConfig
    from kick_core.data import from_ids

    model = _build(layers, hidden, intermediate)
    ids = torch.randint(0, VOCAB, (n, seqlen), generator=torch.Generator().manual_seed(0))
    cfg = CompressConfig(method=method, sparsity=0.5)
    base = _rss_now_mb()
    start = time.perf_counter()
    if variant == "driver":
        report = compress(model, None, cfg, calib=from_ids(ids), progress=False)
        sparsity = report.sparsity["overall"]
    else:
        _naive(model, get_compressor(method), cfg, ids)
        sparsity = None
    seconds = time.perf_counter() - start
    peak = _peak_rss_mb()
    return {"method": method, "layers": layers, "variant": variant, "seconds": round(seconds, 2),
            "base_rss_mb": round(base, 1), "peak_rss_mb": round(peak, 1), "extra_mb": round(peak - base, 1),
            "sparsity": sparsity}


def _ratio(a: float, b: float) -> str:
    """'a/b x', or '-' when b is below 1 MiB (noise)."""
    return f"{a / b:.2f}x" if b >= 1 else "-"


def _spawn(args: argparse.Namespace, method: str, layers: int, variant: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, str(layers), variant, "--n", str(args.n),
           "--seqlen", str(args.seqlen), "--hidden", str(args.hidden), "--intermediate", str(args.intermediate)]
    if args.quick:  # in-process: seconds instead of one interpreter start per row, but RSS is cumulative
        return worker(method, layers, variant, args.n, args.seqlen, args.hidden, args.intermediate)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The benchmark model and calibration options (shared with bench_quant.py)."""
    p.add_argument("--quick", action="store_true", help="tiny run (hidden 128, 4 x 64 tokens) to check it works")
    p.add_argument("--n", type=int, default=16, help="calibration samples")
    p.add_argument("--seqlen", type=int, default=512, help="tokens per calibration sample")
    p.add_argument("--hidden", type=int, default=HIDDEN, help="model hidden size")
    p.add_argument("--intermediate", type=int, default=INTERMEDIATE, help="MLP intermediate size")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(p)
    p.add_argument("--layers", type=int, nargs="+", default=[4, 8], help="depths to compare")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--worker", nargs=3, metavar=("METHOD", "LAYERS", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        method, layers, variant = args.worker
        print(json.dumps(worker(method, int(layers), variant, args.n, args.seqlen, args.hidden, args.intermediate)))
        return
    if args.quick:
        args.n, args.seqlen, args.hidden, args.intermediate = 4, 64, 128, 352
        print("--quick: one process, so peak RSS below is cumulative; run without --quick for memory figures")
    print(f"Llama-arch hidden {args.hidden}, intermediate {args.intermediate}, fp32, calibration "
          f"{args.n} x {args.seqlen} tokens, 50% unstructured, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")
    rows = []
    for layers in args.layers:
        for method in args.methods:
            variants = ("driver", "naive") if method != "magnitude" else ("driver",)
            for variant in variants:
                rows.append(_spawn(args, method, layers, variant))
                r = rows[-1]
                print(f"  done {method:9s} {layers} layers {variant}: {r['seconds']} s", file=sys.stderr)
    print(f"\n{'layers':>6} {'method':>9} {'variant':>7} {'wall s':>7} {'base MiB':>9} {'peak MiB':>9} "
          f"{'extra MiB':>9} {'naive/driver extra':>18}")
    by_key = {(r["layers"], r["method"], r["variant"]): r for r in rows}
    for r in rows:
        ratio = ""
        if r["variant"] == "naive":
            d = by_key[(r["layers"], r["method"], "driver")]
            ratio = _ratio(r["extra_mb"], d["extra_mb"])
        print(f"{r['layers']:>6} {r['method']:>9} {r['variant']:>7} {r['seconds']:>7.2f} {r['base_rss_mb']:>9.0f} "
              f"{r['peak_rss_mb']:>9.0f} {r['extra_mb']:>9.1f} {ratio:>18}")
    if len(args.layers) >= 2:
        lo, hi = min(args.layers), max(args.layers)
        print(f"\nextra memory, {hi} vs {lo} layers (depth x{hi / lo:g}):")
        for method in args.methods:
            for variant in ("driver", "naive"):
                a, b = by_key.get((lo, method, variant)), by_key.get((hi, method, variant))
                if a and b:
                    print(f"  {method:9s} {variant:6s} {a['extra_mb']:7.1f} -> {b['extra_mb']:7.1f} MiB "
                          f"({_ratio(b['extra_mb'], a['extra_mb'])})")


if __name__ == "__main__":
    main()
