"""Shared fixtures: an isolated cache, and tiny models saved to disk (no download)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    # Tests never write into the user's ~/.cache/kick: one throw-away cache per test session. The user's
    # cache stays known (read-only) to the slow tests that look for a model already fetched there.
    from kick_core.paths import cache_root

    os.environ.setdefault("KICK_TEST_USER_CACHE", str(cache_root()))
    os.environ["KICK_CACHE"] = tempfile.mkdtemp(prefix="kick-test-cache-")
    # Kernel connection files and IPC sockets of the notebooks the tests execute stay out of ~/.local too.
    os.environ["JUPYTER_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="kick-test-jupyter-")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama-architecture model + tokenizer saved by save_pretrained."""
    from kick_core.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny saved model per supported family."""
    from kick_core.testing import FAMILIES, save_tiny_model

    return {fam: save_tiny_model(tmp_path_factory.mktemp(f"tiny-{fam}"), fam) for fam in FAMILIES}
