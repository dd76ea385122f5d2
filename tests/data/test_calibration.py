"""Calibration windows: seeded sampling, local files, clear errors (tiny tokenizer, CPU, seconds)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from kick_core.data import calibration
from kick_core.data.calibration import calibration_batches
from kick_core.errors import ConfigError, UnknownNameError
from kick_core.testing import tiny_tokenizer

SENTENCE = "the quick brown fox jumps over the lazy dog . a model that is pruned forgets facts . "


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture()
def txt(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"{i} {SENTENCE}" for i in range(60)))
    return path


@pytest.fixture()
def jsonl(tmp_path):
    path = tmp_path / "docs.jsonl"
    docs = [{"text": f"{i} short"} for i in range(5)] + [{"text": SENTENCE * (k + 2)} for k in range(3)]
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    return path


def test_same_seed_same_windows_other_seed_other_windows(tok, txt):
    a = calibration_batches(tok, str(txt), n=6, seqlen=32, seed=0)
    b = calibration_batches(tok, str(txt), n=6, seqlen=32, seed=0)
    c = calibration_batches(tok, str(txt), n=6, seqlen=32, seed=1)
    assert a.input_ids.shape == (6, 32) and a.input_ids.dtype == torch.int64
    assert torch.equal(a.input_ids, b.input_ids) and a.sha256 == b.sha256
    assert not torch.equal(a.input_ids, c.input_ids) and a.sha256 != c.sha256
    assert a.info() == {"dataset": str(txt), "n": 6, "seqlen": 32, "seed": 0, "sha256": a.sha256}


def test_text_windows_follow_gptq_sampler(tok, txt):
    ids = tok(txt.read_text(), return_tensors="pt").input_ids[0]
    rng = random.Random(3)
    starts = [rng.randint(0, ids.numel() - 16 - 1) for _ in range(4)]
    want = torch.stack([ids[i:i + 16] for i in starts])
    assert torch.equal(calibration_batches(tok, str(txt), n=4, seqlen=16, seed=3).input_ids, want)


def test_sampling_leaves_the_global_random_state_alone(tok, txt):
    random.seed(123)
    expected = random.random()
    random.seed(123)
    calibration_batches(tok, str(txt), n=3, seqlen=16)
    assert random.random() == expected


def test_jsonl_documents_draw_only_documents_longer_than_seqlen(tok, jsonl):
    calib = calibration_batches(tok, str(jsonl), n=20, seqlen=24, seed=0)
    long_docs = [tok(SENTENCE * (k + 2)).input_ids for k in range(3)]
    for row in calib.input_ids.tolist():
        assert any(any(doc[i:i + 24] == row for i in range(len(doc) - 23)) for doc in long_docs)


def test_document_sampler_matches_the_study(tok, jsonl):
    docs = [json.loads(line)["text"] for line in jsonl.read_text().splitlines()]
    rng = random.Random(0)
    want = []
    for _ in range(5):
        while True:
            enc = tok(docs[rng.randint(0, len(docs) - 1)], return_tensors="pt").input_ids
            if enc.shape[1] > 24:
                break
        i = rng.randint(0, enc.shape[1] - 24 - 1)
        want.append(enc[0, i:i + 24])
    assert torch.equal(calibration_batches(tok, str(jsonl), n=5, seqlen=24).input_ids, torch.stack(want))


def test_too_short_text_names_lengths_and_fix(tok, tmp_path):
    path = tmp_path / "short.txt"
    path.write_text(SENTENCE)
    with pytest.raises(ConfigError, match=r"has \d+ tokens, but calib_seqlen=2048.*lower calib_seqlen"):
        calibration_batches(tok, str(path), n=2, seqlen=2048)


def test_no_long_enough_document_names_the_longest(tok, jsonl):
    with pytest.raises(ConfigError, match=r"longer than calib_seqlen=4096 tokens \(the longest has \d+\)"):
        calibration_batches(tok, str(jsonl), n=2, seqlen=4096)


def test_unknown_name_suggests_close_ones(tok):
    with pytest.raises(UnknownNameError, match="Did you mean: wikitext2"):
        calibration_batches(tok, "wikitext", n=2, seqlen=8)


def test_missing_or_malformed_files_are_config_errors(tok, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        calibration_batches(tok, str(tmp_path / "nope.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"content": "x"}\n')
    with pytest.raises(ConfigError, match="bad.jsonl:1 has no string field 'text'"):
        calibration_batches(tok, str(bad))


def test_world_reads_the_embedded_corpus(tok, tmp_path, monkeypatch):
    import sys
    import types

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "train.txt").write_text(SENTENCE * 20)
    seen = {}

    def ensure_world_data(seed=0):
        seen["seed"] = seed
        return tmp_path

    monkeypatch.setitem(sys.modules, "kick_core.world", types.SimpleNamespace(ensure_world_data=ensure_world_data))
    calib = calibration_batches(tok, "world", n=2, seqlen=16, world_seed=7)
    assert seen == {"seed": 7} and calib.input_ids.shape == (2, 16)


def test_hash_depends_on_ids_and_shape():
    ids = torch.arange(12).reshape(3, 4)
    assert calibration.hash_ids(ids) != calibration.hash_ids(ids.reshape(4, 3))
    assert calibration.hash_ids(ids) == calibration.hash_ids(ids.clone().to(torch.int32))


@pytest.mark.network
@pytest.mark.parametrize("dataset", ["c4", "wikitext2"])
def test_hub_sources_load(tok, dataset):
    calib = calibration_batches(tok, dataset, n=2, seqlen=64)
    assert calib.input_ids.shape == (2, 64)
