"""The two-command setup stays true: README, .ci/run, Makefile and environment.yml agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert block, "README's Quick start has no code block"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _name(req: str) -> str:
    return re.split(r"[<>=!\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_readme_quick_start_is_exactly_two_commands():
    assert _quick_start_commands() == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command():
    test_cmd = _quick_start_commands()[1]
    ci = [ln.strip() for ln in (REPO / ".ci/run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert test_cmd in ci


def test_make_targets_set_up_before_running():
    mk = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: \$\(VENV\)/\.kick-base$", mk, re.M) and re.search(r"^test: setup$", mk, re.M)
    assert re.search(r"^\$\(VENV\)/\.kick-installed: \$\(VENV\)/\.kick-base$", mk, re.M)  # setup = base + extras
    assert "kick run params/demo.yaml" in mk
    assert (REPO / "params/demo.yaml").is_file()


def test_setup_pins_torch_before_the_package_so_pip_never_pulls_a_second_build():
    mk = (REPO / "Makefile").read_text()
    assert mk.index('pip install "$(TORCH_SPEC)"') < mk.index("pip install -e .\n") < mk.index('pip install -e ".[$(EXTRAS)]"')
    assert re.search(r"^TORCH_SPEC \?= torch==\d+\.\d+\.\d+$", mk, re.M)


def test_environment_yml_lists_every_runtime_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(d) for d in dep["pip"]}
        else:
            names.add(_name(dep))
    names = {"torch" if n == "pytorch" else n for n in names}
    missing = {_name(d) for d in project["dependencies"]} - names
    assert not missing, f"environment.yml lacks {sorted(missing)}"
