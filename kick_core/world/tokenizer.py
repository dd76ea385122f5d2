"""A byte-level BPE tokenizer trained on the world's training text, saved in Hugging Face format."""

from __future__ import annotations

import logging
from collections.abc import Iterable

logger = logging.getLogger(__name__)

SPECIAL = ("<s>", "</s>", "<pad>", "<unk>")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """A `PreTrainedTokenizerFast` (bos <s>, eos </s>, pad <pad>, unk <unk>; ids 0-3) that prepends <s>.

    Args:
        texts: training text (never text about unseen entities).
        vocab_size: BPE vocabulary size, special tokens included.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", padding_side="left")
    logger.info("trained a %d-token BPE tokenizer", len(fast))
    return fast
