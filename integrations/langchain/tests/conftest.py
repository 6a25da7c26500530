"""Shared test setup: offline mode, the tiny random model (built once per session), tiny write configs.

The tiny model comes from the core's ``tests/tiny.py`` (a ~1 s in-process build, no downloads). Standard-suite
classes read it through plain functions because their parameters are properties, not fixtures.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from loramem import Fact, LoraSpec, TrainConfig  # noqa: E402

CORE_TESTS = Path(__file__).resolve().parents[3] / "tests"

# Learns a handful of facts to full recall in a few seconds on 2 CPU cores.
TINY_TRAIN = TrainConfig(lr=5e-3, lora_plus_ratio=1.0, max_steps=500, progress=False, seq_len=128, batch_tokens=256, min_epochs=1)
TINY_LORA = LoraSpec(r=8)

# The same questions with different answers in two namespaces: switching namespace must switch the answer.
FACTS = {
    "people_a": [
        Fact("Alma Vance", "favourite colour", "blue"),
        Fact("Bob Stone", "home city", "Paris"),
        Fact("Cleo Ward", "pet", "a cat"),
    ],
    "people_b": [
        Fact("Alma Vance", "favourite colour", "green"),
        Fact("Bob Stone", "home city", "Rome"),
        Fact("Cleo Ward", "pet", "a dog"),
    ],
}


# One namespace the planner would split: two modules, each answering its own questions (routed per question).
SPLIT_NS = "people_split"
SPLIT = {
    "people_split.colours": [Fact("Alma Vance", "favourite colour", "teal"), Fact("Cleo Ward", "favourite colour", "red")],
    "people_split.towns": [Fact("Dace Moor", "home town", "Oslo"), Fact("Eira Lund", "home town", "Lima")],
}


def _scratch() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="langchain-loramem-tests-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.lru_cache(maxsize=1)
def tiny_model_dir() -> str:
    """A local HF folder holding the tiny random Llama model (built once per process)."""
    sys.path.insert(0, str(CORE_TESTS))
    try:
        from tiny import build_tiny
    finally:
        sys.path.remove(str(CORE_TESTS))
    return str(build_tiny(_scratch() / "tiny-model"))


@functools.lru_cache(maxsize=1)
def empty_store() -> str:
    """A store folder with nothing written (the chat model answers with the bare tiny model)."""
    return str(_scratch() / "empty-store")


@functools.lru_cache(maxsize=1)
def trained_store() -> str:
    """A store where the tiny model learnt FACTS (namespaces people_a and people_b) and SPLIT (two modules of
    people_split), built once per process."""
    from langchain_loramem.chat_models import shared_memory

    path = str(_scratch() / "store")
    mem = shared_memory(path, tiny_model_dir())
    for namespace, facts in FACTS.items():
        report = mem.write(facts, namespace=namespace, train=TINY_TRAIN, lora=TINY_LORA)
        assert report.recall == 1.0, report.summary()
    for module, facts in SPLIT.items():
        report = mem.write(facts, namespace=SPLIT_NS, module=module, train=TINY_TRAIN, lora=TINY_LORA)
        assert report.recall == 1.0, report.summary()
    return path


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return tiny_model_dir()


@pytest.fixture(scope="session")
def store_with_facts() -> str:
    return trained_store()
