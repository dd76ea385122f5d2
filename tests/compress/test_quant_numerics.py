"""RTN, GPTQ and AWQ numerics on literal and random tensors (CPU, milliseconds)."""

from __future__ import annotations

import pytest
import torch

from kick_core.compress import awq, gptq, rtn


def _correlated_inputs(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g) / d**0.5
    return torch.randn(n, d, generator=g) @ A + 0.1 * torch.randn(n, d, generator=g)


def test_rtn_asymmetric_grid_on_a_literal_row():
    W = torch.tensor([[-1.0, 0.0, 0.5, 2.0]])
    Q, grid = rtn.quantize_weight(W, bits=2)  # range [-1, 2] in 3 steps of 1.0, zero point 1
    assert torch.allclose(grid.scale, torch.tensor([[1.0]])) and grid.zero.item() == 1
    assert Q.tolist() == [[-1.0, 0.0, 0.0, 2.0]]  # 0.5 rounds half to even -> 0


def test_rtn_symmetric_grid_centres_on_zero():
    W = torch.tensor([[-3.0, 1.0, 3.0]])
    _, grid = rtn.quantize_weight(W, bits=3, symmetric=True)
    assert grid.zero.item() == 4 and torch.isclose(grid.scale, torch.tensor([[6.0 / 7]])).all()


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [None, 16])
@pytest.mark.parametrize("symmetric", [False, True])
def test_rtn_round_trip_error_is_at_most_half_a_step_and_values_lie_on_the_grid(bits, group_size, symmetric):
    W = torch.randn(8, 64, generator=torch.Generator().manual_seed(bits))
    Q, grid = rtn.quantize_weight(W, bits, group_size, symmetric)
    scale, zero = grid.column_params(slice(0, 64))
    assert torch.all((W - Q).abs() <= scale / 2 + 1e-6)
    codes = Q / scale + zero
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.min() >= -1e-4 and codes.max() <= 2**bits - 1 + 1e-4


def test_rtn_groups_have_their_own_range():
    W = torch.cat([torch.full((1, 4), 0.01), torch.full((1, 4), 100.0)], dim=1)
    W[0, 0] = -0.01
    _, per_row = rtn.quantize_weight(W, bits=4)
    _, grouped = rtn.quantize_weight(W, bits=4, group_size=4)
    assert grouped.scale.shape == (1, 2) and per_row.scale.shape == (1, 1)
    assert grouped.scale[0, 0] < per_row.scale[0, 0] / 1000


def test_rtn_keeps_pruned_weights_exactly_zero():
    W = torch.randn(4, 16)
    mask = torch.rand(4, 16) < 0.5
    Q, _ = rtn.quantize_weight(W, 3, 8, mask=mask)
    assert torch.all(Q[mask] == 0)


@pytest.mark.parametrize("cols,group_size", [(64, 16), (60, 16), (64, None)])
@pytest.mark.parametrize("symmetric", [False, True])
def test_rtn_grid_is_each_groups_own_min_max_grid_whether_groups_divide_the_columns_or_not(cols, group_size, symmetric):
    """Groups taken as rows of one view (a short last group zero-padded) give what `find_params` gives
    on each (row, group) slice alone, and every column is snapped on its group's grid."""
    W = torch.randn(6, cols, generator=torch.Generator().manual_seed(cols))
    W[1] = 0.0  # an all-zero row
    grid = rtn.make_grid(W, 3, group_size, symmetric)
    gs = group_size or cols
    for g, c0 in enumerate(range(0, cols, gs)):
        s, z = rtn.find_params(W[:, c0:c0 + gs], 3, symmetric)
        assert torch.equal(grid.scale[:, g], s) and torch.equal(grid.zero[:, g], z)
    scale, zero = grid.column_params(slice(0, cols))
    assert torch.equal(rtn.dequantize_on_grid(W, grid), rtn.quantize(W, scale, zero, grid.maxq))


