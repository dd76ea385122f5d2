"""A KV-cache layer written in place: transformers' ``DynamicLayer`` without the per-step concatenation.

Kept apart from ``batching.py`` because it subclasses a transformers class, and ``kick_core`` imports
transformers only where it is used (``generation._prefill`` imports this module).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys/values live in a buffer allocated once for ``capacity`` positions.

    ``DynamicLayer.update`` concatenates, i.e. copies the whole cache at every decoding step; on a
    2-core CPU that copy took half of the decode time (bench_engine.py). Here a step writes its
    positions in place and ``keys``/``values`` are views of the filled part, so attention reads
    exactly what a ``DynamicLayer`` would hold. Past ``capacity`` the buffer doubles.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self._keys: torch.Tensor | None = None  # (rows, heads, capacity, head_dim)
        self._values: torch.Tensor | None = None
        self._length = 0

    @classmethod
    def over(cls, keys: torch.Tensor, values: torch.Tensor, length: int = 0) -> PreallocatedLayer:
        """A layer over the given buffers (views of a larger one are fine), whose first ``length`` positions are filled."""
        layer = cls(keys.shape[-2])
        layer.device = keys.device
        layer._keys, layer._values = keys, values
        layer.is_initialized = True
        layer._set_length(length)
        return layer

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        rows, heads = key_states.shape[:2]
        self._keys = key_states.new_empty((rows, heads, self.capacity, key_states.shape[-1]))
        self._values = value_states.new_empty((rows, heads, self.capacity, value_states.shape[-1]))
        self.is_initialized = True
        self._set_length(0)

    def _set_length(self, length: int) -> None:
        self._length = length
        self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, end = self._length, self._length + key_states.shape[-2]
        if end > self._keys.shape[-2]:
            self._resize(self._keys.shape[0], max(end, 2 * self._keys.shape[-2]))
        self._keys[:, :, start:end] = key_states
        self._values[:, :, start:end] = value_states
        self._set_length(end)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._length if self.is_initialized else 0

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices``, copying only the filled positions."""
        if self.is_initialized:
            self._resize(len(indices), self._keys.shape[-2], indices.to(self._keys.device))

    def _resize(self, rows: int, capacity: int, indices: torch.Tensor | None = None) -> None:
        n = self._length
        old_k, old_v = self.keys, self.values
        self._keys = old_k.new_empty((rows, old_k.shape[1], capacity, old_k.shape[-1]))
        self._values = old_v.new_empty((rows, old_v.shape[1], capacity, old_v.shape[-1]))
        self._keys[:, :, :n] = old_k if indices is None else old_k.index_select(0, indices)
        self._values[:, :, :n] = old_v if indices is None else old_v.index_select(0, indices)
        self.capacity = capacity
        self._set_length(n)

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)  # validates; leaves views of the kept part
        if self.is_initialized:
            self._set_length(self.keys.shape[-2])

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            indices = torch.arange(self._keys.shape[0], device=self._keys.device).repeat_interleave(repeats)
            self._resize(len(indices), self._keys.shape[-2], indices)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def reset(self) -> None:
        self._keys = self._values = None
        self._length = 0
        super().reset()
