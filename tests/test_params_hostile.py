"""Hostile params files, one table: each must fail ``kick run FILE`` (with and without ``--dry-run``)
with exit status 2 before any model loads or kernel starts, and with a message naming the offending
value, the rule and the fix (a did-you-mean for names).

A row is (id, params file text, regexes the error message must all match). The params file is
written as ``hostile.yaml`` in a scratch folder that is also the working directory, so relative
paths in a row resolve there; the hub is offline (``HF_HUB_OFFLINE=1``, an empty hub cache).
"""

from __future__ import annotations

import re

import pytest

from kick_core.cli import main
from kick_core.config import flat_fields
from kick_core.paramsfile import _TOP_KEYS, MAX_RUNS

FILE = "hostile.yaml"


def _typo(key: str) -> str:
    """A one-keystroke typo: the two middle letters swapped (or one dropped where they are equal)."""
    i = len(key) // 2
    return key[:i] + key[i + 1] + key[i] + key[i + 2:] if key[i] != key[i + 1] else key[:i] + key[i + 1:]


def _suggests(key: str) -> str:
    return rf"Did you mean: (?:[\w.-]+, )*{re.escape(key)}[,?]"


# -- typos of every key: each top-level key, and every run parameter in base ---------------------
KEY_TYPOS = [
    (f"top-key-typo-{key}", f"{_typo(key)}: x\nbase: {{n_examples: 2}}\n",
     [rf"unknown top-level key '{_typo(key)}'", _suggests(key), "Allowed: study, description"])
    for key in _TOP_KEYS
] + [
    (f"base-key-typo-{key}", f"base: {{{_typo(key)}: 1}}\n",
     [rf"Unknown parameter '{_typo(key)}'", _suggests(key), "Known parameters: "])
    for key in flat_fields()
]