def test_storage_bits_counts_codes_scales_and_zero_points():
    assert rtn.storage_bits(4, 256, 4, 128, symmetric=False) == 4 * 256 * 4 + 4 * 2 * (16 + 4)
    assert rtn.storage_bits(4, 256, 8, None, symmetric=True) == 4 * 256 * 8 + 4 * 16


@pytest.mark.parametrize("group_size", [None, 32])
@pytest.mark.parametrize("symmetric", [False, True])
def test_gptq_with_identity_hessian_equals_rtn(group_size, symmetric):
    W = torch.randn(16, 64, generator=torch.Generator().manual_seed(1))
    Qg, _, _ = gptq.quantize_weight(W, 3.0 * torch.eye(64), bits=4, group_size=group_size, symmetric=symmetric,
                                    blocksize=32)
    Qr, _ = rtn.quantize_weight(W, 4, group_size, symmetric)
    assert torch.allclose(Qg, Qr, atol=1e-6)


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn_on_layer_reconstruction_with_correlated_inputs(act_order):
    X = _correlated_inputs(512, 64)
    W = torch.randn(32, 64, generator=torch.Generator().manual_seed(2))
    H = 2 * X.T @ X / X.shape[0]
    Qg, _, _ = gptq.quantize_weight(W, H, bits=3, group_size=16, blocksize=16, act_order=act_order)
    Qr, _ = rtn.quantize_weight(W, 3, 16)
    err = lambda Q: float(((X @ (W - Q).T) ** 2).sum())  # noqa: E731
    assert err(Qg) < 0.8 * err(Qr)


def test_gptq_output_lies_on_its_grid():
    X = _correlated_inputs(256, 32)
    W = torch.randn(8, 32)
    Q, grid, _ = gptq.quantize_weight(W, 2 * X.T @ X / 256, bits=4, group_size=8, blocksize=8)
    scale, zero = grid.column_params(slice(0, 32))
    codes = Q / scale + zero
    assert torch.allclose(codes, codes.round(), atol=1e-3)


def test_gptq_with_a_mask_keeps_it_exactly_and_compensates_elsewhere():
    X = _correlated_inputs(256, 32)
    W = torch.randn(8, 32)
    mask = torch.zeros(8, 32, dtype=torch.bool)
    mask[:, ::2] = True
    Q, _, _ = gptq.quantize_weight(W, 2 * X.T @ X / 256, bits=8, mask=mask)
    assert torch.all(Q[mask] == 0)
    naive = rtn.quantize_weight(W, 8, mask=mask)[0]
    err = lambda Q: float(((X @ (W - Q).T) ** 2).sum())  # noqa: E731
    assert err(Q) < err(naive)


def test_gptq_handles_dead_input_columns():
    X = _correlated_inputs(128, 16)
    X[:, 3] = 0
    W = torch.randn(4, 16)
    Q, _, _ = gptq.quantize_weight(W, 2 * X.T @ X / 128, bits=4)
    assert torch.isfinite(Q).all() and torch.all(Q[:, 3] == 0)


def test_awq_beats_rtn_at_4_bits_on_a_layer_with_outlier_input_channels():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(512, 128, generator=g)
    X[:, [5, 77]] *= 30.0  # outlier channels, as in real LLM activations
    W = torch.randn(64, 128, generator=g) * 0.02
    res = awq.quantize_weight(W, X, bits=4, group_size=32)
    assert res.error < 0.7 * res.rtn_error
    assert res.scales[[5, 77]].min() > res.scales.median()


def test_awq_without_outliers_is_never_worse_than_rtn():
    X = torch.randn(256, 64, generator=torch.Generator().manual_seed(4))
    W = torch.randn(16, 64, generator=torch.Generator().manual_seed(5))
    res = awq.quantize_weight(W, X, bits=4, group_size=32, clip=False)
    assert res.error <= res.rtn_error + 1e-9  # s = 1 (plain RTN) is one of the candidates
