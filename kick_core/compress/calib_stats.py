"""Per-linear calibration statistics, accumulated batch by batch from forward hooks.

Each collector follows the reference code's life cycle: ``add_batch(x)`` with the layer's input
(any shape ``(..., in_features)``; the leading dimension counts as the number of sequences, as in
the reference), then the solver reads the statistic, then the driver drops the collector.

* :class:`InputNormStats` — Wanda's ``scaler_row``: the running mean over sequences of each input
  feature's squared L2 norm over tokens (wanda ``lib/layerwrapper.py::WrappedGPT.add_batch``).
* :class:`HessianStats` — H = (2/n) Σ X Xᵀ over sequences, the layer-wise OBS Hessian shared by
  SparseGPT and GPTQ (sparsegpt ``SparseGPT.add_batch``). With it the relative output error of a
  new weight on the calibration inputs is exact: ‖(W − Ŵ)X‖² / ‖WX‖² = tr(ΔW H ΔWᵀ) / tr(W H Wᵀ).
* :class:`InputAbsMeanStats` — AWQ's activation statistic: the mean over all calibration tokens of
  each input feature's |x| (AutoAWQ's ``x_mean``). AWQ reads its search loss from HessianStats, so
  its memory is one (in,) vector plus the Hessian, whatever the number of calibration tokens.

Both accumulate in fp32 whatever the model dtype. ``STATS`` maps the names a compressor declares
to the collector classes.
"""

from __future__ import annotations

import torch

from kick_core.errors import KickError


def _as_sequences(x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(number of sequences, x as (tokens, in) fp32)."""
    if x.dim() == 2:
        x = x.unsqueeze(0)
    return x.shape[0], x.reshape(-1, x.shape[-1]).float()


class InputNormStats:
    """Running mean over sequences of each input feature's squared L2 norm (in,)."""

    def __init__(self, in_features: int, device: torch.device | str = "cpu"):
        self.norm_sq = torch.zeros(in_features, device=device)  # (in,)
        self.n = 0

    def add_batch(self, x: torch.Tensor) -> None:
        k, X = _as_sequences(x.to(self.norm_sq.device))  # X (tokens, in)
        self.norm_sq *= self.n / (self.n + k)
        self.n += k
        self.norm_sq += (X * X).sum(0) / self.n


class HessianStats:
    """H = (2/n) Σ X Xᵀ (in, in), n = sequences seen; the OBS Hessian of the layer's squared error."""

    def __init__(self, in_features: int, device: torch.device | str = "cpu"):
        self.H = torch.zeros(in_features, in_features, device=device)  # (in, in)
        self.n = 0

    def add_batch(self, x: torch.Tensor) -> None:
        k, X = _as_sequences(x.to(self.H.device))  # X (tokens, in)
        self.H *= self.n / (self.n + k)
        self.n += k
        X = X * (2 / self.n) ** 0.5
        self.H += X.T @ X


class InputAbsMeanStats:
    """Running mean over calibration tokens of each input feature's |x| (in,)."""

    def __init__(self, in_features: int, device: torch.device | str = "cpu"):
        self.absmean = torch.zeros(in_features, device=device)  # (in,)
        self.tokens = 0

    def add_batch(self, x: torch.Tensor) -> None:
        _, X = _as_sequences(x.to(self.absmean.device))  # X (tokens, in)
        t = X.shape[0]
        self.absmean *= self.tokens / (self.tokens + t)
        self.tokens += t
        self.absmean += X.abs().sum(0) / self.tokens


STATS = {"norms": InputNormStats, "hessian": HessianStats, "absmean": InputAbsMeanStats}
"""Statistic name -> collector class, built as ``cls(in_features, device)``."""


def relative_output_error(W: torch.Tensor, W_new: torch.Tensor, H: torch.Tensor) -> float:
    """‖(W − Ŵ)X‖² / ‖WX‖² on the calibration inputs behind H (0 when WX is zero)."""
    W = W.float()
    D = W - W_new.float()
    num = torch.einsum("oi,ij,oj->", D, H, D)
    den = torch.einsum("oi,ij,oj->", W, H, W)
    return float(num / den) if float(den) > 0 else 0.0


def inverse_hessian_cholesky(H: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + λI)⁻¹ with λ = percdamp · mean(diag H) (SparseGPT/GPTQ)."""
    H = H.clone()
    H.diagonal().add_(percdamp * torch.mean(torch.diag(H)))
    try:
        L = torch.linalg.cholesky(H)
        return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    except torch.linalg.LinAlgError as err:
        raise KickError(
            f"The layer Hessian is not positive definite after damping with percdamp={percdamp}: {err}. "
            "Fix: raise percdamp (the study uses 0.01) or use more calibration tokens (n_calib, calib_seqlen)."
        ) from None


def fix_dead_columns(W: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """In place: inputs never active (diag H = 0) get H_jj = 1 and W[:, j] = 0; returns the dead mask."""
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    return dead
