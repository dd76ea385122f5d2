"""bitsandbytes at load time: configs, a support probe, and real int8/NF4 models on CPU."""

from __future__ import annotations

import pytest
import torch

from kick_core.compress import bnb
from kick_core.config import CompressConfig, ModelConfig
from kick_core.errors import HardwareError
from kick_core.models import decoder_blocks, linear_layers, load_model
from kick_core.testing import save_tiny_model

pytest.importorskip("bitsandbytes")


def test_config_for_each_mode():
    assert bnb.bnb_config(CompressConfig(method="bnb_int8")).load_in_8bit
    nf4 = bnb.bnb_config(CompressConfig(method="bnb_nf4"))
    assert nf4.load_in_4bit and nf4.bnb_4bit_quant_type == "nf4"
    assert bnb.bnb_config(CompressConfig(method="bnb_fp4")).bnb_4bit_quant_type == "fp4"


def test_probe_reports_each_mode_on_cpu():
    support = bnb.probe("cpu")
    assert set(support) == {"version", "int8", "nf4", "fp4"}


def test_unsupported_device_fails_early_naming_the_hardware(monkeypatch):
    monkeypatch.setattr(bnb, "probe", lambda device: {"version": "x", "int8": False, "nf4": False, "fp4": False})
    with pytest.raises(HardwareError, match="needs a CUDA GPU.*method: rtn"):
        bnb.check_supported(CompressConfig(method="bnb_nf4"), "cpu")


@pytest.mark.parametrize("method,layer_type", [("bnb_int8", "Linear8bitLt"), ("bnb_nf4", "Linear4bit")])
def test_model_loads_quantised_with_real_kernels_and_stays_close(method, layer_type, tmp_path_factory):
    # hidden 64: bitsandbytes' CPU 4-bit kernel packs output rows in blocks wider than hidden 32's k/v.
    tiny_model_dir = save_tiny_model(tmp_path_factory.mktemp("bnb"), "llama", hidden=64)
    cfg = CompressConfig(method=method)
    if not bnb.probe("cpu")[bnb.MODES[method]]:
        pytest.skip(f"{method} kernels not available on this CPU build")
    ref, tok = load_model(str(tiny_model_dir))
    q, _ = load_model(ModelConfig(model=str(tiny_model_dir), device="cpu"), quantization_config=bnb.bnb_config(cfg))
    assert {type(m).__name__ for m in linear_layers(decoder_blocks(q)[0]).values()} == {layer_type}
    assert type(q.lm_head).__name__ == "Linear"  # the LM head stays full precision
    ids = tok("the answer is", return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = ref(ids).logits, q(ids).logits
    assert torch.isfinite(b).all() and (a - b).abs().max() < 0.5 * a.abs().max()
    assert bnb.storage_bits(q) < bnb.storage_bits(ref)
