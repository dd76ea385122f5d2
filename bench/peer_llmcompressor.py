"""The llm-compressor side of ``bench_peers.py`` (issue 20): one ``oneshot`` run, timed, in its own process.

Runs in the separate environment ``bench_peers.py`` creates (``bench/out/peer-env``: llmcompressor pins
transformers below kick's), so it imports nothing from kick. It loads the model directory kick converted,
calibrates on the *same* token ids kick used (a ``(n, seqlen)`` int64 tensor saved by the bench), runs one
modifier with llm-compressor's sequential pipeline and saves the decoder linears' weights for the bench to
compare in kick's environment. Prints one JSON line: wall time of ``oneshot``, peak RSS, versions.

Usage (the bench calls it)::

    peer-env/bin/python bench/peer_llmcompressor.py --model DIR --calib calib.pt --method wanda --out w.pt
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB: VmHWM (ru_maxrss would count the forked parent's pages)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def modifier(method: str, sparsity: float, bits: int, group_size: int):
    """The llm-compressor modifier matching kick's method, with kick's defaults (damping 0.01, block 128)."""
    ignore = ["re:.*lm_head"]  # tied to the embeddings here; kick compresses decoder blocks only
    if method == "wanda":
        from llmcompressor.modifiers.pruning.wanda import WandaPruningModifier

        return WandaPruningModifier(sparsity=sparsity, mask_structure="0:0", targets=["Linear"], ignore=ignore)
    if method == "sparsegpt":
        from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier

        return SparseGPTModifier(sparsity=sparsity, mask_structure="0:0", block_size=128, dampening_frac=0.01,
                                 targets=["Linear"], ignore=ignore)
    if method == "gptq":
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
        from llmcompressor.modifiers.quantization import GPTQModifier

        # W4A16's weights (int, symmetric, per group of 128 inputs) with kick's column order (no act-order).
        weights = QuantizationArgs(num_bits=bits, type="int", strategy="group", group_size=group_size, symmetric=True,
                                   dynamic=False, actorder=None)
        scheme = QuantizationScheme(targets=["Linear"], weights=weights)
        return GPTQModifier(config_groups={"group_0": scheme}, ignore=ignore, block_size=128, dampening_frac=0.01,
                            actorder=None)
    raise SystemExit(f"unknown method {method!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="Hugging Face model directory (kick's converted SmolLM2)")
    p.add_argument("--calib", required=True, help="torch file holding the (n, seqlen) calibration token ids")
    p.add_argument("--method", required=True, choices=("wanda", "sparsegpt", "gptq"))
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="where to save {linear name: (out, in) weight}")
    args = p.parse_args(argv)

    t_process = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    import compressed_tensors
    import llmcompressor
    import transformers
    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = torch.load(args.calib, weights_only=True)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16).eval()
    tok = AutoTokenizer.from_pretrained(args.model)
    ds = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    rss_loaded = rss_mib()
    recipe = modifier(args.method, args.sparsity, args.bits, args.group_size)
    t = time.perf_counter()
    oneshot(model=model, tokenizer=tok, dataset=ds, recipe=recipe, num_calibration_samples=ids.shape[0],
            max_seq_length=ids.shape[1], shuffle_calibration_samples=False, pipeline="sequential", batch_size=1)
    wall = time.perf_counter() - t
    peak = peak_rss_mib()
    weights = {}
    for name, module in model.named_modules():
        if name.startswith("model.layers.") and isinstance(module, torch.nn.Linear):
            w = module.weight.detach()  # GPTQ writes the fake-quantised weight (codes x scale) here
            weights[name] = w.to(torch.bfloat16).clone()
    torch.save(weights, args.out)
    print(json.dumps({"tool": "llm-compressor", "method": args.method, "compress_s": wall, "peak_rss_mib": peak,
                      "rss_after_load_mib": rss_loaded, "process_s": time.perf_counter() - t_process,
                      "threads": torch.get_num_threads(), "n_calib": int(ids.shape[0]), "calib_seqlen": int(ids.shape[1]),
                      "versions": {"llmcompressor": llmcompressor.__version__,
                                   "compressed_tensors": compressed_tensors.__version__,
                                   "transformers": transformers.__version__, "torch": torch.__version__,
                                   "python": sys.version.split()[0]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
