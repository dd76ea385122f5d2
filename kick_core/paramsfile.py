"""Params files: read strictly (the one place kick parses one) and expanded into a study of runs.

PyYAML's ``safe_load`` takes a repeated key silently (the last value wins), so a sweep block such as
``{task: [factoid_qa], method: [dense], task: [mcq]}`` ran a study nobody wrote; and an empty file
parses to None, which used to expand into a study of all defaults (training the world model first).
:func:`read_params_file` refuses both, naming the line.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kick_core.config import RunConfig, flat_fields
from kick_core.errors import ConfigError, did_you_mean


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated within one mapping."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(f"key {key!r} appears twice in one mapping (lines {seen[key]} and {line}); YAML would "
                              f"keep only the last. Fix: remove one, or put the other values in a separate sweep "
                              "block (a list item under 'sweep:').")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_params_text(text: str, where: str) -> dict[str, Any]:
    """The mapping a params file's text holds; ConfigError for invalid YAML, repeated keys, or nothing."""
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as err:
        raise ConfigError(f"params file {where!r}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"params file {where!r} is not valid YAML: {err}") from None
    if raw is None:
        raise ConfigError(f"params file {where!r} is empty (or only comments): a study needs at least 'base:' or "
                          "'sweep:'. Fix: start from params/demo.yaml (`kick ls studies` lists the shipped ones).")
    return raw


def read_params_file(path: str | Path) -> dict[str, Any]:
    """Read and parse a params file (see :func:`parse_params_text`); ConfigError if it does not exist."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {str(path)!r} does not exist; `kick ls studies` lists the shipped ones.")
    return parse_params_text(path.read_text(encoding="utf-8"), str(path))


# -- studies: a params file expanded into runs --------------------------------------------------
log = logging.getLogger(__name__)

_TOP_KEYS = ("study", "description", "notebook", "base", "sweep")


@dataclass(frozen=True)
class Study:
    """A params file, expanded: its name, its runs (validated) and optional notebook override."""

    name: str
    runs: tuple[RunConfig, ...]
    notebook: str | None = None
    description: str = ""
    path: Path | None = None


def load_params(path: str | Path) -> Study:
    """Read a params YAML file and expand it into validated runs (raises ConfigError on any problem)."""
    path = Path(path)
    return expand_params(read_params_file(path), where=str(path), default_name=path.stem, path=path)


def expand_params(raw: Mapping[str, Any], *, where: str = "params", default_name: str = "adhoc",
                  path: Path | None = None) -> Study:
    """Expand a parsed params mapping (base + sweep) into a Study of validated, de-duplicated runs."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: the top level must be a mapping with keys {', '.join(_TOP_KEYS)}.")
    for key in raw:
        if key not in _TOP_KEYS:
            hint = did_you_mean(key, _TOP_KEYS)
            extra = " Run parameters go under 'base:' or 'sweep:'." if key in flat_fields() else ""
            raise ConfigError(f"{where}: unknown top-level key {key!r}.{hint}{extra} Allowed: {', '.join(_TOP_KEYS)}.")
    name = str(raw.get("study", default_name))
    base = raw.get("base") or {}
    if not isinstance(base, Mapping):
        raise ConfigError(f"{where}: 'base' must be a mapping of parameter: value.")
    if "study" in base:
        raise ConfigError(f"{where}: set the study name at the top level ('study: {base['study']}'), not in base.")
    sweep = raw.get("sweep") or [{}]
    blocks = [sweep] if isinstance(sweep, Mapping) else sweep
    if not isinstance(blocks, list) or not all(isinstance(b, Mapping) for b in blocks):
        raise ConfigError(f"{where}: 'sweep' must be a mapping of parameter: [values] or a list of such mappings.")
    runs: dict[str, RunConfig] = {}
    repeated = 0
    for i, block in enumerate(blocks):
        axes = {}
        for key, values in block.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(
                    f"{where}: sweep value of {key!r} must be a non-empty list, e.g. {key}: [{values!r}]."
                )
            axes[key] = values
        for combo in itertools.product(*axes.values()):
            point = {**base, **dict(zip(axes, combo)), "study": name}
            desc = ", ".join(f"{k}={v!r}" for k, v in zip(axes, combo))
            cfg = RunConfig.from_dict(point, where=f"{where} (sweep block {i + 1}: {desc})" if desc else where)
            repeated += cfg.run_id in runs
            runs.setdefault(cfg.run_id, cfg)
    if not runs:
        raise ConfigError(f"{where}: the sweep expands to no runs.")
    if repeated:
        log.info("%s: %d sweep point(s) repeat a run already in the study (identical or overlapping blocks); "
                 "each run is listed and run once", where, repeated)
    return Study(name=name, runs=tuple(runs.values()), notebook=raw.get("notebook"),
                 description=str(raw.get("description", "")), path=path)
