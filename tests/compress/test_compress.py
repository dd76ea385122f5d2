"""compress(): registry, scope, N:M gating, report contents (tiny models, CPU, seconds)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from kick_core.compress import COMPRESSORS, Compressor, compress
from kick_core.config import CompressConfig
from kick_core.data import from_ids
from kick_core.errors import ConfigError, UnknownNameError
from kick_core.models import compression_scope
from kick_core.testing import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _calib(n: int = 4, seqlen: int = 16) -> object:
    return from_ids(torch.randint(4, 256, (n, seqlen), generator=torch.Generator().manual_seed(0)), "test", 0)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_registry_holds_every_configurable_method():
    from kick_core.methods import names

    assert set(COMPRESSORS) == set(names())


def test_bnb_on_a_model_not_loaded_quantised_points_to_load_or_compress(tok):
    with pytest.raises(ConfigError, match="quantises while loading.*load_or_compress"):
        compress(tiny_model("llama"), tok, CompressConfig(method="bnb_int8"))


def test_unknown_method_suggests_close_names(tok):
    from kick_core.compress import get_compressor

    with pytest.raises(UnknownNameError, match="Did you mean: wanda"):
        get_compressor("wandda")


def test_dense_changes_nothing(tok):
    model = tiny_model("llama")
    before = _state(model)
    report = compress(model, tok, CompressConfig(method="dense"), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert report.sparsity["overall"] == 0 and report.calibration is None and report.layers == {}


@pytest.mark.parametrize("family", ["llama", "opt", "gpt_neox", "gpt2"])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_only_decoder_linears_change_and_targets_are_met(family, method, tok):
    model = tiny_model(family)
    before = _state(model)
    report = compress(model, tok, CompressConfig(method=method, sparsity=0.5), calib=_calib(), progress=False)
    scope_weights = {f"{name}.weight" for name in compression_scope(model)}
    for k, v in model.state_dict().items():
        if k not in scope_weights:
            assert torch.equal(before[k], v), k  # embeddings, norms, biases, LM head untouched
    per = report.sparsity["per_matrix"]
    assert set(per) == set(report.scope) == set(compression_scope(model))
    assert min(per.values()) >= 0.5 and max(per.values()) < 0.52
    assert 0 < report.sparsity["model"] < report.sparsity["overall"]
    if method != "magnitude":
        assert report.calibration["sha256"] == _calib().sha256
    errors = [v["rel_error"] for v in report.layers.values()]
    if method == "sparsegpt":  # its own Hessian gives the output error for free
        assert all(0 <= e < 1 for e in errors)
    else:  # Hessian-free methods report none unless asked
        assert errors and all(e is None for e in errors)
    if method == "sparsegpt":
        assert all(v["loss"] > 0 for v in report.layers.values())


def test_wanda_reports_output_errors_when_asked(tok):
    cfg = CompressConfig(method="wanda", sparsity=0.5)
    plain = tiny_model("llama")
    measured = tiny_model("llama")
    compress(plain, tok, cfg, calib=_calib(), progress=False)
    report = compress(measured, tok, cfg, calib=_calib(), progress=False, measure_error=True)
    assert all(0 < v["rel_error"] < 1 for v in report.layers.values())
    for a, b in zip(plain.parameters(), measured.parameters()):  # the report does not change the result
        assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_nm_applies_whatever_sparsity_says(method, tok):
    model = tiny_model("llama")
    report = compress(model, tok, CompressConfig(method=method, structure="4:8"), calib=_calib(), progress=False)
    assert report.target_sparsity == 0.5 and report.sparsity["min"] == report.sparsity["max"] == 0.5
    for name in report.scope:
        W = model.get_submodule(name).weight
        assert ((W == 0).reshape(W.shape[0], -1, 8).sum(-1) >= 4).all()


def test_nm_shape_mismatch_fails_before_calibration(tok):
    model = tiny_model("llama", hidden=36, heads=2)  # 36 inputs: not a multiple of 8
    with pytest.raises(ConfigError, match="divisible by 8"):
        compress(model, tok, CompressConfig(method="wanda", structure="4:8", calib_dataset="/nonexistent.txt"))


def test_zero_sparsity_prunes_nothing_and_skips_calibration(tok):
    model = tiny_model("llama")
    before = _state(model)
    cfg = CompressConfig(method="sparsegpt", sparsity=0.0, calib_dataset="/nonexistent.txt")
    report = compress(model, tok, cfg, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and report.calibration is None


def test_report_is_json_ready_and_logs_the_sanity_check(tok, caplog):
    with caplog.at_level(logging.INFO, logger="kick_core"):
        report = compress(tiny_model("llama"), tok, CompressConfig(method="wanda", sparsity=0.3), calib=_calib(),
                          progress=False)
    d = json.loads(json.dumps(report.as_dict()))
    assert d["sparsity"]["per_block"].keys() == {"0", "1"}
    assert {"compress/wanda", "compress/measure"} <= d["times"].keys()
    assert d["times"]["compress/wanda"]["peak_rss_mb"] > 0
    assert any("sparsity sanity check" in r.message and "min" in r.message for r in caplog.records)
    from kick_core.compress.report import CompressionReport

    assert CompressionReport.from_dict(d) == report


def test_calibration_is_sampled_from_the_config_when_not_given(tok, tmp_path):
    text = tmp_path / "calib.txt"
    text.write_text(" ".join(["the quick brown fox jumps over the lazy dog ."] * 40))
    cfg = CompressConfig(method="wanda", sparsity=0.5, calib_dataset=str(text), n_calib=3, calib_seqlen=8)
    report = compress(tiny_model("llama"), tok, cfg, progress=False)
    assert report.calibration["n"] == 3 and report.calibration["seqlen"] == 8
    assert "compress/calibration_data" in report.times


def test_offloaded_meta_weights_fail_clearly_before_work(tok):
    from kick_core.errors import HardwareError

    model = tiny_model("llama")
    layer = model.model.layers[1].mlp.down_proj
    layer.weight = torch.nn.Parameter(torch.empty_like(layer.weight, device="meta"))
    with pytest.raises(HardwareError, match="down_proj has no weights in memory"):
        compress(model, tok, CompressConfig(method="magnitude", sparsity=0.5))


def test_calibration_may_be_a_plain_id_tensor(tok):
    ids = _calib().input_ids
    report = compress(tiny_model("llama"), tok, CompressConfig(method="wanda", sparsity=0.5), calib=ids, progress=False)
    assert report.calibration["sha256"] == _calib().sha256 and report.calibration["dataset"] == "custom"


def test_a_method_registered_in_the_table_is_accepted_by_the_config_and_runs(tok):
    """The method table is the one place: registering a module's COMPRESSOR there needs no other edit."""
    from kick_core import methods
    from kick_core.config import RunConfig

    row = methods.register(methods.Method("halfzero", "prune", compressor=f"{__name__}:HALF_ZERO",
                                          description="zero the first half of every row (test only)"))
    try:
        cfg = CompressConfig(method="halfzero", sparsity=0.5)
        assert cfg.slug == "halfzero-0.50" and cfg.target_sparsity == 0.5
        assert RunConfig.from_flat(method="halfzero", sparsity=0.5).run_id.split("__")[2] == "halfzero-0.50"
        with pytest.raises(ConfigError, match="needs a sparsity"):
            CompressConfig(method="halfzero")
        report = compress(tiny_model("llama"), tok, cfg, progress=False)
        assert report.sparsity["overall"] == pytest.approx(0.5, abs=0.01)
    finally:
        del methods.METHODS[row.name]
    with pytest.raises(ConfigError, match="halfzero"):
        CompressConfig(method="halfzero", sparsity=0.5)


def _half_zero(W, stats, cfg):
    from kick_core.compress import LayerResult

    out = W.clone()
    out[:, : W.shape[1] // 2] = 0
    return LayerResult(out)


HALF_ZERO = Compressor("halfzero", _half_zero, description="test only")
