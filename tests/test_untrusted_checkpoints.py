"""Untrusted checkpoints: a pickle that runs code when unpickled is refused wherever kick loads weights.

The payload writes a marker file when unpickled (``exec`` through ``__reduce__``). The first test
shows the payload is live (a plain ``torch.load(weights_only=False)`` writes the marker); the others
load it through kick's real paths and check that the marker is never written and that the error
says what happened and what to do:

* a model folder whose only weights are ``pytorch_model.bin`` (zip, legacy and raw-pickle formats):
  ``kick_core.models.load_model`` -> ``from_pretrained`` -> ``torch.load(weights_only=True)``;
* a model folder with ``model.safetensors`` *and* a poisoned ``pytorch_model.bin``: the safetensors
  weights load and the .bin is never opened;
* a compressed-model cache entry whose ``weights.safetensors`` is a pickle: cache files are read
  with safetensors only (:func:`kick_core.compress.model_cache.restore_entry`), never unpickled.

A static check keeps it so: every ``torch.load`` in kick_core, bench and the notebooks passes
``weights_only=True``, and none of them calls ``pickle.load``/``pickle.loads``.
"""

from __future__ import annotations

import ast
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from kick_core.config import CompressConfig, ModelConfig
from kick_core.errors import ConfigError, KickError
from kick_core.models import fingerprint, load_model

REPO = Path(__file__).resolve().parent.parent


class _Payload:
    """Unpickles into ``exec(code)``: writes ``marker`` (a harmless stand-in for any code)."""

    def __init__(self, marker: Path):
        self.code = f"open({str(marker)!r}, 'w').write('payload ran')"

    def __reduce__(self):
        return (exec, (self.code,))


def _poisoned_state_dict(model_dir: Path, marker: Path) -> dict:
    """The real model's weights, with one tensor swapped for the payload (as a tampered upload would be)."""
    from safetensors.torch import load_file

    state = dict(load_file(str(model_dir / "model.safetensors")))
    state[next(iter(state))] = _Payload(marker)
    return state


def _write_checkpoint(path: Path, obj, fmt: str) -> None:
    if fmt == "zip":
        torch.save(obj, path)
    elif fmt == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:  # a bare pickle, no torch framing at all
        path.write_bytes(pickle.dumps(obj))


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "PAYLOAD_RAN"
    yield path
    assert not path.exists() or path.read_text() == "payload ran"


def test_the_payload_is_live_when_unpickled_unsafely(tmp_path, marker):
    """The control: without weights_only, loading the file runs the payload (so the tests below mean something)."""
    path = tmp_path / "pytorch_model.bin"
    _write_checkpoint(path, {"w": _Payload(marker)}, "zip")
    torch.load(path, weights_only=False)
    assert marker.exists()


def _model_folder(tiny_model_dir: Path, dest: Path) -> Path:
    shutil.copytree(tiny_model_dir, dest)
    return dest


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the bare pickle is protocol 4
@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw-pickle"])
def test_a_pickled_bin_checkpoint_never_runs_code(tiny_model_dir, tmp_path, marker, fmt):
    folder = _model_folder(tiny_model_dir, tmp_path / "tampered")
    state = _poisoned_state_dict(folder, marker)
    (folder / "model.safetensors").unlink()  # only the .bin is left, as in many older hub repos
    _write_checkpoint(folder / "pytorch_model.bin", state, fmt)
    with pytest.raises(ConfigError) as info:
        load_model(str(folder))
    message = str(info.value)
    assert not marker.exists(), "the checkpoint's code ran"
    assert f"model={str(folder)!r}" in message
    assert "holds more than tensors" in message and "could run code" in message
    assert "Fix: use the model's safetensors weights" in message
    assert "weights_only` set to `False`" not in message  # torch's own advice (run it unsafely) is not passed on


def test_safetensors_win_over_a_poisoned_bin_next_to_them(tiny_model_dir, tmp_path, marker):
    folder = _model_folder(tiny_model_dir, tmp_path / "both")
    _write_checkpoint(folder / "pytorch_model.bin", _poisoned_state_dict(folder, marker), "zip")
    model, _ = load_model(str(folder))
    reference, _ = load_model(str(tiny_model_dir))
    assert not marker.exists()
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_poisoned_cache_entry_is_refused_not_unpickled(tiny_model_dir, tmp_path, marker):
    """A cache entry whose weights file is a pickle (planted, or from a foreign tool) fails loudly, runs nothing."""
    from kick_core.compress.model_cache import REPORT, SPEC, WEIGHTS, cache_root, load_or_compress

    model_cfg = ModelConfig(model=str(tiny_model_dir))
    compress_cfg = CompressConfig(method="magnitude", sparsity=0.5)
    entry = cache_root(tmp_path / "cache") / fingerprint(model_cfg, compress_cfg)
    entry.mkdir(parents=True)
    _write_checkpoint(entry / WEIGHTS, {"w": _Payload(marker)}, "zip")
    (entry / SPEC).write_text(json.dumps({"format": 1}))
    (entry / REPORT).write_text(json.dumps({}))
    with pytest.raises(KickError, match=rf"cache entry .*{entry.name}: {WEIGHTS} is not a valid safetensors file"
                                        r".*never unpickles.*Fix: delete that folder"):
        load_or_compress(model_cfg, compress_cfg, cache_dir=tmp_path / "cache", progress=False)
    assert not marker.exists()


# -- the audit, kept: no unsafe unpickling in kick's own code ------------------------------------
def _python_sources():
    for path in sorted((REPO / "kick_core").rglob("*.py")):
        yield path, path.read_text(encoding="utf-8")
    for path in sorted((REPO / "bench").glob("*.py")):  # not bench/out/ (a peer tool's virtualenv)
        yield path, path.read_text(encoding="utf-8")
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        yield path, "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))


def _unsafe_loads(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)):
            continue
        owner, name = node.func.value.id, node.func.attr
        if owner == "torch" and name == "load":
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords)
            if not safe:
                found.append(f"line {node.lineno}: torch.load without weights_only=True")
        if owner in ("pickle", "dill", "joblib") and name in ("load", "loads"):
            found.append(f"line {node.lineno}: {owner}.{name}")
    return found


def test_every_torch_load_in_kick_and_bench_is_weights_only():
    problems = {}
    for path, source in _python_sources():
        found = _unsafe_loads(ast.parse(source, filename=str(path)))
        if found:
            problems[str(path.relative_to(REPO))] = found
    assert not problems, f"unsafe unpickling (use safetensors, or torch.load(..., weights_only=True)): {problems}"
