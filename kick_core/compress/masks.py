"""Pruning masks from score matrices: pure functions on tensors, shared by every pruning method.

A *mask* is a boolean tensor shaped like the weight, ``True`` = pruned (set to zero). Every method
computes a score per weight (|W| for magnitude, |W|·‖X_j‖ for Wanda, w²/d² for SparseGPT) and
asks for the lowest-scoring entries here, so the comparison groups live in one place:

* :func:`unstructured_mask` with ``per_row=False`` — one group for the whole matrix (or SparseGPT's
  column block). As the study's ``prune_magnitude`` and ``SparseGPT.fasterprune``: the threshold is
  the sorted score at index ``int(numel * sparsity)`` (``kthvalue``, no sort) and every score ``<=`` it is pruned, so
  ``int(numel * sparsity) + 1`` entries go when scores are distinct (ties add more).
* :func:`unstructured_mask` with ``per_row=True`` — one group per output row. As Wanda's
  ``prune_wanda``: exactly ``int(in_features * sparsity)`` pruned per row, the first ones of a
  *stable* sort (ties go left to right), found with ``kthvalue`` instead of a sort.
* :func:`nm_mask` — N:M along the input dimension. Worked example for ``2:4`` (N=2 *removed* of
  every M=4) on a row of 8 inputs: groups are columns 0-3 and 4-7 (starting at multiples of M), and
  the 2 lowest scores of each group are pruned::

      scores  [5 1 7 2 | 0 9 3 8]
      mask    [. X . X | X . X .]     -> 50% sparsity, exactly N zeros per group

Shapes: scores are (out_features, in_features).
"""

from __future__ import annotations

import torch

from kick_core.errors import ConfigError


def unstructured_mask(scores: torch.Tensor, sparsity: float, per_row: bool = False) -> torch.Tensor:
    """Mask of the lowest-scoring fraction `sparsity` of `scores`, over the matrix or per row.

    Args:
        scores: (out, in) importance scores; lower = pruned first.
        sparsity: fraction in [0, 1); 0 prunes nothing.
        per_row: rank within each output row (Wanda) instead of over the whole matrix (magnitude).

    Returns:
        Boolean (out, in) mask, True = prune.
    """
    if not 0 <= sparsity < 1:
        raise ConfigError(f"sparsity={sparsity!r} must be in [0, 1).")
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if sparsity == 0:
        return mask
    if per_row:
        k = int(scores.shape[1] * sparsity)
        return _lowest_k_per_row(scores, k) if k else mask
    flat = scores.flatten()
    threshold = torch.kthvalue(flat, int(flat.numel() * sparsity) + 1).values  # = sort(flat)[int(numel * sparsity)]
    return scores <= threshold


def _lowest_k_per_row(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The first k entries of each row in a *stable* ascending sort, without sorting.

    Every score below the row's k-th smallest value is in; of the scores equal to it, the leftmost
    ones fill the rest, as a stable sort orders ties by position. O(in) per row instead of a sort.
    """
    t = torch.kthvalue(scores, k, dim=1, keepdim=True).values  # (out, 1): the k-th smallest per row
    below = scores < t
    tied = scores == t
    room = k - below.sum(dim=1, keepdim=True)  # tied entries still to take, >= 1
    return below | (tied & (tied.cumsum(dim=1) <= room))


def check_nm(in_features: int, n: int, m: int, name: str = "matrix") -> None:
    """Raise a ConfigError unless `in_features` splits into whole groups of `m`."""
    if not 0 < n < m:
        raise ConfigError(f"N:M needs 0 < N < M, got {n}:{m}.")
    if in_features % m:
        raise ConfigError(
            f"structure '{n}:{m}' needs in_features divisible by {m}, but {name} has {in_features} inputs. "
            f"Fix: use an M that divides {in_features} (e.g. '1:2' or '2:4'), or unstructured sparsity."
        )


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Mask removing the `n` lowest scores in every group of `m` consecutive inputs of each row.

    Args:
        scores: (out, in) with ``in % m == 0``.

    Returns:
        Boolean (out, in) mask, True = prune; exactly n per group.
    """
    out, cols = scores.shape
    check_nm(cols, n, m)
    groups = scores.reshape(out, cols // m, m)  # (out, groups, m)
    idx = torch.topk(groups, n, dim=-1, largest=False).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, idx, True)
    return mask.reshape(out, cols)


def select_mask(scores: torch.Tensor, sparsity: float, nm: tuple[int, int] | None,
                per_row: bool = False) -> torch.Tensor:
    """N:M mask when `nm` is given (whatever `sparsity` says), else the unstructured one."""
    if nm is not None:
        return nm_mask(scores, *nm)
    return unstructured_mask(scores, sparsity, per_row)


def apply_mask(W: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A copy of W with the masked entries set to zero."""
    return W.masked_fill(mask, 0.0)
