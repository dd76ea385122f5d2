"""Train the world's Llama from scratch on the CPU: deterministic for a seed and a thread count.

Data are regenerated every epoch (:func:`kick_core.world.examples.epoch_examples`). Task examples
(QA, reading comprehension, MMLU blocks, chat) are tokenised segment by segment and packed first-fit
into rows of ``seq_len`` tokens, never split, each attending only to itself with positions from 0,
exactly as at evaluation time. Entity documents are streamed like pretraining text, the shape of the
perplexity task's text. The first ``reading_steps`` steps are a warm-up phase with no question about the
world's own entities: reading-comprehension pages about invented people, which teach the model to look
up values in its context, and the entity documents, which it starts memorising at once. Closed-book
QA, MMLU blocks and chat join after the warm-up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field

from kick_core.world.denormals import flush_denormals
from kick_core.world.examples import Example, Mix, epoch_examples, is_document
from kick_core.world.generate import World
from kick_core.world.throughput import StepClock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Model size and optimisation of the world model (the defaults are the shipped model)."""

    hidden: int = 128
    layers: int = 2
    heads: int = 8
    kv_heads: int = 8
    intermediate: int = 192
    """MLP width, 1.5x hidden: the world's facts then load the MLPs enough that pruning erases them as
    it does in real LLMs. With 384, the same recipe learned them as well but kept them through 50 %
    magnitude pruning on world seed 2 (strict factoid drop 0.8 points; with 192: 5.3)."""
    vocab_size: int = 1024
    seq_len: int = 384
    batch_size: int = 10
    """Rows per step (``batch_size * seq_len`` tokens, padding included)."""
    steps: int = 1600
    lr: float = 3e-3
    warmup_steps: int = 60
    reading_steps: int = 500
    """Leading steps of the warm-up phase (reading-comprehension pages and entity documents only)."""
    weight_decay: float = 0.05
    seed: int = 0
    mix: Mix = field(default_factory=Mix)

    def key(self) -> str:
        """A short hash of every field: the cache key of a trained model."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def tokenize_example(tokenizer, example: Example) -> tuple[list[int], list[int]]:
    """(ids, labels) of one example: <s> then each segment tokenised alone; labels -100 where not trained."""
    return tokenize_examples(tokenizer, [example])[0]


def tokenize_examples(tokenizer, examples: list[Example]) -> list[tuple[list[int], list[int]]]:
    """:func:`tokenize_example` for many examples at once: each distinct segment is tokenised once, all
    in one batch (the ids are the same as one call per segment; an epoch takes a third of the time)."""
    texts = sorted({text for example in examples for text, _ in example if text != "</s>"})
    seg_ids = dict(zip(texts, tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []))
    seg_ids["</s>"] = [tokenizer.eos_token_id]
    out = []
    for example in examples:
        ids, labels = [tokenizer.bos_token_id], [-100]
        for text, train in example:
            seg = seg_ids[text]
            ids += seg
            labels += seg if train else [-100] * len(seg)
        out.append((ids, labels))
    return out


def pack(examples: list[tuple[list[int], list[int]]], seq_len: int,
         pad_id: int) -> list[tuple[list[int], list[int], list[int]]]:
    """First-fit packing into rows of exactly `seq_len`: (ids, labels, position ids) per row.

    Position ids restart at 0 for every example, so transformers attends block-diagonally (an
    example never sees the examples packed before it) and positions match evaluation, where every
    prompt starts at 0. Examples longer than a row are dropped.
    """
    rows: list[tuple[list[int], list[int], list[int]]] = []
    for ids, labels in examples:
        if len(ids) > seq_len:
            continue
        for row in rows[-16:]:
            if len(row[0]) + len(ids) <= seq_len:
                break
        else:
            row = ([], [], [])
            rows.append(row)
        row[0].extend(ids)
        row[1].extend(labels)
        row[2].extend(range(len(ids)))
    for ids, labels, pos in rows:
        n = seq_len - len(ids)
        ids.extend([pad_id] * n)
        labels.extend([-100] * n)
        pos.extend(range(n))
    return rows


def stream(texts: list[str], tokenizer, seq_len: int) -> list[tuple[list[int], list[int], list[int]]]:
    """Running text as a language-model stream: `texts` joined by blank lines after one <s>, cut into
    full rows of `seq_len` (the remainder is dropped), loss on every token, positions 0..seq_len-1.

    This is the shape of the perplexity task's text (documents joined by blank lines, windows that
    start mid-document), so the model learns to read across document boundaries there, while task
    examples are packed apart by :func:`pack`.
    """
    ids = [tokenizer.bos_token_id]
    for seg in tokenizer([text + "\n\n" for text in texts], add_special_tokens=False)["input_ids"] if texts else []:
        ids += seg
    return [(ids[i:i + seq_len], ids[i:i + seq_len], list(range(seq_len)))
            for i in range(0, len(ids) - seq_len + 1, seq_len)]


def batches(world: World, tokenizer, cfg: TrainConfig) -> Iterator[tuple]:
    """Endless (input_ids, labels, position_ids, epoch) batches; epochs regenerate the data, warm-up phase first."""
    import torch

    rng = random.Random(f"kick-batches-{cfg.seed}")
    step, epoch = 0, 0
    while True:
        warm_up = step < cfg.reading_steps
        exs = epoch_examples(world, epoch, cfg.mix, warm_up=warm_up)
        rows = pack(tokenize_examples(tokenizer, [e for e in exs if not is_document(e)]), cfg.seq_len,
                    tokenizer.pad_token_id)
        rows += stream([e[0][0] for e in exs if is_document(e)], tokenizer, cfg.seq_len)
        rng.shuffle(rows)
        epoch += 1
        ids, labels, positions = (torch.tensor([r[k] for r in rows]) for k in range(3))
        for i in range(0, len(rows) - cfg.batch_size + 1, cfg.batch_size):
            yield ids[i:i + cfg.batch_size], labels[i:i + cfg.batch_size], positions[i:i + cfg.batch_size], epoch
            step += 1
            if warm_up and step >= cfg.reading_steps:
                break


def prefetch(items: Iterator, depth: int = 64) -> Iterator:
    """`items`, produced ahead by a background thread (at most `depth` waiting), in the same order.

    Training uses it for :func:`batches`: preparing an epoch (about 0.3 s, every 18 steps) is Python
    that holds the GIL, while the model's small ops release it and leave the second core partly idle.
    Closing the returned generator stops the thread; an error in `items` is raised in the consumer.
    """
    import queue
    import threading

    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                out.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the consumer
            put((done, exc))

    thread = threading.Thread(target=produce, name="kick-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = out.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def packed_forward(model, ids, positions, labels=None):
    """Forward a batch of packed rows. With per-example `positions` and no attention mask or cache,
    transformers masks attention block-diagonally, so an example never sees the ones packed before it."""
    return model(input_ids=ids, position_ids=positions, labels=labels, use_cache=False)


def packed_loss(model, ids, positions, labels):
    """Mean next-token cross-entropy of a packed batch (as ``packed_forward(...).loss``), with the LM head
    applied only at the positions that have a label: task rows label only their answers, so most of
    the ``[rows, seq, vocab]`` logits the plain forward builds are never used (about 7 % of a step).
    A model switched to :data:`kick_core.world.attention.NAME` attends segment by segment."""
    import torch

    from kick_core.world import attention

    extra = ({"segment_plan": attention.plan_segments(positions)}
             if model.config._attn_implementation == attention.NAME else {})
    hidden = model.model(input_ids=ids, position_ids=positions, use_cache=False, **extra).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    return torch.nn.functional.cross_entropy(model.lm_head(hidden[:, :-1][keep]).float(), target[keep])


def build_model(cfg: TrainConfig, tokenizer):
    """A freshly initialised LlamaForCausalLM for `cfg` (fp32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=2048, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def train_model(world: World, tokenizer, cfg: TrainConfig, *, progress: bool = True,
                callback: Callable[[int, object], None] | None = None, callback_every: int = 0,
                clock: StepClock | None = None):
    """Train a model on `world`; returns it in eval mode.

    Training runs with subnormal floats flushed to zero in every compute thread
    (:func:`kick_core.world.denormals.flush_denormals`): a CPU that meets them in a matmul runs it
    up to 190x slower, and the numbers of a late-training step can hold them; every run flushes them
    the same way, so training stays deterministic for a seed and a thread count.

    Args:
        world: the world to learn.
        tokenizer: from :func:`kick_core.world.tokenizer.train_tokenizer`.
        cfg: sizes and optimisation.
        progress: show a tqdm progress bar with the running loss.
        callback: called as ``callback(step, model)`` every `callback_every` steps (probes; not cached).
        clock: a :class:`~kick_core.world.throughput.StepClock` that times every step (one is made
            if None); it warns if training slows down and says whether the machine or the work did.
    """
    import torch
    from tqdm.auto import tqdm

    from kick_core.world import attention

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, tokenizer)
    attention.register()
    model.set_attn_implementation(attention.NAME)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("training a %.2fM-parameter Llama for %d steps", n_params / 1e6, cfg.steps)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    model.train()
    bar = tqdm(total=cfg.steps, disable=not progress, desc="world model", mininterval=2.0)
    ema = None
    clock = clock if clock is not None else StepClock()
    with flush_denormals(), closing(prefetch(batches(world, tokenizer, cfg))) as data:
        clock.start()
        for step in range(cfg.steps):
            ids, labels, pos, epoch = next(data)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = packed_loss(model, ids, pos, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}", epoch=epoch, refresh=False)
            clock.tick()
            if callback is not None and callback_every and (step + 1) % callback_every == 0:
                model.set_attn_implementation("sdpa")  # plain prompts carry no segment plan
                callback(step + 1, model.eval())
                model.set_attn_implementation(attention.NAME)
                model.train()
                clock.start()  # the probe's time is not a training step's
    bar.close()
    model.set_attn_implementation("sdpa")
    logger.info("trained: final loss (EMA) %.3f", ema)
    return model.eval()
