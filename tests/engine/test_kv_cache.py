"""PreallocatedLayer holds exactly what transformers' DynamicLayer holds, step by step."""

import torch
from transformers.cache_utils import DynamicLayer

from kick_core.engine.kv_cache import PreallocatedLayer


def _assert_same(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> None:
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_updates_and_row_selection_match_dynamic_layer():
    torch.manual_seed(0)
    ref, pre = DynamicLayer(), PreallocatedLayer(capacity=3)  # the 2nd update outgrows the buffer
    for n in (2, 2, 1, 3):  # (rows, heads, new positions, head_dim)
        k, v = torch.randn(4, 2, n, 8), torch.randn(4, 2, n, 8)
        _assert_same(ref.update(k, v), pre.update(k, v))
    rows = torch.tensor([3, 1])
    ref.batch_select_indices(rows)
    pre.batch_select_indices(rows)
    k, v = torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8)
    _assert_same(ref.update(k, v), pre.update(k, v))
    assert pre.get_seq_length() == ref.get_seq_length() == 9


def test_over_a_view_writes_into_the_larger_buffer():
    keys, values = torch.zeros(3, 2, 6, 4), torch.zeros(3, 2, 6, 4)
    layer = PreallocatedLayer.over(keys[1:], values[1:], length=0)
    k = torch.ones(2, 2, 2, 4)
    out_k, _ = layer.update(k, 2 * k)
    assert out_k.shape == (2, 2, 2, 4) and layer.get_seq_length() == 2
    assert keys[1:, :, :2].eq(1).all() and values[1:, :, :2].eq(2).all() and keys[0].eq(0).all()