CASES = KEY_TYPOS + [
    # -- names: a did-you-mean for every misspelt value --------------------------------------------
    ("sweep-key-typo", "sweep: {mehtod: [dense]}\n",
     [r"Unknown parameter 'mehtod' in .*sweep block 1", _suggests("method")]),
    ("preset-key-typo", "base: {prest: gptq_study_w4}\n", [r"Unknown parameter 'prest'", _suggests("preset")]),
    ("run-key-at-top-level", "model: kick-world\n",
     [r"unknown top-level key 'model'", r"Run parameters go under 'base:' or 'sweep:'"]),
    ("method-typo", "base: {method: wandda, sparsity: 0.5}\n",
     [r"method='wandda' is not allowed", r"must be one of .*'wanda'", _suggests("wanda")]),
    ("task-typo-in-sweep", "sweep: {task: [factoid_qa, mqc]}\n",
     [r"task='mqc' is not allowed", r"must be one of", _suggests("mcq"), r"sweep block 1: task='mqc'"]),
    ("quantize-after-typo", "base: {method: wanda, sparsity: 0.5, quantize_after: gtpq, bits: 4}\n",
     [r"quantize_after='gtpq' is not allowed", _suggests("gptq")]),
    ("dtype-typo", "base: {dtype: bfloat}\n", [r"dtype='bfloat' is not allowed", _suggests("bfloat16")]),
    ("protocol-typo", "base: {protocol: strickt}\n", [r"protocol='strickt'", _suggests("strict")]),
    ("preset-typo", "base: {preset: gptq_study_w5}\n",
     [r"Unknown preset 'gptq_study_w5'", _suggests("gptq_study_w4"), r"Available: "]),
    ("packaged-model-typo", "base: {model: smollm2-135m-instruc}\n",
     [r"model='smollm2-135m-instruc'", r"not in the local Hugging Face cache", _suggests("smollm2-135m-instruct")]),
    ("notebook-typo", "notebook: exp_factoid\n",
     [r"notebook 'exp_factoid' .* not found", _suggests("exp_factoid_qa"), r"Fix: "]),
    # -- out-of-range and mistyped values ----------------------------------------------------------
    ("sparsity-above-1", "base: {method: wanda, sparsity: 1.5}\n",
     [r"sparsity=1\.5", r"must be a number in \[0, 1\)", r"Fix: e\.g\. sparsity: 0\.5"]),
    ("sparsity-exactly-1", "base: {method: magnitude, sparsity: 1}\n", [r"sparsity=1 ", r"\[0, 1\)", r"Fix: "]),
    ("sparsity-negative", "base: {method: sparsegpt, sparsity: -0.1}\n", [r"sparsity=-0\.1", r"\[0, 1\)", r"Fix: "]),
    ("sparsity-nan", "base: {method: wanda, sparsity: .nan}\n", [r"sparsity=nan", r"\[0, 1\)", r"Fix: "]),
    ("sparsity-a-word", "base: {method: wanda, sparsity: half}\n",
     [r"sparsity='half'", r"must be float or null, got str", r"Fix: write sparsity: a number"]),
    ("sparsity-missing-for-pruning", "base: {method: wanda}\n",
     [r"method='wanda' with structure 'unstructured' needs a sparsity", r"e\.g\. sparsity: 0\.5"]),
    ("sparsity-with-quantiser", "base: {method: rtn, bits: 4, sparsity: 0.5}\n",
     [r"sparsity=0\.5 does not apply to method='rtn'", r"Fix: remove it, or use a pruning method"]),
    ("bits-9-rtn", "base: {method: rtn, bits: 9}\n", [r"bits=9 is not supported by 'rtn'", r"use one of 2, 3, 4, 8"]),
    ("bits-1-gptq", "base: {method: gptq, bits: 1}\n", [r"bits=1 is not supported by 'gptq'", r"use one of 2, 3, 4, 8"]),
    ("bits-3-awq", "base: {method: awq, bits: 3}\n", [r"bits=3 is not supported by 'awq'", r"use one of 4, 8"]),
    ("bits-with-dense", "base: {bits: 4}\n", [r"bits=4 does nothing with method 'dense'", r"Fix: remove bits"]),
    ("bits-with-pruning", "base: {method: wanda, sparsity: 0.5, bits: 4}\n",
     [r"bits=4 does nothing with pruning method 'wanda'", r"Fix: remove bits, or add quantize_after"]),
    ("bits-as-string", "base: {method: rtn, bits: '4'}\n",
     [r"bits='4'", r"must be int or null, got str", r"Fix: write bits: a whole number"]),
    ("group-size-zero", "base: {method: rtn, bits: 4, group_size: 0}\n",
     [r"group_size=0", r"must be a positive integer", r"fix the value"]),
    ("n-examples-negative", "base: {n_examples: -1}\n", [r"n_examples=-1", r"positive integer", r"fix the value"]),
    ("n-examples-fraction", "base: {n_examples: 2.5}\n",
     [r"n_examples=2\.5", r"must be int or null, got float", r"Fix: write n_examples: a whole number"]),
    ("seed-boolean", "base: {seed: true}\n", [r"seed=True", r"must be int, not a boolean", r"Fix: write seed:"]),
    # -- impossible N:M ----------------------------------------------------------------------------
    ("nm-3-of-2", "base: {method: wanda, structure: '3:2'}\n",
     [r"structure='3:2'", r"needs 0 < N < M", r"Fix: e\.g\. structure: '2:4'"]),
    ("nm-0-of-4", "base: {method: wanda, structure: '0:4'}\n", [r"structure='0:4'", r"0 < N < M", r"Fix: "]),
    ("nm-2-of-2", "base: {method: sparsegpt, structure: '2:2'}\n", [r"structure='2:2'", r"0 < N < M", r"Fix: "]),
    ("nm-three-numbers", "base: {method: wanda, structure: '2:4:8'}\n",
     [r"structure='2:4:8' is not understood", r"'N:M' with N < M", r"e\.g\. '2:4'"]),
    ("nm-sparsity-mismatch", "base: {method: wanda, structure: '2:4', sparsity: 0.3}\n",
     [r"structure '2:4' removes 2 of every 4", r"got sparsity 0\.3", r"Fix: set sparsity: 0\.5 or leave it out"]),
    ("nm-with-quantiser", "base: {method: gptq, bits: 4, structure: '2:4'}\n",
     [r"structure='2:4' does not apply to method='gptq'", r"Fix: "]),
    # -- files that do not exist (or are not what they claim) --------------------------------------
    ("model-local-path-missing", "base: {model: ./models/no-such-llama}\n",
     [r"model='\./models/no-such-llama' looks like a local path but does not exist", r"Fix: check the path"]),
    ("model-folder-not-a-model", "base: {model: .}\n",
     [r"model='\.' is a local path but not a Hugging Face model folder \(no config\.json\)", r"Fix: point to"]),
    ("model-hub-id-offline", "base: {model: no-such-org/no-such-model-xyz}\n",
     [r"model='no-such-org/no-such-model-xyz'", r"not in the local Hugging Face cache while HF_HUB_OFFLINE is set",
      r"Fix: download it first"]),
    ("tokenizer-path-missing", "base: {tokenizer: ./tokenizers/llama}\n",
     [r"tokenizer='\./tokenizers/llama' looks like a local path but does not exist", r"Fix: "]),
    ("notebook-missing", "notebook: ./nb/missing.ipynb\n",
     [r"notebook '\./nb/missing\.ipynb' for task 'factoid_qa' not found", r"Available: ", r"Fix: "]),
    ("notebook-not-a-notebook", f"notebook: {FILE}\n",
     [rf"notebook '.*{FILE}' is not a Jupyter notebook", r"Fix: set notebook: to an \.ipynb file"]),
    ("dataset-path-missing", "base: {dataset: ./data/questions.jsonl}\n",
     [r"dataset='\./data/questions\.jsonl' looks like a local path", r"does not exist", r"Fix: check the path"]),
    ("dataset-file-missing", "sweep: {dataset: [world, qa.csv]}\n",
     [r"dataset='qa\.csv' looks like a local path", r"does not exist", r"Fix: "]),
    ("calib-file-missing", "base: {method: gptq, bits: 4, calib_dataset: ./calib.txt}\n",
     [r"calib_dataset='\./calib\.txt' \(for method='gptq'\)", r"does not exist", r"Fix: check the path"]),
    # -- not YAML, or not the right shape ----------------------------------------------------------
    ("empty-file", "", [r"is empty \(or only comments\)", r"needs at least 'base:' or 'sweep:'", r"Fix: start from"]),
    ("only-comments", "# study: demo\n# base: {}\n", [r"is empty \(or only comments\)", r"Fix: "]),
    ("invalid-yaml", "base: {model: [kick-world\n", [r"is not valid YAML", r"line 2", r"Fix: correct the YAML"]),
    ("tab-indent", "base:\n\tmodel: kick-world\n", [r"is not valid YAML", r"'\\t'", r"not tabs"]),
    ("python-tag", 'base: !!python/object/apply:os.system ["echo hostile"]\n',
     [r"is not valid YAML", r"python/object/apply:os\.system", r"!!python/\.\.\. are refused"]),
    ("not-utf8", b"study: caf\xe9\nbase: {n_examples: 2}\n", [r"is not UTF-8 text \(byte 10", r"Fix: save it as UTF-8"]),
    ("top-level-list", "- study: x\n- base: {n_examples: 2}\n",
     [r"the top level is a list", r"must be a mapping with keys study", r"Fix: .*not as list items"]),
    ("top-level-scalar", "just some words\n", [r"the top level is a string \('just some words'\)", r"Fix: "]),
    ("base-is-a-list", "base: [model, kick-world]\n",
     [r"'base' is a list \(\"\['model', 'kick-world'\]\"\)", r"must be a mapping of parameter: value", r"Fix: e\.g\."]),
    ("sweep-value-not-a-list", "sweep: {method: wanda}\nbase: {sparsity: 0.5}\n",
     [r"sweep value of 'method' is 'wanda', but must be a non-empty list", r"Fix: e\.g\. method: \['wanda'\]"]),
    ("sweep-empty-list", "sweep: {method: []}\n", [r"'method' is an empty list, which expands to no runs", r"Fix: "]),
    ("sweep-list-of-numbers", "sweep: [1, 2]\n", [r"'sweep' holds a number \('1'\)", r"must be a mapping", r"Fix: "]),
    ("study-in-base", "base: {study: s, n_examples: 2}\n", [r"set the study name at the top level \('study: s'\)"]),
    ("huge-sweep", "sweep: {seed: [0,1,2,3,4,5,6,7,8,9], n_examples: [1,2,3,4,5,6,7,8,9,10], n_shots: [0,1,2,3,4,5,"
                   "6,7,8,9], n_bootstrap: [1,2,3,4,5,6,7,8,9,10], batch_tokens: [1,2]}\n",
     [r"expands to 20,000 runs", rf"more than the {MAX_RUNS:,}", r"Fix: shorten the lists"]),
    # -- duplicate keys and duplicate runs ---------------------------------------------------------
    ("duplicate-top-key", "study: a\nbase: {n_examples: 2}\nstudy: b\n",
     [r"key 'study' appears twice in one mapping \(lines 1 and 3\)", r"Fix: remove one"]),
    ("duplicate-base-key", "base:\n  model: kick-world\n  n_examples: 2\n  model: other\n",
     [r"key 'model' appears twice .*lines 2 and 4", r"Fix: "]),
    ("duplicate-sweep-key", "sweep:\n  - {task: [factoid_qa], method: [dense],\n     task: [mcq]}\n",
     [r"key 'task' appears twice .*lines 2 and 3", r"separate sweep block"]),
    ("duplicate-run-sparsity", "base: {method: wanda}\nsweep: {sparsity: [0.3, 0.5, 0.50]}\n",
     [r"'sparsity' lists 0\.5 more than once \(sparsity: \[0\.3, 0\.5, 0\.5\]\)", r"Fix: remove the repeat"]),
    ("duplicate-run-method", "sweep:\n  - {method: [dense, dense]}\n",
     [r"sweep block 1\): 'method' lists 'dense' more than once", r"Fix: "]),
    # -- a study name that would write outside the results directory -------------------------------
    ("study-escapes-upward", "study: ../../etc\n",
     [r"study='\.\./\.\./etc' must be a plain folder name", r"must stay inside the results directory",
      r"Fix: e\.g\. study: etc\."]),
    ("study-is-dotdot", "study: ..\n", [r"study='\.\.' must be a plain folder name", r"no '/', '\.\.'", r"Fix: "]),
    ("study-is-dot", "study: .\n", [r"study='\.' must be a plain folder name", r"Fix: e\.g\. study: my_study"]),
    ("study-hidden", "study: .cache\n", [r"study='\.cache'", r"starting with a letter or digit", r"study: cache"]),
    ("study-absolute", "study: /tmp/kick-study\n",
     [r"study='/tmp/kick-study' must be a plain folder name", r"absolute path", r"Fix: e\.g\. study: kick-study"]),
    ("study-with-slash", "study: vicuna/pruning\n", [r"study='vicuna/pruning'", r"no '/'", r"study: pruning"]),
    ("study-home", "study: ~/kick\n", [r"study='~/kick'", r"plain folder name", r"Fix: e\.g\. study: kick"]),
    ("study-empty", "study:\nbase: {n_examples: 2}\n",
     [r"study=None is empty \(null\)", r"Fix: write e\.g\. 'study: hostile', or leave the key out"]),
    ("study-a-list", "study: [a, b]\n", [r"study=\['a', 'b'\] is a list", r"Fix: "]),
]

