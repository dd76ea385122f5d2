"""Quantisation through the pipeline: rtn/gptq/awq on the driver, sparse + quantised, sizes, cache,
bitsandbytes at load time, presets (tiny models, CPU, seconds)."""

from __future__ import annotations

import json

import pytest
import torch

from kick_core.compress import bit_accounting, compress, gptq, rtn, sparse_quant
from kick_core.compress import model_cache as cache
from kick_core.compress.layerwise import Compressor, _collect, _input_groups, capture_block_inputs, run_layerwise
from kick_core.compress.report import FAKE_QUANT, CompressionReport
from kick_core.compress.calib_stats import InputAbsMeanStats
from kick_core.config import CompressConfig, ModelConfig, RunConfig
from kick_core.data import from_ids
from kick_core.errors import ConfigError
from kick_core.models import compression_scope, decoder_blocks, linear_layers, weight_view
from kick_core.testing import save_tiny_model, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _calib(n: int = 4, seqlen: int = 16):
    return from_ids(torch.randint(4, 256, (n, seqlen), generator=torch.Generator().manual_seed(0)), "test", 0)


def _distinct_per_group(W: torch.Tensor, group_size: int) -> int:
    """The most distinct values in any (row, group) of W (out, in)."""
    out, cols = W.shape
    groups = W.reshape(out, cols // group_size, group_size)
    return max(len(torch.unique(groups[r, g])) for r in range(out) for g in range(groups.shape[1]))


QUANT = [CompressConfig(method="rtn", bits=4, group_size=16), CompressConfig(method="gptq", bits=4, group_size=16),
         CompressConfig(method="awq", bits=4, group_size=16)]


@pytest.mark.parametrize("cfg", QUANT, ids=lambda c: c.slug)
def test_each_quantiser_end_to_end_through_compress(cfg, tok):
    model = tiny_model("llama", hidden=64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = compress(model, tok, cfg, calib=_calib(), progress=False)
    scope = {f"{name}.weight" for name in compression_scope(model)}
    for k, v in model.state_dict().items():
        assert torch.equal(before[k], v) == (k not in scope), k  # only decoder linears change, all of them
    assert report.numerics == FAKE_QUANT and report.quant["scheme"] == cfg.method and report.quant["bits"] == 4
    if cfg.method != "awq":  # AWQ's effective weight is Q(W·s)/s: on the grid only after scaling by s
        for name in report.scope:
            assert _distinct_per_group(weight_view(model.get_submodule(name)), 16) <= 16, name
    if cfg.method == "rtn":
        assert report.calibration is None and all(v["rel_error"] is None for v in report.layers.values())
    else:
        assert report.calibration["sha256"] == _calib().sha256
        assert all(0 < v["rel_error"] < 0.05 for v in report.layers.values())
    d = json.loads(json.dumps(report.as_dict()))
    assert CompressionReport.from_dict(d) == report


def _rtn_measured() -> Compressor:
    """RTN with the driver's Hessians attached, so its output error is measured on the same inputs."""
    return Compressor("rtn", rtn.solve, stats=("hessian",))


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_calibrated_quantisers_lower_layer_error_below_rtn(method):
    ids = _calib().input_ids
    cfg = CompressConfig(method=method, bits=3 if method == "gptq" else 4, group_size=16)
    base = run_layerwise(tiny_model("llama", hidden=64), _rtn_measured(), cfg, ids, progress=False)
    from kick_core.compress import COMPRESSORS

    got = run_layerwise(tiny_model("llama", hidden=64), COMPRESSORS[method], cfg, ids, progress=False)
    block0 = [k for k in base if ".layers.0." in k]  # same inputs for both: a per-linear comparison
    for k in block0:
        assert got[k].rel_error <= base[k].rel_error * (0.9 if method == "gptq" else 1 + 1e-5), k
    mean = lambda d: sum(o.rel_error for o in d.values()) / len(d)  # noqa: E731
    assert mean(got) < mean(base)


@pytest.mark.parametrize("family,want", [
    ("llama", [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"],
               ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]]),
    ("opt", [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.out_proj"], ["fc1"],
             ["fc2"]]),
    ("gpt2", [["attn.c_attn"], ["attn.c_proj"], ["mlp.c_fc"], ["mlp.c_proj"]]),
])
def test_true_sequential_groups_follow_the_block_call_order(family, want):
    model = tiny_model(family)
    block = decoder_blocks(model)[0]
    inputs = capture_block_inputs(model, _calib(2, 8).input_ids)
    trace: list = []
    with torch.no_grad():
        _collect(block, inputs, linear_layers(block), ("norms",), torch.device("cpu"), {}, trace)
    assert _input_groups(trace, linear_layers(block)) == want


@pytest.mark.parametrize("true_sequential", [False, True])
def test_true_sequential_collects_later_groups_after_earlier_ones_are_compressed(true_sequential):
    seen = {}

    def zero(W, stats, cfg):  # zeroing v and up/gate makes o_proj's and down_proj's inputs exactly zero
        seen[len(seen)] = float(stats["hessian"].H.abs().sum())
        from kick_core.compress.layerwise import LayerResult

        return LayerResult(torch.zeros_like(W))

    cfg = CompressConfig(method="gptq", bits=4, true_sequential=true_sequential)
    run_layerwise(tiny_model("llama", layers=1), Compressor("zero", zero, stats=("hessian",)), cfg,
                  _calib().input_ids, progress=False)
    # solve order: q, k, v, o, gate, up, down (named order and call order agree for Llama)
    assert (seen[3] == 0 and seen[6] == 0) == true_sequential and seen[0] > 0


def test_true_sequential_gptq_runs_and_differs_from_one_pass(tok):
    a, b = tiny_model("llama", hidden=64), tiny_model("llama", hidden=64)
    ra = compress(a, tok, CompressConfig(method="gptq", bits=3, group_size=16), calib=_calib(), progress=False)
    rb = compress(b, tok, CompressConfig(method="gptq", bits=3, group_size=16, true_sequential=True), calib=_calib(),
                  progress=False)
    assert rb.quant["true_sequential"] and ra.layers.keys() == rb.layers.keys()
    assert not torch.equal(a.model.layers[0].self_attn.o_proj.weight, b.model.layers[0].self_attn.o_proj.weight)


# -- sparse + quantised ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("quant", ["rtn", "gptq"])
def test_sparse_then_quantised_keeps_the_nm_mask_exactly(method, quant, tok):
    model = tiny_model("llama", hidden=64)
    cfg = CompressConfig(method=method, structure="2:4", quantize_after=quant, bits=4, group_size=16)
    report = compress(model, tok, cfg, calib=_calib(), progress=False)
    assert report.quant["scheme"] == quant and report.numerics == FAKE_QUANT
    for name in report.scope:
        W = weight_view(model.get_submodule(name))
        assert ((W == 0).reshape(W.shape[0], -1, 4).sum(-1) >= 2).all(), name  # every group of 4 keeps its 2 zeros
        assert _distinct_per_group(W, 16) <= 16


@pytest.mark.parametrize("quant", ["rtn", "gptq"])
def test_sparse_then_quantised_zeroes_exactly_what_pruning_alone_zeroes(quant, tok):
    pruned, joint = tiny_model("llama", hidden=64), tiny_model("llama", hidden=64)
    compress(pruned, tok, CompressConfig(method="magnitude", sparsity=0.6), progress=False)
    cfg = CompressConfig(method="magnitude", sparsity=0.6, quantize_after=quant, bits=3, group_size=16)
    report = compress(joint, tok, cfg, calib=_calib(), progress=False)
    for name in report.scope:
        mask = weight_view(pruned.get_submodule(name)) == 0
        W = weight_view(joint.get_submodule(name))
        assert torch.all(W[mask] == 0), name  # asymmetric grid with a zero point: still exactly zero
        assert not torch.equal(W, weight_view(pruned.get_submodule(name)))  # and it was quantised


def test_then_quantise_on_one_layer_with_sparsegpt_and_gptq():
    from kick_core.compress import sparsegpt
    from kick_core.compress.calib_stats import HessianStats

    g = torch.Generator().manual_seed(0)
    X = torch.randn(256, 64, generator=g) @ torch.randn(64, 64, generator=g) / 8
    stats = {"hessian": HessianStats(64)}
    stats["hessian"].add_batch(X)
    W = torch.randn(32, 64, generator=g)
    cfg = CompressConfig(method="sparsegpt", sparsity=0.5, quantize_after="gptq", bits=4, group_size=16, blocksize=16)
    pruned = sparsegpt.solve(W, stats, cfg).weight
    joint = sparse_quant.then_quantise(sparsegpt.COMPRESSOR, "gptq")
    assert joint.stats == ("hessian",) and joint.name == "sparsegpt+gptq"
    Q = joint.solve(W, stats, cfg).weight
    assert torch.all(Q[pruned == 0] == 0) and not torch.equal(Q, pruned)


# -- size accounting ----------------------------------------------------------------------------------
def test_stored_bits_on_literal_shapes():
    cfg = CompressConfig(method="gptq", bits=4, group_size=128)
    assert bit_accounting.stored_bits(4096, 4096, cfg) == 4096 * 4096 * 4 + 4096 * 32 * (16 + 4)
    assert bit_accounting.stored_bits(4096, 4096, cfg) / 4096**2 == 4.15625
    assert bit_accounting.stored_bits(4096, 4096, CompressConfig(method="rtn", bits=8, symmetric=True)) / 4096**2 == \
        8 + 16 / 4096  # per-channel, symmetric: one fp16 scale per row, no zero point
    awq = CompressConfig(method="awq", bits=4, group_size=128)
    assert bit_accounting.stored_bits(11008, 4096, awq) == bit_accounting.stored_bits(11008, 4096, cfg) + 4096 * 16
    act = CompressConfig(method="gptq", bits=4, group_size=128, act_order=True)
    assert bit_accounting.stored_bits(4096, 4096, act) == bit_accounting.stored_bits(4096, 4096, cfg) + 4096 * 32


def test_report_sizes_for_4bit_g128_asymmetric_are_exact(tok):
    model = tiny_model("llama", hidden=128)  # every linear has in_features 128 or 256: whole groups of 128
    report = compress(model, tok, CompressConfig(method="rtn", bits=4, group_size=128), progress=False)
    lin, whole = report.size["decoder_linears"], report.size["model"]
    assert lin["bits_per_weight"] == report.quant["bits_per_weight"] == 4 + 20 / 128 == 4.15625
    shapes = [tuple(weight_view(model.get_submodule(n)).shape) for n in report.scope]
    assert lin["weights"] == sum(o * i for o, i in shapes)
    assert lin["stored_bytes"] == sum(o * i * 4 + o * (i // 128) * 20 for o, i in shapes) // 8
    assert lin["dense_bytes"] == 4 * lin["weights"] and report.size["dtype"] == "float32"
    other = sum(p.numel() for p in model.parameters()) - lin["weights"]
    assert whole["stored_bytes"] == lin["stored_bytes"] + 4 * other and whole["params"] == lin["weights"] + other
    assert "packed 4-bit codes + fp16 scale + 4-bit zero point per (row, group of 128" in report.size["format"]
    assert "4.1562 bits/weight" in report.summary()


def test_report_consumers_read_real_reports(tok):
    from kick_core.plots import layer_sparsity_frame

    for cfg in (CompressConfig(method="magnitude", sparsity=0.5), CompressConfig(method="rtn", bits=4)):
        report = compress(tiny_model("llama"), tok, cfg, progress=False)
        df = layer_sparsity_frame(report)
        assert len(df) == 14 and df["sparsity"].notna().all() and df["sparsity"].tolist() == list(
            report.sparsity["per_matrix"].values())


def test_dense_and_pruned_models_are_sized_as_dense_tensors(tok):
    report = compress(tiny_model("llama"), tok, CompressConfig(method="magnitude", sparsity=0.5), progress=False)
    assert report.quant is None and report.numerics.startswith("dense")
    assert report.size["decoder_linears"]["bits_per_weight"] == 32
    assert report.size["decoder_linears"]["stored_bytes"] == report.size["decoder_linears"]["dense_bytes"]


def test_absmean_collector_is_the_mean_abs_over_all_tokens():
    X = torch.randn(3, 5, 8)
    c = InputAbsMeanStats(8)
    c.add_batch(X[:1])
    c.add_batch(X[1:])
    assert torch.allclose(c.absmean, X.reshape(-1, 8).abs().mean(0), atol=1e-6)


def test_gptq_solve_reads_the_config():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(128, 32, generator=g)
    from kick_core.compress.calib_stats import HessianStats

    h = HessianStats(32)
    h.add_batch(X)
    W = torch.randn(8, 32, generator=g)
    cfg = CompressConfig(method="gptq", bits=3, group_size=8, blocksize=8, percdamp=0.05)
    want = gptq.quantize_weight(W, h.H, 3, 8, False, 8, 0.05)[0]
    assert torch.equal(gptq.solve(W, {"hessian": h}, cfg).weight, want)


# -- cache --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [dict(method="rtn", bits=4, group_size=16),
                                   dict(method="gptq", bits=4, group_size=16, act_order=True),
                                   dict(method="awq", bits=4, group_size=16),
                                   dict(method="wanda", sparsity=0.5, quantize_after="gptq", bits=8)],
                         ids=lambda e: e["method"] + ("+" + e["quantize_after"] if "quantize_after" in e else ""))
def test_quantised_models_cache_and_reload_bit_identically(extra, tiny_model_dir, calib_file, tmp_path):
    mcfg = ModelConfig(model=str(tiny_model_dir))
    ccfg = CompressConfig(calib_dataset=str(calib_file), n_calib=4, calib_seqlen=16, **extra)
    m1, _, r1 = cache.load_or_compress(mcfg, ccfg, cache_dir=tmp_path, progress=False)
    m2, _, r2 = cache.load_or_compress(mcfg, ccfg, cache_dir=tmp_path, progress=False)
    assert not r1.cached and r2.cached and r1.fingerprint == r2.fingerprint
    assert r2.quant == r1.quant and r2.size == r1.size and r2.numerics == FAKE_QUANT
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    spec = json.loads((cache.cache_root(tmp_path) / r1.fingerprint / cache.SPEC).read_text())["compress"]
    assert {k: spec[k] for k in extra} == extra
    assert {"symmetric", "act_order", "true_sequential", "group_size", "bits"} <= spec.keys()


# -- bitsandbytes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,layer_type", [("bnb_int8", "Linear8bitLt"), ("bnb_nf4", "Linear4bit")])
def test_bnb_through_load_or_compress_is_measured_and_not_cached(method, layer_type, tmp_path_factory):
    bnb = pytest.importorskip("kick_core.compress.bnb")
    pytest.importorskip("bitsandbytes")
    if not bnb.probe("cpu")[bnb.MODES[method]]:
        pytest.skip(f"{method} kernels not available on this CPU build")
    model_dir = save_tiny_model(tmp_path_factory.mktemp("bnb"), "llama", hidden=64)
    cache_dir = tmp_path_factory.mktemp("cache")
    model, tok, report = cache.load_or_compress(ModelConfig(model=str(model_dir), device="cpu"),
                                                CompressConfig(method=method), cache_dir=cache_dir, progress=False)
    assert {type(m).__name__ for b in decoder_blocks(model) for m in linear_layers(b).values()} == {layer_type}
    assert report.numerics == f"bitsandbytes {bnb.MODES[method]} kernels" and not report.cached
    assert "not cached" in report.cache_note and not cache.cache_root(cache_dir).exists()
    assert f"compress/{method}_load" in report.times and report.sparsity["overall"] < 0.2
    shapes = [(m.out_features, m.in_features) for b in decoder_blocks(model) for m in linear_layers(b).values()]
    n = sum(o * i for o, i in shapes)
    if method == "bnb_int8":  # int8 codes + one fp32 scale per output row
        want = sum(o * i * 8 + o * 32 for o, i in shapes)
    else:  # 4-bit codes + fp32 absmax per 64 weights + 16-entry fp32 code book per layer
        want = sum(o * i * 4 + o * i // 64 * 32 + 16 * 32 for o, i in shapes)
    assert report.size["decoder_linears"]["bits_per_weight"] == want / n
    with torch.no_grad():
        assert torch.isfinite(model(tok("the answer is", return_tensors="pt").input_ids).logits).all()


def test_bnb_4bit_on_a_cpu_kernel_shape_it_cannot_run_fails_before_any_forward(tmp_path):
    bnb = pytest.importorskip("kick_core.compress.bnb")
    pytest.importorskip("bitsandbytes")
    from bitsandbytes.functional import has_avx512bf16

    from kick_core.errors import HardwareError

    if not bnb.probe("cpu")["nf4"] or not has_avx512bf16():
        pytest.skip("only the AVX512-BF16 CPU 4-bit path has the shape rule")
    model_dir = save_tiny_model(tmp_path / "m", "llama")  # hidden 32: in_features 32 is not a multiple of 64
    with pytest.raises(HardwareError, match="in_features % 64 == 0"):
        cache.load_or_compress(ModelConfig(model=str(model_dir), device="cpu"), CompressConfig(method="bnb_nf4"),
                               cache_dir=tmp_path)


# -- presets --------------------------------------------------------------------------------------------
def test_gptq_study_preset_is_the_protocol_setting_and_values_beside_it_win():
    cfg = RunConfig.from_flat(preset="gptq_study_w4").compress
    assert (cfg.method, cfg.bits, cfg.group_size, cfg.symmetric, cfg.act_order, cfg.true_sequential) == \
        ("gptq", 4, 128, False, False, False)
    assert (cfg.calib_dataset, cfg.n_calib, cfg.calib_seqlen, cfg.calib_seed, cfg.percdamp, cfg.blocksize) == \
        ("wikitext2", 128, 2048, 0, 0.01, 128)
    assert RunConfig.from_flat(preset="gptq_study_w8", n_calib=4).compress.n_calib == 4
    spelled = RunConfig.from_flat(method="gptq", bits=8, group_size=128, calib_dataset="wikitext2")
    assert RunConfig.from_flat(preset="gptq_study_w8").run_id == spelled.run_id


def test_unknown_preset_suggests_close_names():
    with pytest.raises(ConfigError, match="Unknown preset 'gptq_study_w5'. Did you mean: gptq_study_w"):
        RunConfig.from_flat(preset="gptq_study_w5")


def test_presets_work_in_params_files():
    from kick_core.paramsfile import expand_params

    study = expand_params({"base": {"preset": "gptq_study_w4", "task": "mcq"}, "sweep": {"bits": [8, 4]}})
    assert [r.compress.slug for r in study.runs] == ["gptq-w8g128", "gptq-w4g128"]
