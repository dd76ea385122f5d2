"""Model loading by path and the structural accessors, on tiny models of every family."""

from __future__ import annotations

import pytest
import torch

from kick_core.config import CompressConfig, ModelConfig
from kick_core.errors import ConfigError
from kick_core.models import (
    VICUNA_V1_1_SYSTEM,
    compression_scope,
    decoder_blocks,
    decoder_blocks_path,
    fingerprint,
    format_chat,
    linear_layers,
    load_model,
    model_device,
    set_weight,
    weight_view,
)

EXPECTED = {
    "llama": ("model.layers", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}),
    "opt": ("model.decoder.layers", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                     "self_attn.out_proj", "fc1", "fc2"}),
    "gpt_neox": ("gpt_neox.layers", {"attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h",
                                     "mlp.dense_4h_to_h"}),
    "gpt2": ("transformer.h", {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}),
    "qwen2": ("model.layers", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}),
}


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_tiny_model_loads_by_path_and_exposes_blocks_and_linears(family, tiny_model_dirs):
    model, tok = load_model(ModelConfig(model=str(tiny_model_dirs[family]), device="cpu"))
    path, names = EXPECTED[family]
    assert decoder_blocks_path(model) == path
    assert len(decoder_blocks(model)) == 2
    assert set(linear_layers(decoder_blocks(model)[0])) == names
    assert model_device(model) == torch.device("cpu") and not model.training
    ids = tok("the answer is", return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] == model.config.vocab_size


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_scope_excludes_embeddings_norms_and_lm_head(family, tiny_model_dirs):
    model, _ = load_model(str(tiny_model_dirs[family]))
    scope = compression_scope(model)
    assert len(scope) == 2 * len(EXPECTED[family][1])
    assert not any(s in name for name in scope for s in ("embed", "lm_head", "wte", "norm", "ln_"))


def test_weight_view_is_out_by_in_and_shares_storage_for_gpt2_conv1d(tiny_model_dirs):
    model, _ = load_model(str(tiny_model_dirs["gpt2"]))
    fc = linear_layers(decoder_blocks(model)[0])["mlp.c_fc"]  # Conv1D, weight stored (in, out)
    W = weight_view(fc)
    assert W.shape == (fc.nf, fc.weight.shape[0])
    W[0, 1] = 0.0
    assert fc.weight[1, 0] == 0.0
    set_weight(fc, torch.ones_like(W))
    assert torch.all(fc.weight == 1)


def test_dtype_is_applied_at_load(tiny_model_dir):
    model, _ = load_model(str(tiny_model_dir), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_if_native_loads_bf16_only_where_the_cpu_computes_it(tiny_model_dir, monkeypatch, native):
    """An AVX2 CPU emulates bf16 (5-8x slower than fp32): there the dtype resolves to float32."""
    import kick_core.models as M

    monkeypatch.setattr(M, "native_bf16", lambda device: native)
    model, _ = load_model(str(tiny_model_dir), dtype="bfloat16_if_native")
    want = torch.bfloat16 if native else torch.float32
    assert next(model.parameters()).dtype == want
    cfg = ModelConfig(model=str(tiny_model_dir), dtype="bfloat16_if_native")
    assert M.concrete_dtype(cfg).dtype == str(want).removeprefix("torch.")
    # caches are keyed by the weights' real dtype, so both spellings share one entry
    concrete = ModelConfig(model=cfg.model, dtype=str(want).removeprefix("torch."))
    assert fingerprint(cfg) == fingerprint(concrete)
    assert M.concrete_dtype(concrete) is concrete  # explicit dtypes are never touched


def test_native_bf16_asks_the_device():
    from kick_core.models import native_bf16

    assert native_bf16(torch.device("cpu")) in (True, False)
    assert native_bf16(torch.device("meta")) is False  # anything but a CPU or CUDA: float32


def test_pad_token_is_set(tiny_model_dir):
    _, tok = load_model(str(tiny_model_dir))
    assert tok.pad_token is not None


def test_a_local_path_without_config_json_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        load_model(str(tmp_path))


def test_a_missing_local_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(str(tmp_path / "missing"))


def test_pickled_bin_weights_load_with_weights_only(tiny_model_dir, tmp_path):
    """A checkpoint saved as pytorch_model.bin (not safetensors) still loads (torch.load weights_only)."""
    model, tok = load_model(str(tiny_model_dir))
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    model.config.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again, _ = load_model(str(tmp_path))
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n


def test_fingerprint_depends_on_weights_dtype_and_compression(tiny_model_dirs):
    a = ModelConfig(model=str(tiny_model_dirs["llama"]))
    assert fingerprint(a) == fingerprint(a)
    assert fingerprint(a) != fingerprint(ModelConfig(model=str(tiny_model_dirs["opt"])))
    assert fingerprint(a) != fingerprint(ModelConfig(model=a.model, dtype="float16"))
    assert fingerprint(a) != fingerprint(a, CompressConfig(method="magnitude", sparsity=0.5))
    hub = ModelConfig(model="lmsys/vicuna-7b-v1.3", revision="abc")
    assert fingerprint(hub) != fingerprint(ModelConfig(model="lmsys/vicuna-7b-v1.3"))


def test_vicuna_v1_1_template_matches_fastchat():
    got = format_chat(None, ["Hi", "More?"], ["Hello"], template="vicuna_v1.1")
    assert got == f"{VICUNA_V1_1_SYSTEM} USER: Hi ASSISTANT: Hello</s>USER: More? ASSISTANT:"


def test_auto_template_uses_the_tokenizers_chat_template(tiny_model_dir):
    _, tok = load_model(str(tiny_model_dir))
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    assert format_chat(tok, ["q1", "q2"], ["a1"]) == "<user>q1<assistant>a1<user>q2<assistant>"


def test_auto_template_falls_back_to_vicuna(tiny_model_dir):
    _, tok = load_model(str(tiny_model_dir))
    tok.chat_template = None
    assert format_chat(tok, ["q"]).endswith("USER: q ASSISTANT:")


def test_reply_count_must_match_turns():
    with pytest.raises(ValueError, match="one reply fewer"):
        format_chat(None, ["a"], ["b"], template="vicuna_v1.1")
