"""The one table of compression methods: family, bits, calibration, where the code lives.

Torch-free (outside the torch-importing ``kick_core.compress`` package), so the config can read it.

The config validates against it (:class:`kick_core.config.CompressConfig`), ``kick ls methods``
lists it, and :data:`kick_core.compress.COMPRESSORS` is built from it. Adding a method is a module
with a ``solve`` function and a ``COMPRESSOR`` entry, plus one :func:`register` call (here, for
kick's own methods) — no other edit::

    register(Method("mymethod", "prune", calibrated=True, compressor="mypkg.mymethod:COMPRESSOR",
                    description="what it does"))

Families (:data:`FAMILIES`: each names the strategy that obtains, measures and caches its
methods' models, so the entry points dispatch through this table, never on a method's name):

* ``none`` — dense, the identity (measured, never cached);
* ``prune`` — sets weights to zero (unstructured sparsity or N:M); may be followed by ``rtn``/``gptq``
  (``quantize_after``);
* ``quantise`` — rounds weights to ``bits`` on a grid (fake-quantised in the model's dtype);
* ``load-time`` — the model is quantised while it loads, with real kernels (bitsandbytes, through
  ``from_pretrained``), by the method's ``loader``; kick only measures it, and never caches it.

A load-time method is one row too: ``register(Method("mine", "load-time", bits=(4,),
loader="mypkg.mine:LOADER"))`` with a :class:`~kick_core.compress.loadtime.Loader` there.
"""

from __future__ import annotations

from dataclasses import dataclass

from kick_core.errors import lookup

FAMILIES: dict[str, str] = {
    "none": "kick_core.compress.inplace:DENSE_FAMILY",
    "prune": "kick_core.compress.inplace:IN_PLACE",
    "quantise": "kick_core.compress.inplace:IN_PLACE",
    "load-time": "kick_core.compress.loadtime:LOAD_TIME",
}
"""Family -> ``"module:attribute"`` of its :class:`~kick_core.compress.family.Family`: how its methods'
models are obtained (compressed in memory and cached, or quantised while loading) and measured."""


@dataclass(frozen=True)
class Method:
    """One row of the method table."""

    name: str
    family: str
    bits: tuple[int, ...] = ()
    """Allowed bit widths (quantise and load-time families); one entry = the default, set for you."""
    calibrated: bool = False
    """Whether it reads calibration data (then the layer-sequential driver runs it)."""
    compressor: str | None = None
    """``"module:attribute"`` of its :class:`~kick_core.compress.layerwise.Compressor`; None = no solve step."""
    loader: str | None = None
    """Load-time family: ``"module:attribute"`` of its :class:`~kick_core.compress.loadtime.Loader`."""
    description: str = ""
    follows_pruning: bool = False
    """Whether ``quantize_after`` may name it (sparse + quantised)."""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family={self.family!r} must be one of {', '.join(FAMILIES)}")


METHODS: dict[str, Method] = {}
"""Method name -> :class:`Method`, in the order ``kick ls methods`` prints them."""


def register(method: Method) -> Method:
    """Add (or replace) a method; the config accepts it from then on."""
    METHODS[method.name] = method
    return method


def get(name: str) -> Method:
    """The table row of ``name`` (UnknownNameError with close matches otherwise)."""
    return lookup(METHODS, name, "compression method")


def names(family: str | None = None) -> tuple[str, ...]:
    """Every method name, or those of one family."""
    return tuple(m.name for m in METHODS.values() if family is None or m.family == family)


def family(name: str) -> str | None:
    """The family of ``name``; None if it is not a method."""
    m = METHODS.get(name)
    return m.family if m is not None else None


for _m in (
    Method("dense", "none", description="no compression (identity)"),
    Method("magnitude", "prune", compressor="kick_core.compress.magnitude:COMPRESSOR",
           description="one-shot |W| pruning, no calibration"),
    Method("wanda", "prune", calibrated=True, compressor="kick_core.compress.wanda:COMPRESSOR",
           description="|W|·‖X‖ per output row"),
    Method("sparsegpt", "prune", calibrated=True, compressor="kick_core.compress.sparsegpt:COMPRESSOR",
           description="OBS updates from the layer Hessian"),
    Method("rtn", "quantise", bits=(2, 3, 4, 8), compressor="kick_core.compress.rtn:COMPRESSOR",
           description="round to nearest on a min-max grid, no calibration", follows_pruning=True),
    Method("gptq", "quantise", bits=(2, 3, 4, 8), calibrated=True, compressor="kick_core.compress.gptq:COMPRESSOR",
           description="column-wise rounding with OBS error feedback", follows_pruning=True),
    Method("awq", "quantise", bits=(4, 8), calibrated=True, compressor="kick_core.compress.awq:COMPRESSOR",
           description="activation-aware scale + clip search, then grouped RTN (in-house)"),
    Method("bnb_int8", "load-time", bits=(8,), loader="kick_core.compress.bnb:LOADER",
           description="bitsandbytes LLM.int8(), quantised while loading (real kernels)"),
    Method("bnb_nf4", "load-time", bits=(4,), loader="kick_core.compress.bnb:LOADER",
           description="bitsandbytes NF4, quantised while loading (real kernels)"),
    Method("bnb_fp4", "load-time", bits=(4,), loader="kick_core.compress.bnb:LOADER",
           description="bitsandbytes FP4, quantised while loading (real kernels)"),
):
    register(_m)


def quantises(name: str) -> bool:
    """Whether ``name`` rounds weights to a bit width (the quantise and load-time families: its row has bits)."""
    m = METHODS.get(name)
    return m is not None and bool(m.bits)
