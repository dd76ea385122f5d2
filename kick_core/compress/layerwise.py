"""The one layer-sequential calibration driver every calibrated compressor runs on.

A compressor plugs in as a :class:`Compressor`: the names of the statistics it needs per linear
(built from :data:`kick_core.compress.calib_stats.STATS`) and a ``solve(W, stats, cfg) -> LayerResult``
that returns the new (out, in) weight. :func:`run_layerwise` then, for any architecture:

1. runs the model on the calibration ids and catches the inputs of decoder block 0 with a forward
   pre-hook (``with_kwargs=True``) that raises a private exception: the hidden states plus *every*
   other positional and keyword argument the architecture passes (masks, position ids, rotary
   embeddings, ...), none named here, so it survives transformers signature changes;
2. for each block in turn: hooks on its linears feed the statistics while the block runs on the
   calibration inputs; each linear is solved in fp32 and written back in the model's dtype; the
   *compressed* block is re-run and its outputs, written over its inputs, feed the next block.

Memory: the model plus one buffer of calibration hidden states (n × seqlen × hidden) plus one
block's statistics, never all blocks' activations. The buffer stays where block 0 received it,
or on the CPU with ``offload=True``; each block's work runs on that block's own device, so
``device_map='auto'`` placements work. Methods without statistics (magnitude) skip the model
run: :func:`solve_uncalibrated` applies ``solve`` to each linear's weights alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from kick_core.compress.calib_stats import STATS, relative_output_error
from kick_core.config import CompressConfig
from kick_core.log import progress as progress_bar
from kick_core.models import decoder_blocks, decoder_blocks_path, linear_layers, model_device, set_weight, weight_view

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerResult:
    """What a solve step returns: the new (out, in) weight and the method's own loss, if it has one."""

    weight: torch.Tensor
    loss: float | None = None


Solve = Callable[[torch.Tensor, Mapping[str, Any], CompressConfig], LayerResult]


@dataclass(frozen=True)
class Compressor:
    """A registry entry: how one method compresses a linear layer."""

    name: str
    solve: Solve | None
    """Per-linear step on the fp32 (out, in) weight; None = identity (dense)."""
    stats: tuple[str, ...] = ()
    """Statistics it reads (keys of stats.STATS); empty = no calibration, the driver is skipped."""
    description: str = ""

    @property
    def needs_calibration(self) -> bool:
        return bool(self.stats)


@dataclass(frozen=True)
class LayerOutcome:
    """Per-linear facts for the report."""

    loss: float | None = None
    rel_error: float | None = None
    """‖WX − ŴX‖² / ‖WX‖² on the calibration inputs of this linear (calibrated methods)."""


class _StopForward(Exception):
    """Raised by the block-0 pre-hook once its inputs are caught."""


@dataclass
class BlockInputs:
    """Calibration hidden states entering the current block, and the call context of each batch.

    ``hidden[k]`` is batch k's (batch, seqlen, hidden) tensor; ``contexts[k]`` holds the other
    positional args and keyword args block 0 received for it (batches with equal contexts share
    one object, so a fixed-length calibration set stores one copy of the masks and embeddings).
    """

    hidden: list[torch.Tensor] = field(default_factory=list)
    contexts: list[tuple[tuple, dict]] = field(default_factory=list)
    hidden_as_kwarg: bool = False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and a.device == b.device and bool(torch.equal(a, b)))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if a is None or isinstance(a, (bool, int, float, str)):
        return type(a) is type(b) and a == b
    return a is b


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(x, device) for x in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def block_device(block: nn.Module) -> torch.device:
    """Where a block computes: the device of its first parameter."""
    return next(block.parameters()).device


@torch.no_grad()
def capture_block_inputs(model: nn.Module, input_ids: torch.Tensor, *, batch_size: int = 1,
                         offload: bool = False) -> BlockInputs:
    """Run the model on `input_ids` (n, seqlen) and catch what enters decoder block 0."""
    first = decoder_blocks(model)[0]
    captured = BlockInputs()

    def catch(module: nn.Module, args: tuple, kwargs: dict) -> None:
        kwargs = dict(kwargs)
        if args:
            hidden, rest = args[0], tuple(args[1:])
        else:
            hidden, rest = kwargs.pop("hidden_states"), ()
            captured.hidden_as_kwarg = True
        captured.hidden.append(hidden.to("cpu") if offload else hidden)
        context = (rest, kwargs)
        if captured.contexts and _same(captured.contexts[-1], context):
            context = captured.contexts[-1]
        captured.contexts.append(context)
        raise _StopForward

    device = model_device(model)
    handle = first.register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for start in range(0, input_ids.shape[0], batch_size):
            try:
                model(input_ids[start:start + batch_size].to(device), use_cache=False)
            except _StopForward:
                pass
    finally:
        handle.remove()
    return captured


