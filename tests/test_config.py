"""Config validation: every error class fails with the value, the rule and the fix."""

from __future__ import annotations

import re
import sys
import subprocess
from pathlib import Path

import pytest

from kick_core.config import CompressConfig, RunConfig, flat_fields
from kick_core.paramsfile import expand_params, load_params
from kick_core.errors import ConfigError


def _err(**flat) -> str:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_flat(**flat)
    return str(info.value)


def test_defaults_build_a_valid_dense_run_on_the_embedded_model():
    cfg = RunConfig()
    assert (cfg.model.model, cfg.compress.method, cfg.task.task) == ("kick-world", "dense", "factoid_qa")


def test_unknown_parameter_suggests_the_close_name():
    msg = _err(sparsty=0.5)
    assert "Unknown parameter 'sparsty'" in msg and "Did you mean: sparsity?" in msg


def test_unknown_method_suggests_the_close_name_and_lists_choices():
    msg = _err(method="wandda", sparsity=0.5)
    assert "method='wandda'" in msg and "Did you mean: wanda?" in msg and "'sparsegpt'" in msg


def test_nm_structure_with_a_different_sparsity_names_both_and_the_fix():
    msg = _err(method="wanda", structure="2:4", sparsity=0.3)
    assert "'2:4'" in msg and "0.3" in msg and "set sparsity: 0.5" in msg


def test_nm_structure_implies_its_sparsity():
    c = CompressConfig(method="sparsegpt", structure="4:8")
    assert c.nm == (4, 8) and c.target_sparsity == 0.5 and c.slug == "sparsegpt-4of8"


@pytest.mark.parametrize("structure", ["2-4", "4:2", "0:4", "2:4:8", "abc"])
def test_malformed_structures_are_rejected(structure):
    assert "structure=" in _err(method="magnitude", structure=structure)


def test_bits_with_a_pruning_method_points_to_quantize_after():
    msg = _err(method="wanda", sparsity=0.5, bits=4)
    assert "bits=4" in msg and "quantize_after" in msg


def test_sparsity_with_a_quantisation_method_is_rejected():
    assert "does not apply to method='gptq'" in _err(method="gptq", bits=4, sparsity=0.5)


def test_unsupported_bit_width_lists_the_supported_ones():
    assert "use one of 2, 3, 4, 8" in _err(method="rtn", bits=5)


def test_single_width_methods_fill_in_their_bits():
    assert CompressConfig(method="bnb_nf4").bits == 4


def test_unstructured_pruning_needs_a_sparsity():
    assert "needs a sparsity" in _err(method="magnitude")


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_sparsity_outside_unit_interval_is_rejected(value):
    assert "[0, 1)" in _err(method="magnitude", sparsity=value)


def test_quantize_after_needs_a_pruning_method():
    assert "quantize_after='rtn'" in _err(method="dense", quantize_after="rtn", bits=4)


def test_wrong_types_are_rejected_with_the_expected_type():
    assert "must be int or null" in _err(n_examples="10")
    assert "not a boolean" in _err(n_calib=True)


def test_ints_are_accepted_where_floats_are_expected():
    assert RunConfig.from_flat(method="magnitude", sparsity=0).compress.sparsity == 0


def test_flat_names_are_unique_across_sections():
    from dataclasses import fields

    from kick_core.config import CompressConfig, EvalConfig, ModelConfig, TaskConfig

    names = [f.name for dc in (ModelConfig, CompressConfig, TaskConfig, EvalConfig) for f in fields(dc)]
    assert len(names) == len(set(names))
    assert set(flat_fields()) == set(names) | {"seed", "study"}


def test_flat_round_trip_is_lossless():
    cfg = RunConfig.from_flat(method="sparsegpt", structure="2:4", task="mcq", n_shots=3, seed=2)
    assert RunConfig.from_flat(**cfg.to_flat()) == cfg


def test_a_field_left_at_its_added_default_keeps_the_run_id():
    """Sweeps recorded before 'formulation' existed resume under the same run ids."""
    letter = RunConfig.from_flat(task="mcq")
    assert letter.config_hash() == "bedbe8c71e"  # the hash recorded before the field was added
    assert RunConfig.from_flat(task="mcq", formulation="cloze").run_id != letter.run_id


def test_run_ids_are_deterministic_filesystem_safe_and_distinct():
    a = RunConfig.from_flat(model="lmsys/vicuna-7b-v1.3", method="wanda", structure="2:4")
    b = RunConfig.from_flat(model="lmsys/vicuna-7b-v1.3", method="wanda", structure="2:4")
    c = RunConfig.from_flat(model="lmsys/vicuna-7b-v1.3", method="wanda", structure="2:4", n_examples=10)
    assert a.run_id == b.run_id != c.run_id
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", a.run_id)
    assert "wanda-2of4" in a.run_id and ":" not in a.run_id and "/" not in a.run_id


def test_sweep_is_the_cartesian_product_of_each_block_and_the_union_of_blocks():
    study = expand_params({
        "study": "s",
        "base": {"task": "mcq"},
        "sweep": [{"method": ["dense"]}, {"method": ["magnitude", "wanda"], "sparsity": [0.1, 0.5]}],
    })
    got = sorted((r.compress.method, r.compress.sparsity) for r in study.runs)
    assert got == [("dense", None), ("magnitude", 0.1), ("magnitude", 0.5), ("wanda", 0.1), ("wanda", 0.5)]
    assert all(r.study == "s" and r.task.task == "mcq" for r in study.runs)


def test_an_invalid_point_names_the_sweep_block_and_values():
    with pytest.raises(ConfigError) as info:
        expand_params({"sweep": [{"method": ["dense"]}, {"method": ["wanda"], "structure": ["2:4"], "sparsity": [0.3]}]},
                      where="p.yaml")
    assert "p.yaml (sweep block 2: method='wanda', structure='2:4', sparsity=0.3)" in str(info.value)


def test_run_parameters_at_top_level_are_pointed_to_base():
    with pytest.raises(ConfigError, match="go under 'base:' or 'sweep:'"):
        expand_params({"method": "wanda"})


def test_sweep_values_must_be_lists():
    with pytest.raises(ConfigError, match=r"is 0.5, but must be a non-empty list. Fix: e.g. sparsity: \[0.5\]"):
        expand_params({"sweep": {"method": ["magnitude"], "sparsity": 0.5}})


def test_missing_params_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")


def test_invalid_yaml_is_a_config_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("base: {method: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(p)


def test_validating_a_params_file_imports_no_torch(tmp_path):
    """Bad params fail before anything heavy: the config layer never imports torch."""
    p = tmp_path / "bad.yaml"
    p.write_text("base: {method: wanda, structure: '2:4', sparsity: 0.3}\n")
    code = (
        "import sys\nfrom kick_core.paramsfile import load_params\nfrom kick_core.errors import ConfigError\n"
        f"try:\n    load_params({str(p)!r})\nexcept ConfigError as e:\n    print('ERR', e)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ERR structure '2:4'" in out and out.strip().endswith("False")
