"""Mask selection: comparison groups, N:M layout, the study's threshold rule (CPU, milliseconds)."""

from __future__ import annotations

import pytest
import torch

from kick_core.compress import masks
from kick_core.errors import ConfigError


def _scores(out: int = 8, cols: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(out, cols, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sparsity", [0.1, 0.3, 0.5, 0.77])
def test_matrix_threshold_prunes_index_plus_one_when_scores_are_distinct(sparsity):
    s = _scores()
    mask = masks.unstructured_mask(s, sparsity)
    k = int(s.numel() * sparsity)
    assert int(mask.sum()) == k + 1  # threshold element itself is pruned, as in the study
    assert s[mask].max() < s[~mask].min()


def test_matrix_threshold_prunes_all_ties():
    s = torch.tensor([[1.0, 1.0, 1.0, 2.0]])
    assert masks.unstructured_mask(s, 0.25).tolist() == [[True, True, True, False]]


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.6])
def test_per_row_prunes_exactly_int_in_times_ratio_per_row(sparsity):
    s = _scores(6, 20)
    mask = masks.unstructured_mask(s, sparsity, per_row=True)
    assert mask.sum(1).tolist() == [int(20 * sparsity)] * 6
    for row, m in zip(s, mask):
        assert row[m].max() < row[~m].min()


def test_per_row_sort_is_stable_on_ties():
    s = torch.zeros(1, 4)
    assert masks.unstructured_mask(s, 0.5, per_row=True).tolist() == [[True, True, False, False]]


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.7])
@pytest.mark.parametrize("levels", [3, 16, None])  # few distinct values: many ties in every row
def test_masks_equal_the_reference_sorts(sparsity, levels):
    """The sort-free selection picks exactly what the study's sorts pick, ties included."""
    g = torch.Generator().manual_seed(1)
    s = torch.randint(0, levels, (64, 96), generator=g).float() if levels else torch.rand(64, 96, generator=g)
    k = int(96 * sparsity)
    ref = torch.zeros_like(s, dtype=torch.bool).scatter_(1, torch.sort(s, dim=-1, stable=True).indices[:, :k], True)
    assert torch.equal(masks.unstructured_mask(s, sparsity, per_row=True), ref)
    threshold = torch.sort(s.flatten()).values[int(s.numel() * sparsity)]
    assert torch.equal(masks.unstructured_mask(s, sparsity), s <= threshold)


def test_sparsity_zero_prunes_nothing():
    assert not masks.unstructured_mask(_scores(), 0.0).any()
    assert not masks.unstructured_mask(_scores(), 0.0, per_row=True).any()


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 2)])
def test_nm_removes_n_lowest_of_every_m_consecutive_inputs(n, m):
    s = _scores(5, 16)
    mask = masks.nm_mask(s, n, m)
    groups = mask.reshape(5, 16 // m, m)
    assert (groups.sum(-1) == n).all()
    sg = s.reshape(5, 16 // m, m)
    assert (sg.masked_fill(~groups, -1).amax(-1) < sg.masked_fill(groups, 2).amin(-1)).all()


def test_nm_worked_example_from_the_docstring():
    s = torch.tensor([[5.0, 1, 7, 2, 0, 9, 3, 8]])
    assert masks.nm_mask(s, 2, 4).int().tolist() == [[0, 1, 0, 1, 1, 0, 1, 0]]


def test_nm_overrides_sparsity():
    mask = masks.select_mask(_scores(4, 8), 0.0, (2, 4))
    assert int(mask.sum()) == 16


def test_nm_rejects_inputs_not_divisible_by_m():
    with pytest.raises(ConfigError, match="divisible by 8"):
        masks.nm_mask(_scores(4, 12), 4, 8)


def test_bad_sparsity_is_a_config_error():
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        masks.unstructured_mask(_scores(), 1.0)
