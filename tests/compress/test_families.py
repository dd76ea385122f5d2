"""Method families as strategies: a load-time method registered in the table alone runs the same path
as bitsandbytes (hardware check, load, validate, measure, not cached), with no edit elsewhere."""

from __future__ import annotations

import pytest
from torch import nn

from kick_core import methods
from kick_core.compress import COMPRESSORS, compress, rtn
from kick_core.compress import model_cache as cache
from kick_core.compress.family import family_of
from kick_core.compress.report import measure_size, measure_sparsity
from kick_core.config import CompressConfig, ModelConfig
from kick_core.errors import ConfigError, HardwareError
from kick_core.models import decoder_blocks, linear_layers, load_model
from kick_core.testing import tiny_model, tiny_tokenizer


class FakeInt8Linear(nn.Linear):
    """A decoder linear 'quantised while loading': 8-bit RTN per output row, stored as int8 + fp32 scale."""


class FakeLoader:
    """A load-time Loader that swaps each decoder linear for a FakeInt8Linear after a plain load."""

    library = "fakelib"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.supported = True

    def check_supported(self, cfg, device):
        self.calls.append(("check_supported", str(device)))
        if not self.supported:
            raise HardwareError(f"{cfg.method} needs a fake accelerator")

    def load(self, model_cfg, cfg, compute_dtype):
        self.calls.append(("load", str(compute_dtype)))
        model, tokenizer = load_model(model_cfg)
        for block in decoder_blocks(model):
            for name, layer in linear_layers(block).items():
                fake = FakeInt8Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
                fake.load_state_dict(layer.state_dict())
                fake.weight.data = rtn.quantize_weight(layer.weight.data.float(), 8, None, False)[0].to(layer.weight)
                parent, _, leaf = name.rpartition(".")
                setattr(block.get_submodule(parent) if parent else block, leaf, fake)
        return model, tokenizer

    def check_loaded(self, model, cfg):
        if {type(m).__name__ for b in decoder_blocks(model) for m in linear_layers(b).values()} != {"FakeInt8Linear"}:
            raise ConfigError(f"method={cfg.method!r} quantises while loading; use load_or_compress")

    def measure(self, model, cfg):
        return {"sparsity": measure_sparsity(model), "numerics": "fakelib int8 kernels",
                "quant": {"scheme": cfg.method, "bits": cfg.bits},
                "size": measure_size(model, lambda layer: layer.out_features * (layer.in_features * 8 + 32),
                                     "int8 codes + fp32 scale per row")}


LOADER = FakeLoader()


@pytest.fixture()
def fake_int8():
    row = methods.register(methods.Method("fake_int8", "load-time", bits=(8,), loader=f"{__name__}:LOADER",
                                          description="test only"))
    LOADER.calls.clear()
    LOADER.supported = True
    try:
        yield row.name
    finally:
        del methods.METHODS[row.name]
        COMPRESSORS.pop(row.name, None)


def test_every_family_in_the_table_has_a_strategy():
    for m in methods.METHODS.values():
        family = family_of(m.name)
        assert all(callable(getattr(family, step)) for step in ("load", "validate", "apply", "measure"))


def test_a_load_time_method_registered_in_the_table_runs_the_load_time_path(fake_int8, tiny_model_dir, tmp_path):
    cfg = CompressConfig(method=fake_int8)
    assert cfg.bits == 8 and cfg.slug == "fake_int8-w8"
    model, _, report = cache.load_or_compress(ModelConfig(model=str(tiny_model_dir), device="cpu"), cfg,
                                              cache_dir=tmp_path, progress=False)
    assert LOADER.calls == [("check_supported", "cpu"), ("load", "torch.float32")]  # hardware first
    assert {type(m).__name__ for b in decoder_blocks(model) for m in linear_layers(b).values()} == {"FakeInt8Linear"}
    assert report.numerics == "fakelib int8 kernels" and not report.cached and report.fingerprint
    assert report.cache_note == "not cached: fakelib quantises while loading (seconds); nothing is written to the cache"
    assert not cache.cache_root(tmp_path).exists()
    assert list(report.times) == [f"compress/{fake_int8}_load", "compress/measure"]
    shapes = [(m.out_features, m.in_features) for b in decoder_blocks(model) for m in linear_layers(b).values()]
    want = sum(o * (i * 8 + 32) for o, i in shapes) / sum(o * i for o, i in shapes)
    assert report.size["decoder_linears"]["bits_per_weight"] == report.quant["bits_per_weight"] == want
    assert report.layers == {} and report.calibration is None


def test_a_load_time_method_checks_the_hardware_before_loading(fake_int8, tmp_path):
    LOADER.supported = False
    with pytest.raises(HardwareError, match="fake accelerator"):  # the missing model is never reached
        cache.load_or_compress(ModelConfig(model=str(tmp_path / "missing")), CompressConfig(method=fake_int8))
    assert [c[0] for c in LOADER.calls] == ["check_supported"]


def test_compress_on_a_model_not_loaded_by_the_loader_is_refused(fake_int8):
    with pytest.raises(ConfigError, match="quantises while loading"):
        compress(tiny_model("llama"), tiny_tokenizer(), CompressConfig(method=fake_int8))
