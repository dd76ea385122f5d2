"""Can a run's model be loaded at all? Checked once per model before a sweep starts any kernel.

Without this check a typo in ``model:`` surfaced inside every run's notebook (a kernel started, the
imports paid, then ``from_pretrained`` failed: 6 s per run for a missing local path, 30 s for a hub
id without network), so a 200-run sweep burned minutes before saying what one look could say.
:func:`check_model_source` looks without loading anything: the embedded world and the packaged
names are always loadable (built or fetched on first use); a local path must exist and be a model
folder or a GGUF/wheel file; a hub id must be in the local Hugging Face cache, or the hub must
answer for it (one metadata request, 10 s timeout; never with ``HF_HUB_OFFLINE=1``).
:func:`check_sources` adds the run's other files: a tokenizer, dataset or calibration file given as
a local path must exist (before, a typo there surfaced only inside the run's kernel, after the model
had loaded).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from kick_core import methods
from kick_core.config import EMBEDDED_MODEL, ModelConfig, RunConfig
from kick_core.errors import ConfigError
from kick_core.packaged import PACKAGED, packaged_hint

HUB_TIMEOUT_S = 10.0


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".txt", ".gz")
"""A dataset ending so is a local file (as :func:`kick_core.tasks.base.resolve_source` reads it), never a hub id."""


def _looks_like_path(name: str, suffixes: tuple[str, ...] = (".gguf", ".whl")) -> bool:
    return name.startswith((".", "/", "~")) or name.endswith(suffixes)


def _siblings_hint(path: Path) -> str:
    """' Did you mean (in <folder>): x?' among the entries of the folder that should hold ``path``, or ''."""
    try:
        names = [p.name for p in path.parent.iterdir()] if path.parent.is_dir() else []
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.75)
    return f" Did you mean (in {path.parent}): {', '.join(close)}?" if close else ""


def _in_hub_cache(repo_id: str, filename: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
    except Exception:  # noqa: BLE001 - an id the cache cannot even parse is simply not cached
        return False
    return isinstance(found, str)


def _ask_hub(repo_id: str, revision: str | None) -> str | None:
    """None when the hub knows ``repo_id``; else why not, in words."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        HfApi().model_info(repo_id, revision=revision, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return None  # it exists; the load itself will say whether the token grants access
    except RepositoryNotFoundError:
        return "the hub has no such model (or it is private and no token is set)"
    except RevisionNotFoundError:
        return f"the hub has the model but not revision {revision!r}"
    except Exception as err:  # noqa: BLE001 - network errors come in many classes
        return f"the hub could not be reached ({type(err).__name__}: {str(err)[:120]})"
    return None


def check_model_source(cfg: ModelConfig) -> None:
    """Raise ConfigError naming the value, what was looked for and the fix, when ``cfg.model`` cannot load."""
    name = cfg.model
    if name == EMBEDDED_MODEL or name in PACKAGED:
        return
    path = Path(name).expanduser()
    if path.exists():
        if path.is_file() and path.suffix in (".gguf", ".whl"):
            return
        if path.is_dir() and cfg.gguf_file is not None:
            if not (path / cfg.gguf_file).is_file():
                raise ConfigError(f"gguf_file={cfg.gguf_file!r} is not in model={name!r}. Fix: name a .gguf file "
                                  f"in that folder ({', '.join(p.name for p in path.glob('*.gguf')) or 'none there'}).")
            return
        if path.is_dir() and (path / "config.json").is_file():
            return
        raise ConfigError(f"model={name!r} is a local path but not a Hugging Face model folder (no config.json) nor "
                          "a .gguf/.whl file. Fix: point to the folder written by save_pretrained, or to the .gguf file.")
    if _looks_like_path(name):
        raise ConfigError(f"model={name!r} looks like a local path but does not exist.{packaged_hint(name)}"
                          f"{_siblings_hint(path)} Fix: check the path (it is read relative to the folder kick runs "
                          "in), or use a hub id.")
    filename = cfg.gguf_file or "config.json"
    if _in_hub_cache(name, filename, cfg.revision):
        return
    if _offline():
        raise ConfigError(f"model={name!r} is no local path or packaged model, and it is not in the local Hugging "
                          f"Face cache while HF_HUB_OFFLINE is set.{packaged_hint(name)} Fix: download it first "
                          f"(`huggingface-cli download {name}`), or point model: at a local folder.")
    why = _ask_hub(name, cfg.revision)
    if why is not None:
        raise ConfigError(f"model={name!r} is no local path or packaged model, not in the local Hugging Face cache, "
                          f"and {why}.{packaged_hint(name)} Fix: check the id, download it first "
                          f"(`huggingface-cli download {name}`), or point model: at a local folder.")


def check_files(cfg: RunConfig) -> None:
    """Raise ConfigError when a tokenizer, dataset or calibration file of ``cfg`` is a local path that does not exist."""
    tok = cfg.model.tokenizer
    if tok and _looks_like_path(tok, ()) and not Path(tok).expanduser().exists():
        raise ConfigError(f"tokenizer={tok!r} looks like a local path but does not exist."
                          f"{_siblings_hint(Path(tok).expanduser())} Fix: check the path, use a hub id, or remove "
                          "tokenizer to use the model's own.")
    data = cfg.task.dataset
    if _looks_like_path(data, DATA_SUFFIXES) and not Path(data).expanduser().exists():
        raise ConfigError(f"dataset={data!r} looks like a local path (it starts with '.', '/' or '~', or ends in "
                          f"{', '.join(DATA_SUFFIXES)}) but does not exist.{_siblings_hint(Path(data).expanduser())} "
                          "Fix: check the path (read relative to the folder kick runs in), or use a built-in dataset "
                          "('world') or a hub id ('owner/name').")
    c = cfg.compress
    calibrated = methods.get(c.method).calibrated or (c.quantize_after and methods.get(c.quantize_after).calibrated)
    calib = Path(c.calib_dataset).expanduser()
    if calibrated and calib.suffix in (".txt", ".jsonl") and not calib.is_file():
        raise ConfigError(f"calib_dataset={c.calib_dataset!r} (for method={c.method!r}) looks like a local .txt/.jsonl "
                          f"file but does not exist.{_siblings_hint(calib)} Fix: check the path, or use a built-in "
                          "calibration set (c4, wikitext2, world).")


def check_sources(configs) -> None:
    """Before any kernel: :func:`check_models` on the runs' models, then :func:`check_files` on every run."""
    configs = list(configs)
    check_models(c.model for c in configs)
    for cfg in configs:
        check_files(cfg)


def check_models(configs) -> None:
    """:func:`check_model_source` once per distinct (model, gguf_file, revision) of ``configs``."""
    seen = set()
    for cfg in configs:
        key = (cfg.model, cfg.gguf_file, cfg.revision)
        if key not in seen:
            seen.add(key)
            check_model_source(cfg)
