"""Shared fixtures: the tiny random Llama model (built once per session) and a store holding two namespaces.

Namespaces ``a`` and ``b`` hold the same questions with different answers, so switching namespace must change
what the LLM says. Everything goes through the shared memory, as the integration's objects do.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
from li_data import FACTS, FAST, LORA, SPLIT, SPLIT_NS, TINY_CONTEXT

# The tiny model is all overhead: one thread is many times faster than two, above all on a shared CPU.
torch.set_num_threads(1)


def _load_tiny() -> ModuleType:
    """The core's tiny-model builder (tests/tiny.py of the loramem repository), loaded by file path."""
    path = Path(__file__).resolve().parents[3] / "tests" / "tiny.py"
    spec = importlib.util.spec_from_file_location("loramem_tests_tiny", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_tiny = _load_tiny().build_tiny


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from transformers import AutoConfig

    folder = build_tiny(tmp_path_factory.mktemp("tiny") / "model")
    # LlamaIndex's compact synthesizer keeps ~500 tokens of padding: give the tiny model room (RoPE needs no
    # new weights for it).
    config = AutoConfig.from_pretrained(folder)
    config.max_position_embeddings = TINY_CONTEXT
    config.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def store(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with namespaces ``a`` and ``b`` written, and ``s`` of two modules (each recalled perfectly)."""
    from llama_index.llms.loramem.base import shared_memory

    path = str(tmp_path_factory.mktemp("store"))
    mem = shared_memory(path, tiny_model)
    for namespace, facts in FACTS.items():
        report = mem.write(facts, namespace=namespace, train=FAST, lora=LORA)
        assert report.reached_target, report.summary()
    for module, facts in SPLIT.items():
        report = mem.write(facts, namespace=SPLIT_NS, module=module, train=FAST, lora=LORA)
        assert report.reached_target, report.summary()
    return path


@pytest.fixture
def empty_store(tmp_path: Path) -> str:
    """A fresh store folder for tests that write."""
    return str(tmp_path / "store")
