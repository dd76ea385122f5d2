"""Tiny random models and a tiny tokenizer, built from configs with no download.

Used by the tests, the benchmarks and the smoke params: ``save_tiny_model(dir, 'llama')`` writes a
Hugging Face model directory that ``kick_core.models.load_model`` loads by path like any hub model.
"""

from __future__ import annotations

from pathlib import Path

import torch

FAMILIES = ("llama", "opt", "gpt_neox", "gpt2", "qwen2", "mistral")

_TEXT = (
    "the quick brown fox jumps over the lazy dog . a model that is pruned forgets facts . "
    "question : what is the capital of france ? answer : paris . the answer is yes . "
    "A B C D 0 1 2 3 4 5 6 7 8 9 , ; : ! ? \n"
)


def tiny_tokenizer(vocab_size: int = 256):
    """A byte-level BPE PreTrainedTokenizerFast with <s>, </s>, <pad>, <unk> (ids 0-3)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>", "<pad>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_TEXT] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_config(family: str, vocab_size: int, hidden: int = 32, layers: int = 2, heads: int = 4):
    """A transformers config for a tiny model of `family`."""
    from transformers import AutoConfig

    common = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    if family in ("llama", "qwen2", "mistral"):
        return AutoConfig.for_model(family, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                                    num_attention_heads=heads, num_key_value_heads=heads // 2,
                                    max_position_embeddings=4096, **common)  # RoPE: long context costs nothing
    if family == "opt":
        return AutoConfig.for_model("opt", hidden_size=hidden, ffn_dim=2 * hidden, num_hidden_layers=layers,
                                    num_attention_heads=heads, max_position_embeddings=512,
                                    word_embed_proj_dim=hidden, **common)
    if family == "gpt_neox":
        return AutoConfig.for_model("gpt_neox", hidden_size=hidden, intermediate_size=2 * hidden,
                                    num_hidden_layers=layers, num_attention_heads=heads,
                                    max_position_embeddings=512, **common)
    if family == "gpt2":
        return AutoConfig.for_model("gpt2", n_embd=hidden, n_layer=layers, n_head=heads, n_positions=512, **common)
    raise ValueError(f"unknown family {family!r}; use one of {FAMILIES}")


def tiny_model(family: str = "llama", *, vocab_size: int = 256, seed: int = 0, **kwargs):
    """A randomly initialised tiny causal LM of `family` (fp32, eval mode)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, vocab_size, **kwargs))
    return model.eval()


def save_tiny_model(directory: str | Path, family: str = "llama", *, seed: int = 0, **kwargs) -> Path:
    """Save a tiny `family` model plus the tiny tokenizer to `directory`; returns the path."""
    directory = Path(directory)
    tokenizer = tiny_tokenizer()
    model = tiny_model(family, vocab_size=len(tokenizer), seed=seed, **kwargs)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
