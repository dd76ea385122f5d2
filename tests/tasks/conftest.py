"""Session fixtures for task tests: the tiny tokenizer and a tiny Llama."""

import pytest


@pytest.fixture(scope="session")
def tok():
    from kick_core.testing import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(scope="session")
def llama(tok):
    from kick_core.testing import tiny_model

    return tiny_model("llama", vocab_size=len(tok))
