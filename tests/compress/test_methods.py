"""Magnitude, Wanda and SparseGPT on single layers: properties and oracles (CPU, well under a second)."""

from __future__ import annotations

import pytest
import torch

from kick_core.compress import magnitude, sparsegpt, wanda
from kick_core.compress.calib_stats import HessianStats, InputNormStats, relative_output_error


def _weight(out: int = 16, cols: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(out, cols, generator=torch.Generator().manual_seed(seed))


def _correlated_inputs(n: int, d: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g) / d**0.5
    scale = torch.linspace(0.2, 3.0, d)[torch.randperm(d, generator=g)]  # uneven feature scales, as real activations
    return (torch.randn(n, d, generator=g) @ A + 0.1 * torch.randn(n, d, generator=g)) * scale


def _hessian(X: torch.Tensor) -> torch.Tensor:
    stats = HessianStats(X.shape[1])
    stats.add_batch(X.unsqueeze(0))
    return stats.H


def _zeros(W: torch.Tensor) -> torch.Tensor:
    return W == 0


# -- magnitude -------------------------------------------------------------------------------------
@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.7])
def test_magnitude_matrix_hits_target_per_matrix(sparsity):
    W = _weight()
    out = magnitude.prune_weight(W, sparsity)
    assert int(_zeros(out).sum()) == int(W.numel() * sparsity) + 1
    assert torch.equal(out[~_zeros(out)], W[~_zeros(out)])  # kept weights untouched


def test_magnitude_row_scope_hits_target_per_row():
    out = magnitude.prune_weight(_weight(), 0.5, per_row=True)
    assert _zeros(out).sum(1).tolist() == [16] * 16


@pytest.mark.parametrize("nm", [(2, 4), (4, 8), (1, 2)])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_every_nm_group_has_at_least_n_zeros(method, nm):
    W, X = _weight(), _correlated_inputs(64, 32)
    if method == "magnitude":
        out = magnitude.prune_weight(W, 0.0, nm)
    elif method == "wanda":
        out = wanda.prune_weight(W, (X * X).sum(0), 0.0, nm)
    else:
        out, _ = sparsegpt.prune_weight(W, _hessian(X), 0.0, nm, blocksize=16)
    n, m = nm
    assert (_zeros(out).reshape(16, 32 // m, m).sum(-1) >= n).all()


def test_magnitude_repruning_at_same_sparsity_changes_nothing():
    once = magnitude.prune_weight(_weight(), 0.6)
    assert torch.equal(magnitude.prune_weight(once, 0.6), once)
    once_nm = magnitude.prune_weight(_weight(), 0.0, (2, 4))
    assert torch.equal(magnitude.prune_weight(once_nm, 0.0, (2, 4)), once_nm)


# -- wanda -----------------------------------------------------------------------------------------
def test_wanda_hits_target_per_row():
    out = wanda.prune_weight(_weight(), torch.rand(32) + 0.1, 0.5)
    assert _zeros(out).sum(1).tolist() == [16] * 16


def test_wanda_with_equal_input_norms_is_per_row_magnitude():
    W = _weight()
    assert torch.equal(wanda.prune_weight(W, torch.full((32,), 3.7), 0.5),
                       magnitude.prune_weight(W, 0.5, per_row=True))


def test_wanda_statistic_is_running_mean_over_sequences_of_squared_norms():
    X = torch.randn(3, 5, 4)  # 3 sequences, 5 tokens, 4 features
    stats = InputNormStats(4)
    stats.add_batch(X[:1])
    stats.add_batch(X[1:])
    assert torch.allclose(stats.norm_sq, (X**2).sum(1).mean(0), atol=1e-6)
    H = HessianStats(4)
    H.add_batch(X[:2])
    H.add_batch(X[2:])
    assert torch.allclose(torch.diag(H.H) / 2, stats.norm_sq, atol=1e-5)


def test_wanda_score_ranks_by_weight_times_input_norm():
    W = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    out = wanda.prune_weight(W, torch.tensor([4.0, 1.0, 9.0, 0.25]), 0.5)
    assert out.tolist() == [[1.0, 0.0, 1.0, 0.0]]


# -- sparsegpt -------------------------------------------------------------------------------------
@pytest.mark.parametrize("sparsity", [0.3, 0.5])
def test_sparsegpt_with_identity_hessian_is_magnitude_and_keeps_weights(sparsity):
    W = _weight()
    H = 2.5 * torch.eye(32)
    out, _ = sparsegpt.prune_weight(W, H, sparsity, blocksize=128)
    ref = magnitude.prune_weight(W, sparsity)
    assert torch.equal(_zeros(out), _zeros(ref))
    assert torch.equal(out, ref)  # kept weights unchanged: no error propagates with a diagonal Hinv


def test_sparsegpt_hits_target_per_column_block():
    W, X = _weight(16, 64), _correlated_inputs(256, 64)
    out, loss = sparsegpt.prune_weight(W, _hessian(X), 0.5, blocksize=16)
    per_block = _zeros(out).reshape(16, 4, 16).sum((0, 2))
    assert per_block.tolist() == [int(16 * 16 * 0.5) + 1] * 4 and loss > 0


def test_sparsegpt_dead_inputs_are_zeroed():
    W, X = _weight(), _correlated_inputs(128, 32)
    X[:, 5] = 0
    out, _ = sparsegpt.prune_weight(W, _hessian(X), 0.2)
    assert (out[:, 5] == 0).all()


@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_sparsegpt_reconstructs_better_than_wanda_and_magnitude(sparsity):
    W, X = _weight(32, 64), _correlated_inputs(512, 64)
    H = _hessian(X)
    err = {
        "magnitude": relative_output_error(W, magnitude.prune_weight(W, sparsity), H),
        "wanda": relative_output_error(W, wanda.prune_weight(W, (X * X).sum(0), sparsity), H),
        "sparsegpt": relative_output_error(W, sparsegpt.prune_weight(W, H, sparsity)[0], H),
    }
    direct = float(((X @ (W - sparsegpt.prune_weight(W, H, sparsity)[0]).T) ** 2).sum()
                   / ((X @ W.T) ** 2).sum())
    assert err["sparsegpt"] == pytest.approx(direct, rel=1e-3)  # the Hessian form is the real output error
    assert err["sparsegpt"] < err["wanda"] and err["sparsegpt"] < err["magnitude"]


def test_sparsegpt_rejects_blocksize_not_multiple_of_m():
    from kick_core.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of M=8"):
        sparsegpt.prune_weight(_weight(), torch.eye(32), 0.0, (4, 8), blocksize=12)
