"""Segment-by-segment attention of packed training rows equals transformers' masked full-row attention."""

from __future__ import annotations

import threading

import pytest
import torch

from kick_core.world import attention
from kick_core.world.train import TrainConfig, build_model, pack, packed_loss, prefetch


class Tok:  # build_model reads only these
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __len__(self):
        return 60


def _batch(seq: int = 96):
    """Two packed rows (examples of 5-40 tokens, padding, answers labelled) and one stream row."""
    g = torch.Generator().manual_seed(0)
    examples = []
    for n in (5, 40, 17, 33, 9, 12, 28, 3):
        ids = [1] + torch.randint(3, 60, (n - 1,), generator=g).tolist()
        examples.append((ids, [-100] * (n // 2) + ids[n // 2:]))
    rows = pack(examples, seq, 0)
    stream = torch.randint(3, 60, (seq,), generator=g).tolist()
    rows.append((stream, stream, list(range(seq))))
    assert len(rows) == 3
    return tuple(torch.tensor([r[k] for r in rows]) for k in range(3))


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_segment_attention_gives_the_masked_attention_loss_and_gradients(kv_heads):
    ids, labels, pos = _batch()
    cfg = TrainConfig(hidden=32, layers=2, heads=4, kv_heads=kv_heads, intermediate=48)
    torch.manual_seed(0)
    model = build_model(cfg, Tok())
    attention.register()
    results = []
    for impl in ("sdpa", attention.NAME):
        model.set_attn_implementation(impl)
        model.zero_grad(set_to_none=True)
        loss = packed_loss(model, ids, pos, labels)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_b == pytest.approx(loss_a, abs=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_a, grads_b))


def test_plan_covers_every_token_once_and_puts_it_back():
    _, _, pos = _batch()
    plan = attention.plan_segments(pos, bucket=16)
    real = torch.cat([index.reshape(-1)[keep] for index, keep in plan.groups])
    assert sorted(real.tolist()) == list(range(pos.numel()))
    assert torch.equal(real[plan.inverse], torch.arange(pos.numel()))
    for index, _ in plan.groups:
        assert index.shape[1] % 16 == 0
        flat_pos = pos.reshape(-1)[index]
        assert (flat_pos[:, 0] == 0).all()  # every group row is one segment, from its start


def test_prefetch_keeps_order_stops_early_and_raises_errors():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))

    def endless():
        i = 0
        while True:
            yield i
            i += 1

    items = prefetch(endless(), depth=2)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()  # stops the producer thread (it would otherwise run forever)
    assert not [t for t in threading.enumerate() if t.name == "kick-prefetch"]

    def broken():
        yield 1
        raise ValueError("epoch 2 failed")

    items = prefetch(broken())
    assert next(items) == 1
    with pytest.raises(ValueError, match="epoch 2 failed"):
        next(items)
