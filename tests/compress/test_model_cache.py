"""load_or_compress: cache round trip bit-identical, atomic entries, strict loading (CPU, seconds)."""

from __future__ import annotations

import pytest
import torch

from kick_core.compress import model_cache as cache
from kick_core.config import CompressConfig, ModelConfig
from kick_core.errors import KickError


def test_round_trip_is_bit_identical(tiny_model_dir, calib_file, tmp_path):
    mcfg = ModelConfig(model=str(tiny_model_dir))
    ccfg = CompressConfig(method="sparsegpt", sparsity=0.5, calib_dataset=str(calib_file), n_calib=4, calib_seqlen=16)
    model1, _, report1 = cache.load_or_compress(mcfg, ccfg, cache_dir=tmp_path, progress=False)
    assert not report1.cached and report1.fingerprint
    entry = cache.cache_root(tmp_path) / report1.fingerprint
    assert {p.name for p in entry.iterdir()} == {cache.WEIGHTS, cache.SPEC, cache.REPORT}
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]  # no temp dir left
    model2, _, report2 = cache.load_or_compress(mcfg, ccfg, cache_dir=tmp_path, progress=False)
    assert report2.cached and report2.sparsity == report1.sparsity and report2.calibration == report1.calibration
    assert "compress/load_cache" in report2.times
    s1, s2 = model1.state_dict(), model2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


def test_different_spec_is_a_different_entry(tiny_model_dir, tmp_path):
    mcfg = ModelConfig(model=str(tiny_model_dir))
    _, _, a = cache.load_or_compress(mcfg, CompressConfig(method="magnitude", sparsity=0.5), cache_dir=tmp_path,
                                     progress=False)
    _, _, b = cache.load_or_compress(mcfg, CompressConfig(method="magnitude", sparsity=0.6), cache_dir=tmp_path,
                                     progress=False)
    assert a.fingerprint != b.fingerprint and not b.cached


def test_default_location_follows_kick_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KICK_CACHE", str(tmp_path))
    assert cache.cache_root() == tmp_path / "compressed"


def test_a_mismatching_entry_is_rejected(tiny_model_dir, tmp_path):
    mcfg = ModelConfig(model=str(tiny_model_dir))
    ccfg = CompressConfig(method="magnitude", sparsity=0.5)
    _, _, report = cache.load_or_compress(mcfg, ccfg, cache_dir=tmp_path, progress=False)
    from safetensors.torch import load_file, save_file

    path = cache.cache_root(tmp_path) / report.fingerprint / cache.WEIGHTS
    tensors = load_file(str(path))
    tensors.pop(next(iter(tensors)))
    save_file(tensors, str(path))
    with pytest.raises(KickError, match="does not match the model"):
        cache.load_or_compress(mcfg, ccfg, cache_dir=tmp_path, progress=False)


def test_bnb_on_unsupported_hardware_fails_before_loading(tmp_path, monkeypatch):
    pytest.importorskip("bitsandbytes")
    from kick_core.compress import bnb
    from kick_core.errors import HardwareError

    monkeypatch.setattr(bnb, "probe", lambda device: {"version": "x", "int8": False, "nf4": False, "fp4": False})
    with pytest.raises(HardwareError, match="needs a CUDA GPU"):  # the missing model is never reached
        cache.load_or_compress(ModelConfig(model=str(tmp_path / "missing")), CompressConfig(method="bnb_int8"))