_IDS = [c[0] for c in CASES]
assert len(_IDS) == len(set(_IDS)), "duplicate case ids"


@pytest.fixture
def nothing_heavy(monkeypatch, tmp_path):
    """Offline hub, an empty hub cache, and every model load, world build or kernel start a test failure."""
    import papermill
    import transformers

    import kick_core.models
    import kick_core.runner.sweep
    import kick_core.world

    def forbidden(what):
        def fail(*args, **kwargs):
            raise AssertionError(f"{what} was called: hostile params must be refused before any model loads")
        return fail

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(kick_core.models, "load_model", forbidden("kick_core.models.load_model"))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", forbidden("from_pretrained"))
    monkeypatch.setattr(kick_core.world, "ensure_world", forbidden("world.ensure_world"))
    monkeypatch.setattr(kick_core.runner.sweep, "prepare_world", forbidden("prepare_world"))
    monkeypatch.setattr(kick_core.runner.sweep, "make_executor", forbidden("make_executor (a kernel start)"))
    monkeypatch.setattr(papermill, "execute_notebook", forbidden("papermill.execute_notebook"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("mode", [["--dry-run"], ["--no-report"]], ids=["dry-run", "run"])
@pytest.mark.parametrize("case_id, text, patterns", CASES, ids=_IDS)
def test_hostile_params_fail_before_any_model_loads(nothing_heavy, capsys, mode, case_id, text, patterns):
    path = nothing_heavy / FILE
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    results = nothing_heavy / "results"
    status = main(["run", str(path), "--results", str(results), *mode])
    err = capsys.readouterr().err
    assert status == 2, f"{case_id}: expected exit status 2, got {status}; stderr: {err}"
    assert err.startswith("kick: error: ") and "Traceback" not in err
    missing = [p for p in patterns if not re.search(p, err)]
    assert not missing, f"{case_id}: message lacks {missing}:\n{err}"
    assert not results.exists(), "nothing may be written before the params are accepted"


def test_the_table_is_large_and_covers_every_key():
    assert len(CASES) >= 30
    assert {c[0] for c in KEY_TYPOS} >= {f"base-key-typo-{k}" for k in flat_fields()}


def test_an_unquoted_n_m_structure_reads_as_the_string_it_looks_like(tmp_path):
    """YAML 1.1 reads a bare 2:4 as the base-60 number 124; kick's reader keeps it the string '2:4'."""
    from kick_core.paramsfile import load_params

    path = tmp_path / "nm.yaml"
    path.write_text("base: {method: wanda}\nsweep: {structure: [2:4, 4:8]}\n")
    assert sorted(r.compress.structure for r in load_params(path).runs) == ["2:4", "4:8"]


def test_a_sound_params_file_passes_the_same_checks(nothing_heavy, capsys):
    """The control: under the same guards a sound file dry-runs, so the table's failures are the files' own."""
    path = nothing_heavy / FILE
    path.write_text("study: sound\nbase: {n_examples: 2}\nsweep:\n  - {method: [dense]}\n"
                    "  - {method: [wanda], structure: ['2:4']}\n")
    assert main(["run", str(path), "--results", str(nothing_heavy / "results"), "--dry-run"]) == 0
    assert "study sound: 2 runs" in capsys.readouterr().out


@pytest.mark.parametrize("pair, status, pattern", [
    ("structure=2:4", 0, r"wanda-2of4"),  # read as the string '2:4', as in a params file
    ("sparsty=0.5", 2, r"--set sparsty: unknown parameter\. Did you mean: sparsity\?"),
    ("model=[kick-world", 2, r"--set model=\[kick-world: '\[kick-world' is not a YAML value.*Fix: quote it"),
    ("study=../escape", 2, r"with --set study=\.\./escape: set the study name at the top level"),
])
def test_set_values_are_read_and_checked_as_params_file_values(nothing_heavy, capsys, pair, status, pattern):
    path = nothing_heavy / FILE
    path.write_text("study: s\nbase: {method: wanda, n_examples: 2}\n")
    assert main(["run", str(path), "--results", str(nothing_heavy / "results"), "--dry-run", "--set", pair]) == status
    out = capsys.readouterr()
    assert re.search(pattern, out.out if status == 0 else out.err), out
