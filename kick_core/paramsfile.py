"""Params files: read strictly (the one place kick parses one) and expanded into a study of runs.

PyYAML's ``safe_load`` takes a repeated key silently (the last value wins), so a sweep block such as
``{task: [factoid_qa], method: [dense], task: [mcq]}`` ran a study nobody wrote; and an empty file
parses to None, which used to expand into a study of all defaults (training the world model first).
:func:`read_params_file` refuses both, naming the line. It also reads ``2:4`` as the string '2:4'
(YAML 1.1 reads an unquoted ``2:4`` as the base-60 number 124, so ``structure: 2:4`` failed as a
"not a string" puzzle); no params value is a base-60 number.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kick_core.config import RunConfig, flat_fields
from kick_core.errors import ConfigError, did_you_mean


_BASE60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
"""What YAML 1.1 resolves as a base-60 int or float ('2:4' -> 124, '1:30.5' -> 90.5)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated within one mapping and reads '2:4' as a string."""

    def resolve(self, kind, value, implicit):  # noqa: ANN001, ANN201 - yaml's Resolver.resolve signature
        if kind is yaml.ScalarNode and implicit[0] and _BASE60.fullmatch(value):
            return yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG
        return super().resolve(kind, value, implicit)


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
        raise ConfigError(f"params file {where!r} is not valid YAML: {err}\nFix: correct the YAML at the line shown "
                          "(indent with spaces, not tabs; quote a value holding ': ', ' #', '[' or '{'; YAML tags "
                          "such as !!python/... are refused).") from None
    if raw is None:
        raise ConfigError(f"params file {where!r} is empty (or only comments): a study needs at least 'base:' or "
                          "'sweep:'. Fix: start from params/demo.yaml (`kick ls studies` lists the shipped ones).")
    return raw


def parse_value(text: str, where: str) -> Any:
    """One YAML value read as params files read theirs (a ``--set`` value: '2:4' stays the string '2:4')."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: {text!r} is not a YAML value ({str(err).splitlines()[0]}). Fix: quote it, "
                          "e.g. --set 'dataset=\"./my data.jsonl\"'.") from None


def read_params_file(path: str | Path) -> dict[str, Any]:
    """Read and parse a params file (see :func:`parse_params_text`); ConfigError if it does not exist."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"params file {str(path)!r} is a folder, not a file. Fix: name a .yaml file "
                          f"({', '.join(sorted(p.name for p in path.glob('*.yaml'))[:5]) or 'none in that folder'}).")
    if not path.is_file():
        raise ConfigError(f"params file {str(path)!r} does not exist. Fix: check the path; `kick ls studies` lists "
                          "the shipped ones.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"params file {str(path)!r} is not UTF-8 text (byte {err.start}: {err.reason}); is it a "
                          "params file at all? Fix: save it as UTF-8 YAML.") from None
    return parse_params_text(text, str(path))


# -- studies: a params file expanded into runs --------------------------------------------------
log = logging.getLogger(__name__)

_TOP_KEYS = ("study", "description", "notebook", "base", "sweep")
MAX_RUNS = 10_000
"""The most runs one study may expand to: far above any real study, and a sweep of 10^9 points (a few
long axes multiplied) would otherwise hang the expansion instead of failing."""


def _kind(value: Any) -> str:
    return {list: "a list", dict: "a mapping", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "empty (null)"}.get(type(value), f"a {type(value).__name__}")


def _repeats(values: list[Any]) -> list[Any]:
    """Values listed more than once (True and 1 count as different; unhashable values by repr)."""
    seen, out = set(), []
    for v in values:
        key = (type(v) is bool, v) if isinstance(v, (str, int, float, type(None))) else repr(v)
        if key in seen and v not in out:
            out.append(v)
        seen.add(key)
    return out


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
        raise ConfigError(f"{where}: the top level is {_kind(raw)} ({str(raw)[:60]!r}), but must be a mapping with "
                          f"keys {', '.join(_TOP_KEYS)}. Fix: write e.g. 'study: my_study' and 'base: {{...}}' at the "
                          "start of lines, not as list items ('- ...'); see params/demo.yaml.")
    for key in raw:
        if key not in _TOP_KEYS:
            hint = did_you_mean(key, _TOP_KEYS)
            extra = " Run parameters go under 'base:' or 'sweep:'." if key in flat_fields() else ""
            raise ConfigError(f"{where}: unknown top-level key {key!r}.{hint}{extra} Allowed: {', '.join(_TOP_KEYS)}.")
    study = raw.get("study", default_name)
    if isinstance(study, bool) or not isinstance(study, (str, int)):
        raise ConfigError(f"{where}: study={study!r} is {_kind(study)}; it must be a name (the folder under the "
                          f"results directory). Fix: write e.g. 'study: {default_name}', or leave the key out to use "
                          f"the file name ({default_name!r}).")
    name = str(study)
    base = raw.get("base") or {}
    if not isinstance(base, Mapping):
        raise ConfigError(f"{where}: 'base' is {_kind(base)} ({str(base)[:60]!r}), but must be a mapping of "
                          "parameter: value. Fix: e.g. 'base: {model: kick-world, n_examples: 50}'.")
    if "study" in base:
        raise ConfigError(f"{where}: set the study name at the top level ('study: {base['study']}'), not in base.")
    sweep = raw.get("sweep") or [{}]
    blocks = [sweep] if isinstance(sweep, Mapping) else sweep
    if not isinstance(blocks, list) or not all(isinstance(b, Mapping) for b in blocks):
        bad = sweep if not isinstance(blocks, list) else next(b for b in blocks if not isinstance(b, Mapping))
        raise ConfigError(f"{where}: 'sweep' holds {_kind(bad)} ({str(bad)[:60]!r}), but must be a mapping of "
                          "parameter: [values] or a list of such mappings. Fix: e.g. 'sweep: {method: [wanda], "
                          "sparsity: [0.3, 0.5]}' or a list of such blocks ('- {method: [dense]}').")
    n_runs = sum(math.prod(len(v) if isinstance(v, list) else 1 for v in b.values()) for b in blocks)
    if n_runs > MAX_RUNS:
        raise ConfigError(f"{where}: the sweep expands to {n_runs:,} runs, more than the {MAX_RUNS:,} one study may "
                          "hold (each sweep block is the product of its lists). Fix: shorten the lists, or split the "
                          "study into several params files.")
    runs: dict[str, RunConfig] = {}
    repeated = 0
    for i, block in enumerate(blocks):
        axes = {}
        for key, values in block.items():
            if values == []:
                raise ConfigError(f"{where}: sweep value of {key!r} is an empty list, which expands to no runs. "
                                  f"Fix: list at least one value, or remove {key!r} from the sweep block.")
            if not isinstance(values, list):
                raise ConfigError(f"{where}: sweep value of {key!r} is {values!r}, but must be a non-empty list. "
                                  f"Fix: e.g. {key}: [{values!r}].")
            twice = _repeats(values)
            if twice:
                raise ConfigError(
                    f"{where} (sweep block {i + 1}): {key!r} lists {', '.join(map(repr, twice))} more than once "
                    f"({key}: {values!r}); a run runs once, so the repeat is most likely a typo for another value. "
                    "Fix: remove the repeat, or change it to the value you meant."
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
