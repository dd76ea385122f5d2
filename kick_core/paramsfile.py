"""Reading a params YAML file: the one place kick parses one, strictly.

PyYAML's ``safe_load`` takes a repeated key silently (the last value wins), so a sweep block such as
``{task: [factoid_qa], method: [dense], task: [mcq]}`` ran a study nobody wrote; and an empty file
parses to None, which used to expand into a study of all defaults (training the world model first).
:func:`read_params_file` refuses both, naming the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kick_core.errors import ConfigError


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