def _run(block: nn.Module, inputs: BlockInputs, k: int, device: torch.device,
         moved: dict[int, tuple[tuple, dict]]) -> torch.Tensor:
    rest, kwargs = inputs.contexts[k]
    key = id(inputs.contexts[k])
    if key not in moved:
        moved[key] = (_to(rest, device), _to(kwargs, device))
    rest, kwargs = moved[key]
    hidden = inputs.hidden[k].to(device)
    out = block(hidden_states=hidden, **kwargs) if inputs.hidden_as_kwarg else block(hidden, *rest, **kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out


class _SharedInputs:
    """Forward hooks that feed each linear's statistics, once per distinct input tensor.

    Linears that read the very same input tensor (q/k/v, gate/up) would collect identical
    statistics; the first call of a block decides which linear owns which input (the rule of
    :func:`_input_groups`: consecutive calls on the same tensor), and every later linear of the run
    shares the owner's collectors. Values are unchanged; a Llama block keeps 4 Hessians instead of 7
    (solvers copy H before changing it, so a shared one is never altered).
    """

    def __init__(self, layers: Mapping[str, nn.Module], kinds: tuple[str, ...]):
        self.layers, self.kinds = layers, kinds
        self.collectors: dict[str, dict[str, Any]] = {}
        self.owner: dict[str, str] = {}
        self._prev: tuple[torch.Tensor | None, str | None] = (None, None)

    def __call__(self, name: str, module: nn.Module, args: tuple, output: Any) -> None:
        x = args[0]
        prev_x, prev_name = self._prev
        self._prev = (x, name)
        if name not in self.owner:
            if x is prev_x and prev_name is not None:
                self.owner[name] = self.owner[prev_name]
                self.collectors[name] = self.collectors[self.owner[name]]
                return  # the owner was fed this very tensor a moment ago
            self.owner[name] = name
            shape = weight_view(module).shape[1]
            self.collectors[name] = {kind: STATS[kind](shape, weight_view(module).device) for kind in self.kinds}
        if self.owner[name] != name:
            if x is not prev_x:  # a block whose call pattern changes between batches: never silently skip
                raise RuntimeError(f"linear {name!r} read the same input as {self.owner[name]!r} in the first "
                                   "calibration batch but not in this one; its statistics cannot be shared")
            return
        x = x.detach()
        for collector in self.collectors[name].values():
            collector.add_batch(x)

    def done(self) -> dict[str, dict[str, Any]]:
        """Name -> its (possibly shared) collectors; linears never called get empty collectors."""
        self._prev = (None, None)
        for name, layer in self.layers.items():
            if name not in self.collectors:
                self.collectors[name] = {kind: STATS[kind](weight_view(layer).shape[1], weight_view(layer).device)
                                         for kind in self.kinds}
        return self.collectors


def _collect(block: nn.Module, inputs: BlockInputs, layers: Mapping[str, nn.Module], kinds: tuple[str, ...],
             device: torch.device, moved: dict[int, tuple[tuple, dict]],
             trace: list[tuple[str, torch.Tensor]] | None = None) -> dict[str, dict[str, Any]]:
    """Run the block on every calibration batch with hooks feeding `kinds` statistics of `layers`.

    With `trace`, also record (name, input tensor) of each linear call of the first batch, in call order.
    """
    feeds = _SharedInputs(layers, kinds)
    recording = trace is not None

    def record(name: str, module: nn.Module, args: tuple, output: Any) -> None:
        if recording:
            trace.append((name, args[0]))

    handles = [layer.register_forward_hook(partial(feeds, name)) for name, layer in layers.items()]
    if trace is not None:
        handles += [layer.register_forward_hook(partial(record, name)) for name, layer in layers.items()]
    try:
        for k in range(len(inputs.hidden)):
            _run(block, inputs, k, device, moved)
            recording = False  # the first batch shows the call order
    finally:
        for handle in handles:
            handle.remove()
    return feeds.done()


def _input_groups(trace: list[tuple[str, torch.Tensor]], layers: Mapping[str, nn.Module]) -> list[list[str]]:
    """Linears in call order, grouped when consecutive calls read the very same input tensor.

    For a Llama block this gives [q, k, v], [o], [gate, up], [down]; for OPT [q, k, v], [out], [fc1],
    [fc2]; no layer names are assumed. Linears never called go last, in one group.
    """
    groups: list[list[str]] = []
    seen: set[str] = set()
    prev: torch.Tensor | None = None
    for name, x in trace:
        if name in seen:
            continue
        if groups and x is prev:
            groups[-1].append(name)
        else:
            groups.append([name])
        seen.add(name)
        prev = x
    trace.clear()
    rest = [name for name in layers if name not in seen]
    return groups + ([rest] if rest else [])


@torch.no_grad()
def run_layerwise(model: nn.Module, compressor: Compressor, cfg: CompressConfig, input_ids: torch.Tensor, *,
                  batch_size: int = 1, offload: bool = False, measure_error: bool | None = None,
                  progress: bool = True) -> dict[str, LayerOutcome]:
    """Compress every decoder linear block by block on calibration `input_ids` (n, seqlen), in place.

    Args:
        batch_size: calibration sequences per forward pass (1 as in the study; more is faster, uses more memory).
        offload: keep the calibration hidden states on the CPU between blocks (saves accelerator memory).
        measure_error: report each linear's ‖WX − ŴX‖²/‖WX‖² from its Hessian (in × in). None (default):
            only where the compressor collects the Hessian anyway (SparseGPT, GPTQ, AWQ), where it costs
            nothing; True also collects it for the others (Wanda: about 1.6x its time), False never.

    Linears that read the very same input tensor share one set of statistics (``_SharedInputs``).
    With ``cfg.true_sequential`` the linears of a block are compressed in groups, in the order the
    block calls them (linears reading the same input form one group: q/k/v, then o, then gate/up,
    then down), and each later group's statistics are collected again on the block with the earlier
    groups already compressed: one more pass over the calibration set per group after the first.

    Returns:
        Full linear name -> LayerOutcome.
    """
    blocks = decoder_blocks(model)
    prefix = decoder_blocks_path(model)
    if measure_error is None:
        measure_error = "hessian" in compressor.stats
    kinds = tuple(compressor.stats) + (("hessian",) if measure_error and "hessian" not in compressor.stats else ())
    inputs = capture_block_inputs(model, input_ids, batch_size=batch_size, offload=offload)
    log.info("%s: %d calibration sequences caught at block 0 (%d distinct call contexts)", compressor.name,
             input_ids.shape[0], len({id(c) for c in inputs.contexts}))
    outcomes: dict[str, LayerOutcome] = {}
    for i in progress_bar(range(len(blocks)), enabled=progress, desc=compressor.name, unit="block"):
        block = blocks[i]
        device = block_device(block)
        layers = linear_layers(block)
        moved: dict[int, tuple[tuple, dict]] = {}
        trace: list[tuple[str, torch.Tensor]] | None = [] if cfg.true_sequential else None
        collectors = _collect(block, inputs, layers, kinds, device, moved, trace)
        groups = _input_groups(trace, layers) if trace is not None else [list(layers)]
        for g, names in enumerate(groups):
            if g > 0:  # true-sequential: statistics again, now that the groups before are compressed
                collectors = _collect(block, inputs, {n: layers[n] for n in names}, kinds, device, moved)
            for name in names:
                layer = layers[name]
                W = weight_view(layer).detach().float().clone()  # (out, in), fp32 whatever the model dtype
                result = compressor.solve(W, collectors[name], cfg)
                hessian = collectors[name].get("hessian")
                rel = relative_output_error(W, result.weight, hessian.H) if hessian is not None else None
                set_weight(layer, result.weight)
                outcomes[f"{prefix}.{i}.{name}"] = LayerOutcome(result.loss, rel)
            del collectors
        if i + 1 < len(blocks):
            for k in range(len(inputs.hidden)):
                out = _run(block, inputs, k, device, moved)
                inputs.hidden[k] = out.to(inputs.hidden[k].device)
    return outcomes


@torch.no_grad()
def solve_uncalibrated(model: nn.Module, compressor: Compressor, cfg: CompressConfig, *,
                       progress: bool = True) -> dict[str, LayerOutcome]:
    """Apply a statistics-free compressor (magnitude) to every decoder linear, in place."""
    prefix = decoder_blocks_path(model)
    outcomes: dict[str, LayerOutcome] = {}
    for i, block in enumerate(progress_bar(decoder_blocks(model), enabled=progress, desc=compressor.name,
                                           unit="block")):
        for name, layer in linear_layers(block).items():
            result = compressor.solve(weight_view(layer).detach().float().clone(), {}, cfg)
            set_weight(layer, result.weight)
            outcomes[f"{prefix}.{i}.{name}"] = LayerOutcome(result.loss, None)
    return outcomes
